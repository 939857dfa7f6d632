"""Shared fixtures: a fresh database per test (a SQLite file, or a PostgreSQL schema under
``--backend=postgresql``), the demo host with the monitor, its clients, logins, and a clock
that stands still unless a test moves it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import postgres_support
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


BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("TEST_BACKEND", "sqlite"),
        help="Database backend of the monitor in every test (default: TEST_BACKEND, else sqlite).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only: runs in the default (SQLite) run only: the test is about SQLite itself, or does "
        "not depend on the backend, or uses PostgreSQL on its own whatever --backend says",
    )
    config.addinivalue_line("markers", "postgres_only: the test is about PostgreSQL itself")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests of the other backend's own machinery (they run in its run)."""
    other = "postgres_only" if config.getoption("--backend") == "sqlite" else "sqlite_only"
    kept = [item for item in items if other not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if other in item.keywords])
        items[:] = kept


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run tests: sqlite or postgresql."""
    return request.config.getoption("--backend")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres_support.ThrowawayDatabase]:
    """This run's throwaway PostgreSQL database (skipped, or failed under REQUIRE_POSTGRES=1,
    when no server answers); dropped at the end of the run."""
    reason = postgres_support.unavailable_reason()
    if reason is not None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} and REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    database = postgres_support.ThrowawayDatabase()
    yield database
    database.drop()


@pytest.fixture
def postgres_url(postgres_server: postgres_support.ThrowawayDatabase) -> Iterator[str]:
    """The URL of an empty PostgreSQL schema of this test's own."""
    schema, url = postgres_server.new_schema()
    yield url
    postgres_server.drop_schema(schema)


@pytest.fixture
def monitor_database(request: pytest.FixtureRequest, backend: str, tmp_path) -> str:
    """ACTIVITY_DATABASE of this test: its SQLite file, or its PostgreSQL schema."""
    if backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "activity.sqlite3")


@pytest.fixture
def another_database(request: pytest.FixtureRequest, backend: str, tmp_path) -> Iterator[str]:
    """A second, empty database on the run's backend (another install beside this test's)."""
    if backend == "sqlite":
        yield str(tmp_path / "another.sqlite3")
        return
    server = request.getfixturevalue("postgres_server")
    schema, url = server.new_schema()
    yield url
    server.drop_schema(schema)


@pytest.fixture
def new_database(request: pytest.FixtureRequest, backend: str, tmp_path) -> Iterator[Callable[[str], str]]:
    """Return a factory of further empty databases on the run's backend, one per name (a SQLite
    file named so, or a fresh PostgreSQL schema); the schemas are dropped at the end."""
    made: dict[str, str] = {}
    schemas: list[str] = []

    def make(name: str) -> str:
        if name not in made:
            if backend == "sqlite":
                made[name] = str(tmp_path / f"{name}.sqlite3")
            else:
                schema, made[name] = request.getfixturevalue("postgres_server").new_schema()
                schemas.append(schema)
        return made[name]

    yield make
    if schemas:
        server = request.getfixturevalue("postgres_server")
        for schema in schemas:
            server.drop_schema(schema)


@pytest.fixture
def unreachable_storage(backend: str, tmp_path) -> Iterator[Any]:
    """A storage of the run's backend whose database cannot be opened (a missing folder, a port
    nobody listens on)."""
    from activity_monitor.storage import open_storage

    if backend == "sqlite":
        storage = open_storage(str(tmp_path / "missing-dir" / "activity.sqlite3"))
    else:
        storage = open_storage("postgresql://postgres@127.0.0.1:1/nowhere")
        storage.connect_timeout = 1
    yield storage
    storage.close()


@pytest.fixture(autouse=True)
def storages_closed(monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[None]:
    """Close, at the end of each test, every PostgreSQL pool the apps of the test opened (apps
    built outside make_app included), so a long run never runs out of server connections."""
    if backend != "postgresql":
        yield
        return
    from activity_monitor import extension

    opened: list[Any] = []

    def open_and_remember(*args: Any, **kwargs: Any) -> Any:
        storage = opening(*args, **kwargs)
        opened.append(storage)
        return storage

    opening = extension.open_storage
    monkeypatch.setattr(extension, "open_storage", open_and_remember)
    yield
    for storage in opened:
        storage.close()


@pytest.fixture
def clock() -> TestClock:
    """The clock every app of the test runs on."""
    return TestClock()


@pytest.fixture
def make_app(tmp_path, clock, monitor_database) -> Iterator[Callable[..., Flask]]:
    """Return a factory building apps on this test's own database and clock (the host's users
    in a SQLite file, the monitor's tables in ``monitor_database``)."""
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "DATABASE": str(tmp_path / "activity.sqlite3"),
            "ACTIVITY_DATABASE": monitor_database,
            "SECRET_KEY": "test-secret",
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_CLOCK": clock,
            # Spooled rows wait in the test's folder, and replay only when a test makes them
            # (or a successful write does): no thread retries them behind the test's back.
            "ACTIVITY_SPOOL_FOLDER": str(tmp_path / "spool"),
            "ACTIVITY_SPOOL_RETRY_SECONDS": 3600,
        }
        if "DATABASE" in overrides and "ACTIVITY_DATABASE" not in overrides and "://" not in monitor_database:
            config["ACTIVITY_DATABASE"] = overrides["DATABASE"]
        config.update(overrides)
        app = create_app(config)
        built.append(app)
        return app

    yield build
    for app in built:
        state = app.extensions.get("activity_monitor")
        if state is not None:
            if state.background is not None:
                state.background.stop()
            state.storage.close()


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
    """A connection of its own to the monitor's test database."""
    conn = connect(app.config["ACTIVITY_DATABASE"])
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
        conn = connect(self.app.config["ACTIVITY_DATABASE"])
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
