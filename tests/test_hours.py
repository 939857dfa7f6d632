"""hours: events and users per local weekday and hour, exact top pages and the peak hour of a
range, held against a plain-Python count of the same events (zoneinfo's local time of each)."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections import Counter, defaultdict
from typing import Any

import pytest

from activity_events import add_event, local, utc
from activity_monitor import hours
from activity_monitor.daily_summaries import raw_kept_from
from activity_monitor.hours import WEEKDAYS, RawEventsPurged
from activity_monitor.summary_metrics import utc_offset_segments
from activity_monitor.timeutil import local_day_bounds, to_db_timestamp

D = dt.date
# The zones of the brief, and Chatham, whose offsets (+12:45, +13:45 in summer) are neither whole
# hours nor half hours; each with a range holding both DST changes of 2026 where it has them.
ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham")
PAGES = ("/home", "/devices", "/routes", "/Reports", "/reports", "/é", "/z", "/a b")
ACTIONS = ("page_view", "page_view", "page_view", "api_call", "file_download")


# --- the reference ---------------------------------------------------------------------------------


class Event:
    """One raw event as the reference sees it."""

    def __init__(self, moment: dt.datetime, user_id: int, page: str, action: str, text: str):
        self.moment = moment
        self.user_id = user_id
        self.page = page
        self.action = action
        self.text = text


def local_cell(event: Event, tz_name: str) -> tuple[dt.date, int, int]:
    """Return the event's local day, ISO weekday (Monday 0) and wall-clock hour."""
    wall = event.moment.astimezone(zoneinfo.ZoneInfo(tz_name))
    return wall.date(), wall.weekday(), wall.hour


def in_range(events: list[Event], tz_name: str, start: dt.date, end: dt.date) -> list[tuple[Event, int, int]]:
    """Return (event, weekday, hour) of the events whose local day lies in start..end."""
    kept = []
    for event in events:
        day, weekday, hour = local_cell(event, tz_name)
        if start <= day <= end:
            kept.append((event, weekday, hour))
    return kept


def reference_counts(events: list[Event], tz_name: str, start: dt.date, end: dt.date, measure: str) -> dict:
    """Count the cells and margins by brute force: every event, every user set, in Python."""
    cells: dict[tuple[int, int], set | int] = defaultdict(set if measure == "users" else int)
    by_hour: dict[int, Any] = defaultdict(set if measure == "users" else int)
    by_weekday: dict[int, Any] = defaultdict(set if measure == "users" else int)
    everyone: set[int] = set()
    total = 0
    for event, weekday, hour in in_range(events, tz_name, start, end):
        if measure == "users":
            cells[weekday, hour].add(event.user_id)
            by_hour[hour].add(event.user_id)
            by_weekday[weekday].add(event.user_id)
            everyone.add(event.user_id)
        else:
            cells[weekday, hour] += 1
            by_hour[hour] += 1
            by_weekday[weekday] += 1
            total += 1

    def size(value: Any) -> int:
        return len(value) if isinstance(value, set) else value

    return {
        "cells": [[size(cells.get((w, h), 0)) for h in range(24)] for w in range(7)],
        "by_hour": [size(by_hour.get(h, 0)) for h in range(24)],
        "by_weekday": [size(by_weekday.get(w, 0)) for w in range(7)],
        "total": len(everyone) if measure == "users" else total,
    }


def reference_top_pages(events: list[Event], tz_name: str, start: dt.date, end: dt.date, limit: int) -> list:
    """Count page views per page and rank them by count, then by page in Python's order."""
    counts = Counter(e.page for e, _, _ in in_range(events, tz_name, start, end) if e.action == "page_view")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{"page": page, "count": count} for page, count in ranked]


def reference_peak_hour(events: list[Event], tz_name: str, start: dt.date, end: dt.date) -> int | None:
    """Return the hour with most events, the earlier on a tie, by brute force."""
    by_hour = reference_counts(events, tz_name, start, end, "events")["by_hour"]
    if not any(by_hour):
        return None
    return by_hour.index(max(by_hour))


# --- the events ----------------------------------------------------------------------------------------


def dst_changes(tz_name: str, start: dt.date, end: dt.date) -> list[dt.datetime]:
    """Return the UTC instants where the zone's offset changes between the two days."""
    first, _ = local_day_bounds(start, tz_name)
    _, last = local_day_bounds(end, tz_name)
    return [moment for moment, _ in utc_offset_segments(first, last, zoneinfo.ZoneInfo(tz_name))[1:]]


