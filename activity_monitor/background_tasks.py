"""Background jobs on a private ``schedule.Scheduler``, run by one leader among all workers.

Jobs: the daily summaries (then cache warming), the refresh of today's row and
every dirty day every ACTIVITY_REFRESH_SECONDS, hourly cache warming, cache
cleanup every 15 minutes, and the weekly retention purge. Every job is wrapped
so an exception is logged, counted and the job still gets its next run, and
every run is recorded in ``activity_job_runs``, which /health reads whichever
worker answers.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import schedule
from flask import Flask

from activity_monitor import event_spool
from activity_monitor.activity_trends_service import ActivityTrendsService
from activity_monitor.cache_warmer import CacheWarmer
from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.db import open_db
from activity_monitor.extension import get_state, now, today
from activity_monitor.leader_lock import LeaderLock, lock_for_config
from activity_monitor.retention import RetentionPolicy, RetentionPurge
from activity_monitor.storage import Connection
from activity_monitor.timeutil import parse_db_timestamp, to_db_timestamp
from activity_monitor.trends_cache import get_cache

log = logging.getLogger(__name__)

# Every job the leader runs, as activity_job_runs names them.
JOB_NAMES = (
    "startup_catch_up",
    "daily_summaries",
    "refresh",
    "cache_warming",
    "cache_cleanup",
    "log_cleanup",
)
# What the history tells of one run, in the order of the SELECT below.
RUN_COLUMNS = ("started_at", "finished_at", "status", "duration_ms", "error", "host", "pid")


@dataclass
class JobState:
    """What /health shows about one job."""

    name: str
    job: schedule.Job | None = None
    last_run: str | None = None
    last_duration_ms: float | None = None
    last_status: str | None = None
    last_error: str | None = None
    run_count: int = 0
    failure_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the state with the next run as ISO text."""
        next_run = None
        if self.job is not None and self.job.next_run is not None:
            # schedule keeps naive local times; say which instant that is.
            next_run = self.job.next_run.astimezone().isoformat()
        return {
            "last_run": self.last_run,
            "last_duration_ms": self.last_duration_ms,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "next_run": next_run,
            "run_count": self.run_count,
            "failure_count": self.failure_count,
        }


