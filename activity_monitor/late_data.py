"""Late data during bulk loads: the triggers that mark summary days dirty, set aside and made good.

The triggers of migrations 002 and 006 mark a day dirty when an event lands in a
day that already has a final summary. Firing them for each of a million
bulk-loaded rows costs a seventh of the load; a bulk load instead drops them,
inserts, puts them back and marks every day its rows could touch, all in the
caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


class LoadedSpan:
    """The UTC span [first, end) of the events a bulk load inserted, widened as it goes."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: str | None = None

    def include(self, first: str, last: str) -> None:
        """Widen the span to hold the timestamps from first to last (database text)."""
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)


@contextmanager
def late_data_triggers_suspended(conn: sqlite3.Connection) -> Iterator[LoadedSpan]:
    """Run a bulk insert of events without the per-row triggers; the caller widens the yielded
    span to the timestamps it inserted.

    Must run inside a transaction (so the triggers are never missing for anyone else).
    Afterwards every final day whose event window overlaps the span is marked dirty.
    """
    if not conn.in_transaction:
        raise RuntimeError("Suspend the late-data triggers only inside a transaction.")
    triggers = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'user_activity_log'"
    ).fetchall()
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    span = LoadedSpan()
    yield span
    for _, sql in triggers:
        conn.execute(sql)
    if span.first is None:
        return
    conn.execute(
        """
        INSERT OR IGNORE INTO activity_dirty_days (date)
        SELECT date
        FROM activity_summary_daily
        WHERE is_partial = 0
          AND utc_end > ?
          AND window_start_utc <= ?
        """,
        (span.first, span.last),
    )