def random_events(rng: random.Random, tz_name: str, start: dt.date, end: dt.date, count: int) -> list[Event]:
    """Draw events over the range and a day either side: most anywhere, many within two hours of
    each DST change, some on the last microsecond of an hour or exactly on a range bound; a
    third stored without a fraction, as older rows are."""
    first, _ = local_day_bounds(start - dt.timedelta(days=1), tz_name)
    _, last = local_day_bounds(end + dt.timedelta(days=1), tz_name)
    span_us = int((last - first) / dt.timedelta(microseconds=1))
    tz = zoneinfo.ZoneInfo(tz_name)
    changes = dst_changes(tz_name, start, end)
    range_bounds = [local_day_bounds(start, tz_name)[0], local_day_bounds(end, tz_name)[1]]
    events = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.3 and changes:
            moment = rng.choice(changes) + dt.timedelta(seconds=rng.randint(-7200, 7200))
        elif draw < 0.4:
            # The last microsecond of a local hour (which for Kolkata or Chatham is not a UTC one).
            wall = (first + dt.timedelta(microseconds=rng.randrange(span_us))).astimezone(tz)
            moment = wall.replace(minute=59, second=59, microsecond=999_999).astimezone(dt.UTC)
        elif draw < 0.45:
            moment = rng.choice(range_bounds) + dt.timedelta(microseconds=rng.choice([-1, 0, 1]))
        else:
            moment = first + dt.timedelta(microseconds=rng.randrange(span_us))
        if rng.random() < 0.3:
            moment = moment.replace(microsecond=0)
            text = moment.strftime("%Y-%m-%d %H:%M:%S")
        else:
            text = to_db_timestamp(moment)
        events.append(Event(moment, rng.randint(1, 12), rng.choice(PAGES), rng.choice(ACTIONS), text))
    return events


def store(conn, events: list[Event]) -> None:
    """Insert the events in one transaction."""
    with conn.transaction():
        for event in events:
            add_event(conn, event.text, event.user_id, "s1", event.page, event.action, role="driver")


# A range holding both DST changes of 2026 in Europe (March 29, October 25) and Chatham's
# (April 5, September 27).
RANGE = (D(2026, 3, 27), D(2026, 10, 26))


@pytest.fixture(params=ZONES)
def zone_events(request: pytest.FixtureRequest, db_conn) -> tuple[str, list[Event]]:
    """A zone and 1,500 random events stored for it (seeded per zone)."""
    tz_name = request.param
    start, end = RANGE
    events = random_events(random.Random(f"hours-{tz_name}"), tz_name, start, end, 1500)
    store(db_conn, events)
    return tz_name, events


# --- against the reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("measure", hours.MEASURES)
def test_counts_equal_a_brute_force_count(db_conn, zone_events, measure: str) -> None:
    tz_name, events = zone_events
    start, end = RANGE
    counts = hours.hour_weekday_counts(db_conn, tz_name, start, end, measure)
    assert counts == reference_counts(events, tz_name, start, end, measure)
    assert counts["total"] > 0


@pytest.mark.parametrize("measure", hours.MEASURES)
def test_counts_of_a_few_days_around_each_change_equal_a_brute_force_count(
    db_conn, zone_events, measure: str
) -> None:
    tz_name, events = zone_events
    for start, end in (
        (D(2026, 3, 28), D(2026, 3, 30)),
        (D(2026, 10, 25), D(2026, 10, 25)),
        (D(2026, 4, 5), D(2026, 4, 5)),
    ):
        assert hours.hour_weekday_counts(db_conn, tz_name, start, end, measure) == reference_counts(
            events, tz_name, start, end, measure
        ), (start, end)


def test_top_pages_equal_a_brute_force_count(db_conn, zone_events) -> None:
    tz_name, events = zone_events
    start, end = RANGE
    for limit in (1, 3, 10):
        assert hours.top_pages(db_conn, tz_name, start, end, limit) == reference_top_pages(
            events, tz_name, start, end, limit
        )
    day = D(2026, 3, 29)
    assert hours.top_pages(db_conn, tz_name, day, day) == reference_top_pages(events, tz_name, day, day, 10)


def test_peak_hour_equals_a_brute_force_count(db_conn, zone_events) -> None:
    tz_name, events = zone_events
    start, end = RANGE
    assert hours.peak_hour(db_conn, tz_name, start, end) == reference_peak_hour(events, tz_name, start, end)
    for day in (D(2026, 3, 29), D(2026, 10, 25)):
        assert hours.peak_hour(db_conn, tz_name, day, day) == reference_peak_hour(events, tz_name, day, day)


@pytest.mark.parametrize("tz_name", ZONES)
def test_offset_segments_equal_probing_every_quarter_hour(tz_name: str) -> None:
    start, end = D(2024, 1, 1), D(2026, 12, 31)
    first, _ = local_day_bounds(start, tz_name)
    _, last = local_day_bounds(end, tz_name)
    reference = [
        (moment, int(offset.total_seconds()))
        for moment, offset in utc_offset_segments(first, last, zoneinfo.ZoneInfo(tz_name))
    ]
    assert hours.offset_segments(tz_name, start, end) == reference


