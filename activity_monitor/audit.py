"""Rows in activity_audit_log: who did what, from where, with details as JSON.

Each row is also sent as the blinker signal :data:`audit_recorded`, so a host can
copy it into an audit log of its own::

    @audit_recorded.connect_via(app)
    def copy(sender, **row): ...
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from blinker import Namespace
from flask import current_app

from activity_monitor.extension import now
from activity_monitor.storage import Connection
from activity_monitor.timeutil import to_db_timestamp

UNAUTHORIZED_ACCESS_ATTEMPT = "UNAUTHORIZED_ACCESS_ATTEMPT"
signals = Namespace()
# Sent by the app after each audit row is written, with the row's fields (id, action, user_id,
# ip_address, details, created_at) as keyword arguments.
audit_recorded = signals.signal("activity-monitor-audit-recorded")


def record(
    conn: Connection,
    action: str,
    *,
    user_id: int | str | None,
    ip_address: str | None,
    details: dict[str, Any] | None = None,
) -> int:
    """Write one audit row at the app's clock, then send it as the audit_recorded signal;
    returns the row's id."""
    created_at = to_db_timestamp(now())
    row_id = int(
        conn.execute(
            "INSERT INTO activity_audit_log (user_id, action, details, ip_address, created_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (user_id, action, json.dumps(details or {}, sort_keys=True), ip_address, created_at),
        ).fetchone()[0]
    )
    send_recorded(
        id=row_id,
        action=action,
        user_id=user_id,
        ip_address=ip_address,
        details=details or {},
        created_at=created_at,
    )
    return row_id


def send_recorded(**row: Any) -> None:
    """Deliver a written row to every audit_recorded receiver of the app, each on its own."""
    if not audit_recorded.receivers:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for receiver in audit_recorded.receivers_for(app):
        try:
            receiver(app, **row)
        except Exception:
            # The row is written; a host's receiver failing must neither fail the request
            # nor keep the row from the receivers after it.
            current_app.logger.exception(
                "The audit_recorded receiver %r failed for %s", receiver, row["action"]
            )


def record_unauthorized_attempt(
    conn: Connection,
    *,
    user_id: int | str | None,
    ip_address: str | None,
    endpoint: str,
    method: str,
) -> bool:
    """Write an UNAUTHORIZED_ACCESS_ATTEMPT row unless one exists for this user and endpoint
    in the last minute, so a script hammering a forbidden URL cannot flood the log.

    Returns whether a row was written.
    """
    since = to_db_timestamp(now() - dt.timedelta(minutes=1))
    recent = conn.execute(
        f"""
        SELECT 1 FROM activity_audit_log
        WHERE action = ?
          AND created_at >= ?
          AND user_id IS NOT DISTINCT FROM ?
          AND {conn.storage.json_text("details", "endpoint")} = ?
        LIMIT 1
        """,
        (UNAUTHORIZED_ACCESS_ATTEMPT, since, user_id, endpoint),
    ).fetchone()
    if recent:
        return False
    record(
        conn,
        UNAUTHORIZED_ACCESS_ATTEMPT,
        user_id=user_id,
        ip_address=ip_address,
        details={"endpoint": endpoint, "method": method},
    )
    return True
