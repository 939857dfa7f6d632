"""Late data during bulk loads: the triggers that mark summary days dirty, set aside and made good.

The triggers of migrations 002 and 006 mark a day dirty when an event lands in a
day that already has a final summary. Firing them for each of a million
bulk-loaded rows costs a seventh of the load; a bulk load instead has the storage
backend keep them quiet, inserts, and marks every day its rows could touch, all in
the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from activity_monitor.storage import Connection


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
def late_data_triggers_suspended(conn: Connection) -> Iterator[LoadedSpan]:
    """Run a bulk insert of events without the per-row triggers; the caller widens the yielded
    span to the timestamps it inserted.

    Must run inside a transaction (so the triggers are never missing for anyone else).
    Afterwards every final day whose event window overlaps the span is marked dirty.
    """
    if not conn.in_transaction:
        raise RuntimeError("Suspend the late-data triggers only inside a transaction.")
    span = LoadedSpan()
    with conn.storage.late_data_triggers_suspended(conn):
        yield span
    if span.first is None:
        return
    conn.execute(
        """
        INSERT INTO activity_dirty_days (date)
        SELECT date
        FROM activity_summary_daily
        WHERE is_partial = 0
          AND utc_end > ?
          AND window_start_utc <= ?
        ON CONFLICT (date) DO NOTHING
        """,
        (span.first, span.last),
    )
