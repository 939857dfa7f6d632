"""The demo host's login: Flask-Login sessions, logout, lifetime, roles, CSRF on its forms, CLI.

The login defences (throttling, enumeration, ``next``, bad text) are in
test_demo_host_login_defences.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from conftest import PASSWORD, ROLES, AuthActions
from demo_host import db as host_db
from demo_host.auth import LOGGED_IN_AT, SESSION_KEY


def session_cookie(client, app) -> str | None:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def form_login(client, auth, username: str, password: str = PASSWORD, **fields: str):
    """Log in through the HTML form, with the CSRF token of the login page."""
    data = {"username": username, "password": password, "csrf_token": auth.host_csrf_token(), **fields}
    return client.post("/login", data=data)


def test_login_page_renders_a_form_with_a_csrf_token(client):
    response = client.get("/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="password"' in html and 'name="csrf_token"' in html


def test_form_login_sets_an_httponly_samesite_cookie_and_redirects(client, auth, app):
    auth.ensure_user("manager")
    response = form_login(client, auth, "manager")
    assert response.status_code == 302
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert client.get("/devices").status_code == 200


def test_secure_cookie_when_configured(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    header = AuthActions(app, app.test_client()).login("viewer").headers["Set-Cookie"]
    assert "Secure" in header


def test_json_login_returns_the_user_a_cookie_and_a_csrf_token_for_the_forms(client, auth, app):
    response = auth.login("driver")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["user"]["role"] == "driver"
    assert session_cookie(client, app)
    logout = client.post("/logout", data={"csrf_token": body["csrf_token"]})
    assert logout.status_code == 302


def test_json_login_needs_a_json_body(client, auth):
    auth.ensure_user("viewer")
    response = client.post("/api/auth/login", data={"username": "viewer", "password": PASSWORD})
    assert response.status_code == 415
    assert response.get_json()["error"] == "Send the credentials as application/json."


def test_wrong_password_is_a_401_json_error(client, auth):
    auth.ensure_user("viewer")
    response = client.post("/api/auth/login", json={"username": "viewer", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json() == {
        "success": False,
        "error": "Wrong username or password.",
        "code": "login_failed",
    }


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"username": "viewer"}', '{"username": 1, "password": "x"}']
)
def test_malformed_json_login_is_a_400(client, body):
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request"


def signed_login_cookie(secret_key: str, user_id: int, logged_in_at: str) -> str:
    """Return a session cookie that claims a login, signed with the given key."""
    signer = Flask("signer")
    signer.secret_key = secret_key
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    claims = {"_user_id": str(user_id), "_fresh": True, SESSION_KEY: "x", LOGGED_IN_AT: logged_in_at}
    return serializer.dumps(claims)


@pytest.mark.parametrize("key, status", [("not-the-app-secret", 302), ("test-secret", 200)])
def test_only_a_session_cookie_signed_with_the_app_secret_logs_in(client, auth, app, clock, key, status):
    user_id = auth.ensure_user("admin")
    cookie = signed_login_cookie(key, user_id, clock().isoformat())
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    assert client.get("/users").status_code == status


def test_every_login_starts_a_new_monitor_session(client, auth, db_conn):
    auth.login("viewer")
    client.get("/devices")
    auth.login("viewer")
    client.get("/devices")
    keys = [row[0] for row in db_conn.execute("SELECT session_id FROM user_activity_log ORDER BY id")]
    assert len(keys) >= 2 and len(set(keys)) == 2 and "" not in keys


def test_a_planted_session_is_not_adopted_by_the_login(client, auth):
    with client.session_transaction() as planted:
        planted[SESSION_KEY] = "attacker-chosen"
        planted["planted"] = True
    auth.login("viewer")
    with client.session_transaction() as session:
        assert session[SESSION_KEY] != "attacker-chosen"
        assert "planted" not in session


def test_logout_ends_the_login(client, auth):
    auth.login("viewer")
    response = client.post("/logout", data={"csrf_token": auth.host_csrf_token()})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert client.get("/devices").status_code == 302


def test_logout_answers_json_when_asked(client, auth):
    auth.login("viewer")
    response = client.post(
        "/logout", headers={"X-CSRFToken": auth.host_csrf_token(), "Accept": "application/json"}
    )
    assert response.get_json() == {"success": True}
    assert client.get("/api/devices").status_code == 401


def test_login_lasts_the_session_lifetime_by_the_app_clock(client, auth, clock, app):
    auth.login("viewer")
    clock.advance(hours=app.config["SESSION_LIFETIME_HOURS"], seconds=-1)
    assert client.get("/api/devices").status_code == 200
    clock.advance(seconds=1)
    assert client.get("/api/devices").status_code == 401


def test_successful_login_resets_the_failure_count(client, auth, app):
    auth.ensure_user("driver")
    almost = app.config["LOGIN_MAX_FAILED_ATTEMPTS"] - 1
    for _ in range(2):
        for _ in range(almost):
            wrong = client.post("/api/auth/login", json={"username": "driver", "password": "wrong"})
            assert wrong.status_code == 401
        assert auth.login("driver").status_code == 200


def test_inactive_user_cannot_log_in(client, auth):
    auth.ensure_user("viewer", is_active=0)
    response = client.post("/api/auth/login", json={"username": "viewer", "password": PASSWORD})
    assert response.status_code == 401
    assert response.get_json()["error"] == "This account is disabled."


def test_deactivating_a_user_ends_their_login(client, auth, app):
    auth.login("viewer")
    assert client.get("/api/devices").status_code == 200
    conn = host_db.connect(app.config["DATABASE"])
    conn.execute("UPDATE users SET is_active = 0 WHERE username = 'viewer'")
    conn.close()
    assert client.get("/api/devices").status_code == 401


def test_anonymous_page_redirects_to_login_with_next(client):
    response = client.get("/devices?site=Mall+North")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    (target,) = parse_qs(location.query)["next"]
    # Werkzeug 2.3 and 3 quote the query inside next differently; both name the same page.
    assert urlsplit(target).path == "/devices"
    assert parse_qs(urlsplit(target).query) == {"site": ["Mall North"]}


def test_login_form_keeps_the_next_target(client, auth):
    auth.ensure_user("viewer")
    page = client.get("/login?next=/routes").get_data(as_text=True)
    assert 'name="next" value="/routes"' in page
    response = form_login(client, auth, "viewer", next="/routes")
    assert response.headers["Location"] == "/routes"


def test_anonymous_api_call_is_a_401_json(client):
    response = client.get("/api/devices")
    assert response.status_code == 401
    assert response.get_json()["code"] == "authentication_required"


@pytest.mark.parametrize("role", ROLES)
def test_admin_page_matrix(client, auth, role):
    auth.login(role)
    expected = 200 if role == "admin" else 403
    assert client.get("/users").status_code == expected


def test_a_non_admin_opening_the_monitor_is_audited_once_per_minute(client, auth, db_conn):
    user_id = auth.ensure_user("viewer")
    auth.login("viewer")
    for _ in range(3):
        assert client.get("/admin/activity").status_code == 403
    rows = db_conn.execute(
        "SELECT user_id, details FROM activity_audit_log WHERE action = 'UNAUTHORIZED_ACCESS_ATTEMPT'"
    ).fetchall()
    assert len(rows) == 1
    assert rows[0]["user_id"] == user_id
    assert '"endpoint": "/admin/activity"' in rows[0]["details"]


def test_nav_shows_activity_monitor_only_to_admins(client, auth):
    auth.login("manager")
    assert b"Activity monitor" not in client.get("/").data
    auth.login("admin")
    assert b"Activity monitor" in client.get("/").data


def test_create_user_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "alice", "--role", "manager", "--password", "pw-123456"])
    assert result.exit_code == 0, result.output
    conn = host_db.connect(app.config["DATABASE"])
    row = conn.execute("SELECT role, password_hash FROM users WHERE username = 'alice'").fetchone()
    conn.close()
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
