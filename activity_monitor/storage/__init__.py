"""The monitor's database, on SQLite (the embedded default) or PostgreSQL (several hosts).

:func:`open_storage` picks the backend from ``ACTIVITY_DATABASE``: a file path or
``sqlite:///path`` means SQLite, ``postgresql://…`` PostgreSQL (the ``postgres`` extra).
"""

from __future__ import annotations

from activity_monitor.storage.base import Connection, DatabaseError, IntegrityError, Storage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = [
    "Connection",
    "DatabaseError",
    "IntegrityError",
    "Storage",
    "is_postgres_url",
    "open_storage",
    "sqlite_path",
]


def is_postgres_url(database: str) -> bool:
    """Tell whether an ACTIVITY_DATABASE value names PostgreSQL."""
    return database.startswith(POSTGRES_SCHEMES)


def sqlite_path(database: str) -> str:
    """Return the file path of a SQLite ACTIVITY_DATABASE value (a path or sqlite:///path)."""
    return database[len("sqlite:///") :] if database.startswith("sqlite:///") else database


def open_storage(database: str, pool_size: int = 10) -> Storage:
    """Return the storage an ACTIVITY_DATABASE value names (no connection is opened yet)."""
    if is_postgres_url(database):
        try:
            from activity_monitor.storage.postgresql import PostgresStorage
        except ImportError as exc:
            from activity_monitor.config import ConfigError

            raise ConfigError(
                "ACTIVITY_DATABASE names PostgreSQL, but psycopg 3 and psycopg_pool are not installed; "
                "install the extra: pip install 'flask-activity-monitor[postgres]'."
            ) from exc
        return PostgresStorage(database, pool_size=pool_size)
    from activity_monitor.storage.sqlite import SQLiteStorage

    return SQLiteStorage(sqlite_path(database))
