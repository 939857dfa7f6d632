"""Counts over a range of local days read from the raw events: events or users per local
weekday and hour, the exact top pages and the peak hour.

Exact while the range's raw events are kept (:func:`raw_events_cover`). A local hour is the
event's wall-clock hour in the zone: the hour a DST change repeats holds both passes, the hour
it skips holds nothing. Timestamps are UTC text (see :mod:`timeutil`); the SQL shifts each one
by the UTC offset of its stretch of the range and groups whole local seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from activity_monitor.daily_summaries import raw_kept_from
from activity_monitor.storage import Connection
from activity_monitor.summary_metrics import utc_offset_segments
from activity_monitor.timeutil import (
    BOUND_FORMAT,
    date_range,
    local_day_bounds,
    local_day_bounds_text,
    to_db_timestamp,
    zone,
)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MEASURES = ("events", "users")
# The SQL aggregate of each measure (the whitelist a measure name is looked up in).
AGGREGATES = {"events": "COUNT(*)", "users": "COUNT(DISTINCT user_id)"}
# 1970-01-01, day 0 of the epoch, was a Thursday: ISO weekday 3 counting Monday as 0.
EPOCH_WEEKDAY = 3
# The rows of the grouped query that carry a margin instead of a cell.
ANY = -1


class RawEventsPurged(ValueError):
    """The range starts before the first day whose raw events are all kept."""

    def __init__(self, kept_from: dt.date):
        super().__init__(f"Raw events before {kept_from} were purged.")
        self.kept_from = kept_from


def raw_events_cover(conn: Connection, start: dt.date) -> bool:
    """Tell whether every raw event of the days from ``start`` on is still kept."""
    kept_from = raw_kept_from(conn)
    return kept_from is None or kept_from <= start


def range_bounds(tz_name: str, start: dt.date, end: dt.date) -> tuple[str, str]:
    """Return the UTC bounds [first instant, end) of the local days start..end as range-bound text."""
    return local_day_bounds_text(start, tz_name)[0], local_day_bounds_text(end, tz_name)[1]


def bound_text(moment: dt.datetime) -> str:
    """Return an instant as text that compares right with stored timestamps of either form (see
    timeutil): no fraction on a whole second, else all six digits."""
    if moment.microsecond == 0:
        return moment.astimezone(dt.UTC).strftime(BOUND_FORMAT)
    return to_db_timestamp(moment)


def offset_segments(tz_name: str, start: dt.date, end: dt.date) -> list[tuple[dt.datetime, int]]:
    """Return (UTC start, UTC offset in seconds) of each stretch of the local days start..end
    that has one offset, in order.

    Only a day whose two midnights differ in offset is probed for its change (no zone changes
    its offset and back within one day): probing every quarter hour of a two-year range costs
    a tenth of a second, a look at each midnight a few milliseconds. A test holds this against
    probing every quarter hour.
    """
    tz = zone(tz_name)
    segments: list[tuple[dt.datetime, int]] = []
    for day in date_range(start, end):
        day_start, day_end = local_day_bounds(day, tz_name)
        last_instant = day_end - dt.timedelta(microseconds=1)
        if day_start.astimezone(tz).utcoffset() == last_instant.astimezone(tz).utcoffset():
            stretches = [(day_start, day_start.astimezone(tz).utcoffset() or dt.timedelta(0))]
        else:
            stretches = utc_offset_segments(day_start, day_end, tz)
        for moment, offset in stretches:
            seconds = int(offset.total_seconds())
            if not segments or segments[-1][1] != seconds:
                segments.append((moment, seconds))
    return segments


def local_seconds_sql(conn: Connection, segments: list[tuple[dt.datetime, int]]) -> tuple[str, list[Any]]:
    """Return the SQL expression of an event's local time in whole seconds since the epoch, with
    its parameters: the UTC epoch seconds plus the offset of the event's stretch."""
    epoch = conn.storage.epoch_seconds("timestamp")
    params: list[Any] = []
    if len(segments) == 1:
        return f"{epoch} + CAST(? AS BIGINT)", [segments[0][1]]
    branches = []
    for (_, offset), (next_start, _) in zip(segments, segments[1:], strict=False):
        branches.append("WHEN timestamp < ? THEN CAST(? AS BIGINT)")
        params.extend((bound_text(next_start), offset))
    params.append(segments[-1][1])
    return f"{epoch} + CASE {' '.join(branches)} ELSE CAST(? AS BIGINT) END", params


