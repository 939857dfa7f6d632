"""What /health reports about each part of the monitor, and the /healthz liveness probe."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from flask import Blueprint, Flask, Response

from activity_monitor import performance_monitor, rate_limiting
from activity_monitor.db import open_db
from activity_monitor.extension import get_state, today
from activity_monitor.storage import Connection, DatabaseError
from activity_monitor.trends_cache import get_cache

# More days than this between yesterday and the newest summary means the daily job is not keeping up.
ALLOWED_DAYS_BEHIND = 1


def database_check(conn: Connection, current_day: dt.date) -> dict[str, Any]:
    """Measure a round trip and report how current the summaries are."""
    started = time.perf_counter()
    try:
        conn.execute("SELECT 1").fetchone()
        rows, latest = conn.execute(
            "SELECT COUNT(*), MAX(date) FROM activity_summary_daily WHERE is_partial = 0"
        ).fetchone()
        has_activity = conn.execute("SELECT 1 FROM user_activity_log LIMIT 1").fetchone() is not None
    except DatabaseError as exc:
        return {"status": "unhealthy", "error": f"The database did not answer: {exc}."}
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    yesterday = current_day - dt.timedelta(days=1)
    days_behind = (yesterday - dt.date.fromisoformat(latest)).days if latest else None
    status = "ok"
    if has_activity and (days_behind is None or days_behind > ALLOWED_DAYS_BEHIND):
        status = "degraded"
    return {
        "status": status,
        "backend": conn.dialect,
        "latency_ms": latency_ms,
        "summary_rows": rows,
        "latest_summarized_day": latest,
        "days_behind": days_behind,
    }


def cache_check(app: Flask) -> dict[str, Any]:
    """Report the cache backend, whether it answers, and its statistics."""
    health = get_cache(app).health()
    return {"status": "degraded" if health.get("degraded") else "ok", **health}


def scheduler_check(app: Flask) -> dict[str, Any]:
    """Report the background jobs, or that none run in this process."""
    manager = get_state(app).background
    if manager is None:
        return {
            "status": "ok",
            "running": False,
            "detail": "Background jobs are not running in this process.",
        }
    return manager.health()


def health_report(app: Flask, conn: Connection) -> dict[str, Any]:
    """Return the overall status and every check; unhealthy only when the database fails."""
    checks = {
        "database": database_check(conn, today(app)),
        "cache": cache_check(app),
        "rate_limiter": rate_limiting.limiter_health(app),
        "scheduler": scheduler_check(app),
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
