"""One user_activity_log row for every authenticated request.

The row is written synchronously, in the request's own connection, right after
the response is built: an in-memory queue would be cheaper but would lose events
when a worker dies or the queue fills, and SQLite in WAL mode with
synchronous=NORMAL makes one small insert cheap enough (see bench/).
"""

from __future__ import annotations

import logging
import sqlite3
import time

from flask import Flask, Response, current_app, g, request

from db import get_db, transaction
from timeutil import to_db_timestamp, utc_now

log = logging.getLogger(__name__)

# Health probes are polled by machines every few seconds; they are not usage.
HEALTH_PROBE_PATHS = ("/healthz", "/api/admin/activity/health")


def start_timer() -> None:
    """Remember when the request began."""
    g.activity_started = time.perf_counter()


def action_type_for(path: str, response: Response) -> str:
    """Classify a request: a download, an API call or a page view."""
    if response.headers.get("Content-Disposition", "").lower().startswith("attachment"):
        return "file_download"
    if path.startswith("/api/"):
        return "api_call"
    return "page_view"


def is_tracked(path: str) -> bool:
    """Tell whether a request path is usage worth recording."""
    if request.endpoint == "static" or path.startswith("/static/"):
        return False
    if path in HEALTH_PROBE_PATHS:
        return False
    excluded = current_app.config["ACTIVITY_TRACKING_EXCLUDE_PATHS"]
    return not any(path.startswith(prefix) for prefix in excluded)


def record_event(conn: sqlite3.Connection, event: tuple, session_id: str, cookie_session: bool) -> None:
    """Insert one event and touch the session's last_activity, in one transaction."""
    with transaction(conn):
        conn.execute(
            """
            INSERT INTO user_activity_log
                (session_id, user_id, timestamp, page_url, action_type,
                 status_code, duration_ms, ip_address, user_agent)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            event,
        )
        if cookie_session:
            conn.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (event[2], session_id))


def track_request(response: Response) -> Response:
    """Write the activity row for an authenticated, tracked request."""
    user = g.get("user")
    if user is None or not current_app.config["ACTIVITY_TRACKING_ENABLED"] or not is_tracked(request.path):
        return response
    started = g.get("activity_started", time.perf_counter())
    event = (
        g.session_id,
        user["id"],
        to_db_timestamp(utc_now()),
        request.path,
        action_type_for(request.path, response),
        response.status_code,
        round((time.perf_counter() - started) * 1000, 3),
        request.remote_addr,
        request.user_agent.string[:500],
    )
    try:
        record_event(get_db(), event, g.session_id, g.auth_method == "cookie")
    except sqlite3.Error:
        # The user's request already succeeded; failing it now would not bring the
        # row back. Log the whole event so it is never lost silently.
        log.exception("Could not record activity event %r", event)
    return response


def init_app(app: Flask) -> None:
    """Time every request and record the tracked ones."""
    app.before_request(start_timer)
    app.after_request(track_request)
