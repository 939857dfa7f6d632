"""One user_activity_log row per authenticated, tracked request."""

from __future__ import annotations

from activity_monitor.db import connect
from conftest import AuthActions


def events(conn):
    return [dict(r) for r in conn.execute("SELECT * FROM user_activity_log ORDER BY id")]


def test_a_page_view_is_recorded_with_its_details(client, auth, db_conn):
    auth.login("driver")
    client.get("/routes?sort=name", headers={"User-Agent": "pytest-agent"})
    login, event = events(db_conn)
    assert login["page_url"] == "/api/auth/login"
    assert event["page_url"] == "/routes"
    assert event["action_type"] == "page_view"
    assert event["status_code"] == 200
    assert event["user_id"] == auth.user_ids["driver"]
    assert event["user_agent"] == "pytest-agent"
    assert event["ip_address"] == "127.0.0.1"
    assert event["duration_ms"] >= 0
    assert len(event["timestamp"]) == 26 and event["timestamp"][10] == " "


def test_the_session_id_is_the_stored_session_and_last_activity_moves(client, auth, db_conn):
    auth.login("driver")
    db_conn.execute("UPDATE sessions SET last_activity = '2000-01-01 00:00:00'")
    client.get("/devices")
    session = db_conn.execute("SELECT id, last_activity FROM sessions").fetchone()
    assert events(db_conn)[-1]["session_id"] == session["id"]
    assert session["last_activity"] > "2026"


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


def test_token_requests_share_a_stable_session_id(client, auth, db_conn):
    token = auth.token("admin")
    for _ in range(2):
        client.get("/api/devices", headers={"Authorization": f"Bearer {token}"})
    token_id = db_conn.execute("SELECT id FROM api_tokens").fetchone()[0]
    assert {e["session_id"] for e in events(db_conn)} == {f"token-{token_id}"}


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
    assert [e["page_url"] for e in events(connect(app.config["DATABASE"]))] == ["/api/auth/login", "/devices"]


def test_tracking_can_be_switched_off(make_app):
    app = make_app(ACTIVITY_TRACKING_ENABLED=False)
    client = app.test_client()
    AuthActions(app, client).login("driver")
    client.get("/devices")
    assert events(connect(app.config["DATABASE"])) == []
