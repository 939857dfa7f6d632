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


def connect(path: str, storage: SQLiteStorage | None = None, must_exist: bool = False) -> SQLiteConnection:
    """Open a connection with the pragmas every connection of the monitor uses; ``must_exist``
    opens the file read-write without ever creating it (a missing file raises)."""
    conn = sqlite3.connect(
        Path(path).absolute().as_uri() + "?mode=rw" if must_exist else path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        factory=SQLiteConnection,
        uri=must_exist,
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


def file_identity(path: str) -> tuple[int, int] | None:
    """Return the (device, inode) of a file, or None when there is no file at the path."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class UnavailableConnection:
    """What a serving thread gets while its database file is gone or replaced: every statement
    raises the sentence saying so, as a connection to a vanished server would, so the tracker
    spools and health reports it instead of writing into an unlinked file or a new empty one."""

    dialect = "sqlite"
    in_transaction = False

    def __init__(self, storage: SQLiteStorage, problem: str):
        self.storage = storage
        self.problem = problem

    def execute(self, sql: str, params: Any = ()) -> Any:
        raise sqlite3.OperationalError(self.problem)

    executemany = execute

    def cursor(self) -> Any:
        raise sqlite3.OperationalError(self.problem)

    def transaction(self, immediate: bool = True) -> Any:
        raise sqlite3.OperationalError(self.problem)

    def close(self) -> None:
        """Nothing is open."""


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

    def get(self) -> SQLiteConnection | UnavailableConnection:
        """Return this thread's connection, opening it on first use; while the file it opened is
        gone or replaced, an UnavailableConnection (one os.stat a call tells)."""
        problem = self.storage.file_problem()
        if problem is not None:
            self.discard()
            return UnavailableConnection(self.storage, problem)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.storage.connect()
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
        # (device, inode) of the file the first connection opened (or created); every later
        # connection must find that same file. None until then, and for ":memory:".
        self.identity: tuple[int, int] | None = None

    # --- connections ------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the file's folder if it is missing (SQLite creates only the file)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def connect(self) -> SQLiteConnection:
        """Open a connection of the caller's own. The first may create the file; every later one
        opens that same file read-write or raises, so a file deleted while the app runs is
        reported, never silently created anew."""
        if self.identity is None:
            conn = connect(self.path, self)
            if self.path != ":memory:":
                self.identity = file_identity(self.path)
            return conn
        problem = self.file_problem()
        if problem is not None:
            raise sqlite3.OperationalError(problem)
        return connect(self.path, self, must_exist=True)

    direct_connection = connect

    def file_problem(self) -> str | None:
        """Return a sentence when the file first opened is no longer at its path, else None."""
        if self.identity is None or file_identity(self.path) == self.identity:
            return None
        return (
            f"The database file {self.path} was deleted or replaced while the app was running; "
            "the monitor does not create it anew. Restore the file, or restart the app to start "
            "with the file now at that path"
        )

    def request_connection(self, timeout_ms: int | None = None) -> SQLiteConnection | UnavailableConnection:
        """Return the serving thread's long-lived connection (see ThreadConnections). ``timeout_ms``
        is not needed here: opening a file waits on no lock and no pool (only a statement does)."""
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

    def current_time_text(self) -> str:
        """strftime of 'now', to the millisecond."""
        return "strftime('%Y-%m-%d %H:%M:%f', 'now')"

    # --- writes that must not stall a request ------------------------------------------

    @contextmanager
    def bounded_write(self, conn: SQLiteConnection, timeout_ms: int) -> Iterator[SQLiteConnection]:
        """Lower the connection's busy timeout to ``timeout_ms`` for the block, then restore it
        (a PRAGMA on the open connection: about a microsecond each way)."""
        conn.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
        try:
            yield conn
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def insert_bounded(
        self, conn: SQLiteConnection, sql: str, params: Sequence[Any], timeout_ms: int
    ) -> None:
        """Run one statement inside bounded_write."""
        with self.bounded_write(conn, timeout_ms):
            conn.execute(sql, params)

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """SQLITE_BUSY or SQLITE_LOCKED: another connection held the lock for the whole timeout."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def epoch_seconds(self, column: str) -> str:
        """strftime('%s') of the whole-second part: SQLite rounds a fraction to milliseconds, which
        would carry 59.9995 s into the next second (and hour)."""
        return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"

    def code_point_order(self, column: str) -> str:
        """SQLite's default BINARY collation compares UTF-8 bytes, which is code point order."""
        return column