def hour_weekday_counts(
    conn: Connection, tz_name: str, start: dt.date, end: dt.date, measure: str = "events"
) -> dict[str, Any]:
    """Count events, or distinct users, per local weekday (Monday 0) and hour over the local days
    start..end.

    Returns ``cells`` (7 lists of 24), ``by_hour`` (24), ``by_weekday`` (7) and ``total``. Events
    add up, so their margins are sums of the cells. A user in two cells is still one user of the
    hour, the weekday and the range, so for users the query groups the rows once more per margin,
    in the same statement: a user is then one user whichever stretch of the range (and so
    whichever UTC offset) their events fall in.
    """
    if measure not in AGGREGATES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {measure!r}.")
    aggregate = AGGREGATES[measure]
    low, high = range_bounds(tz_name, start, end)
    local_seconds, params = local_seconds_sql(conn, offset_segments(tz_name, start, end))
    margins = ""
    if measure == "users":
        margins = f"""
        UNION ALL
        SELECT {ANY}, local_hour, {aggregate}
        FROM shifted
        GROUP BY local_hour
        UNION ALL
        SELECT local_weekday, {ANY}, {aggregate}
        FROM shifted
        GROUP BY local_weekday
        UNION ALL
        SELECT {ANY}, {ANY}, {aggregate}
        FROM shifted
        """
    # Every event of the range lies on or after local 1970-01-01 00:00 (the earliest accepted
    # start), so local seconds are never negative and integer division is floor division.
    rows = conn.execute(
        f"""
        WITH shifted AS (
            SELECT user_id,
                   (local_seconds / 86400 + {EPOCH_WEEKDAY}) % 7 AS local_weekday,
                   (local_seconds / 3600) % 24 AS local_hour
            FROM (
                SELECT user_id, {local_seconds} AS local_seconds
                FROM user_activity_log
                WHERE timestamp >= ?
                  AND timestamp < ?
            ) AS events
        )
        SELECT local_weekday, local_hour, {aggregate} AS amount
        FROM shifted
        GROUP BY local_weekday, local_hour
        {margins}
        """,
        (*params, low, high),
    ).fetchall()
    cells = [[0] * 24 for _ in WEEKDAYS]
    margin_rows = []
    for weekday, hour, amount in rows:
        if int(weekday) == ANY or int(hour) == ANY:
            margin_rows.append((int(weekday), int(hour), int(amount)))
        else:
            cells[int(weekday)][int(hour)] = int(amount)
    if measure == "events":
        by_hour = [sum(day[hour] for day in cells) for hour in range(24)]
        by_weekday = [sum(day) for day in cells]
        return {"cells": cells, "by_hour": by_hour, "by_weekday": by_weekday, "total": sum(by_weekday)}
    by_hour, by_weekday, total = [0] * 24, [0] * 7, 0
    for weekday, hour, amount in margin_rows:
        if weekday == ANY and hour == ANY:
            total = amount
        elif weekday == ANY:
            by_hour[hour] = amount
        else:
            by_weekday[weekday] = amount
    return {"cells": cells, "by_hour": by_hour, "by_weekday": by_weekday, "total": total}


def busiest_cell(cells: list[list[int]]) -> dict[str, Any] | None:
    """Return the cell with the highest count as {"weekday", "hour", "value"} (the earliest in the
    week on a tie), or None when every cell is 0."""
    weekday, hour = min(
        ((w, h) for w in range(len(WEEKDAYS)) for h in range(24)),
        key=lambda cell: (-cells[cell[0]][cell[1]], cell),
    )
    value = cells[weekday][hour]
    return {"weekday": WEEKDAYS[weekday], "hour": hour, "value": value} if value else None


def hours_report(
    conn: Connection, tz_name: str, start: dt.date, end: dt.date, measure: str = "events"
) -> dict[str, Any]:
    """Return what /hours answers for a range: the zone, measure, weekday names, cells, margins and
    the busiest cell. Raises RawEventsPurged when some of the range's raw events are gone."""
    kept_from = raw_kept_from(conn)
    if kept_from is not None and start < kept_from:
        raise RawEventsPurged(kept_from)
    counts = hour_weekday_counts(conn, tz_name, start, end, measure)
    return {
        "time_zone": tz_name,
        "measure": measure,
        "weekdays": list(WEEKDAYS),
        "cells": counts["cells"],
        "by_hour": counts["by_hour"],
        "by_weekday": counts["by_weekday"],
        "peak": busiest_cell(counts["cells"]),
    }


def peak_hour(conn: Connection, tz_name: str, start: dt.date, end: dt.date) -> int | None:
    """Return the local hour with the most events over the range (the earlier on a tie), or None
    without events; the daily summaries' peak_hour over a longer span."""
    by_hour = hour_weekday_counts(conn, tz_name, start, end, "events")["by_hour"]
    best = max(range(24), key=lambda hour: (by_hour[hour], -hour))
    return best if by_hour[best] else None


def top_pages(
    conn: Connection, tz_name: str, start: dt.date, end: dt.date, limit: int = 10
) -> list[dict[str, Any]]:
    """Return the most viewed pages of the range with their exact page-view counts, by count
    descending then page ascending (in code point order, as the daily top lists sort)."""
    low, high = range_bounds(tz_name, start, end)
    rows = conn.execute(
        f"""
        SELECT page_url, COUNT(*) AS views
        FROM user_activity_log
        WHERE timestamp >= ?
          AND timestamp < ?
          AND action_type = 'page_view'
        GROUP BY page_url
        ORDER BY views DESC, {conn.storage.code_point_order("page_url")}
        LIMIT ?
        """,
        (low, high, limit),
    ).fetchall()
    return [{"page": page, "count": int(views)} for page, views in rows]
