"""API tokens for curl and ops: ``Authorization: Bearer amt_…``, in activity_api_tokens.

A token acts for one of the host's users. Only its SHA-256 is stored; the token
itself is printed once when it is created. On every use the host's
``user_loader`` is asked who that user is now, so a token stops granting access
the moment the host no longer says its user is an admin (or knows the user at
all). A token's requests share a stable session id, ``token-<id>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from activity_monitor.db import get_db, open_db
from activity_monitor.extension import get_state, now
from activity_monitor.identity import Identity
from activity_monitor.storage import Connection, DatabaseError
from activity_monitor.timeutil import parse_db_timestamp, to_db_timestamp, utc_now

TOKEN_PREFIX = "amt_"
# Writing last_used_at on every request would double the writes of a busy script.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenUserUnknown(LookupError):
    """Raised when the host's user_loader does not know the user a token should act for."""


def hash_secret(value: str) -> str:
    """Return the hex SHA-256 under which a token is stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def token_session_id(token_id: int) -> str:
    """Return the session id under which a token's requests are tracked."""
    return f"token-{token_id}"


def load_host_user(user_ref: str) -> Identity | None:
    """Ask the host who a user is (by the id, or whatever its user_loader accepts)."""
    loader = get_state().monitor.user_loader_callback
    if loader is None:
        raise TokenUserUnknown(
            "The host registered no user_loader, so tokens cannot be tied to its users; "
            "register one with @monitor.user_loader."
        )
    identity = loader(str(user_ref))
    if identity is not None and not isinstance(identity, Identity):
        raise TypeError(
            f"The user_loader returned {type(identity).__name__}; it must return an Identity or None."
        )
    return identity


def create_token(
    conn: Connection, user_id: int | str, name: str, at: dt.datetime | None = None
) -> tuple[int, str]:
    """Create a token acting for a host user id (created ``at``, default now); returns its id
    and the only copy of the token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO activity_api_tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (user_id, name, hash_secret(token), to_db_timestamp(at or utc_now())),
    ).fetchone()
    return int(row[0]), token


def revoke_token(conn: Connection, token_id: int, at: dt.datetime | None = None) -> bool:
    """Revoke a token (``at``, default now); returns False when no live token has that id."""
    cursor = conn.execute(
        "UPDATE activity_api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (to_db_timestamp(at or utc_now()), token_id),
    )
    return cursor.rowcount == 1


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Return every token's id, user, label and dates (never the token), newest first."""
    rows = conn.execute(
        """
        SELECT id, user_id, name, created_at, last_used_at, revoked_at
        FROM activity_api_tokens
        ORDER BY id DESC
        """
    ).fetchall()
    return [dict(row) for row in rows]


def identity_for_token(token: str) -> Identity | None:
    """Return the Identity a live token acts for, as the host sees that user now, else None."""
    conn = get_db()
    row = conn.execute(
        """
        SELECT id, user_id, last_used_at
        FROM activity_api_tokens
        WHERE token_hash = ?
          AND revoked_at IS NULL
        """,
        (hash_secret(token),),
    ).fetchone()
    if row is None:
        return None
    try:
        host_user = load_host_user(str(row["user_id"]))
    except TokenUserUnknown:
        current_app.logger.warning("A token was used, but the host registered no user_loader.")
        return None
    if host_user is None:
        return None
    if host_user.stored_user_id != Identity(row["user_id"], "").stored_user_id:
        # A loader that also accepts names could answer for another user; a token acts for its own only.
        current_app.logger.warning(
            "The user_loader answered user %r for token %s of user %r; the token is refused.",
            host_user.user_id,
            row["id"],
            row["user_id"],
        )
        return None
    used_at = now()
    last_used = row["last_used_at"]
    if last_used is None or used_at - parse_db_timestamp(last_used) >= LAST_USED_RESOLUTION:
        try:
            with conn.storage.bounded_write(conn, current_app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"]):
                conn.execute(
                    "UPDATE activity_api_tokens SET last_used_at = ? WHERE id = ?",
                    (to_db_timestamp(used_at), row["id"]),
                )
        except DatabaseError as exc:
            # Bookkeeping: a locked or full database must neither hold nor fail the request;
            # a later use writes the time.
            current_app.logger.warning("Could not note the use of API token %s: %s", row["id"], exc)
    return Identity(
        user_id=host_user.user_id,
        role=host_user.role,
        session_key=token_session_id(row["id"]),
        username=host_user.username,
    )


# --- CLI (registered in the ``flask activity`` group) -------------------------------


@click.command("create-token")
@with_appcontext
@click.argument("user")
@click.option("--label", default="cli", show_default=True, help="A name that says what the token is for.")
def create_token_command(user: str, label: str) -> None:
    """Create an API token acting for the host's USER (as its user_loader names them) and print it once."""
    try:
        identity = load_host_user(user)
    except TokenUserUnknown as exc:
        raise click.ClickException(str(exc)) from exc
    if identity is None:
        raise click.ClickException(f"The host knows no user {user!r}.")
    if not get_state().monitor.is_admin_callback(identity):
        raise click.ClickException(
            f"{user!r} is not an admin for the host (role {identity.role!r}); the API answers admins only."
        )
    conn = open_db()
    try:
        token_id, token = create_token(conn, identity.stored_user_id, label, at=now())
    finally:
        conn.close()
    click.echo(f"Created token {token_id} ({label!r}) for {user!r}. It is shown only now:")
    click.echo(token)


@click.command("revoke-token")
@with_appcontext
@click.argument("token_id", type=int)
def revoke_token_command(token_id: int) -> None:
    """Revoke an API token by its id."""
    conn = open_db()
    try:
        revoked = revoke_token(conn, token_id, at=now())
    finally:
        conn.close()
    if not revoked:
        raise click.ClickException(f"No live token with id {token_id}.")
    click.echo(f"Revoked token {token_id}.")


@click.command("list-tokens")
@with_appcontext
def list_tokens_command() -> None:
    """List the API tokens: id, user, label, created, last used, revoked (never the token)."""
    conn = open_db()
    try:
        tokens = list_tokens(conn)
    finally:
        conn.close()
    if not tokens:
        click.echo("No tokens.")
        return
    for token in tokens:
        state = f"revoked {token['revoked_at'][:19]}" if token["revoked_at"] else "live"
        used = token["last_used_at"][:19] if token["last_used_at"] else "never"
        click.echo(
            f"{token['id']}\tuser {token['user_id']}\t{token['name']!r}\tcreated {token['created_at'][:19]}"
            f"\tlast used {used}\t{state}"
        )


COMMANDS = (create_token_command, revoke_token_command, list_tokens_command)
