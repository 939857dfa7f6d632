"""API tokens for curl and ops: ``Authorization: Bearer <token>``.

Only the SHA-256 of a token is stored; the token itself is printed once when
it is created. A token's requests share a stable session id, ``token-<id>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from db import connect
from timeutil import parse_db_timestamp, to_db_timestamp, utc_now

TOKEN_PREFIX = "amt_"
# Writing last_used_at on every request would double the writes of a busy script.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def hash_secret(value: str) -> str:
    """Return the hex SHA-256 under which a token (API or session) is stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def token_session_id(token_id: int) -> str:
    """Return the session id under which a token's requests are tracked."""
    return f"token-{token_id}"


def create_token(conn: sqlite3.Connection, user_id: int, name: str) -> tuple[int, str]:
    """Create a token for a user; returns its id and the only copy of the token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cursor = conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        (user_id, name, hash_secret(token), to_db_timestamp(utc_now())),
    )
    return int(cursor.lastrowid), token


def revoke_token(conn: sqlite3.Connection, token_id: int) -> bool:
    """Revoke a token; returns False when no live token has that id."""
    cursor = conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (to_db_timestamp(utc_now()), token_id),
    )
    return cursor.rowcount == 1


def resolve(conn: sqlite3.Connection, token: str) -> tuple[sqlite3.Row, str] | None:
    """Return ``(user row, session id)`` for a live token of an active user, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute(
        """
        SELECT users.*, api_tokens.id AS token_id, api_tokens.last_used_at AS token_last_used_at
        FROM api_tokens
        JOIN users ON users.id = api_tokens.user_id
        WHERE api_tokens.token_hash = ?
          AND api_tokens.revoked_at IS NULL
          AND users.is_active = 1
        """,
        (hash_secret(token),),
    ).fetchone()
    if row is None:
        return None
    now = utc_now()
    last_used = row["token_last_used_at"]
    if last_used is None or now - parse_db_timestamp(last_used) >= LAST_USED_RESOLUTION:
        conn.execute(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (to_db_timestamp(now), row["token_id"])
        )
    return row, token_session_id(row["token_id"])


@click.command("create-token")
@with_appcontext
@click.argument("username")
@click.option("--label", default="cli", show_default=True, help="A name that says what the token is for.")
def create_token_command(username: str, label: str) -> None:
    """Create an API token for a user and print it once, as the last line."""
    conn = connect(current_app.config["DATABASE"])
    try:
        user = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
        if user is None:
            raise click.ClickException(f"No user named {username!r}.")
        token_id, token = create_token(conn, user["id"], label)
    finally:
        conn.close()
    click.echo(f"Created token {token_id} ({label!r}) for {username!r}. It is shown only now:")
    click.echo(token)


@click.command("revoke-token")
@with_appcontext
@click.argument("token_id", type=int)
def revoke_token_command(token_id: int) -> None:
    """Revoke an API token by its id."""
    conn = connect(current_app.config["DATABASE"])
    try:
        revoked = revoke_token(conn, token_id)
    finally:
        conn.close()
    if not revoked:
        raise click.ClickException(f"No live token with id {token_id}.")
    click.echo(f"Revoked token {token_id}.")


def init_app(app: Flask) -> None:
    """Register the token commands."""
    app.cli.add_command(create_token_command)
    app.cli.add_command(revoke_token_command)
