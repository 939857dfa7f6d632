"""Daily activity summaries: which days need (re)computing, and writing them.

:class:`DailySummaryProcessor` turns the raw ``user_activity_log`` rows of a local
day into one ``activity_summary_daily`` row (metric definitions in
:mod:`summary_metrics`). Each day is read and written in one immediate
transaction (SQLite's ``BEGIN IMMEDIATE``, a table lock on PostgreSQL): a failure leaves
the day fully old, a rerun is idempotent, and an event written meanwhile waits for the
commit, so the late-data trigger of migration 002 sees the new row and marks the day dirty.
Today's partial row, which no trigger watches and every refresh rewrites, is read before that
transaction, so the refresh keeps event writers waiting only for the write.
Every change to the summaries bumps the data version the trends cache keys on.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from activity_monitor.config import MAX_IDLE_MINUTES
from activity_monitor.db import open_db, transaction
from activity_monitor.storage import Connection
from activity_monitor.summary_metrics import (
    COUNTED_API_CALL,
    DayEvents,
    DayMetrics,
    DayWindow,
    compute_day_metrics,
    from_us,
)
from activity_monitor.timeutil import (
    BOUND_FORMAT,
    date_range,
    local_day_bounds_text,
    local_today,
    parse_db_timestamp,
    to_db_timestamp,
    utc_now,
    zone,
)

# Rows fetched from the database at a time while reading a day (bounds memory on huge days).
FETCH_ROWS = 50_000

# The numeric daily metrics of activity_summary_daily, in the order the API lists them.
METRIC_COLUMNS = (
    "unique_users",
    "total_sessions",
    "total_page_views",
    "total_api_calls",
    "avg_session_duration_seconds",
    "peak_concurrent_users",
)
# Columns compared to tell whether a recomputation changed the row.
COMPARED_COLUMNS = (
    *METRIC_COLUMNS,
    "peak_hour",
    "top_pages",
    "user_distribution",
    "total_events",
    "is_partial",
    "time_zone",
    "idle_minutes",
    "session_idle_minutes",
)
WRITTEN_COLUMNS = (
    "date",
    *COMPARED_COLUMNS,
    "computed_at",
    "window_start_utc",
    "utc_start",
    "utc_end",
)
UPSERT_SQL = f"""
    INSERT INTO activity_summary_daily ({", ".join(WRITTEN_COLUMNS)})
    VALUES ({", ".join(":" + column for column in WRITTEN_COLUMNS)})
    ON CONFLICT(date) DO UPDATE SET
        {", ".join(f"{column} = excluded.{column}" for column in WRITTEN_COLUMNS[1:])}
"""
# The rows of summary_metrics.DayEvents.from_chunks (see summary_metrics.COUNTED).
EVENTS_SQL = f"""
    SELECT user_id,
           timestamp,
           session_id,
           role,
           CASE
               WHEN timestamp < :day_start THEN NULL
               WHEN action_type = 'page_view' THEN page_url
               WHEN action_type = 'api_call' THEN '{COUNTED_API_CALL}'
           END
    FROM user_activity_log
    WHERE timestamp >= :window_start
      AND timestamp < :day_end
    ORDER BY timestamp
