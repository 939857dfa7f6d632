"""Writing activity_summary_daily rows directly, for tests of what reads them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable

from activity_monitor.daily_summaries import METRIC_COLUMNS

REPLACED_COLUMNS = (*METRIC_COLUMNS, "top_pages", "user_distribution", "is_partial", "computed_at")

def insert_summary(
    conn: sqlite3.Connection,
    day: dt.date | str,
    *,
    values: dict[str, int] | None = None,
    value: int | None = None,
    top_pages: list | None = None,
    roles: dict[str, int] | None = None,
    partial: bool = False,
) -> None:
    """Insert one final summary row; ``value`` sets all six metrics at once."""
    row = dict.fromkeys(METRIC_COLUMNS, value or 0)
    row.update(values or {})
    conn.execute(
        f"""
        INSERT INTO activity_summary_daily
            (date, {", ".join(METRIC_COLUMNS)}, top_pages, user_distribution, is_partial, computed_at)
        VALUES (?, {", ".join("?" * len(METRIC_COLUMNS))}, ?, ?, ?, '2026-01-01 00:00:00')
        ON CONFLICT (date) DO UPDATE SET
            {", ".join(f"{c} = excluded.{c}" for c in REPLACED_COLUMNS)}
        """,
        (
            str(day),
            *(row[c] for c in METRIC_COLUMNS),
            json.dumps(top_pages or []),
            json.dumps(roles or {}),
            int(partial),
        ),
    )


def insert_series(
    conn: sqlite3.Connection, first: dt.date, values: Iterable[int], metric: str | None = None
) -> None:
    """Insert one row per consecutive day starting at ``first``."""
    for offset, value in enumerate(values):
        day = first + dt.timedelta(days=offset)
        if metric is None:
            insert_summary(conn, day, value=value)
        else:
            insert_summary(conn, day, values={metric: value})
