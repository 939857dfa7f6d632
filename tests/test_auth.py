"""Login, logout, sessions, lockout, roles and CSRF."""

from __future__ import annotations

import hashlib

import pytest

from activity_monitor.db import connect
from conftest import PASSWORD, ROLES


def session_cookie(client, app) -> str | None:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b'name="password"' in response.data


def test_form_login_sets_an_httponly_samesite_cookie_and_redirects(client, auth, app):
    auth.ensure_user("manager")
    response = client.post("/login", data={"username": "manager", "password": PASSWORD})
    assert response.status_code == 302
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert client.get("/devices").status_code == 200


def test_secure_cookie_when_configured(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    from conftest import AuthActions

    header = AuthActions(app, client).login("viewer").headers["Set-Cookie"]
    assert "Secure" in header


def test_json_login_returns_the_user_and_a_cookie(client, auth, app):
    response = auth.login("driver")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["user"]["role"] == "driver"
    assert session_cookie(client, app)


def test_wrong_password_is_a_401_json_error(client, auth):
    auth.ensure_user("viewer")
    response = client.post("/api/auth/login", json={"username": "viewer", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json() == {
        "success": False,
        "error": "Wrong username or password.",
        "code": "login_failed",
    }


def test_malformed_json_login_is_a_400(client):
    response = client.post("/api/auth/login", data="not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request"


def test_unknown_user_gets_the_same_message_as_a_wrong_password(client):
    response = client.post("/api/auth/login", json={"username": "ghost", "password": "x"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "Wrong username or password."


def test_only_the_hash_of_the_session_token_is_stored(client, auth, app, db_conn):
    auth.login("viewer")
    token = session_cookie(client, app)
    ids = [r[0] for r in db_conn.execute("SELECT id FROM sessions")]
    assert ids == [hashlib.sha256(token.encode()).hexdigest()]


def test_every_login_issues_a_new_session_id(client, auth, app, db_conn):
    auth.login("viewer")
    first = session_cookie(client, app)
    auth.login("viewer")
    second = session_cookie(client, app)
    assert first != second
    # The session the request carried is closed, so a planted id cannot be reused.
    assert db_conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1


def test_a_planted_session_cookie_is_not_adopted(client, auth, app):
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "attacker-chosen")
    auth.login("viewer")
    assert session_cookie(client, app) != "attacker-chosen"


def test_logout_closes_the_session(client, auth, db_conn):
    auth.login("viewer")
    token = auth.csrf_token()
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert db_conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0
    assert client.get("/devices").status_code == 302


def test_logout_without_csrf_token_is_refused(client, auth, db_conn):
    auth.login("viewer")
    assert client.post("/logout").status_code == 403
    assert db_conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1


def test_expired_session_is_anonymous(client, auth, db_conn):
    auth.login("viewer")
    db_conn.execute("UPDATE sessions SET expires_at = '2000-01-01 00:00:00'")
    assert client.get("/api/devices").status_code == 401


def test_five_failed_logins_lock_the_account_for_fifteen_minutes(client, auth, db_conn):
    auth.ensure_user("driver")
    for _ in range(5):
        client.post("/api/auth/login", json={"username": "driver", "password": "wrong"})
    response = client.post("/api/auth/login", json={"username": "driver", "password": PASSWORD})
    assert response.status_code == 401
    assert "locked" in response.get_json()["error"]
    locked_until = db_conn.execute("SELECT locked_until FROM users WHERE username = 'driver'").fetchone()[0]
    assert locked_until is not None
    db_conn.execute("UPDATE users SET locked_until = '2000-01-01 00:00:00'")
    assert auth.login("driver").status_code == 200


def test_successful_login_resets_the_failure_count(client, auth, db_conn):
    auth.ensure_user("driver")
    for _ in range(4):
        client.post("/api/auth/login", json={"username": "driver", "password": "wrong"})
    assert auth.login("driver").status_code == 200
    assert db_conn.execute("SELECT failed_login_attempts FROM users").fetchone()[0] == 0


def test_inactive_user_cannot_log_in(client, auth):
    auth.ensure_user("viewer", is_active=0)
    response = client.post("/api/auth/login", json={"username": "viewer", "password": PASSWORD})
    assert response.status_code == 401


def test_deactivating_a_user_ends_their_sessions(client, auth, db_conn):
    auth.login("viewer")
    db_conn.execute("UPDATE users SET is_active = 0")
    assert client.get("/api/devices").status_code == 401


def test_anonymous_page_redirects_to_login_with_next(client):
    response = client.get("/devices")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/devices")


def test_login_never_redirects_off_site(client, auth):
    auth.ensure_user("viewer")
    response = client.post(
        "/login", data={"username": "viewer", "password": PASSWORD, "next": "//evil.example/"}
    )
    assert response.headers["Location"] == "/"


def test_anonymous_api_call_is_a_401_json(client):
    response = client.get("/api/devices")
    assert response.status_code == 401
    assert response.get_json()["code"] == "authentication_required"


@pytest.mark.parametrize("role", ROLES)
def test_admin_page_matrix(client, auth, role):
    auth.login(role)
    expected = 200 if role == "admin" else 403
    assert client.get("/users").status_code == expected


def test_forbidden_access_is_audited_once_per_minute(client, auth, db_conn):
    auth.login("viewer")
    for _ in range(3):
        assert client.get("/users").status_code == 403
    rows = db_conn.execute(
        "SELECT user_id, details FROM audit_log WHERE action = 'UNAUTHORIZED_ACCESS_ATTEMPT'"
    ).fetchall()
    assert len(rows) == 1
    assert '"endpoint": "/users"' in rows[0]["details"]


def test_nav_shows_activity_monitor_only_to_admins(client, auth):
    auth.login("manager")
    assert b"Activity monitor" not in client.get("/").data
    auth.login("admin")
    assert b"Activity monitor" in client.get("/").data


def test_create_user_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "alice", "--role", "manager", "--password", "pw-123456"])
    assert result.exit_code == 0, result.output
    conn = connect(app.config["DATABASE"])
    row = conn.execute("SELECT role, password_hash FROM users WHERE username = 'alice'").fetchone()
    assert row["role"] == "manager" and row["password_hash"] != "pw-123456"
    again = runner.invoke(args=["create-user", "alice", "--role", "manager", "--password", "x"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_create_user_prompts_for_the_password(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "bob", "--role", "viewer"], input="s3cret-pw\ns3cret-pw\n")
    assert result.exit_code == 0, result.output
    login = client.post("/api/auth/login", json={"username": "bob", "password": "s3cret-pw"})
    assert login.status_code == 200


def test_ensure_admin_creates_the_admin_once_and_prints_the_password(app, client):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["ensure-admin"])
    assert first.exit_code == 0, first.output
    password = first.output.strip().rsplit(" ", 1)[-1]
    assert client.post("/api/auth/login", json={"username": "admin", "password": password}).status_code == 200
    second = runner.invoke(args=["ensure-admin"])
    assert "already exists" in second.output and password not in second.output
