"""One user_activity_log row per authenticated, tracked request."""

from __future__ import annotations

import time

import pytest

from activity_monitor.db import connect
from conftest import AuthActions
from demo_host import db as host_db
from demo_host.auth import SESSION_KEY


def events(conn):
    return [dict(r) for r in conn.execute("SELECT * FROM user_activity_log ORDER BY id")]


def test_a_page_view_is_recorded_with_its_details(client, auth, db_conn):
    auth.login("driver")
    client.get("/routes?sort=name", headers={"User-Agent": "pytest-agent"})
    login, event = events(db_conn)
    assert login["page_url"] == "/api/auth/login"
    assert login["action_type"] == "api_call"
    assert event["page_url"] == "/routes"
    assert event["action_type"] == "page_view"
    assert event["status_code"] == 200
    assert event["user_id"] == auth.user_ids["driver"]
    assert event["user_agent"] == "pytest-agent"
    assert event["ip_address"] == "127.0.0.1"
    assert event["duration_ms"] >= 0
    assert len(event["timestamp"]) == 26 and event["timestamp"][10] == " "


def host_session_key(client) -> str:
    """Return the session key the demo host keeps in the login's session."""
    with client.session_transaction() as session:
        return session[SESSION_KEY]


def test_the_event_carries_the_role_the_host_gives(client, auth, db_conn) -> None:
    auth.login("driver")
    client.get("/devices")
    assert [e["role"] for e in events(db_conn)] == ["driver", "driver"]


def test_a_role_changed_by_the_host_shows_on_the_next_event(app, client, auth, db_conn) -> None:
    auth.login("manager")
    host = host_db.connect(app.config["DATABASE"])
    host.execute("UPDATE users SET role = 'viewer' WHERE id = ?", (auth.user_ids["manager"],))
    host.close()
    client.get("/devices")
    assert [e["role"] for e in events(db_conn)] == ["manager", "viewer"]


def test_the_session_id_is_the_hosts_session_key(client, auth, db_conn) -> None:
    auth.login("driver")
    client.get("/devices")
    client.get("/routes")
    key = host_session_key(client)
    assert key
    assert {e["session_id"] for e in events(db_conn)} == {key}


def test_a_new_login_is_a_new_session(client, auth, db_conn) -> None:
    auth.login("driver")
    first = host_session_key(client)
    auth.login("driver")
    client.get("/devices")
    second = host_session_key(client)
    assert first != second
    assert [e["session_id"] for e in events(db_conn)] == [first, second, second]


def test_events_carry_the_apps_clock(client, auth, db_conn, clock) -> None:
    auth.login("driver")
    clock.advance(minutes=7, microseconds=250)
    client.get("/devices")
    assert [e["timestamp"] for e in events(db_conn)] == [
        "2026-05-20 12:00:00.000000",
        "2026-05-20 12:07:00.000250",
    ]


def test_an_api_call_is_recorded_as_api_call(client, auth, db_conn):
    auth.login("driver")
    client.get("/api/devices")
    assert events(db_conn)[-1]["action_type"] == "api_call"


def test_an_attachment_is_recorded_as_file_download(client, auth, db_conn):
    auth.login("manager")
    response = client.get("/devices.csv")
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert events(db_conn)[-1]["action_type"] == "file_download"


def test_error_statuses_are_recorded(client, auth, db_conn):
    auth.login("viewer")
    client.get("/users")
    client.get("/no-such-page")
    assert [(e["page_url"], e["status_code"]) for e in events(db_conn)[-2:]] == [
        ("/users", 403),
        ("/no-such-page", 404),
    ]


def test_token_requests_share_a_stable_session_id(client, auth, db_conn) -> None:
    token = auth.token("admin")
    for _ in range(2):
        client.get("/api/admin/activity/cache/stats", headers={"Authorization": f"Bearer {token}"})
    token_id = db_conn.execute("SELECT id FROM activity_api_tokens").fetchone()[0]
    assert [(e["session_id"], e["role"]) for e in events(db_conn)] == [(f"token-{token_id}", "admin")] * 2


def test_anonymous_requests_are_not_recorded(client, db_conn):
    client.get("/login")
    client.get("/api/devices")
    assert events(db_conn) == []


def test_static_files_are_not_recorded(client, auth, db_conn):
    auth.login("viewer")
    before = len(events(db_conn))
    assert client.get("/static/app.css").status_code == 200
    assert len(events(db_conn)) == before


def test_health_probe_paths_are_not_recorded(client, auth, db_conn):
    auth.login("admin")
    before = len(events(db_conn))
    client.get("/healthz")
    client.get("/api/admin/activity/health")
    assert len(events(db_conn)) == before


