"""The retention purge: old raw events, summaries, audit rows and job runs (never a host table).

Raw events are deleted only up to the first day without a final, clean summary,
however old: a day that was never summarized keeps its events. Before deleting,
the purge records in ``activity_raw_retention`` where the kept rows begin, so
the delete trigger of migration 002 marks nothing dirty and the summary
processor never recomputes a purged day. Every delete runs in batches of
``ACTIVITY_PURGE_BATCH_SIZE`` rows, each its own short transaction, so request
writers wait for one batch at most.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from activity_monitor.daily_summaries import DailySummaryProcessor, bound_text, bump_data_version
from activity_monitor.db import transaction
from activity_monitor.storage import Connection
from activity_monitor.summary_metrics import DayWindow
from activity_monitor.timeutil import date_range, to_db_timestamp, utc_now


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept, and in which days they are counted."""

    tz_name: str
    idle_minutes: int
    raw_days: int
    summary_days: int
    audit_days: int
    batch_size: int
    session_idle_minutes: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetentionPolicy:
        """Read the policy from an app's config."""
        return cls(
            tz_name=config["ACTIVITY_TIMEZONE"],
            idle_minutes=config["ACTIVITY_IDLE_MINUTES"],
            session_idle_minutes=config["ACTIVITY_SESSION_IDLE_MINUTES"],
            raw_days=config["ACTIVITY_RETENTION_DAYS"],
            summary_days=config["ACTIVITY_SUMMARY_RETENTION_DAYS"],
            audit_days=config["ACTIVITY_AUDIT_RETENTION_DAYS"],
            batch_size=config["ACTIVITY_PURGE_BATCH_SIZE"],
        )


@dataclass
class PurgeReport:
    """What a purge deleted, and from which day raw events are now kept."""

    raw_events_deleted: int = 0
    raw_kept_from: dt.date | None = None
    raw_held_back_from: dt.date | None = None
    summaries_deleted: int = 0
    audit_rows_deleted: int = 0
    job_runs_deleted: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        values = asdict(self)
        for key in ("raw_kept_from", "raw_held_back_from"):
            values[key] = values[key].isoformat() if values[key] else None
        values["seconds"] = round(self.seconds, 4)
        return values


def delete_in_batches(
    conn: Connection, table: str, where: str, params: tuple[Any, ...], batch_size: int
) -> int:
    """Delete the rows of a table matching a condition, batch by batch, by its id column (SQLite's
    rowid); return how many."""
    deleted = 0
    while True:
        cursor = conn.execute(
            f"""
            DELETE FROM {table}
            WHERE id IN (
                SELECT id
                FROM {table}
                WHERE {where}
                LIMIT ?
            )
            """,
            (*params, batch_size),
        )
        deleted += cursor.rowcount
        if cursor.rowcount < batch_size:
            return deleted


class RetentionPurge:
    """Apply a retention policy to one database connection."""

    def __init__(
        self,
        conn: Connection,
        policy: RetentionPolicy,
        clock: Callable[[], dt.datetime] | None = None,
    ):
        self.conn = conn
        self.policy = policy
        self.clock = clock or utc_now
        self.summaries = DailySummaryProcessor(
            conn,
            policy.tz_name,
            policy.idle_minutes,
            self.clock,
            session_idle_minutes=policy.session_idle_minutes,
        )

    def purge(self) -> PurgeReport:
        """Run every part of the purge and return what it deleted."""
        started = time.perf_counter()
        report = PurgeReport()
        report.raw_kept_from, report.raw_held_back_from = self.advance_raw_boundary()
        report.raw_events_deleted = self.purge_raw_events()
        report.summaries_deleted = self.purge_summaries()
        report.audit_rows_deleted = self.purge_audit_log()
        report.job_runs_deleted = self.purge_job_runs()
        report.seconds = time.perf_counter() - started
        return report

    def advance_raw_boundary(self) -> tuple[dt.date | None, dt.date | None]:
        """Move the kept-from day of raw events up to the retention cutoff, but never past a day
        without a final, clean summary of the current settings.

        Returns the kept-from day, and the first day held back beyond retention (or None).
        """
        cutoff = self.summaries.today() - dt.timedelta(days=self.policy.raw_days)
        with transaction(self.conn):
            # Decided under the write lock: no day can turn dirty between the check and the move.
            kept_from = self.summaries.kept_from_date()
            first = self.summaries.first_activity_day()
            if first is None:
                return kept_from, None
            start = max(first, kept_from or first)
            if start >= cutoff:
                return kept_from, None
            final = {
                row[0]
                for row in self.conn.execute(
                    """
                    SELECT date
                    FROM activity_summary_daily
                    WHERE date >= ? AND date < ?
                      AND is_partial = 0
                      AND time_zone = ?
                      AND idle_minutes = ?
                      AND session_idle_minutes = ?
                      AND date NOT IN (SELECT date FROM activity_dirty_days)
                    """,
                    (
                        start.isoformat(),
                        cutoff.isoformat(),
                        self.policy.tz_name,
                        self.policy.idle_minutes,
                        self.policy.session_idle_minutes,
                    ),
                )
            }
            expired = date_range(start, cutoff - dt.timedelta(days=1))
            boundary = next((day for day in expired if day.isoformat() not in final), cutoff)
            held_back = boundary if boundary < cutoff else None
            if boundary == start:
                return kept_from, held_back
            # The rows a kept day's summary reads start idle minutes before the day.
            window = DayWindow.for_day(boundary, self.policy.tz_name, self.policy.idle_minutes)
            self.conn.execute(
                """
                UPDATE activity_raw_retention
                SET kept_from_date = ?,
                    kept_from_utc = ?
                WHERE id = 1
                """,
                (boundary.isoformat(), bound_text(window.window_start_us)),
            )
            return boundary, held_back

    def purge_raw_events(self) -> int:
        """Delete the raw events before the recorded kept-from instant."""
        row = self.conn.execute("SELECT kept_from_utc FROM activity_raw_retention WHERE id = 1").fetchone()
        if not row or not row[0]:
            return 0
        return delete_in_batches(
            self.conn, "user_activity_log", "timestamp < ?", (row[0],), self.policy.batch_size
        )

    def purge_summaries(self) -> int:
        """Delete summary rows past retention (never those of days whose raw events are kept)."""
        cutoff = self.summaries.today() - dt.timedelta(days=self.policy.summary_days)
        first = self.summaries.first_activity_day()
        # Otherwise the processor would find those days missing and summarize them again.
        if first is not None:
            cutoff = min(cutoff, first)
        with transaction(self.conn):
            deleted = self.conn.execute(
                "DELETE FROM activity_summary_daily WHERE date < ?", (cutoff.isoformat(),)
            ).rowcount
            self.conn.execute("DELETE FROM activity_dirty_days WHERE date < ?", (cutoff.isoformat(),))
            if deleted:
                bump_data_version(self.conn)
        return deleted

    def purge_audit_log(self) -> int:
        """Delete audit rows older than the audit retention."""
        cutoff = to_db_timestamp(self.clock() - dt.timedelta(days=self.policy.audit_days))
        return delete_in_batches(
            self.conn, "activity_audit_log", "created_at < ?", (cutoff,), self.policy.batch_size
        )

    def purge_job_runs(self) -> int:
        """Delete background job runs that started before the audit retention: the refresh alone
        adds a row every few minutes, and the history is the ops side of the audit log."""
        cutoff = to_db_timestamp(self.clock() - dt.timedelta(days=self.policy.audit_days))
        return delete_in_batches(
            self.conn, "activity_job_runs", "started_at < ?", (cutoff,), self.policy.batch_size
        )
