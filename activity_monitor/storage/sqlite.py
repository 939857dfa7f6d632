"""The embedded default: one SQLite file, on the standard library's ``sqlite3``.

Connections run in autocommit mode (``isolation_level=None``) with WAL, a busy timeout
and foreign keys. Each serving thread keeps one long-lived connection (see
:class:`ThreadConnections`); everyone else opens their own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations" / "sqlite"
BUSY_TIMEOUT_MS = 10_000
# A database of the monitor before it became an extension: PRAGMA user_version 5, whose
# schema equals migrations 1–4 here; legacy_import.sql moves its rows after migration 5.
LEGACY_USER_VERSION = 5
LEGACY_ADOPTED_THROUGH = 4
LEGACY_IMPORT = "legacy_import.sql"
# Rows per multi-row INSERT of a bulk load: one statement step per many rows is about 1.5
# times faster than executemany row by row.
ROWS_PER_STATEMENT = 100
# Page cache (KiB) of the loading connection while it loads.
LOAD_CACHE_KIB = 64 * 1024


class SQLiteConnection(sqlite3.Connection):
    """A sqlite3 connection that also knows its storage and how to run a transaction."""

    dialect = "sqlite"
    storage: SQLiteStorage

    @contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[SQLiteConnection]:
        """Run the block in one transaction: commit on success, roll back on any error."""
        self.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")


def connect(path: str, storage: SQLiteStorage | None = None) -> SQLiteConnection:
    """Open a connection with the pragmas every connection of the monitor uses."""
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        factory=SQLiteConnection,
    )
    conn.storage = storage or SQLiteStorage(path)
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


class ThreadConnections:
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

    def __init__(self, storage: SQLiteStorage):
        self.storage = storage
        self.local = threading.local()

    def get(self) -> SQLiteConnection:
        """Return this thread's connection, opening it on first use."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = connect(self.storage.path, self.storage)
        return conn

    def peek(self) -> SQLiteConnection | None:
        """Return this thread's connection if it has one."""
        return getattr(self.local, "conn", None)

    def discard(self) -> None:
        """Close this thread's connection after an error, so a fresh one is used next time."""
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None:
            conn.close()


