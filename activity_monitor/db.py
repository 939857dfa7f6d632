"""Connections to the monitor's database for the app, and the migration runner both backends share.

The backend (:mod:`activity_monitor.storage`) decides what a connection is: SQLite's
serving threads keep one each, PostgreSQL's requests borrow one from the process's pool.
Connections run in autocommit mode; code that writes more than one statement wraps them
in :func:`transaction`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, g
from flask.cli import with_appcontext

from activity_monitor.extension import get_state
from activity_monitor.storage import Connection, open_storage
from activity_monitor.timeutil import utc_now_text

MIGRATIONS_TABLE = "activity_schema_migrations"
CREATE_MIGRATIONS_TABLE = f"""
    CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TEXT NOT NULL
    )
"""


def connect(database: str) -> Connection:
    """Open a connection of its own to a database named as ACTIVITY_DATABASE is, outside any app
    (close it when done)."""
    return open_storage(database).direct_connection()


def get_db(timeout_ms: int | None = None) -> Connection:
    """Return the connection a request reads and writes the monitor's database through, waiting at
    most ``timeout_ms`` for one where it comes from a pool (None: the backend's own timeout)."""
    g.activity_db_used = True
    return get_state().storage.request_connection(timeout_ms)


def open_db(app: Flask | None = None) -> Connection:
    """Open a connection of its own to the monitor's database (close it when done)."""
    return get_state(app).storage.connect()


def discard_db() -> None:
    """Drop the request's connection after an error (a fresh one is used next time)."""
    get_state().storage.discard_request_connection()


def end_request_transaction(_exc: BaseException | None = None) -> None:
    """Let the request's connection go, rolling back a transaction it left open (a bug, but one
    that must not leave the next request reading an old snapshot or holding a write lock)."""
    if g.pop("activity_db_used", False):
        get_state().storage.end_request()


@contextmanager
def transaction(conn: Connection, immediate: bool = True) -> Iterator[Connection]:
    """Run the block in one transaction: commit on success, roll back on any error. ``immediate``
    keeps other writers of events and summaries out until it ends."""
    with conn.transaction(immediate) as inner:
        yield inner


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    """Return ``(version, path)`` for every numbered ``.sql`` file of a backend's folder, in order."""
    found = []
    for path in directory.glob("*.sql"):
        number, _, _ = path.name.partition("_")
        if number.isdigit():
            found.append((int(number), path))
    found.sort()
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"Two migration files share a number in {directory}.")
    return found


def applied_versions(conn: Connection) -> set[int]:
    """Return the versions recorded in activity_schema_migrations (none before the first run)."""
    if not conn.storage.has_table(conn, MIGRATIONS_TABLE):
        return set()
    return {row[0] for row in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}


def record_version(conn: Connection, version: int, name: str) -> None:
    """Note a migration as applied."""
    conn.execute(
        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
        (version, name, utc_now_text()),
    )


def apply_migrations(conn: Connection) -> list[int]:
    """Apply every pending migration of the connection's backend, each in one transaction.

    Returns the versions applied. Safe when several processes start at once: each migration's
    transaction first takes the backend's migration lock (SQLite's write lock, a PostgreSQL
    advisory lock), then reads the applied versions again, so each file runs once.
    The versions live in ``activity_schema_migrations``, never in ``PRAGMA user_version``,
    which belongs to the host when the monitor shares its file.
    """
    storage = conn.storage
    files = migration_files(storage.migrations_dir)
    applied = storage.adopt_legacy(conn, files)
    for version, path in files:
        if version in applied_versions(conn):
            continue
        with storage.migration_transaction(conn):
            conn.execute(CREATE_MIGRATIONS_TABLE)
            if version in applied_versions(conn):
                continue
            storage.run_script(conn, path)
            record_version(conn, version, path.name)
        applied.append(version)
    return applied


def schema_version(conn: Connection) -> int:
    """Return the number of the last applied migration (0 before any)."""
    return max(applied_versions(conn), default=0)


def read_install_id(conn: Connection) -> str:
    """Return this install's random id (stored by migration 005)."""
    return conn.execute("SELECT install_id FROM activity_install WHERE id = 1").fetchone()[0]


@click.command("migrate")
@with_appcontext
def migrate_command() -> None:
    """Apply the monitor's pending database migrations."""
    conn = get_state().storage.direct_connection()
    try:
        applied = apply_migrations(conn)
        version = schema_version(conn)
    finally:
        conn.close()
    if applied:
        click.echo(f"Applied migrations {', '.join(map(str, applied))}; schema is at version {version}.")
    else:
        click.echo(f"Nothing to apply; schema is at version {version}.")


def init_app(app: Flask) -> None:
    """End a request's open transaction, if any, at teardown."""
    app.teardown_appcontext(end_request_transaction)
