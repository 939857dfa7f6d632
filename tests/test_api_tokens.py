"""API tokens: creation and listing on the CLI, use on the monitor's API, revocation, storage,
and that a token only works while the host says its user is an admin."""

from __future__ import annotations

import hashlib

from flask import Flask

from activity_monitor import ActivityMonitor, Identity, api_tokens
from activity_monitor.db import connect, open_db
from demo_host import db as host_db

STATS = "/api/admin/activity/cache/stats"
CLEAR = "/api/admin/activity/cache/clear"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_tokens(app) -> list[dict]:
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM activity_api_tokens ORDER BY id")]
    finally:
        conn.close()


def set_user(app, user_id: int, **fields) -> None:
    """Change the host's own users row, as the host's admin screens would."""
    conn = host_db.connect(app.config["DATABASE"])
    try:
        for column, value in fields.items():
            conn.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (value, user_id))
    finally:
        conn.close()


def create_token(runner, user: str, label: str = "ops") -> str:
    result = runner.invoke(args=["activity", "create-token", user, "--label", label])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


# --- create-token ------------------------------------------------------------------------


def test_create_token_prints_the_token_once_as_the_last_line_and_stores_only_its_hash(
    app, runner, auth
) -> None:
    user_id = auth.ensure_user("admin")
    token = create_token(runner, "admin")
    (stored,) = stored_tokens(app)
    assert token.startswith("amt_")
    assert (stored["user_id"], stored["name"]) == (user_id, "ops")
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(stored)


def test_create_token_accepts_the_users_id_as_the_host_names_it(app, runner, auth) -> None:
    user_id = auth.ensure_user("admin")
    create_token(runner, str(user_id))
    assert [row["user_id"] for row in stored_tokens(app)] == [user_id]


def test_create_token_refuses_an_unknown_user_with_one_sentence(app, runner) -> None:
    result = runner.invoke(args=["activity", "create-token", "nobody"])
    assert result.exit_code == 1
    assert result.output == "Error: The host knows no user 'nobody'.\n"
    assert stored_tokens(app) == []


