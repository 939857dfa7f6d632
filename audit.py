"""Rows in audit_log: who did what, from where, with details as JSON."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from timeutil import to_db_timestamp, utc_now, utc_now_text

UNAUTHORIZED_ACCESS_ATTEMPT = "UNAUTHORIZED_ACCESS_ATTEMPT"


def record(
    conn: sqlite3.Connection,
    action: str,
    *,
    user_id: int | None,
    ip_address: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one audit row now."""
    conn.execute(
        "INSERT INTO audit_log (user_id, action, details, ip_address, created_at) VALUES (?, ?, ?, ?, ?)",
        (user_id, action, json.dumps(details or {}, sort_keys=True), ip_address, utc_now_text()),
    )


def record_unauthorized_attempt(
    conn: sqlite3.Connection,
    *,
    user_id: int | None,
    ip_address: str | None,
    endpoint: str,
    method: str,
) -> bool:
    """Write an UNAUTHORIZED_ACCESS_ATTEMPT row unless one exists for this user and endpoint
    in the last minute, so a script hammering a forbidden URL cannot flood the log.

    Returns whether a row was written.
    """
    since = to_db_timestamp(utc_now() - dt.timedelta(minutes=1))
    recent = conn.execute(
        """
        SELECT 1 FROM audit_log
        WHERE action = ?
          AND created_at >= ?
          AND user_id IS ?
          AND json_extract(details, '$.endpoint') = ?
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
