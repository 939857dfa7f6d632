"""A live server with seeded, summarized activity, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from activity_monitor import now, today
from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.db import connect
from activity_monitor.timeutil import to_db_timestamp
from app import create_app
from conftest import PASSWORD, TestClock
from demo_host import db as host_db
from demo_host.auth import create_user
from demo_host.demo_data import seed_demo

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A page path as a user could request it: it must show as text and run nothing.
MARKUP_PAGE = '/devices/<img src=x onerror="window.__xss=1">'
SEEDED_DAYS = 400


def chromium_executable() -> str | None:
    """Return Debian's chromium binary, or None when it is not installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def skip_or_fail(reason: str) -> None:
    """Skip a browser test, or fail it when REQUIRE_BROWSER=1 says the browser must be there."""
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


@dataclass
class LiveServer:
    """A running app: its base URL, the app, and the days its data covers."""

    url: str
    app: Flask
    yesterday: dt.date
    users: dict[str, int] = field(default_factory=dict)


def create_users(app: Flask, roles: tuple[str, ...]) -> dict[str, int]:
    """Create a user who can log in for each role (username = role); return their ids."""
    conn = host_db.connect(app.config["DATABASE"])
    try:
        return {role: create_user(conn, role, PASSWORD, role) for role in roles}
    finally:
        conn.close()


def seed_activity(app: Flask, yesterday: dt.date) -> dict[str, int]:
    """Seed demo activity, a request for a page path full of markup, and users who can log in;
    summarize every day. Returns the ids of the users by role."""
    seed_demo(app, days=SEEDED_DAYS, users=30, seed=11, end_day=yesterday, tz_name="UTC")
    users = create_users(app, ("admin", "viewer"))
    noon = dt.datetime.combine(yesterday, dt.time(12), tzinfo=dt.UTC)
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        conn.executemany(
            """
            INSERT INTO user_activity_log (session_id, user_id, role, timestamp, page_url, action_type)
            VALUES (?, ?, 'admin', ?, ?, 'page_view')
            """,
            [
                ("markup", users["admin"], to_db_timestamp(noon + dt.timedelta(minutes=i)), MARKUP_PAGE)
                for i in range(40)
            ],
        )
    finally:
        conn.close()
    with DailySummaryProcessor.from_app(app, clock=lambda: now(app)) as processor:
        processor.process_missing_days()
    return users


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve an app on 127.0.0.1 from a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def build_app(folder: Path) -> Flask:
    """Create an app on its own database file and a clock standing still (conftest's default
    instant), without background jobs or a tight rate limit."""
    return create_app(
        {
            "DATABASE": str(folder / "activity.sqlite3"),
            "SECRET_KEY": "browser-test-secret",
            "ACTIVITY_CLOCK": TestClock(),
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_RATE_LIMIT": "10000 per minute",
        }
    )


@pytest.fixture(scope="module", name="live_server")
def live_server_fixture(tmp_path_factory) -> Iterator[LiveServer]:
    """Serve an app with a year of summarized demo activity."""
    app = build_app(tmp_path_factory.mktemp("live"))
    yesterday = today(app) - dt.timedelta(days=1)
    users = seed_activity(app, yesterday)
    with serving(app) as url:
        yield LiveServer(url, app, yesterday, users)


@pytest.fixture(scope="module", name="empty_server")
def empty_server_fixture(tmp_path_factory) -> Iterator[LiveServer]:
    """Serve a fresh installation: an admin and no activity summaries at all."""
    app = build_app(tmp_path_factory.mktemp("empty"))
    users = create_users(app, ("admin",))
    yesterday = today(app) - dt.timedelta(days=1)
    with serving(app) as url:
        yield LiveServer(url, app, yesterday, users)


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    """One headless chromium for the module (skipped when it or Playwright is missing)."""
    executable = chromium_executable()
    if executable is None:
        skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def log_in(context: Any, base_url: str, username: str) -> None:
    """Log in through the login form; the session cookie stays in the context."""
    page = context.new_page()
    try:
        page.goto(f"{base_url}/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
    finally:
        page.close()


@pytest.fixture(scope="module", name="admin_context")
def admin_context_fixture(browser, live_server) -> Iterator[Any]:
    """A browser context logged in as the admin, at 1280×800, accepting downloads."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    log_in(context, live_server.url, "admin")
    yield context
    context.close()


@dataclass
class WatchedPage:
    """A page with the console errors and uncaught exceptions it produced."""

    page: Any
    errors: list[str]


@pytest.fixture(name="watched")
def watched_fixture(admin_context) -> Iterator[WatchedPage]:
    """A fresh admin page that records console errors and page errors."""
    page = admin_context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    yield WatchedPage(page, errors)
    page.close()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot under tests/artifacts/ (git-ignored) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