def test_create_token_refuses_a_non_admin_with_one_sentence(app, runner, auth) -> None:
    auth.ensure_user("viewer")
    result = runner.invoke(args=["activity", "create-token", "viewer"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: 'viewer' is not an admin for the host (role 'viewer'); the API answers admins only.\n"
    )
    assert stored_tokens(app) == []


def test_create_token_refuses_a_deactivated_admin(app, runner, auth) -> None:
    set_user(app, auth.ensure_user("admin"), is_active=0)
    result = runner.invoke(args=["activity", "create-token", "admin"])
    assert result.exit_code == 1 and "knows no user 'admin'" in result.output
    assert stored_tokens(app) == []


# --- list-tokens and revoke-token ------------------------------------------------------------


def test_list_tokens_shows_each_token_but_never_the_token_or_its_hash(app, runner, auth) -> None:
    auth.ensure_user("admin")
    first = create_token(runner, "admin", "first")
    second = create_token(runner, "admin", "second")
    runner.invoke(args=["activity", "revoke-token", "1"])
    result = runner.invoke(args=["activity", "list-tokens"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["2", "1"]
    assert "'second'" in lines[0] and lines[0].endswith("live")
    assert "'first'" in lines[1] and "revoked" in lines[1]
    for token in (first, second):
        assert token not in result.output
        assert token[len("amt_") :][:12] not in result.output
        assert hashlib.sha256(token.encode()).hexdigest() not in result.output
    assert "amt_" not in result.output


def test_list_tokens_without_tokens_says_so(runner) -> None:
    result = runner.invoke(args=["activity", "list-tokens"])
    assert (result.exit_code, result.output) == (0, "No tokens.\n")


def test_a_revoked_token_stops_working_and_cannot_be_revoked_twice(app, client, runner, auth) -> None:
    token = auth.token("admin")
    (stored,) = stored_tokens(app)
    result = runner.invoke(args=["activity", "revoke-token", str(stored["id"])])
    assert result.exit_code == 0 and f"Revoked token {stored['id']}" in result.output
    assert client.get(STATS, headers=bearer(token)).status_code == 401
    again = runner.invoke(args=["activity", "revoke-token", str(stored["id"])])
    assert again.exit_code == 1 and f"No live token with id {stored['id']}." in again.output


# --- using a token ---------------------------------------------------------------------------------


def test_a_bearer_token_of_an_admin_opens_the_api(client, auth) -> None:
    assert client.get(STATS, headers=bearer(auth.token("admin"))).status_code == 200


def test_a_token_made_on_the_cli_opens_the_api(client, runner, auth) -> None:
    auth.ensure_user("admin")
    assert client.get(STATS, headers=bearer(create_token(runner, "admin"))).status_code == 200


def test_a_bearer_token_of_a_viewer_gets_403(client, auth) -> None:
    assert client.get(STATS, headers=bearer(auth.token("viewer"))).status_code == 403


def test_an_unknown_token_is_anonymous(client) -> None:
    assert client.get(STATS, headers=bearer("amt_not-a-real-token")).status_code == 401


def test_a_wrong_token_is_refused_even_with_an_admins_login_cookie(client, auth) -> None:
    auth.login("admin")
    assert client.get(STATS).status_code == 200
    assert client.get(STATS, headers=bearer("amt_not-a-real-token")).status_code == 401


def test_a_token_stops_working_when_the_host_no_longer_says_its_user_is_an_admin(app, client, auth) -> None:
    token = auth.token("admin")
    assert client.get(STATS, headers=bearer(token)).status_code == 200
    set_user(app, auth.user_ids["admin"], role="viewer")
    response = client.get(STATS, headers=bearer(token))
    assert response.status_code == 403
    assert "viewer" in response.get_json()["error"]


def test_a_token_works_again_when_the_host_makes_its_user_an_admin_again(app, client, auth) -> None:
    token = auth.token("admin")
    set_user(app, auth.user_ids["admin"], role="manager")
    assert client.get(STATS, headers=bearer(token)).status_code == 403
    set_user(app, auth.user_ids["admin"], role="admin")
    assert client.get(STATS, headers=bearer(token)).status_code == 200


def test_a_token_stops_working_when_the_host_no_longer_knows_its_user(app, client, auth) -> None:
    token = auth.token("admin")
    assert client.get(STATS, headers=bearer(token)).status_code == 200
    set_user(app, auth.user_ids["admin"], is_active=0)
    assert client.get(STATS, headers=bearer(token)).status_code == 401


def bare_host(tmp_path, clock, user_loader) -> Flask:
    """A bare Flask app adopting the monitor with nothing but a user_loader (no logins)."""
    app = Flask("bare_host", instance_path=str(tmp_path / "bare-instance"))
    app.config.update(SECRET_KEY="bare-secret", TESTING=True)
    ActivityMonitor(
        app,
        identity_loader=lambda: None,
        user_loader=user_loader,
        ACTIVITY_DATABASE=str(tmp_path / "bare.sqlite3"),
        ACTIVITY_CLOCK=clock,
    )
    return app


def bare_token(app: Flask, user_id: int | str) -> str:
    conn = open_db(app)
    try:
        return api_tokens.create_token(conn, user_id, "bare")[1]
    finally:
        conn.close()


def test_a_token_acts_for_its_own_user_only_whatever_the_loader_answers(tmp_path, clock) -> None:
    # A loader that also looks users up by name could answer with another user: the token's
    # user is the one it was made for, or nobody.
    app = bare_host(tmp_path, clock, lambda ref: Identity("someone-else", "admin"))
    token = bare_token(app, 7)
    assert app.test_client().get(STATS, headers=bearer(token)).status_code == 401


def test_a_token_of_a_host_with_string_ids_opens_the_api(tmp_path, clock) -> None:
    app = bare_host(tmp_path, clock, lambda ref: Identity(ref, "admin") if ref == "u-7" else None)
    token = bare_token(app, "u-7")
    assert app.test_client().get(STATS, headers=bearer(token)).status_code == 200


def test_token_requests_need_no_csrf_token(client, auth) -> None:
    assert client.post(CLEAR, headers=bearer(auth.token("admin"))).status_code == 200


def test_a_token_is_not_a_login_to_the_hosts_own_pages(client, auth, db_conn) -> None:
    token = auth.token("admin")
    assert client.get("/api/devices", headers=bearer(token)).status_code != 200
    assert db_conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0] == 0


def test_token_use_is_recorded_at_the_apps_clock(app, client, auth, clock) -> None:
    token = auth.token("admin")
    client.get(STATS, headers=bearer(token))
    assert stored_tokens(app)[0]["last_used_at"] == "2026-05-20 12:00:00.000000"


def test_last_use_is_written_at_most_once_a_minute(app, client, auth, clock) -> None:
    token = auth.token("admin")
    client.get(STATS, headers=bearer(token))
    clock.advance(seconds=30)
    client.get(STATS, headers=bearer(token))
    assert stored_tokens(app)[0]["last_used_at"] == "2026-05-20 12:00:00.000000"
    clock.advance(seconds=30)
    client.get(STATS, headers=bearer(token))
    assert stored_tokens(app)[0]["last_used_at"] == "2026-05-20 12:01:00.000000"