# --- DST and odd offsets, one case each -------------------------------------------------------------------


def test_the_repeated_autumn_hour_counts_both_passes(db_conn) -> None:
    # 2026-10-25 in Berlin: 02:00–03:00 happens at 00:00 UTC (summer time) and at 01:00 UTC.
    add_event(db_conn, utc("2026-10-25 00:30"), 1)
    add_event(db_conn, utc("2026-10-25 01:30"), 2)
    add_event(db_conn, utc("2026-10-25 02:30"), 3)
    counts = hours.hour_weekday_counts(db_conn, "Europe/Berlin", D(2026, 10, 25), D(2026, 10, 25))
    sunday = counts["cells"][WEEKDAYS.index("Sunday")]
    assert (sunday[2], sunday[3]) == (2, 1)
    assert counts["total"] == 3
    users = hours.hour_weekday_counts(db_conn, "Europe/Berlin", D(2026, 10, 25), D(2026, 10, 25), "users")
    assert users["by_hour"][2] == 2


def test_the_skipped_spring_hour_is_empty(db_conn) -> None:
    # 2026-03-29 in Berlin: 01:59:59 CET is followed by 03:00:00 CEST at 01:00 UTC.
    add_event(db_conn, utc("2026-03-29 00:59:59.999999"), 1)
    add_event(db_conn, utc("2026-03-29 01:00"), 1)
    counts = hours.hour_weekday_counts(db_conn, "Europe/Berlin", D(2026, 3, 29), D(2026, 3, 29))
    sunday = counts["cells"][WEEKDAYS.index("Sunday")]
    assert (sunday[1], sunday[2], sunday[3]) == (1, 0, 1)


def test_a_half_hour_zone_puts_events_in_its_own_hours_and_days(db_conn) -> None:
    # Asia/Kolkata is UTC+05:30: 18:29:59 UTC on Wednesday is 23:59:59 local, 18:30 UTC is Thursday 00:00.
    add_event(db_conn, utc("2026-05-20 18:29:59.999999"), 1)
    add_event(db_conn, utc("2026-05-20 18:30"), 2)
    add_event(db_conn, local("2026-05-21 09:45", "Asia/Kolkata"), 3)
    counts = hours.hour_weekday_counts(db_conn, "Asia/Kolkata", D(2026, 5, 20), D(2026, 5, 21))
    assert counts["cells"][WEEKDAYS.index("Wednesday")][23] == 1
    assert counts["cells"][WEEKDAYS.index("Thursday")][0] == 1
    assert counts["cells"][WEEKDAYS.index("Thursday")][9] == 1
    only_thursday = hours.hour_weekday_counts(db_conn, "Asia/Kolkata", D(2026, 5, 21), D(2026, 5, 21))
    assert only_thursday["total"] == 2


def test_the_last_microsecond_of_an_hour_stays_in_that_hour(db_conn) -> None:
    add_event(db_conn, "2026-05-20 12:59:59.999900", 1)
    add_event(db_conn, "2026-05-20 12:59:59.9996", 1)
    counts = hours.hour_weekday_counts(db_conn, "UTC", D(2026, 5, 20), D(2026, 5, 20))
    assert counts["by_hour"][12] == 2 and counts["by_hour"][13] == 0


def test_users_are_counted_once_per_cell_and_margin_across_an_offset_change(db_conn) -> None:
    # One user on the Sunday before and the Sunday after the October change, at 10:00 local both
    # times (08:00 UTC, then 09:00 UTC): one user in that cell, in that hour, on Sundays, overall.
    add_event(db_conn, local("2026-10-18 10:15", "Europe/Berlin"), 7)
    add_event(db_conn, local("2026-10-25 10:15", "Europe/Berlin"), 7)
    add_event(db_conn, local("2026-10-25 11:15", "Europe/Berlin"), 7)
    counts = hours.hour_weekday_counts(db_conn, "Europe/Berlin", D(2026, 10, 18), D(2026, 10, 25), "users")
    sunday = WEEKDAYS.index("Sunday")
    assert counts["cells"][sunday][10] == 1
    assert counts["by_hour"][10] == 1 and counts["by_hour"][11] == 1
    assert counts["by_weekday"][sunday] == 1
    assert counts["total"] == 1


