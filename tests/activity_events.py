"""Writing users and raw user_activity_log rows directly, for tests of summaries and retention."""

from __future__ import annotations

import datetime as dt
import sqlite3
import zoneinfo
from typing import Any

from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.timeutil import to_db_timestamp

UTC = dt.UTC
# A fixed "now" far enough after the test days that every one of them is over.
LATER = dt.datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


def add_user(conn: sqlite3.Connection, role: str, username: str | None = None) -> int:
    """Insert a user of a role (any password hash will do) and return its id."""
    cursor = conn.execute(
        "INSERT INTO users (username, password_hash, role) VALUES (?, 'x', ?)",
        (username or f"{role}-{conn.execute('SELECT COUNT(*) FROM users').fetchone()[0]}", role),
    )
    return int(cursor.lastrowid)


def utc(text: str) -> dt.datetime:
    """Parse 'YYYY-MM-DD HH:MM[:SS[.ffffff]]' as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz_name: str) -> dt.datetime:
    """Parse wall-clock text in a zone (fold=0) and return the UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz_name)).astimezone(UTC)


def add_event(
    conn: sqlite3.Connection,
    moment: dt.datetime | str,
    user_id: int,
    session: str = "s1",
    page: str = "/home",
    action: str = "page_view",
) -> None:
    """Insert one raw event; a datetime is stored with microseconds, text is stored as given."""
    timestamp = moment if isinstance(moment, str) else to_db_timestamp(moment)
    conn.execute(
        """
        INSERT INTO user_activity_log (session_id, user_id, timestamp, page_url, action_type)
        VALUES (?, ?, ?, ?, ?)
        """,
        (session, user_id, timestamp, page, action),
    )


def processor(
    conn: sqlite3.Connection, tz_name: str = "UTC", idle_minutes: int = 5, now: dt.datetime = LATER
) -> DailySummaryProcessor:
    """Return a processor on the connection with a fixed clock."""
    return DailySummaryProcessor(conn, tz_name, idle_minutes, clock=lambda: now)


def summary(conn: sqlite3.Connection, day: dt.date | str) -> dict[str, Any] | None:
    """Return a day's summary row as a dict, or None."""
    row = conn.execute("SELECT * FROM activity_summary_daily WHERE date = ?", (str(day),)).fetchone()
    return dict(row) if row else None


def dirty_days(conn: sqlite3.Connection) -> list[str]:
    """Return the dates marked dirty, in order."""
    return [row[0] for row in conn.execute("SELECT date FROM activity_dirty_days ORDER BY date")]
