"""What /health reports about each part of the monitor, and the /healthz liveness probe."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from typing import Any

from flask import Blueprint, Flask, Response

from activity_monitor import background_tasks, event_spool, performance_monitor, rate_limiting
from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.db import open_db
from activity_monitor.extension import get_state, now, today
from activity_monitor.storage import Connection, DatabaseError
from activity_monitor.timeutil import local_day_bounds, local_today, parse_db_timestamp
from activity_monitor.trends_cache import get_cache

# More days than this between yesterday and the newest summary means the daily job is not keeping up.
ALLOWED_DAYS_BEHIND = 1
# Today's row, or a dirty day's wait, is stale past this many refresh intervals (one missed refresh
# is noise: a long job ahead of it, a leader handing over).
STALE_AFTER_REFRESHES = 2
# Gap days listed by date in /health (all are counted).
GAPS_LISTED = 10


# The health check's write waits at most this long for the write lock (a summary job's
# transaction may hold it for a moment), then reports the lock as held.
HEALTH_WRITE_TIMEOUT_MS = 1000


def write_probe(conn: Connection) -> tuple[str, bool] | None:
    """Commit a one-row update (activity_health_probe), waiting at most HEALTH_WRITE_TIMEOUT_MS for
    the write lock; return None when it committed, else why not and whether only the lock was busy."""
    try:
        with conn.storage.bounded_write(conn, HEALTH_WRITE_TIMEOUT_MS):
            conn.execute("UPDATE activity_health_probe SET writes = writes + 1 WHERE id = 1")
    except DatabaseError as exc:
        if conn.storage.is_lock_timeout(exc):
            return (
                "Another connection has held the database's write lock for over "
                f"{HEALTH_WRITE_TIMEOUT_MS} ms ({exc}); writes wait, and events go to the spool meanwhile",
                True,
            )
        return f"The database answers reads but does not take writes: {exc}", False
    return None


def database_check(conn: Connection, current_day: dt.date, app: Flask | None = None) -> dict[str, Any]:
    """Measure a round trip, commit a write, and report how current the summaries are: unhealthy
    when the database does not answer or does not take writes (read-only, full, its file gone),
    also when the app's last event or audit write failed and none has succeeded since; degraded
    while only its write lock is held."""
    started = time.perf_counter()
    try:
        conn.execute("SELECT 1").fetchone()
        # Bounded: a table locked for reads (PostgreSQL's ACCESS EXCLUSIVE) must not hang /health.
        with conn.storage.bounded_write(conn, HEALTH_WRITE_TIMEOUT_MS):
            rows, latest = conn.execute(
                "SELECT COUNT(*), MAX(date) FROM activity_summary_daily WHERE is_partial = 0"
            ).fetchone()
            has_activity = conn.execute("SELECT 1 FROM user_activity_log LIMIT 1").fetchone() is not None
    except DatabaseError as exc:
        storage = getattr(conn, "storage", None)
        if storage is not None and storage.is_lock_timeout(exc):
            return {
                "status": "degraded",
                "writable": False,
                "error": f"A lock held by another connection kept the check waiting over "
                f"{HEALTH_WRITE_TIMEOUT_MS} ms: {exc}.",
            }
        return {"status": "unhealthy", "writable": False, "error": f"The database did not answer: {exc}."}
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    write_problem = write_probe(conn)
    if write_problem is None and app is not None:
        # Health recovers with the database, not only with the next tracked write or replay.
        event_spool.confirm_writes(app, conn, HEALTH_WRITE_TIMEOUT_MS)
    failure = event_spool.current_failure(app) if app is not None else None
    if write_problem is None and failure is not None:
        waited = " waiting for a lock" if failure.lock_timeout else ""
        write_problem = (
            f"The last event or audit write, at {failure.at}, failed{waited}: {failure.error}; rows go "
            "to the spool until a write succeeds",
            failure.lock_timeout,
        )
    yesterday = current_day - dt.timedelta(days=1)
    days_behind = (yesterday - dt.date.fromisoformat(latest)).days if latest else None
    status = "ok"
    if has_activity and (days_behind is None or days_behind > ALLOWED_DAYS_BEHIND):
        status = "degraded"
    report = {
        "status": status,
        "backend": conn.dialect,
        "latency_ms": latency_ms,
        "writable": write_problem is None,
        "summary_rows": rows,
        "latest_summarized_day": latest,
        "days_behind": days_behind,
    }
    if write_problem is not None:
        sentence, lock_only = write_problem
        # A held lock passes (the rows wait in the spool); a database refusing writes is down for them.
        report["status"] = "degraded" if lock_only else "unhealthy"
        report["error"] = sentence + "."
    return report


def spool_check(app: Flask) -> dict[str, Any]:
    """Report the event spool's counters: degraded while rows wait in it or some were dropped."""
    return event_spool.health(app)


