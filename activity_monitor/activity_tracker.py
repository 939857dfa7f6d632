"""One user_activity_log row for every authenticated request.

The row is written synchronously right after the response is built: an
in-memory queue would be cheaper but would lose events when a worker dies or
the queue fills. It goes through the request's connection (db.get_db): on SQLite
the serving thread's long-lived one, where the insert stays compiled; on PostgreSQL
one borrowed from the process's pool, where the server keeps the prepared insert.

The insert waits at most ACTIVITY_TRACKING_WRITE_TIMEOUT_MS for the database (for a pooled
connection, then for its lock); an
event it does not take (locked, full, read-only, gone) goes to the event spool
(event_spool.py) and is replayed from there, so it is neither lost nor holds the request.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request

from activity_monitor import event_spool
from activity_monitor.db import get_db
from activity_monitor.event_import import EVENT_COLUMNS
from activity_monitor.extension import now
from activity_monitor.identity import current_identity
from activity_monitor.storage import Connection, DatabaseError
from activity_monitor.timeutil import to_db_timestamp

log = logging.getLogger(__name__)

INSERT_EVENT = f"""
INSERT INTO user_activity_log ({", ".join(EVENT_COLUMNS)})
VALUES ({", ".join("?" * len(EVENT_COLUMNS))})
"""
# A spooled event carries its spool entry's key: replayed twice, it lands once.
INSERT_SPOOLED_EVENT = f"""
INSERT INTO user_activity_log ({", ".join(EVENT_COLUMNS)}, spool_key)
VALUES ({", ".join("?" * (len(EVENT_COLUMNS) + 1))})
ON CONFLICT DO NOTHING
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


def untracked_paths(config: dict) -> tuple[str, ...]:
    """Return the exact paths never tracked: the health probes, polled by machines, are not usage."""
    paths = [config["ACTIVITY_API_PREFIX"] + "/health"]
    if config["ACTIVITY_HEALTHZ_PATH"]:
        paths.append(config["ACTIVITY_HEALTHZ_PATH"])
    return tuple(paths)


def is_tracked(path: str) -> bool:
    """Tell whether a request path is usage worth recording."""
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static") or path.startswith("/static/"):
        return False
    config = current_app.config
    if path in untracked_paths(config):
        return False
    excluded = config["ACTIVITY_TRACKING_EXCLUDE_PATHS"]
    return not any(path.startswith(prefix) for prefix in excluded)


def record_event(event: tuple) -> None:
    """Insert one event, waiting at most ACTIVITY_TRACKING_WRITE_TIMEOUT_MS for the database; an
    event it does not take goes to the spool."""
    timeout_ms = current_app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"]
    try:
        # The bound covers taking the connection too: a PostgreSQL pool that is exhausted, or
        # cannot reach its server, would otherwise hold the request for its own 10 s.
        conn = get_db(timeout_ms)
        conn.storage.insert_bounded(conn, INSERT_EVENT, event, timeout_ms)
    except DatabaseError as exc:
        # The connection stays: bounded_write ended its transaction, a locked or full database
        # does not break it, and a vanished SQLite file or a closed PostgreSQL connection is
        # noticed when the next request asks for it.
        event_spool.spool("event", dict(zip(EVENT_COLUMNS, event, strict=True)), exc)
        return
    event_spool.note_written()


def write_spooled(conn: Connection, events: list[tuple[str, dict]]) -> int:
    """Insert spooled events given as (key, row) pairs, skipping keys already written; return how
    many rows were new."""
    cursor = conn.executemany(
        INSERT_SPOOLED_EVENT,
        [tuple(row[column] for column in EVENT_COLUMNS) + (key,) for key, row in events],
    )
    return max(cursor.rowcount, 0)


def track_request(response: Response) -> Response:
    """Write the activity row for an authenticated, tracked request."""
    if not current_app.config["ACTIVITY_TRACKING_ENABLED"] or not is_tracked(request.path):
        return response
    try:
        identity = current_identity()
    except Exception:
        # The host's loader failed; the user's request has its answer already.
        log.exception("The identity_loader failed on %s; the request is not tracked.", request.path)
        return response
    if identity is None:
        return response
    started = g.get("activity_started", time.perf_counter())
    event = (
        # An empty session id means the host has none: sessions are derived from gaps.
        identity.session_key or "",
        identity.stored_user_id,
        identity.role,
        to_db_timestamp(now()),
        request.path,
        action_type_for(request.path, response),
        response.status_code,
        round((time.perf_counter() - started) * 1000, 3),
        request.remote_addr,
        request.headers.get("User-Agent", "")[:500],
    )
    # The user's request already succeeded; a failed write must not fail it now, nor hold
    # it: the event waits in the spool instead.
    record_event(event)
    return response


def init_app(app: Flask) -> None:
    """Time every request of the app and record the tracked ones."""
    event_spool.init_app(app)
    app.before_request(start_timer)
    app.after_request(track_request)
