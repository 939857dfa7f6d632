"""Writing raw user_activity_log rows directly, for tests of summaries and retention.

The monitor keeps no users table: each event carries the host's role. Tests that
think in users register a role per id with :func:`add_user` (in a test-only table
of the test database), and :func:`add_event` stores that role on the event
unless it is given one.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.storage import Connection
from activity_monitor.timeutil import to_db_timestamp

UTC = dt.UTC
# A fixed "now" far enough after the test days that every one of them is over.
LATER = dt.datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
# The test-only registry of the role of each user id (never read by the monitor).
ROLE_REGISTRY = "test_user_roles"


def add_user(conn: Connection, role: str) -> int:
    """Register a new user id with a role in the test-only registry and return the id."""
    if not conn.storage.has_table(conn, ROLE_REGISTRY):
        conn.execute(f"CREATE TABLE {ROLE_REGISTRY} (id INTEGER PRIMARY KEY, role TEXT NOT NULL)")
    next_id = conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {ROLE_REGISTRY}").fetchone()[0]
    conn.execute(f"INSERT INTO {ROLE_REGISTRY} (id, role) VALUES (?, ?)", (next_id, role))
    return int(next_id)


def registered_role(conn: Connection, user_id: int | str) -> str:
    """Return the role add_user registered for an id, or '' (no role) for an unregistered one."""
    if not conn.storage.has_table(conn, ROLE_REGISTRY):
        return ""
    row = conn.execute(
        f"SELECT role FROM {ROLE_REGISTRY} WHERE CAST(id AS TEXT) = ?", (str(user_id),)
    ).fetchone()
    return row[0] if row else ""


def utc(text: str) -> dt.datetime:
    """Parse 'YYYY-MM-DD HH:MM[:SS[.ffffff]]' as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz_name: str) -> dt.datetime:
    """Parse wall-clock text in a zone (fold=0) and return the UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz_name)).astimezone(UTC)


def add_event(
    conn: Connection,
    moment: dt.datetime | str,
    user_id: int | str,
    session: str = "s1",
    page: str = "/home",
    action: str = "page_view",
    role: str | None = None,
) -> None:
    """Insert one raw event; a datetime is stored with microseconds, text is stored as given.

    ``session`` '' means the host gave no session key; ``role`` None takes the user's registered role.
    """
    timestamp = moment if isinstance(moment, str) else to_db_timestamp(moment)
    conn.execute(
        """
        INSERT INTO user_activity_log (session_id, user_id, role, timestamp, page_url, action_type)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        (session, user_id, registered_role(conn, user_id) if role is None else role, timestamp, page, action),
    )


def processor(
    conn: Connection,
    tz_name: str = "UTC",
    idle_minutes: int = 5,
    now: dt.datetime = LATER,
    session_idle_minutes: int = 30,
) -> DailySummaryProcessor:
    """Return a processor on the connection with a fixed clock."""
    return DailySummaryProcessor(
        conn, tz_name, idle_minutes, clock=lambda: now, session_idle_minutes=session_idle_minutes
    )


def summary(conn: Connection, day: dt.date | str) -> dict[str, Any] | None:
    """Return a day's summary row as a dict, or None."""
    row = conn.execute("SELECT * FROM activity_summary_daily WHERE date = ?", (str(day),)).fetchone()
    return dict(row) if row else None


def dirty_days(conn: Connection) -> list[str]:
    """Return the dates marked dirty, in order."""
    return [row[0] for row in conn.execute("SELECT date FROM activity_dirty_days ORDER BY date")]