def test_configured_excluded_paths_are_not_recorded(make_app):
    app = make_app(ACTIVITY_TRACKING_EXCLUDE_PATHS=["/routes"])
    client = app.test_client()
    AuthActions(app, client).login("driver")
    client.get("/routes")
    client.get("/devices")
    recorded = events(connect(app.config["ACTIVITY_DATABASE"]))
    assert [e["page_url"] for e in recorded] == ["/api/auth/login", "/devices"]


def test_tracking_can_be_switched_off(make_app):
    app = make_app(ACTIVITY_TRACKING_ENABLED=False)
    client = app.test_client()
    AuthActions(app, client).login("driver")
    client.get("/devices")
    assert events(connect(app.config["ACTIVITY_DATABASE"])) == []


def test_the_health_probe_at_a_moved_prefix_is_not_recorded(make_app):
    app = make_app(ACTIVITY_API_PREFIX="/ops/usage-api", ACTIVITY_HEALTHZ_PATH="/ops/alive")
    client = app.test_client()
    AuthActions(app, client).login("admin")
    assert client.get("/ops/usage-api/health").status_code == 200
    assert client.get("/ops/alive").status_code == 200
    client.get("/ops/usage-api/cache/stats")
    pages = [e["page_url"] for e in events(connect(app.config["ACTIVITY_DATABASE"]))]
    assert pages == ["/api/auth/login", "/ops/usage-api/cache/stats"]


def test_the_tracker_bounds_only_its_own_insert(app, client, auth, backend) -> None:
    from activity_monitor.extension import get_state

    auth.login("driver")
    client.get("/devices")
    conn = get_state(app).storage.request_connection()
    if backend == "sqlite":
        # The serving thread's connection keeps its 10 s busy timeout for everything else.
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    else:
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"
        get_state(app).storage.end_request()


def test_an_event_the_database_refuses_is_spooled_and_the_request_answers(make_app, tmp_path) -> None:
    from activity_monitor import event_spool
    from test_event_spool import database_refusing_writes

    app = make_app(ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"))
    client = app.test_client()
    AuthActions(app, client).login("driver")
    with database_refusing_writes(app):
        assert client.get("/devices").status_code == 200
    assert event_spool.health(app)["pending"] == 1
    event_spool.replay_pending(app)
    assert [e["page_url"] for e in events(connect(app.config["ACTIVITY_DATABASE"]))] == [
        "/api/auth/login",
        "/devices",
    ]


def wait_for_pages(app, count: int) -> list[str]:
    """Wait (at most 10 s) until the log holds ``count`` events; return their pages."""
    deadline = time.monotonic() + 10
    while True:
        conn = connect(app.config["ACTIVITY_DATABASE"])
        try:
            pages = [e["page_url"] for e in events(conn)]
        finally:
            conn.close()
        if len(pages) >= count or time.monotonic() > deadline:
            return pages
        time.sleep(0.02)


@pytest.mark.postgres_only
def test_an_exhausted_pool_holds_no_tracked_request_and_its_event_lands_once_one_is_free(make_app) -> None:
    from activity_monitor import event_spool
    from activity_monitor.extension import get_state

    app = make_app(ACTIVITY_DATABASE_POOL_SIZE=1)
    client = app.test_client()
    AuthActions(app, client).login("driver")
    held = get_state(app).storage.connect()  # the pool's only connection, as a long request holds it
    try:
        started = time.monotonic()
        assert client.get("/devices").status_code == 200
        took = time.monotonic() - started
        assert event_spool.health(app)["pending"] == 1
    finally:
        held.close()
    # The bound is the 100 ms write timeout (bench/bench_spool.py); this one only proves
    # the request did not wait out the pool's own 10 s.
    assert took < 2, took
    assert client.get("/routes").status_code == 200  # a write that succeeds replays the spooled one
    assert wait_for_pages(app, 3) == ["/api/auth/login", "/routes", "/devices"]


@pytest.mark.postgres_only
def test_an_unreachable_server_holds_no_tracked_request_and_its_event_lands_once_it_is_back(
    make_app,
) -> None:
    from activity_monitor import event_spool
    from activity_monitor.extension import get_state
    from activity_monitor.storage import open_storage

    app = make_app()
    client = app.test_client()
    AuthActions(app, client).login("driver")
    state = get_state(app)
    reachable = state.storage
    # Nobody listens there: the pool retries in the background, a getconn waits its timeout (10 s).
    state.storage = open_storage("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        started = time.monotonic()
        assert client.get("/devices").status_code == 200
        took = time.monotonic() - started
    finally:
        state.storage.close()
        state.storage = reachable
    assert took < 2, took
    assert event_spool.health(app)["pending"] == 1
    assert client.get("/routes").status_code == 200
    assert wait_for_pages(app, 3) == ["/api/auth/login", "/routes", "/devices"]