def test_an_empty_range_counts_nothing(db_conn) -> None:
    counts = hours.hour_weekday_counts(db_conn, "Europe/Berlin", D(2026, 1, 1), D(2026, 1, 31), "users")
    assert counts == {"cells": [[0] * 24] * 7, "by_hour": [0] * 24, "by_weekday": [0] * 7, "total": 0}
    assert hours.peak_hour(db_conn, "Europe/Berlin", D(2026, 1, 1), D(2026, 1, 31)) is None
    assert hours.top_pages(db_conn, "Europe/Berlin", D(2026, 1, 1), D(2026, 1, 31)) == []


def test_an_unknown_measure_is_refused(db_conn) -> None:
    with pytest.raises(ValueError, match="events, users"):
        hours.hour_weekday_counts(db_conn, "UTC", D(2026, 1, 1), D(2026, 1, 1), "sessions")


# --- top pages, peak hour and the busiest cell ------------------------------------------------------------


def test_top_pages_count_page_views_only_and_break_ties_by_code_point(db_conn) -> None:
    for page, views in (("/b", 2), ("/B", 2), ("/é", 2), ("/a", 1), ("/z", 3)):
        for minute in range(views):
            add_event(db_conn, utc(f"2026-05-20 10:{minute:02}"), 1, page=page)
    add_event(db_conn, utc("2026-05-20 11:00"), 1, page="/a", action="api_call")
    add_event(db_conn, utc("2026-05-20 11:01"), 1, page="/a", action="file_download")
    assert hours.top_pages(db_conn, "UTC", D(2026, 5, 20), D(2026, 5, 20), 4) == [
        {"page": "/z", "count": 3},
        {"page": "/B", "count": 2},
        {"page": "/b", "count": 2},
        {"page": "/é", "count": 2},
    ]


def test_peak_hour_takes_the_earlier_hour_on_a_tie(db_conn) -> None:
    for moment in ("2026-05-20 15:00", "2026-05-20 15:10", "2026-05-21 08:00", "2026-05-21 08:30"):
        add_event(db_conn, utc(moment), 1)
    assert hours.peak_hour(db_conn, "UTC", D(2026, 5, 20), D(2026, 5, 21)) == 8


def test_the_busiest_cell_is_the_earliest_in_the_week_on_a_tie() -> None:
    cells = [[0] * 24 for _ in range(7)]
    cells[4][9] = cells[1][17] = cells[1][20] = 5
    assert hours.busiest_cell(cells) == {"weekday": "Tuesday", "hour": 17, "value": 5}
    assert hours.busiest_cell([[0] * 24 for _ in range(7)]) is None


# --- raw retention ------------------------------------------------------------------------------------


def purge_before(conn, day: dt.date) -> None:
    """Record, as the retention purge does, that raw events before a day were purged."""
    conn.execute("UPDATE activity_raw_retention SET kept_from_date = ? WHERE id = 1", (day.isoformat(),))


def test_raw_events_cover_every_range_before_any_purge(db_conn) -> None:
    assert raw_kept_from(db_conn) is None
    assert hours.raw_events_cover(db_conn, D(1970, 1, 1))


def test_raw_events_cover_ranges_from_the_kept_from_day_only(db_conn) -> None:
    purge_before(db_conn, D(2026, 2, 19))
    assert raw_kept_from(db_conn) == D(2026, 2, 19)
    assert hours.raw_events_cover(db_conn, D(2026, 2, 19))
    assert hours.raw_events_cover(db_conn, D(2026, 3, 1))
    assert not hours.raw_events_cover(db_conn, D(2026, 2, 18))


def test_the_report_refuses_a_range_reaching_before_the_kept_events(db_conn) -> None:
    purge_before(db_conn, D(2026, 2, 19))
    with pytest.raises(RawEventsPurged) as raised:
        hours.hours_report(db_conn, "UTC", D(2026, 2, 18), D(2026, 3, 1))
    assert raised.value.kept_from == D(2026, 2, 19)
    report = hours.hours_report(db_conn, "UTC", D(2026, 2, 19), D(2026, 3, 1))
    assert report["peak"] is None


def test_the_report_names_the_zone_measure_weekdays_and_busiest_cell(db_conn) -> None:
    add_event(db_conn, local("2026-05-19 14:10", "Europe/Berlin"), 1)
    add_event(db_conn, local("2026-05-19 14:20", "Europe/Berlin"), 2)
    add_event(db_conn, local("2026-05-20 09:00", "Europe/Berlin"), 1)
    report = hours.hours_report(db_conn, "Europe/Berlin", D(2026, 5, 18), D(2026, 5, 24), "users")
    assert report["time_zone"] == "Europe/Berlin"
    assert report["measure"] == "users"
    assert report["weekdays"] == [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    assert report["peak"] == {"weekday": "Tuesday", "hour": 14, "value": 2}
    assert report["by_weekday"] == [0, 2, 1, 0, 0, 0, 0]
    assert sum(report["by_hour"]) == 3
