"""Bulk loading of past events into user_activity_log: for imports, replays and demo data.

One transaction for the whole load: all or nothing. It loads through a rollback
journal when no other connection is open (rows go straight into the file instead
of into the WAL and again at the checkpoint), without the per-row late-data
triggers (the final days it touched are marked dirty at the end instead), and in
multi-row INSERTs of ``ROWS_PER_STATEMENT`` rows (one statement step per many rows
is about 1.5 times faster than ``executemany`` row by row).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import Flask

from activity_monitor.db import bulk_load_journal, open_db, transaction
from activity_monitor.late_data import LoadedSpan, late_data_triggers_suspended

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
ROWS_PER_STATEMENT = 100
# Page cache (KiB) of the loading connection while it loads.
LOAD_CACHE_KIB = 64 * 1024
INSERT_HEAD = f"INSERT INTO user_activity_log ({', '.join(EVENT_COLUMNS)}) VALUES "
ROW_PLACEHOLDERS = "(" + ", ".join("?" * len(EVENT_COLUMNS)) + ")"


class EventImport:
    """Adds batches of events inside one bulk-load transaction (see :func:`bulk_import_events`)."""

    def __init__(self, conn: sqlite3.Connection, span: LoadedSpan):
        self.conn = conn
        self.span = span
        self.count = 0

    def add_columns(self, columns: Sequence[Sequence[Any]]) -> int:
        """Insert events given column by column in EVENT_COLUMNS order, timestamps as UTC text
        'YYYY-MM-DD HH:MM:SS.ffffff' in ascending order; return how many."""
        if len(columns) != len(EVENT_COLUMNS):
            raise ValueError(f"Give {len(EVENT_COLUMNS)} columns: {', '.join(EVENT_COLUMNS)}.")
        width, count = len(EVENT_COLUMNS), len(columns[0])
        if count == 0:
            return 0
        flat: list[Any] = [None] * (width * count)
        for i, column in enumerate(columns):
            if len(column) != count:
                raise ValueError(f"Column {EVENT_COLUMNS[i]} has {len(column)} values, not {count}.")
            flat[i::width] = column
        step = width * ROWS_PER_STATEMENT
        full = count // ROWS_PER_STATEMENT * step
        self.conn.executemany(
            INSERT_HEAD + ", ".join([ROW_PLACEHOLDERS] * ROWS_PER_STATEMENT),
            [flat[i : i + step] for i in range(0, full, step)],
        )
        if full < len(flat):
            self.conn.execute(
                INSERT_HEAD + ", ".join([ROW_PLACEHOLDERS] * ((len(flat) - full) // width)), flat[full:]
            )
        timestamps = columns[EVENT_COLUMNS.index("timestamp")]
        self.span.include(min(timestamps), max(timestamps))
        self.count += count
        return count


@contextmanager
def bulk_import_events(app: Flask | None = None) -> Iterator[EventImport]:
    """Open one bulk-load transaction on the monitor's database and yield an :class:`EventImport`."""
    conn = open_db(app)
    try:
        with bulk_load_journal(conn), transaction(conn), late_data_triggers_suspended(conn) as span:
            cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
            # Session ids are random, so their rows land all over: keep the pages in memory.
            conn.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
            try:
                yield EventImport(conn, span)
            finally:
                conn.execute(f"PRAGMA cache_size={int(cache_size)}")
    finally:
        conn.close()
