"""The storage interface: what the monitor needs of a database, whichever backend serves it.

The monitor's modules write the SQL both backends share (standard SQL with ``?`` or
``:name`` placeholders, ``ON CONFLICT``, ``RETURNING``). What differs between the dialects
(the schema files, locking, bulk loading, reading JSON text) is a method here, implemented
side by side in :mod:`.sqlite` and :mod:`.postgresql`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

try:
    import psycopg
except ImportError:  # the postgres extra is not installed: SQLite only
    psycopg = None  # type: ignore[assignment]

# Every error a database call can raise, on either backend: ``except DatabaseError``.
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error,) + ((psycopg.Error,) if psycopg else ())
# The insert broke a unique or check constraint.
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError,) + (
    (psycopg.IntegrityError,) if psycopg else ()
)
# A value the column cannot hold (of the wrong kind, out of range).
DataError: tuple[type[Exception], ...] = (sqlite3.DataError,) + ((psycopg.DataError,) if psycopg else ())


class Cursor(Protocol):
    """The result of one statement: rows answer to ``row[0]`` and ``row["column"]``."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection in autocommit mode; :meth:`transaction` groups statements."""

    dialect: str
    storage: Storage

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, params: Any) -> Cursor: ...

    def transaction(self, immediate: bool = True) -> AbstractContextManager[Any]:
        """Run a block in one transaction; ``immediate`` also keeps every other writer of
        events and summaries out until it ends (SQLite's BEGIN IMMEDIATE)."""

    def close(self) -> None: ...


class Storage(Protocol):
    """One database of the monitor, on one backend."""

    dialect: str
    # What /health and the CLI show: the file path, or the URL without its password.
    target: str
    migrations_dir: Path

    def prepare(self) -> None:
        """Make what the database needs before its first connection (SQLite: the file's folder)."""

    def connect(self) -> Connection:
        """Return a connection of the caller's own (close it when done)."""

    def direct_connection(self) -> Connection:
        """Return a connection outside any pool (for migrating before a server forks)."""

    def request_connection(self, timeout_ms: int | None = None) -> Connection:
        """Return the connection the current request (or serving thread) works through; where one
        must first be taken from a pool, wait at most ``timeout_ms`` for it (None: the backend's
        own timeout), else raise a DatabaseError."""

    def end_request(self) -> None:
        """Roll back what a request left open and let its connection go."""

    def discard_request_connection(self) -> None:
        """Drop the request's connection after an error; the next one is fresh."""

    def migration_transaction(self, conn: Connection) -> AbstractContextManager[Any]:
        """Run one migration in one transaction that no other process migrates beside."""

    def has_table(self, conn: Connection, name: str) -> bool:
        """Tell whether the schema has the table."""

    def run_script(self, conn: Connection, path: Path) -> None:
        """Execute every statement of a migration file."""

    def adopt_legacy(self, conn: Connection, files: list[tuple[int, Path]]) -> list[int]:
        """Bring a database of an older, pre-extension monitor into the migrations; return the
        versions that counts as applying (none where there is no such database)."""

    def bulk_load(self, conn: Connection) -> AbstractContextManager[Any]:
        """Prepare the connection for a large load of events in the block."""

    def insert_events(
        self, conn: Connection, columns: Sequence[str], rows_by_column: Sequence[Sequence[Any]]
    ) -> None:
        """Insert events given column by column, as fast as the backend loads."""

    def late_data_triggers_suspended(self, conn: Connection) -> AbstractContextManager[None]:
        """Keep the per-row late-data triggers from firing inside the block (in a transaction)."""

    def json_text(self, column: str, key: str) -> str:
        """Return the SQL expression reading a top-level key of a JSON text column as text."""

    def current_time_text(self) -> str:
        """Return the SQL expression of the database's own current UTC time as timestamp text, as
        the late-data triggers stamp activity_dirty_days.marked_at."""

    def bounded_write(self, conn: Connection, timeout_ms: int) -> AbstractContextManager[Connection]:
        """Run the block's statements (writes, mostly) so that none waits longer than ``timeout_ms``
        for a lock (or, on PostgreSQL, runs longer); the connection's other statements keep their
        own timeouts. Outside a transaction the block commits on its own; inside one it joins it
        unbounded."""

    def insert_bounded(self, conn: Connection, sql: str, params: Sequence[Any], timeout_ms: int) -> None:
        """Run one statement without a result as :meth:`bounded_write` would, as cheaply as the
        backend can (the tracker's insert, on every request)."""

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """Tell whether a database error means only that a lock was not granted in time."""

    def epoch_seconds(self, column: str) -> str:
        """Return the SQL expression of a UTC timestamp text column as whole seconds since the
        Unix epoch (the fraction dropped, never rounded), an integer."""

    def code_point_order(self, column: str) -> str:
        """Return the ORDER BY term sorting a text column by code point, as Python sorts strings."""

    def close(self) -> None:
        """Close every connection this storage holds."""