class BackgroundTaskManager:
    """Runs the jobs in a daemon thread while this process holds the leader lock."""

    def __init__(self, app: Flask, lock: LeaderLock | None = None):
        self.app = app
        self.config = app.config
        state = get_state(app)
        self.lock = lock or lock_for_config(app.config, state.database, state.redis_prefix)
        self.scheduler = schedule.Scheduler()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.is_leader = False
        self.caught_up = False
        self.jobs: dict[str, JobState] = {}
        self.run_lock = threading.Lock()
        self.schedule_jobs()

    # --- the jobs ---------------------------------------------------------------

    def schedule_jobs(self) -> None:
        """Put every job on the private scheduler (times are local to ACTIVITY_TIMEZONE)."""
        tz = self.config["ACTIVITY_TIMEZONE"]
        every = self.scheduler.every
        self.add(
            "daily_summaries",
            every().day.at(self.config["ACTIVITY_DAILY_SUMMARY_AT"], tz),
            self.daily_summaries,
        )
        self.add("refresh", every(self.config["ACTIVITY_REFRESH_SECONDS"]).seconds, self.refresh)
        self.add("cache_warming", every(self.config["ACTIVITY_CACHE_WARM_MINUTES"]).minutes, self.warm_cache)
        self.add(
            "cache_cleanup", every(self.config["ACTIVITY_CACHE_CLEANUP_MINUTES"]).minutes, self.cleanup_cache
        )
        self.add(
            "log_cleanup", every().sunday.at(self.config["ACTIVITY_LOG_CLEANUP_AT"], tz), self.purge_logs
        )

    def add(self, name: str, job: schedule.Job, work: Callable[[], Any]) -> None:
        """Register a job whose every run goes through :meth:`run_job`."""
        state = JobState(name)
        state.job = job.do(self.run_job, name, work)
        self.jobs[name] = state

    def daily_summaries(self) -> dict[str, Any]:
        """Summarize yesterday in full, then every missing or dirty day; then warm the cache."""
        with DailySummaryProcessor.from_app(self.app, clock=lambda: now(self.app)) as processor:
            yesterday = processor.today() - dt.timedelta(days=1)
            first = processor.summarize_day(yesterday)
            rest = processor.process_missing_days()
        return {"yesterday": first.as_dict(), "missing": rest.as_dict(), "cache": self.warm_cache()}

    def refresh(self) -> dict[str, Any]:
        """Replay the event spool, then recompute today's partial row, every earlier row still
        partial (a day that ended since the last refresh: no late-data trigger watches it), every
        dirty day, and every day inside the summarized span that has raw events but no row; report
        the days written, those whose row changed, and what the replay did.

        Only a changed row moves the data version (``_store`` compares the columns, not computed_at),
        so a refresh with no new event leaves every cached answer valid.
        """
        # First, so the replayed events count in today's row (or mark their past day dirty) now.
        try:
            spool = event_spool.replay_pending(self.app)
        except Exception as exc:
            # The spool reports its own trouble in /health; today's numbers must not go stale over it.
            log.exception("The refresh could not replay the event spool")
            spool = {"error": f"{type(exc).__name__}: {exc}"}
        with DailySummaryProcessor.from_app(self.app, clock=lambda: now(self.app)) as processor:
            current = processor.today()
            due = {
                current,
                *processor.ended_partial_days(current),
                *processor.dirty_days(current),
                *processor.gap_days(),
            }
            # A row dated after today (a clock set back) cannot be recomputed yet.
            report = processor.process_days(sorted(day for day in due if day <= current))
        return {
            **report.as_dict(),
            "changed": [result.date.isoformat() for result in report.days if result.changed],
            "spool": spool,
        }

    def warm_cache(self) -> dict[str, Any]:
        """Compute the preset ranges into the cache."""
        conn = open_db(self.app)
        try:
            cache = get_cache(self.app)
            warmer = CacheWarmer(
                lambda: ActivityTrendsService(
                    conn,
                    self.config["ACTIVITY_TIMEZONE"],
                    cache=cache,
                    cache_ttl=self.config["ACTIVITY_CACHE_TTL"],
                ),
                lambda: today(self.app),
            )
            return warmer.warm()
        finally:
            conn.close()

    def cleanup_cache(self) -> dict[str, Any]:
        """Drop expired cache entries."""
        return {"expired_removed": get_cache(self.app).cleanup_expired()}

    def purge_logs(self) -> dict[str, Any]:
        """Apply the retention policy: raw activity, summaries, audit log."""
        conn = open_db(self.app)
        try:
            policy = RetentionPolicy.from_config(self.config)
            return RetentionPurge(conn, policy, clock=lambda: now(self.app)).purge().as_dict()
        finally:
            conn.close()

    def catch_up(self) -> dict[str, Any]:
        """Process missing and dirty days, refresh (so today is current before the first refresh falls
        due), then warm the cache; run when this process becomes leader."""
        with DailySummaryProcessor.from_app(self.app, clock=lambda: now(self.app)) as processor:
            report = processor.process_missing_days()
        return {"missing": report.as_dict(), "refresh": self.refresh(), "cache": self.warm_cache()}

    # --- running ------------------------------------------------------------------

    def run_job(self, name: str, work: Callable[[], Any]) -> Any:
        """Run one job, record its outcome, and never let an exception reach ``schedule``
        (which would leave the job due and run it again in a hot loop)."""
        state = self.jobs.setdefault(name, JobState(name))
        with self.run_lock:
            # The app's clock, like the scheduler's (the system clock unless a test moves both):
            # skip_runs_made_elsewhere compares these times with the jobs' next runs.
            started_at = now(self.app)
            started = time.perf_counter()
            run_id = self.record_start(name, started_at)
            error = None
            result = None
            try:
                with self.lock_renewed_meanwhile():
                    result = work()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.error("Background job %s failed:\n%s", name, traceback.format_exc())
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            state.last_run = started_at.isoformat()
            state.last_duration_ms = duration_ms
            state.last_status = "failed" if error else "ok"
            state.last_error = error
            state.run_count += 1
            state.failure_count += int(error is not None)
            self.record_finish(run_id, duration_ms, error)
            if error is None:
                log.info("Background job %s finished in %.0f ms", name, duration_ms)
        return result

    def record_start(self, name: str, started_at: dt.datetime) -> int | None:
        """Write the job's history row; a database problem must not stop the job itself."""
        try:
            conn = open_db(self.app)
            try:
                row = conn.execute(
                    """
                    INSERT INTO activity_job_runs (job, started_at, status, host, pid)
                    VALUES (?, ?, 'running', ?, ?)
                    RETURNING id
                    """,
                    (name, to_db_timestamp(started_at), socket.gethostname(), os.getpid()),
                ).fetchone()
                return int(row[0])
            finally:
                conn.close()
        except Exception:
            log.exception("Could not record the start of job %s", name)
            return None

    def record_finish(self, run_id: int | None, duration_ms: float, error: str | None) -> None:
        """Complete the job's history row."""
        if run_id is None:
            return
        try:
            conn = open_db(self.app)
            try:
                conn.execute(
                    """
                    UPDATE activity_job_runs
                    SET finished_at = ?, duration_ms = ?, status = ?, error = ?
                    WHERE id = ?
                    """,
                    (to_db_timestamp(now(self.app)), duration_ms, "failed" if error else "ok", error, run_id),
                )
            finally:
                conn.close()
        except Exception:
            log.exception("Could not record the end of job run %s", run_id)

    @contextmanager
    def lock_renewed_meanwhile(self) -> Iterator[None]:
        """Renew the leader lock every third of its TTL while a job runs: ticks (which renew it)
        wait for the job, and a Redis lock expiring mid-job would let a second leader start."""
        done = threading.Event()
        interval = self.config["ACTIVITY_LEADER_LOCK_TTL"] / 3

        def renew() -> None:
            while not done.wait(interval) and self.lock.renew():
                pass

        renewer = threading.Thread(target=renew, name="activity-leader-renewal", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def skip_runs_made_elsewhere(self) -> None:
        """On becoming leader, move past the runs that fell due while this process followed and
        that a leader finished meanwhile (per activity_job_runs), so a takeover never repeats them;
        a due run nobody finished (its leader died first) stays due and runs now."""
        for name, state in self.jobs.items():
            job = state.job
            if job is None or job.next_run is None or not job.should_run:
                continue
            # schedule keeps naive local times.
            if self.finished_since(name, job.next_run.astimezone(dt.UTC)):
                job._schedule_next_run()  # schedule (pinned 1.2) has no public way to skip a run

    def finished_since(self, name: str, moment: dt.datetime) -> bool:
        """Tell whether a run of the job that started at ``moment`` or later has finished
        (False when the history cannot be read, so the job runs rather than being lost)."""
        try:
            conn = open_db(self.app)
            try:
                row = conn.execute(
                    """
                    SELECT 1
                    FROM activity_job_runs
                    WHERE job = ?
                      AND started_at >= ?
                      AND finished_at IS NOT NULL
                    LIMIT 1
                    """,
                    (name, to_db_timestamp(moment)),
                ).fetchone()
            finally:
                conn.close()
        except Exception:
            log.exception("Could not read the run history of job %s", name)
            return False
        return row is not None

    def tick(self) -> None:
        """One turn of the loop: keep or seek leadership, catch up once, run due jobs."""
        if self.is_leader:
            self.is_leader = self.lock.renew()
            if not self.is_leader:
                log.warning("Lost the leader lock; background jobs stop in this process.")
        elif self.lock.acquire():
            self.is_leader = True
            self.caught_up = False
            log.info("This process (pid %s) now runs the background jobs.", os.getpid())
            self.skip_runs_made_elsewhere()
        if not self.is_leader:
            return
        if not self.caught_up:
            self.caught_up = True
            self.run_job("startup_catch_up", self.catch_up)
        self.scheduler.run_pending()

    def loop(self) -> None:
        """Tick until stopped, waiting on the stop event so stop() takes effect at once."""
        interval = self.config["ACTIVITY_SCHEDULER_TICK_SECONDS"]
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("Background scheduler tick failed")
            self.stop_event.wait(interval)

    def start(self) -> None:
        """Start the daemon thread (once) and arrange for stop() at interpreter exit."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.stop_event.clear()
        self.thread = threading.Thread(target=self.loop, name="activity-background-tasks", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the thread and release the lock; return whether the thread ended within the timeout.

        A job in the middle of running finishes its current day first (each day is one transaction).
        """
        self.stop_event.set()
        stopped = True
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            stopped = not self.thread.is_alive()
        if stopped or self.thread is None:
            self.lock.release()
            self.is_leader = False
        return stopped

    def health(self) -> dict[str, Any]:
        """Return this process's role, the lock and every job's state."""
        running = self.thread is not None and self.thread.is_alive()
        failed = any(state.last_status == "failed" for state in self.jobs.values())
        lock = self.lock.describe()
        status = "degraded" if (not running or failed or not lock.get("reachable", True)) else "ok"
        return {
            "status": status,
            "running": running,
            "leader": self.is_leader,
            "role": "leader" if self.is_leader else "follower",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "lock": lock,
            "jobs": {name: state.as_dict() for name, state in self.jobs.items()},
        }


def job_history(conn: Connection) -> dict[str, dict[str, Any]]:
    """Return, per job of JOB_NAMES, its last run and its last successful run as activity_job_runs
    holds them (whichever process or host ran them); None for a job with no such run.

    Two index lookups per job on (job, started_at), however long the history grows.
    """
    columns = ", ".join(RUN_COLUMNS)
    history = {}
    for name in JOB_NAMES:
        last = conn.execute(
            f"""
            SELECT {columns}
            FROM activity_job_runs
            WHERE job = ?
            ORDER BY started_at DESC, id DESC
            LIMIT 1
            """,
            (name,),
        ).fetchone()
        last_ok = last
        if last is not None and last[2] != "ok":
            last_ok = conn.execute(
                f"""
                SELECT {columns}
                FROM activity_job_runs
                WHERE job = ?
                  AND status = 'ok'
                ORDER BY started_at DESC, id DESC
                LIMIT 1
                """,
                (name,),
            ).fetchone()
        history[name] = {"last_run": run_as_dict(last), "last_ok": run_as_dict(last_ok)}
    return history


def run_as_dict(row: Any) -> dict[str, Any] | None:
    """Return one history row with its times as ISO text (UTC), or None for no row."""
    if row is None:
        return None
    run = dict(zip(RUN_COLUMNS, tuple(row), strict=True))
    for column in ("started_at", "finished_at"):
        if run[column]:
            run[column] = parse_db_timestamp(run[column]).isoformat()
    return run


def should_start_here() -> bool:
    """Tell whether this process serves requests: never in a CLI command other than ``flask run``."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.info_name == "run"


def init_app(app: Flask) -> BackgroundTaskManager | None:
    """Start the manager when ACTIVITY_BACKGROUND_TASKS is on and this process serves requests."""
    if not app.config["ACTIVITY_BACKGROUND_TASKS"] or not should_start_here():
        return None
    manager = BackgroundTaskManager(app)
    manager.start()
    return manager
