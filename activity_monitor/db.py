"""SQLite connections to the monitor's database, and its migration runner.

One connection per request lives on ``g``; background threads and CLI commands
open their own with :func:`connect`. Connections run in autocommit mode
(``isolation_level=None``); code that writes more than one statement wraps them
in :func:`transaction`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, g
from flask.cli import with_appcontext

from activity_monitor.extension import get_state
from activity_monitor.timeutil import utc_now_text

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 10_000
MIGRATIONS_TABLE = "activity_schema_migrations"
CREATE_MIGRATIONS_TABLE = f"""
    CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TEXT NOT NULL
    )
"""
# A database of the monitor before it became an extension: PRAGMA user_version 5, whose
# schema equals migrations 1–4 here; legacy_import.sql moves its rows after migration 5.
LEGACY_USER_VERSION = 5
LEGACY_ADOPTED_THROUGH = 4
LEGACY_IMPORT = "legacy_import.sql"


def connect(path: str) -> sqlite3.Connection:
    """Open a connection with the pragmas every connection of this app uses."""
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    enable_wal(conn)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent, so usually already done).

    Changing the journal mode can fail at once with "database is locked" while
    another process creates the same new file, without waiting on busy_timeout,
    so it is retried here for as long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def get_db() -> sqlite3.Connection:
    """Return the connection a request reads and writes the monitor's database through: the
    serving thread's long-lived one (see ThreadConnections)."""
    g.activity_db_used = True
    return get_state().append.get()


def open_db(app: Flask | None = None) -> sqlite3.Connection:
    """Open a connection of its own to the monitor's database (close it when done)."""
    return connect(get_state(app).database)


