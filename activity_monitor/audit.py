"""Rows in activity_audit_log: who did what, from where, with details as JSON.

Each row is also sent as the blinker signal :data:`audit_recorded`, so a host can
copy it into an audit log of its own::

    @audit_recorded.connect_via(app)
    def copy(sender, **row): ...

A row the database does not take within ACTIVITY_TRACKING_WRITE_TIMEOUT_MS goes to the
event spool (event_spool.py), so a failed audit write never fails the request that made
it; the spool replays it exactly once, and the signal is sent when the row is written,
on replay too (then with the id it got).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from blinker import Namespace
from flask import current_app

from activity_monitor import event_spool
from activity_monitor.extension import now
from activity_monitor.storage import Connection, DatabaseError
from activity_monitor.timeutil import to_db_timestamp

log = logging.getLogger(__name__)

UNAUTHORIZED_ACCESS_ATTEMPT = "UNAUTHORIZED_ACCESS_ATTEMPT"
signals = Namespace()
# Sent by the app after each audit row is written, with the row's fields (id, action, user_id,
# ip_address, details, created_at) as keyword arguments; for a spooled row, when its replay writes it.
audit_recorded = signals.signal("activity-monitor-audit-recorded")

AUDIT_COLUMNS = ("user_id", "action", "details", "ip_address", "created_at")
INSERT_AUDIT = (
    f"INSERT INTO activity_audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES (?, ?, ?, ?, ?) RETURNING id"
)
# A spooled row carries its spool entry's key: replayed twice, it lands (and is announced) once.
INSERT_SPOOLED_AUDIT = (
    f"INSERT INTO activity_audit_log ({', '.join(AUDIT_COLUMNS)}, spool_key) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING id"
)


def record(
    conn: Connection,
    action: str,
    *,
    user_id: int | str | None,
    ip_address: str | None,
    details: dict[str, Any] | None = None,
) -> int | None:
    """Write one audit row at the app's clock, then send it as the audit_recorded signal; return
    the row's id, or None when the database did not take it and the row went to the spool."""
    row = {
        "user_id": user_id,
        "action": action,
        "details": json.dumps(details or {}, sort_keys=True),
        "ip_address": ip_address,
        "created_at": to_db_timestamp(now()),
    }
    try:
        with conn.storage.bounded_write(conn, current_app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"]):
            row_id = int(conn.execute(INSERT_AUDIT, [row[c] for c in AUDIT_COLUMNS]).fetchone()[0])
    except DatabaseError as exc:
        event_spool.spool("audit", row, exc)
        return None
    event_spool.note_written()
    announce(row_id, row)
    return row_id


def write_spooled(conn: Connection, key: str, row: dict[str, Any]) -> int:
    """Insert a spooled audit row unless its key is written already, announcing it when new;
    return 1 when it was new, else 0."""
    written = conn.execute(INSERT_SPOOLED_AUDIT, [row[c] for c in AUDIT_COLUMNS] + [key]).fetchone()
    if written is None:
        return 0
    announce(int(written[0]), row)
    return 1


def announce(row_id: int, row: dict[str, Any]) -> None:
    """Send a written row as the audit_recorded signal."""
    send_recorded(
        id=row_id,
        action=row["action"],
        user_id=row["user_id"],
        ip_address=row["ip_address"],
        details=json.loads(row["details"]),
        created_at=row["created_at"],
    )


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

    Returns whether a row was recorded (written, or spooled to be written on replay).
    """
    since = to_db_timestamp(now() - dt.timedelta(minutes=1))
    try:
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
    except DatabaseError as exc:
        # Better a second row within the minute than none: record() spools it if need be.
        log.warning("Could not look for a recent unauthorized attempt (%s); recording this one.", exc)
        recent = None
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
