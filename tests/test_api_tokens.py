"""API tokens: creation, use, revocation, storage."""

from __future__ import annotations

import hashlib

from activity_monitor.db import connect


def test_create_token_prints_the_token_once_as_the_last_line(app, auth):
    auth.ensure_user("admin")
    result = app.test_cli_runner().invoke(args=["create-token", "admin", "--label", "ops"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    conn = connect(app.config["DATABASE"])
    stored = conn.execute("SELECT name, token_hash FROM api_tokens").fetchall()
    expected_hash = hashlib.sha256(token.encode()).hexdigest()
    assert [(r["name"], r["token_hash"]) for r in stored] == [("ops", expected_hash)]
    assert token not in str([tuple(r) for r in conn.execute("SELECT * FROM api_tokens")])


def test_bearer_token_authenticates_as_its_user(app, client, auth):
    token = auth.token("admin")
    response = client.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_bearer_token_of_a_viewer_gets_403(client, auth):
    token = auth.token("viewer")
    assert client.get("/users", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_unknown_token_is_anonymous(client):
    response = client.get("/api/devices", headers={"Authorization": "Bearer amt_not-a-real-token"})
    assert response.status_code == 401


def test_revoked_token_stops_working(app, client, auth):
    token = auth.token("admin")
    conn = connect(app.config["DATABASE"])
    token_id = conn.execute("SELECT id FROM api_tokens").fetchone()[0]
    result = app.test_cli_runner().invoke(args=["revoke-token", str(token_id)])
    assert result.exit_code == 0 and f"Revoked token {token_id}" in result.output
    assert client.get("/api/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = app.test_cli_runner().invoke(args=["revoke-token", str(token_id)])
    assert again.exit_code != 0


def test_create_token_for_unknown_user_fails_clearly(app):
    result = app.test_cli_runner().invoke(args=["create-token", "nobody"])
    assert result.exit_code != 0 and "No user named 'nobody'" in result.output


def test_token_requests_need_no_csrf_token(client, auth):
    token = auth.token("viewer")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    response = client.post("/logout", headers=headers)
    assert response.status_code == 200


def test_token_use_is_recorded(app, client, auth):
    token = auth.token("driver")
    client.get("/api/devices", headers={"Authorization": f"Bearer {token}"})
    conn = connect(app.config["DATABASE"])
    assert conn.execute("SELECT last_used_at FROM api_tokens").fetchone()[0] is not None
