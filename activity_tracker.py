"""One user_activity_log row for every authenticated request.

The row is written synchronously right after the response is built: an
in-memory queue would be cheaper but would lose events when a worker dies or
the queue fills. It goes through the serving thread's long-lived append
connection (db.AppendConnections), where the insert stays compiled (see bench/).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time

from flask import Flask, Response, current_app, g, request

from db import APPEND_KEY, append_db
from timeutil import parse_db_timestamp, to_db_timestamp, utc_now

log = logging.getLogger(__name__)

# Health probes are polled by machines every few seconds; they are not usage.
HEALTH_PROBE_PATHS = ("/healthz", "/api/admin/activity/health")
# sessions.last_activity is moved at most this often: the log has every request's time,
# and a second write per request would cost as much as the event itself.
LAST_ACTIVITY_RESOLUTION = dt.timedelta(minutes=1)
INSERT_EVENT = """
INSERT INTO user_activity_log
    (session_id, user_id, timestamp, page_url, action_type,
     status_code, duration_ms, ip_address, user_agent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


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


def session_needs_touch(last_activity: str | None, now: dt.datetime) -> bool:
    """Tell whether a session's last_activity is older than the resolution we keep."""
    return last_activity is None or now - parse_db_timestamp(last_activity) >= LAST_ACTIVITY_RESOLUTION


def record_event(event: tuple, touch_session: str | None) -> None:
    """Insert one event (a single autocommit statement) and, when due, touch the session."""
    conn = append_db()
    try:
        conn.execute(INSERT_EVENT, event)
        if touch_session is not None:
            conn.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (event[2], touch_session))
    except sqlite3.Error:
        current_app.extensions[APPEND_KEY].discard()
        raise


def track_request(response: Response) -> Response:
    """Write the activity row for an authenticated, tracked request."""
    user = g.get("user")
    if user is None or not current_app.config["ACTIVITY_TRACKING_ENABLED"] or not is_tracked(request.path):
        return response
    started = g.get("activity_started", time.perf_counter())
    now = utc_now()
    touch_session = None
    if g.auth_method == "cookie" and session_needs_touch(g.get("session_last_activity"), now):
        touch_session = g.session_id
    event = (
        g.session_id,
        user["id"],
        to_db_timestamp(now),
        request.path,
        action_type_for(request.path, response),
        response.status_code,
        round((time.perf_counter() - started) * 1000, 3),
        request.remote_addr,
        request.headers.get("User-Agent", "")[:500],
    )
    try:
        record_event(event, touch_session)
    except sqlite3.Error:
        # The user's request already succeeded; failing it now would not bring the
        # row back. Log the whole event so it is never lost silently.
        log.exception("Could not record activity event %r", event)
    return response


def init_app(app: Flask) -> None:
    """Time every request and record the tracked ones."""
    app.before_request(start_timer)
    app.after_request(track_request)
