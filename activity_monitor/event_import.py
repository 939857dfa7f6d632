"""Bulk loading of past events into user_activity_log: for imports, replays and demo data.

One transaction for the whole load: all or nothing. The storage backend loads the rows its
fastest way (SQLite: multi-row INSERTs through a rollback journal; PostgreSQL: COPY), without
the per-row late-data triggers: the final days the load touched are marked dirty at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import Flask

from activity_monitor.db import open_db
from activity_monitor.late_data import LoadedSpan, late_data_triggers_suspended
from activity_monitor.storage import Connection

# The columns an import gives, in this order (see README: Importing events).
EVENT_COLUMNS = (
    "session_id",
    "user_id",
    "role",
    "timestamp",
    "page_url",
    "action_type",
    "status_code",
    "duration_ms",
    "ip_address",
    "user_agent",
)


class EventImport:
    """Adds batches of events inside one bulk-load transaction (see :func:`bulk_import_events`)."""

    def __init__(self, conn: Connection, span: LoadedSpan):
        self.conn = conn
        self.span = span
        self.count = 0

    def add_columns(self, columns: Sequence[Sequence[Any]]) -> int:
        """Insert events given column by column in EVENT_COLUMNS order, timestamps as UTC text
        'YYYY-MM-DD HH:MM:SS.ffffff' in ascending order; return how many."""
        if len(columns) != len(EVENT_COLUMNS):
            raise ValueError(f"Give {len(EVENT_COLUMNS)} columns: {', '.join(EVENT_COLUMNS)}.")
        count = len(columns[0])
        if count == 0:
            return 0
        for name, column in zip(EVENT_COLUMNS, columns, strict=True):
            if len(column) != count:
                raise ValueError(f"Column {name} has {len(column)} values, not {count}.")
        self.conn.storage.insert_events(self.conn, EVENT_COLUMNS, columns)
        timestamps = columns[EVENT_COLUMNS.index("timestamp")]
        self.span.include(min(timestamps), max(timestamps))
        self.count += count
        return count


@contextmanager
def bulk_import_events(app: Flask | None = None) -> Iterator[EventImport]:
    """Open one bulk-load transaction on the monitor's database and yield an :class:`EventImport`."""
    conn = open_db(app)
    try:
        with conn.storage.bulk_load(conn), conn.transaction(), late_data_triggers_suspended(conn) as span:
            yield EventImport(conn, span)
    finally:
        conn.close()