def cache_check(app: Flask) -> dict[str, Any]:
    """Report the cache backend, whether it answers, and its statistics."""
    health = get_cache(app).health()
    return {"status": "degraded" if health.get("degraded") else "ok", **health}


def freshness_check(app: Flask, conn: Connection) -> dict[str, Any]:
    """Report how current the summaries are: today's partial row, the dirty backlog, and the days
    inside the summarized span that have raw events but no row (gaps), by the app's clock.

    Gaps always make it degraded. A stale today or a long-waiting dirty day does only where
    background jobs are expected (ACTIVITY_BACKGROUND_TASKS on): an install driven by the CLI
    refreshes when its cron says, so there the ages are reported and judged by whoever runs it.
    """
    current = now(app)
    tz_name = app.config["ACTIVITY_TIMEZONE"]
    refresh_seconds = app.config["ACTIVITY_REFRESH_SECONDS"]
    stale_after = STALE_AFTER_REFRESHES * refresh_seconds
    expected = bool(app.config["ACTIVITY_BACKGROUND_TASKS"])
    current_day = local_today(tz_name, current)
    processor = DailySummaryProcessor(
        conn,
        tz_name,
        app.config["ACTIVITY_IDLE_MINUTES"],
        lambda: current,
        session_idle_minutes=app.config["ACTIVITY_SESSION_IDLE_MINUTES"],
    )
    try:
        # Bounded like the database check's reads: a locked table must not hang /health.
        with conn.storage.bounded_write(conn, HEALTH_WRITE_TIMEOUT_MS):
            today_row = conn.execute(
                "SELECT computed_at FROM activity_summary_daily WHERE date = ?", (current_day.isoformat(),)
            ).fetchone()
            dirty_count, oldest_dirty, first_marked, database_now = conn.execute(
                f"SELECT COUNT(*), MIN(date), MIN(marked_at), {conn.storage.current_time_text()}"
                " FROM activity_dirty_days"
            ).fetchone()
            gaps = processor.gap_days()
    except DatabaseError as exc:
        return {"status": "degraded", "error": f"The freshness of the summaries could not be read: {exc}."}

    computed_at = parse_db_timestamp(today_row[0]) if today_row and today_row[0] else None
    age = seconds_between(computed_at, current) if computed_at else None
    if today_row is None:
        # Just after midnight the new day has no row until the next refresh: give it the same grace.
        since_midnight = seconds_between(local_day_bounds(current_day, tz_name)[0], current)
        today_stale = since_midnight > stale_after
    else:
        today_stale = age is None or age > stale_after
    # marked_at is stamped by the database's own clock (the late-data triggers), so the wait is
    # measured on that clock too: the app's may be another machine's, or a test's.
    longest_wait = (
        seconds_between(parse_db_timestamp(first_marked), parse_db_timestamp(database_now))
        if first_marked
        else None
    )
    reasons = []
    if expected and today_stale:
        reasons.append(
            f"Today's row is older than {stale_after} s (twice ACTIVITY_REFRESH_SECONDS): "
            "the refresh is not keeping up."
        )
    if expected and longest_wait is not None and longest_wait > stale_after:
        reasons.append(f"A dirty day has waited more than {stale_after} s for its recomputation.")
    if gaps:
        reasons.append(f"{len(gaps)} day(s) inside the summarized span have raw events but no summary row.")
    return {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "refresh_seconds": refresh_seconds,
        "stale_after_seconds": stale_after,
        "background_jobs_expected": expected,
        "today": {
            "date": current_day.isoformat(),
            "computed_at": computed_at.isoformat() if computed_at else None,
            "age_seconds": age,
            "stale": today_stale,
        },
        "dirty_days": {
            "count": dirty_count,
            "oldest_date": oldest_dirty,
            "longest_wait_seconds": longest_wait,
        },
        "gaps": {"count": len(gaps), "days": [day.isoformat() for day in gaps[:GAPS_LISTED]]},
    }