class SQLiteStorage:
    """The monitor's database in one SQLite file."""

    dialect = "sqlite"
    migrations_dir = MIGRATIONS_DIR

    def __init__(self, path: str):
        self.path = path
        self.target = path
        self.threads = ThreadConnections(self)

    # --- connections ------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the file's folder if it is missing (SQLite creates only the file)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def connect(self) -> SQLiteConnection:
        """Open a connection of the caller's own."""
        return connect(self.path, self)

    direct_connection = connect

    def request_connection(self) -> SQLiteConnection:
        """Return the serving thread's long-lived connection (see ThreadConnections)."""
        return self.threads.get()

    def end_request(self) -> None:
        """Roll back a transaction a request left open on its thread's connection (a bug, but one
        that must not leave the next request reading an old snapshot or holding the write lock)."""
        conn = self.threads.peek()
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")

    def discard_request_connection(self) -> None:
        """Close the thread's connection after an error."""
        self.threads.discard()

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        self.threads.discard()

    # --- migrations ------------------------------------------------------------------

    def migration_transaction(self, conn: SQLiteConnection) -> Any:
        """BEGIN IMMEDIATE takes the file's write lock, so only one process migrates at a time."""
        return conn.transaction(immediate=True)

    def has_table(self, conn: SQLiteConnection, name: str) -> bool:
        """Tell whether the file has a table of that name."""
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return row.fetchone() is not None

    def run_script(self, conn: SQLiteConnection, path: Path) -> None:
        """Execute every statement of a migration file, one by one (executescript would commit)."""
        for statement in split_statements(path.read_text()):
            conn.execute(statement)

    def is_legacy_database(self, conn: SQLiteConnection) -> bool:
        """Tell whether the file was made by the monitor before it became an extension: its
        versions then lived in PRAGMA user_version (5) beside its own api_tokens and audit_log."""
        return (
            not self.has_table(conn, "activity_schema_migrations")
            and self.has_table(conn, "user_activity_log")
            and self.has_table(conn, "api_tokens")
            and self.has_table(conn, "audit_log")
        )

    def adopt_legacy(self, conn: SQLiteConnection, files: list[tuple[int, Path]]) -> list[int]:
        """Bring a pre-extension database up to migration 005 in one transaction, keeping every
        row: its schema already matches migrations 1–4; 005 runs, then legacy_import.sql moves
        the old tables' rows into the extension's own."""
        from activity_monitor.db import CREATE_MIGRATIONS_TABLE, record_version

        if not self.is_legacy_database(conn):
            return []
        if conn.execute("PRAGMA user_version").fetchone()[0] != LEGACY_USER_VERSION:
            raise RuntimeError(
                "This database was made by an older monitor that is not at its last schema version "
                f"({LEGACY_USER_VERSION}); upgrade it with that version first."
            )
        applied = []
        with conn.transaction():
            if not self.is_legacy_database(conn):  # another process adopted it meanwhile
                return []
            conn.execute(CREATE_MIGRATIONS_TABLE)
            for version, path in files:
                if version > LEGACY_ADOPTED_THROUGH:
                    break
                record_version(conn, version, path.name + " (adopted)")
                applied.append(version)
            fifth = dict(files)[LEGACY_ADOPTED_THROUGH + 1]
            self.run_script(conn, fifth)
            self.run_script(conn, self.migrations_dir / LEGACY_IMPORT)
            record_version(conn, LEGACY_ADOPTED_THROUGH + 1, fifth.name)
            applied.append(LEGACY_ADOPTED_THROUGH + 1)
        return applied

    # --- bulk loads ------------------------------------------------------------------

    @contextmanager
    def bulk_load(self, conn: SQLiteConnection) -> Iterator[None]:
        """Load through a rollback journal when this is the only connection to the file (rows go
        straight into the file instead of into the WAL and again at the checkpoint: about 1.4
        times faster), with a large page cache (session ids are random, so rows land all over).
        Call outside a transaction: the journal mode cannot change inside one."""
        try:
            switched = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
        except sqlite3.OperationalError:
            switched = False
        cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA cache_size={int(cache_size)}")
            if switched:
                enable_wal(conn)

    def insert_events(
        self, conn: SQLiteConnection, columns: Sequence[str], rows_by_column: Sequence[Sequence[Any]]
    ) -> None:
        """Insert events in multi-row INSERTs of ROWS_PER_STATEMENT rows."""
        width, count = len(columns), len(rows_by_column[0])
        flat: list[Any] = [None] * (width * count)
        for i, column in enumerate(rows_by_column):
            flat[i::width] = column
        head = f"INSERT INTO user_activity_log ({', '.join(columns)}) VALUES "
        row = "(" + ", ".join("?" * width) + ")"
        step = width * ROWS_PER_STATEMENT
        full = count // ROWS_PER_STATEMENT * step
        conn.executemany(
            head + ", ".join([row] * ROWS_PER_STATEMENT), [flat[i : i + step] for i in range(0, full, step)]
        )
        if full < len(flat):
            conn.execute(head + ", ".join([row] * ((len(flat) - full) // width)), flat[full:])

    @contextmanager
    def late_data_triggers_suspended(self, conn: SQLiteConnection) -> Iterator[None]:
        """Drop the triggers on user_activity_log for the block and create them again after it,
        inside the caller's transaction, so nobody else ever sees them missing."""
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'user_activity_log'"
        ).fetchall()
        for name, _ in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        yield
        for _, sql in triggers:
            conn.execute(sql)

    def json_text(self, column: str, key: str) -> str:
        """json_extract on JSON text."""
        return f"json_extract({column}, '$.{key}')"