"""


class RawDataPurgedError(ValueError):
    """Raised when asked to summarize a day whose raw events the retention purge deleted."""


def raw_kept_from(conn: Connection) -> dt.date | None:
    """Return the first day whose raw events are all kept, or None when none was ever purged."""
    row = conn.execute("SELECT kept_from_date FROM activity_raw_retention WHERE id = 1").fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None


def first_event_day(conn: Connection, tz_name: str) -> dt.date | None:
    """Return the local day of the oldest raw event, or None when there is none."""
    oldest = conn.execute("SELECT MIN(timestamp) FROM user_activity_log").fetchone()[0]
    return parse_db_timestamp(oldest).astimezone(zone(tz_name)).date() if oldest else None


def first_summary_day(conn: Connection) -> dt.date | None:
    """Return the day of the oldest summary row, or None when there is none."""
    first = conn.execute("SELECT MIN(date) FROM activity_summary_daily").fetchone()[0]
    return dt.date.fromisoformat(first) if first else None


def read_data_version(conn: Connection) -> int:
    """Return the current data version of the summaries (0 before any change)."""
    row = conn.execute("SELECT version FROM activity_data_version WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def bump_data_version(conn: Connection) -> int:
    """Increase the data version by one (in the caller's transaction, if any); return the new one."""
    rows = conn.execute(
        """
        INSERT INTO activity_data_version (id, version, updated_at)
        VALUES (1, 1, :now)
        ON CONFLICT(id) DO UPDATE SET
            version = activity_data_version.version + 1,
            updated_at = :now
        RETURNING version
        """,
        {"now": to_db_timestamp(utc_now())},
    ).fetchall()  # all rows: the statement must finish, or autocommit would not commit yet
    return int(rows[0][0])


@dataclass(frozen=True)
class DayResult:
    """What summarizing one day did."""

    date: dt.date
    is_partial: bool
    was_dirty: bool
    changed: bool
    seconds: float
    metrics: DayMetrics = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values (metrics left out)."""
        return {
            "date": self.date.isoformat(),
            "is_partial": self.is_partial,
            "was_dirty": self.was_dirty,
            "changed": self.changed,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class ProcessingReport:
    """What a processing run did: days written, and days skipped because their raw rows were purged."""

    days: list[DayResult] = field(default_factory=list)
    skipped_purged: list[dt.date] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def dates(self) -> list[dt.date]:
        """Return the days written, in order."""
        return [result.date for result in self.days]

    @property
    def dirty_dates(self) -> list[dt.date]:
        """Return the days written because late data had made them dirty."""
        return [result.date for result in self.days if result.was_dirty]

    @property
    def partial_dates(self) -> list[dt.date]:
        """Return the days written as partial (the current local day)."""
        return [result.date for result in self.days if result.is_partial]

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "days": [result.as_dict() for result in self.days],
            "skipped_purged": [day.isoformat() for day in self.skipped_purged],
            "seconds": round(self.seconds, 4),
        }


class DailySummaryProcessor:
    """Compute and store daily summaries on a connection of its own (any thread, no request)."""

    def __init__(
        self,
        conn: Connection,
        tz_name: str,
        idle_minutes: int,
        clock: Callable[[], dt.datetime] | None = None,
        *,
        owns_connection: bool = False,
        session_idle_minutes: int = 30,
    ):
        if not 0 < idle_minutes <= MAX_IDLE_MINUTES:
            raise ValueError(f"idle_minutes={idle_minutes!r} must be between 1 and {MAX_IDLE_MINUTES}.")
        self.conn = conn
        self.tz_name = tz_name
        self.tz = zone(tz_name)
        self.idle_minutes = idle_minutes
        self.session_idle_minutes = session_idle_minutes
        self.clock = clock or utc_now
        self.owns_connection = owns_connection

    @classmethod
    def from_app(cls, app: Flask, clock: Callable[[], dt.datetime] | None = None) -> DailySummaryProcessor:
        """Build a processor with the app's settings and its own connection (close it when done)."""
        return cls(
            open_db(app),
            app.config["ACTIVITY_TIMEZONE"],
            app.config["ACTIVITY_IDLE_MINUTES"],
            clock,
            owns_connection=True,
            session_idle_minutes=app.config["ACTIVITY_SESSION_IDLE_MINUTES"],
        )

    def close(self) -> None:
        """Close the connection if the processor opened it."""
        if self.owns_connection:
            self.conn.close()

    def __enter__(self) -> DailySummaryProcessor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def today(self) -> dt.date:
        """Return the current local day."""
        return local_today(self.tz_name, self.clock())

    # --- which days -----------------------------------------------------------

    def kept_from_date(self) -> dt.date | None:
        """Return the first day whose raw events are all kept, or None before any purge."""
        return raw_kept_from(self.conn)

    def first_activity_day(self) -> dt.date | None:
        """Return the local day of the oldest raw event, or None when there is none."""
        return first_event_day(self.conn, self.tz_name)

    def missing_days(self, include_today: bool = False) -> list[dt.date]:
        """Return the days to (re)compute: completed days from the first with activity that have
        no final row of the current settings, and dirty days (plus today when asked)."""
        today = self.today()
        last = today if include_today else today - dt.timedelta(days=1)
        kept_from = self.kept_from_date() or dt.date.min
        wanted: set[dt.date] = set()
        first = self.first_activity_day()
        if first is not None:
            first = max(first, kept_from)
            fresh = {
                row[0]
                for row in self.conn.execute(
                    """
                    SELECT date
                    FROM activity_summary_daily
                    WHERE date BETWEEN ? AND ?
                      AND is_partial = 0
                      AND time_zone = ?
                      AND idle_minutes = ?
                      AND session_idle_minutes = ?
                    """,
                    (
                        first.isoformat(),
                        last.isoformat(),
                        self.tz_name,
                        self.idle_minutes,
                        self.session_idle_minutes,
                    ),
                )
            }
            wanted.update(day for day in date_range(first, last) if day.isoformat() not in fresh)
        wanted.update(self.dirty_days(last))
        return sorted(wanted)

    def dirty_days(self, last: dt.date) -> list[dt.date]:
        """Return the days up to ``last`` marked dirty whose raw events are still kept, in order."""
        kept_from = self.kept_from_date() or dt.date.min
        return [
            dt.date.fromisoformat(row[0])
            for row in self.conn.execute(
                "SELECT date FROM activity_dirty_days WHERE date >= ? AND date <= ? ORDER BY date",
                (kept_from.isoformat(), last.isoformat()),
            )
        ]

    def ended_partial_days(self, current: dt.date) -> list[dt.date]:
        """Return the days before ``current`` whose row is still partial (written while the day
        ran), in order: they miss the day's last events, and late data does not mark them dirty."""
        return [
            dt.date.fromisoformat(row[0])
            for row in self.conn.execute(
                "SELECT date FROM activity_summary_daily WHERE is_partial = 1 AND date < ? ORDER BY date",
                (current.isoformat(),),
            )
        ]

    def gap_days(self) -> list[dt.date]:
        """Return the days inside the summarized span (first to last row) that have raw events but
        no row, in order: one query for the stored dates, then index probes only where rows are missing."""
        stored = [
            dt.date.fromisoformat(row[0])
            for row in self.conn.execute("SELECT date FROM activity_summary_daily ORDER BY date")
        ]
        gaps: list[dt.date] = []
        for before, after in zip(stored, stored[1:], strict=False):
            day = before + dt.timedelta(days=1)
            # One probe finds the first event in the run of missing days; its local day is a gap and the
            # search goes on after it, so the cost is one probe per run of missing days and one per gap.
            while day < after:
                start = local_day_bounds_text(day, self.tz_name)[0]
                end = local_day_bounds_text(after, self.tz_name)[0]
                first = self.conn.execute(
                    "SELECT MIN(timestamp) FROM user_activity_log WHERE timestamp >= ? AND timestamp < ?",
                    (start, end),
                ).fetchone()[0]
                if first is None:
                    break
                found = parse_db_timestamp(first).astimezone(self.tz).date()
                gaps.append(found)
                day = found + dt.timedelta(days=1)
        return gaps

    # --- processing -------------------------------------------------------------

    def summarize_day(self, day: dt.date) -> DayResult:
        """Compute and store one day's row (partial if it is today); return what was done.

        Raises ValueError for a day not yet begun, RawDataPurgedError for a purged one.
        """
        if day > self.today():
            raise ValueError(f"{day} has not begun yet in {self.tz_name}.")
        started = time.perf_counter()
        window = DayWindow.for_day(day, self.tz_name, self.idle_minutes, self.session_idle_minutes)
        metrics = None
        if day == self.today():
            # Today's row is partial: no late-data trigger watches it, and the next refresh reads what
            # lands meanwhile, so its read (the whole day so far, every few minutes) need not keep
            # event writers waiting; only the write below does, for a moment.
            metrics = compute_day_metrics(self._read_events(window), window)
        with transaction(self.conn):
            kept_from = self.kept_from_date()
            if kept_from is not None and day < kept_from:
                raise RawDataPurgedError(f"The raw events of {day} were purged; its summary stays as it is.")
            # Decided inside the transaction, so a day that ends meanwhile is not stored as partial.
            is_partial = day == self.today()
            if metrics is None or not is_partial:
                # A final row is read with writers kept out: a late event is in it or marks it dirty.
                metrics = compute_day_metrics(self._read_events(window), window)
            row = self._row(window, metrics, is_partial)
            changed = self._store(row)
            was_dirty = self.conn.execute(
                "DELETE FROM activity_dirty_days WHERE date = ?", (row["date"],)
            ).rowcount
        return DayResult(day, is_partial, bool(was_dirty), changed, time.perf_counter() - started, metrics)

    def process_days(
        self, days: list[dt.date], progress: Callable[[dt.date], None] | None = None
    ) -> ProcessingReport:
        """Summarize the given days in order, one transaction each; skip days whose raw rows were purged."""
        started = time.perf_counter()
        report = ProcessingReport()
        for day in days:
            try:
                report.days.append(self.summarize_day(day))
            except RawDataPurgedError:
                report.skipped_purged.append(day)
            if progress is not None:
                progress(day)
        report.seconds = time.perf_counter() - started
        return report

    def process_range(
        self, start: dt.date, end: dt.date, progress: Callable[[dt.date], None] | None = None
    ) -> ProcessingReport:
        """Summarize exactly the days from start to end inclusive, zero-activity days included."""
        if start > end:
            raise ValueError(f"The range starts ({start}) after it ends ({end}).")
        return self.process_days(date_range(start, end), progress)

    def process_missing_days(
        self, include_today: bool = False, progress: Callable[[dt.date], None] | None = None
    ) -> ProcessingReport:
        """Summarize every missing, partial-but-ended, stale or dirty day (and today when asked)."""
        kept_from = self.kept_from_date()
        if kept_from is not None:
            # Late data for a purged day cannot be summarized any more.
            self.conn.execute("DELETE FROM activity_dirty_days WHERE date < ?", (kept_from.isoformat(),))
        return self.process_days(self.missing_days(include_today), progress)

    # --- reading and writing one day ------------------------------------------------

    def _read_events(self, window: DayWindow) -> DayEvents:
        """Read the events of the day's window with one range scan on the timestamp index."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        cursor.execute(
            EVENTS_SQL,
            {
                "window_start": bound_text(window.window_start_us),
                "day_start": bound_text(window.start_us),
                "day_end": bound_text(window.end_us),
            },
        )

        def chunks() -> Iterator[list[tuple[Any, ...]]]:
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield rows

        with cyclic_gc_paused():
            return DayEvents.from_chunks(chunks())

    def _row(self, window: DayWindow, metrics: DayMetrics, is_partial: bool) -> dict[str, Any]:
        """Return the column values of a day's row."""
        return {
            "date": window.date.isoformat(),
            "unique_users": metrics.unique_users,
            "total_sessions": metrics.total_sessions,
            "total_page_views": metrics.total_page_views,
            "total_api_calls": metrics.total_api_calls,
            "avg_session_duration_seconds": metrics.avg_session_duration_seconds,
            "peak_concurrent_users": metrics.peak_concurrent_users,
            "peak_hour": metrics.peak_hour,
            "top_pages": json.dumps(metrics.top_pages),
            "user_distribution": json.dumps(metrics.user_distribution),
            "total_events": metrics.total_events,
            "is_partial": int(is_partial),
            "time_zone": self.tz_name,
            "idle_minutes": self.idle_minutes,
            "session_idle_minutes": self.session_idle_minutes,
            "computed_at": to_db_timestamp(self.clock()),
            "window_start_utc": bound_text(window.window_start_us),
            "utc_start": bound_text(window.start_us),
            "utc_end": bound_text(window.end_us),
        }

    def _store(self, row: dict[str, Any]) -> bool:
        """Upsert the row; bump the data version when it differs from the stored one (returned)."""
        old = self.conn.execute(
            f"SELECT {', '.join(COMPARED_COLUMNS)} FROM activity_summary_daily WHERE date = ?", (row["date"],)
        ).fetchone()
        self.conn.execute(UPSERT_SQL, row)
        changed = old is None or tuple(old) != tuple(row[column] for column in COMPARED_COLUMNS)
        if changed:
            bump_data_version(self.conn)
        return changed


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (if it was running).

    A day's read allocates a tuple per row, which sets the collector off again and again,
    each time walking objects that hold no cycle (a tenth of the read, more in a big
    process); reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def bound_text(micros: int) -> str:
    """Return a whole-second UTC instant as range-bound text (no fraction, see timeutil)."""
    return from_us(micros).strftime(BOUND_FORMAT)