def seconds_between(earlier: dt.datetime, later: dt.datetime) -> float:
    """Return the seconds from one instant to a later one, never negative (two clocks may disagree)."""
    return round(max(0.0, (later - earlier).total_seconds()), 1)


def scheduler_check(app: Flask, conn: Connection) -> dict[str, Any]:
    """Report this process's role and jobs, and the leader's runs of every job from the shared
    history, so any worker (a follower, or one running no jobs) tells what the leader did."""
    manager = get_state(app).background
    if manager is None:
        check: dict[str, Any] = {
            "status": "ok",
            "running": False,
            "leader": False,
            "role": "none",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "detail": "Background jobs are not running in this process; the history shows the leader's runs.",
        }
    else:
        check = manager.health()
    try:
        with conn.storage.bounded_write(conn, HEALTH_WRITE_TIMEOUT_MS):
            history = background_tasks.job_history(conn)
    except DatabaseError as exc:
        check["history"] = None
        check["history_error"] = f"The job history could not be read: {exc}."
        return check
    check["history"] = history
    failed = [name for name, runs in history.items() if (runs["last_run"] or {}).get("status") == "failed"]
    check["failed_jobs"] = failed
    if failed:
        check["status"] = "degraded"
    return check


def health_report(app: Flask, conn: Connection) -> dict[str, Any]:
    """Return the overall status and every check; unhealthy only when the database fails."""
    checks = {
        "database": database_check(conn, today(app), app),
        "event_spool": spool_check(app),
        "cache": cache_check(app),
        "rate_limiter": rate_limiting.limiter_health(app),
        "freshness": freshness_check(app, conn),
        "scheduler": scheduler_check(app, conn),
        "performance": performance_monitor.get_monitor(app).snapshot(),
    }
    statuses = {check.get("status") for check in checks.values() if isinstance(check.get("status"), str)}
    if "unhealthy" in statuses:
        overall = "unhealthy"
    elif "degraded" in statuses:
        overall = "degraded"
    else:
        overall = "healthy"
    return {"status": overall, "checks": checks}


def healthz() -> Response:
    """Liveness for load balancers: 200 'ok' when the database answers, else 503; nothing more."""
    try:
        conn = open_db()
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
    except DatabaseError:
        return Response("unavailable\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")


def init_app(app: Flask) -> None:
    """Register the liveness probe at ACTIVITY_HEALTHZ_PATH, unless the host already serves that path."""
    path = app.config["ACTIVITY_HEALTHZ_PATH"]
    if path is None:
        return
    if any(rule.rule == path for rule in app.url_map.iter_rules()):
        app.logger.warning("The app already serves %s; the monitor's liveness probe is not registered.", path)
        app.config["ACTIVITY_HEALTHZ_PATH"] = None
        return
    # One blueprint per app: its rule's path comes from that app's config.
    blueprint = Blueprint("activity_liveness", __name__)
    blueprint.add_url_rule(path, "healthz", healthz, methods=["GET"])
    app.register_blueprint(blueprint)
