"""Shared fixtures: a fresh SQLite file per test, the demo host with the monitor, its clients,
logins, and a clock that stands still unless a test moves it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from activity_monitor import api_tokens
from activity_monitor.db import connect
from app import create_app
from demo_host import db as host_db
from demo_host.auth import create_user

PASSWORD = "correct horse battery"
ROLES = ("admin", "manager", "driver", "viewer")
# The instant the test clock shows unless a test sets another: mid-month, mid-week, mid-day.
DEFAULT_NOW = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.UTC)


class TestClock:
    """A clock for ACTIVITY_CLOCK: it shows ``now`` until a test sets or advances it."""

    __test__ = False

    def __init__(self, now: dt.datetime = DEFAULT_NOW):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        """Move the clock to an instant."""
        self.now = now

    def advance(self, **delta: float) -> None:
        """Move the clock on by a timedelta's keyword arguments."""
        self.now += dt.timedelta(**delta)

    def today(self, tz_name: str = "UTC") -> dt.date:
        """Return the clock's local day in a zone."""
        import zoneinfo

        return self.now.astimezone(zoneinfo.ZoneInfo(tz_name)).date()


@pytest.fixture
def clock() -> TestClock:
    """The clock every app of the test runs on."""
    return TestClock()


@pytest.fixture
def make_app(tmp_path, clock) -> Callable[..., Flask]:
    """Return a factory building apps on this test's own database file and clock."""

    def build(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "DATABASE": str(tmp_path / "activity.sqlite3"),
            "SECRET_KEY": "test-secret",
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_CLOCK": clock,
        }
        config.update(overrides)
        return create_app(config)

    return build


@pytest.fixture
def app(make_app) -> Flask:
    """The app with default test configuration."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """A CLI runner of the app."""
    return app.test_cli_runner()


@pytest.fixture
def db_conn(app: Flask) -> Iterator[Any]:
    """A connection of its own to the test database."""
    conn = connect(app.config["DATABASE"])
    yield conn
    conn.close()


class AuthActions:
    """Create users of each role, log them in, and hand out API tokens."""

    def __init__(self, app: Flask, client: FlaskClient):
        self.app = app
        self.client = client
        self.user_ids: dict[str, int] = {}

    def ensure_user(self, role: str, username: str | None = None, **fields: Any) -> int:
        """Create the user of a role once; return its id."""
        username = username or role
        if username in self.user_ids:
            return self.user_ids[username]
        conn = host_db.connect(self.app.config["DATABASE"])
        try:
            user_id = create_user(conn, username, PASSWORD, role)
            for column, value in fields.items():
                conn.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (value, user_id))
        finally:
            conn.close()
        self.user_ids[username] = user_id
        return user_id

    def login(self, role: str = "admin", username: str | None = None, password: str = PASSWORD):
        """Log in through the JSON endpoint; returns the response (cookie set on the client)."""
        self.ensure_user(role, username)
        return self.client.post(
            "/api/auth/login", json={"username": username or role, "password": password}
        )

    def csrf_token(self) -> str:
        """Return the monitor's CSRF token of the client's current session (from its page)."""
        html = self.client.get("/admin/activity").get_data(as_text=True)
        marker = 'data-csrf-token="'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]

    def host_csrf_token(self) -> str:
        """Return the demo host's own CSRF token (Flask-WTF's, from a page's meta tag)."""
        html = self.client.get("/login").get_data(as_text=True)
        marker = '<meta name="csrf-token" content="'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]

    def token(self, role: str = "admin", username: str | None = None) -> str:
        """Create an API token for the user of a role and return it."""
        user_id = self.ensure_user(role, username)
        conn = connect(self.app.config["DATABASE"])
        try:
            _, token = api_tokens.create_token(conn, user_id, "test")
        finally:
            conn.close()
        return token


@pytest.fixture
def auth(app: Flask, client: FlaskClient) -> AuthActions:
    """Log-in helper bound to the app and client."""
    return AuthActions(app, client)


def redis_url() -> str:
    """Return the Redis URL tests use (database 15 by default)."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_available() -> Callable[[], None]:
    """Return a check that skips the test when no Redis answers (fails instead under REQUIRE_REDIS=1)."""

    def check() -> None:
        import redis

        try:
            redis.Redis.from_url(redis_url(), socket_connect_timeout=0.5).ping()
        except redis.RedisError as exc:
            if os.environ.get("REQUIRE_REDIS") == "1":
                pytest.fail(f"Redis at {redis_url()} does not answer and REQUIRE_REDIS=1: {exc}")
            pytest.skip(f"no Redis at {redis_url()}")

    return check