class AppendConnections:
    """One long-lived connection per serving thread, for everything a request does in the
    monitor's database: its reads, and the appends every request makes (its activity row,
    an audit row).

    They stay open so their statements (and the triggers they fire) stay compiled in the
    statement cache: about 25 µs an insert instead of 120 µs on a fresh connection, and no
    0.25–0.5 ms to open a connection and load the schema on each API request. They also keep
    the WAL file open: when the last connection to a file closes, SQLite checkpoints and deletes
    the WAL, and the next commit must create it again (about 1.5 ms). Connections run in
    autocommit mode, so between requests none holds a transaction; teardown makes sure of it.
    """

    def __init__(self, database: str):
        self.database = database
        self.local = threading.local()

    def get(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it on first use."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = connect(self.database)
        return conn

    def discard(self) -> None:
        """Close this thread's connection after an error, so a fresh one is used next time."""
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None:
            conn.close()


def append_db() -> sqlite3.Connection:
    """Return this thread's long-lived connection for appends (see AppendConnections)."""
    return get_state().append.get()


def discard_append_db() -> None:
    """Drop this thread's append connection after an error (a fresh one is opened next time)."""
    get_state().append.discard()


def end_request_transaction(_exc: BaseException | None = None) -> None:
    """Roll back a transaction a request left open on its thread's connection (a bug, but one
    that must not leave the next request reading an old snapshot or holding the write lock)."""
    if not g.pop("activity_db_used", False):
        return
    conn = get_state().append.get()
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@contextmanager
def bulk_load_journal(conn: sqlite3.Connection) -> Iterator[bool]:
    """Use a rollback journal while this connection bulk-loads, then return to WAL.

    Rows then go straight into the database file instead of into the WAL and again at
    the checkpoint (about 1.4 times faster for the demo data). Switching needs the only
    connection to the file; when others are open the load stays in WAL. Yields whether
    it switched.
    """
    try:
        switched = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    except sqlite3.OperationalError:
        switched = False
    try:
        yield switched
    finally:
        if switched:
            enable_wal(conn)


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """Run the block in one transaction: commit on success, roll back on any error."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migration_files() -> list[tuple[int, Path]]:
    """Return ``(version, path)`` for every numbered ``.sql`` file, in order."""
    found = []
    for path in MIGRATIONS_DIR.glob("*.sql"):
        number, _, _ = path.name.partition("_")
        if number.isdigit():
            found.append((int(number), path))
    found.sort()
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"Two migration files share a number in {MIGRATIONS_DIR}.")
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration file into complete statements (trigger bodies stay whole)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        raise RuntimeError(f"Migration ends with an incomplete statement: {current.strip()[:80]!r}")
    return statements


def run_script(conn: sqlite3.Connection, path: Path) -> None:
    """Execute every statement of a migration file on the connection."""
    for statement in split_statements(path.read_text()):
        conn.execute(statement)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Tell whether the database has a table of that name."""
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """Return the versions recorded in activity_schema_migrations (none before the first run)."""
    if not has_table(conn, MIGRATIONS_TABLE):
        return set()
    return {row[0] for row in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}


def is_legacy_database(conn: sqlite3.Connection) -> bool:
    """Tell whether the file was made by the monitor before it became an extension: its
    versions then lived in PRAGMA user_version (5) beside its own api_tokens and audit_log."""
    return (
        not has_table(conn, MIGRATIONS_TABLE)
        and has_table(conn, "user_activity_log")
        and has_table(conn, "api_tokens")
        and has_table(conn, "audit_log")
    )


def record_version(conn: sqlite3.Connection, version: int, name: str) -> None:
    """Note a migration as applied."""
    conn.execute(
        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
        (version, name, utc_now_text()),
    )


def adopt_legacy_database(conn: sqlite3.Connection, files: list[tuple[int, Path]]) -> list[int]:
    """Bring a pre-extension database up to migration 005 in one transaction, keeping every row:
    its schema already matches migrations 1–4; 005 runs, then legacy_import.sql moves the old
    tables' rows into the extension's own."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != LEGACY_USER_VERSION:
        raise RuntimeError(
            "This database was made by an older monitor that is not at its last schema version "
            f"({LEGACY_USER_VERSION}); upgrade it with that version first."
        )
    applied = []
    with transaction(conn):
        if not is_legacy_database(conn):  # another process adopted it meanwhile
            return []
        conn.execute(CREATE_MIGRATIONS_TABLE)
        for version, path in files:
            if version > LEGACY_ADOPTED_THROUGH:
                break
            record_version(conn, version, path.name + " (adopted)")
            applied.append(version)
        fifth = dict(files)[LEGACY_ADOPTED_THROUGH + 1]
        run_script(conn, fifth)
        run_script(conn, MIGRATIONS_DIR / LEGACY_IMPORT)
        record_version(conn, LEGACY_ADOPTED_THROUGH + 1, fifth.name)
        applied.append(LEGACY_ADOPTED_THROUGH + 1)
    return applied


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Apply every pending migration, each in its own ``BEGIN IMMEDIATE`` transaction.

    Returns the versions applied. Safe when several processes start at once: the
    applied versions are re-read after the write lock is taken, so each file runs once.
    The versions live in ``activity_schema_migrations``, never in ``PRAGMA user_version``,
    which belongs to the host when the monitor shares its file.
    """
    files = migration_files()
    applied = adopt_legacy_database(conn, files) if is_legacy_database(conn) else []
    for version, path in files:
        if version in applied_versions(conn):
            continue
        with transaction(conn):
            conn.execute(CREATE_MIGRATIONS_TABLE)
            if version in applied_versions(conn):
                continue
            run_script(conn, path)
            record_version(conn, version, path.name)
        applied.append(version)
    return applied


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the number of the last applied migration (0 before any)."""
    return max(applied_versions(conn), default=0)


def read_install_id(conn: sqlite3.Connection) -> str:
    """Return this install's random id (stored by migration 005)."""
    return conn.execute("SELECT install_id FROM activity_install WHERE id = 1").fetchone()[0]


@click.command("migrate")
@with_appcontext
def migrate_command() -> None:
    """Apply the monitor's pending database migrations."""
    conn = open_db()
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
