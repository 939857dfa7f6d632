"""DailySummaryProcessor: each metric definition, local days across DST, today, late data, reruns."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections import Counter
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activity_events import LATER, UTC, add_event, add_user, dirty_days, local, processor, summary, utc
from activity_monitor import daily_summaries
from activity_monitor.daily_summaries import (
    EVENTS_SQL,
    METRIC_COLUMNS,
    DailySummaryProcessor,
    bump_data_version,
    read_data_version,
)
from activity_monitor.db import apply_migrations, connect
from activity_monitor.timeutil import date_range, to_db_timestamp

D = dt.date


@pytest.fixture
def users(db_conn) -> dict[str, int]:
    """One user of each role."""
    return {role: add_user(db_conn, role) for role in ("admin", "manager", "driver", "viewer")}


def test_metrics_of_an_ordinary_day(db_conn, users):
    add_event(db_conn, utc("2026-05-10 09:00"), users["admin"], "s1", "/home")
    add_event(db_conn, utc("2026-05-10 09:02"), users["admin"], "s1", "/reports")
    add_event(db_conn, utc("2026-05-10 09:10"), users["admin"], "s1", "/api/x", "api_call")
    add_event(db_conn, utc("2026-05-10 09:03"), users["manager"], "s2", "/home")
    add_event(db_conn, utc("2026-05-10 14:00"), users["driver"], "s3", "/export.csv", "file_download")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    assert row["unique_users"] == 3
    assert row["total_sessions"] == 3
    assert row["total_page_views"] == 3
    assert row["total_api_calls"] == 1
    assert row["total_events"] == 5
    assert row["avg_session_duration_seconds"] == 200  # (600 + 0 + 0) / 3
    assert row["peak_concurrent_users"] == 2
    assert row["peak_hour"] == 9
    assert json.loads(row["top_pages"]) == [{"page": "/home", "count": 2}, {"page": "/reports", "count": 1}]
    assert json.loads(row["user_distribution"]) == {"admin": 1, "driver": 1, "manager": 1}
    assert row["is_partial"] == 0
    assert (row["utc_start"], row["utc_end"]) == ("2026-05-10 00:00:00", "2026-05-11 00:00:00")
    assert row["window_start_utc"] == "2026-05-09 23:55:00"


def test_a_day_without_events_gets_a_row_of_zeros(db_conn):
    processor(db_conn).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    counts = ("unique_users", "total_sessions", "total_page_views", "total_api_calls", "total_events")
    assert [row[column] for column in counts] == [0] * 5
    assert row["avg_session_duration_seconds"] == row["peak_concurrent_users"] == 0
    assert row["peak_hour"] is None
    assert json.loads(row["top_pages"]) == []
    assert json.loads(row["user_distribution"]) == {}


def test_a_session_crossing_local_midnight_is_split_between_the_days(db_conn, users):
    tz = "Europe/Berlin"
    for wall in ("2026-05-10 23:50", "2026-05-10 23:58", "2026-05-11 00:03", "2026-05-11 00:20"):
        add_event(db_conn, local(wall, tz), users["admin"], "night")
    processor(db_conn, tz).process_range(D(2026, 5, 10), D(2026, 5, 11))
    before, after = summary(db_conn, "2026-05-10"), summary(db_conn, "2026-05-11")
    assert (before["total_sessions"], before["avg_session_duration_seconds"]) == (1, 480)
    assert (after["total_sessions"], after["avg_session_duration_seconds"]) == (1, 1020)
    assert before["utc_end"] == after["utc_start"] == "2026-05-10 22:00:00"


def test_an_event_exactly_at_local_midnight_belongs_to_the_new_day(db_conn, users):
    add_event(db_conn, "2026-05-10 23:59:59.999999", users["admin"], "a")
    add_event(db_conn, "2026-05-11 00:00:00", users["manager"], "b")
    add_event(db_conn, "2026-05-11 00:00:00.000000", users["driver"], "c")
    processor(db_conn).process_range(D(2026, 5, 10), D(2026, 5, 11))
    assert summary(db_conn, "2026-05-10")["total_events"] == 1
    assert summary(db_conn, "2026-05-11")["total_events"] == 2
    assert summary(db_conn, "2026-05-11")["peak_hour"] == 0


def test_single_event_sessions_last_zero_seconds(db_conn, users):
    add_event(db_conn, utc("2026-05-10 08:00"), users["admin"], "one")
    add_event(db_conn, utc("2026-05-10 09:00"), users["admin"], "two")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["avg_session_duration_seconds"] == 0


def test_the_mean_session_duration_rounds_half_up_to_a_second(db_conn, users):
    add_event(db_conn, utc("2026-05-10 08:00:00"), users["admin"], "a")
    add_event(db_conn, utc("2026-05-10 08:00:03"), users["admin"], "a")
    add_event(db_conn, utc("2026-05-10 09:00:00"), users["admin"], "b")  # (3 + 0) / 2 = 1.5
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["avg_session_duration_seconds"] == 2


def test_peak_hour_ties_go_to_the_earliest_hour(db_conn, users):
    for moment in ("2026-05-10 15:10", "2026-05-10 15:20", "2026-05-10 07:59", "2026-05-10 07:00"):
        add_event(db_conn, utc(moment), users["admin"])
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["peak_hour"] == 7


def test_top_pages_count_page_views_only_and_break_ties_by_page(db_conn, users):
    pages = {f"/p{n:02}": 2 for n in range(12)} | {"/b": 3, "/a": 3, "/z": 1}
    for page, views in pages.items():
        for _ in range(views):
            add_event(db_conn, utc("2026-05-10 10:00"), users["admin"], page=page)
    for _ in range(5):
        add_event(db_conn, utc("2026-05-10 10:00"), users["admin"], page="/api/busy", action="api_call")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    top = json.loads(summary(db_conn, "2026-05-10")["top_pages"])
    assert top == [{"page": "/a", "count": 3}, {"page": "/b", "count": 3}] + [
        {"page": f"/p{n:02}", "count": 2} for n in range(8)
    ]


def test_user_distribution_counts_each_user_of_the_day_once_and_only_the_roles_present(db_conn, users):
    second_driver = add_user(db_conn, "driver")
    for user_id in (users["admin"], users["driver"], second_driver, second_driver, users["viewer"]):
        add_event(db_conn, utc("2026-05-10 10:00"), user_id)
    processor(db_conn).summarize_day(D(2026, 5, 10))
    distribution = json.loads(summary(db_conn, "2026-05-10")["user_distribution"])
    assert list(distribution.items()) == [("admin", 1), ("driver", 2), ("viewer", 1)]


def test_user_distribution_counts_a_user_under_the_role_of_their_last_event_of_the_day(db_conn):
    add_event(db_conn, utc("2026-05-09 23:58"), 7, role="admin")  # in the day's window, not the day
    add_event(db_conn, utc("2026-05-10 09:00"), 7, role="driver")
    add_event(db_conn, utc("2026-05-10 17:00"), 7, role="manager")  # promoted during the day
    add_event(db_conn, utc("2026-05-11 08:00"), 7, role="viewer")  # the next day
    add_event(db_conn, utc("2026-05-10 12:00"), 8, role="driver")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    distribution = json.loads(summary(db_conn, "2026-05-10")["user_distribution"])
    assert distribution == {"driver": 1, "manager": 1}


def test_users_whose_events_carry_no_role_count_as_unknown(db_conn):
    add_event(db_conn, utc("2026-05-10 10:00"), 7, role="")
    add_event(db_conn, utc("2026-05-10 10:00"), 8, role="driver")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert json.loads(summary(db_conn, "2026-05-10")["user_distribution"]) == {"driver": 1, "unknown": 1}


def test_string_user_ids_are_distinct_users_like_integer_ids(db_conn):
    first, second = "0b5e7c9a-3f1d-4e2b-8a6c-1d2e3f4a5b6c", "0b5e7c9a-3f1d-4e2b-8a6c-1d2e3f4a5b6d"
    for user_id in (first, second, first, 42, 42):
        add_event(db_conn, utc("2026-05-10 10:00"), user_id, f"s-{user_id}", role="driver")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    assert (row["unique_users"], row["peak_concurrent_users"]) == (3, 3)
    assert json.loads(row["user_distribution"]) == {"driver": 3}


# --- sessions derived from gaps when the host gives no session key --------------------------------


def test_without_a_session_key_a_gap_longer_than_the_session_idle_time_starts_a_new_session(db_conn):
    add_event(db_conn, utc("2026-05-10 10:00"), 7, "")
    add_event(db_conn, utc("2026-05-10 10:30:00.000001"), 7, "")
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 2


def test_without_a_session_key_a_gap_equal_to_the_session_idle_time_continues_the_session(db_conn):
    add_event(db_conn, utc("2026-05-10 10:00"), 7, "")
    add_event(db_conn, utc("2026-05-10 10:30"), 7, "")
    add_event(db_conn, utc("2026-05-10 10:45"), 7, "")
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    assert (row["total_sessions"], row["avg_session_duration_seconds"]) == (1, 2700)


def test_derived_sessions_follow_the_configured_session_idle_time(db_conn):
    add_event(db_conn, utc("2026-05-10 10:00"), 7, "")
    add_event(db_conn, utc("2026-05-10 10:40"), 7, "")
    processor(db_conn, session_idle_minutes=45).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 1
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 2


def test_derived_sessions_are_per_user(db_conn):
    # Together the two users are never 30 minutes apart; each alone is, twice.
    for minute in (0, 40, 80):
        add_event(db_conn, utc("2026-05-10 10:00") + dt.timedelta(minutes=minute), 7, "")
        add_event(db_conn, utc("2026-05-10 10:20") + dt.timedelta(minutes=minute), 8, "")
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 6


def test_derived_sessions_add_to_the_sessions_the_host_named(db_conn):
    add_event(db_conn, utc("2026-05-10 09:00"), 7, "s1")
    add_event(db_conn, utc("2026-05-10 12:00"), 7, "s1")  # a named session spans any gap
    add_event(db_conn, utc("2026-05-10 09:00"), 8, "")
    add_event(db_conn, utc("2026-05-10 12:00"), 8, "")
    add_event(db_conn, utc("2026-05-10 12:10"), 7, "")  # the same user without a key
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 4


def test_the_mean_duration_of_derived_sessions_runs_from_first_to_last_event(db_conn):
    for moment in ("10:00", "10:20", "11:00", "11:10"):  # 10:00-10:20 and 11:00-11:10
        add_event(db_conn, utc(f"2026-05-10 {moment}"), 7, "")
    processor(db_conn, session_idle_minutes=30).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    assert (row["total_sessions"], row["avg_session_duration_seconds"]) == (2, 900)


def test_derived_sessions_of_string_user_ids_are_per_user(db_conn):
    for user_id in ("alice@example.com", "bob@example.com"):
        add_event(db_conn, utc("2026-05-10 10:00"), user_id, "")
        add_event(db_conn, utc("2026-05-10 10:10"), user_id, "")
    processor(db_conn).summarize_day(D(2026, 5, 10))
    row = summary(db_conn, "2026-05-10")
    assert (row["unique_users"], row["total_sessions"], row["avg_session_duration_seconds"]) == (2, 2, 600)


def test_peak_concurrency_counts_a_user_once_and_intervals_are_half_open(db_conn, users):
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])
    add_event(db_conn, utc("2026-05-10 10:01"), users["admin"])
    add_event(db_conn, utc("2026-05-10 10:05"), users["manager"])  # admin online until 10:06
    add_event(db_conn, utc("2026-05-10 10:11"), users["driver"])  # manager went offline at 10:10
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["peak_concurrent_users"] == 2

    add_event(db_conn, utc("2026-05-11 10:00"), users["admin"])
    add_event(db_conn, utc("2026-05-11 10:05"), users["manager"])  # starts as admin's interval ends
    processor(db_conn).summarize_day(D(2026, 5, 11))
    assert summary(db_conn, "2026-05-11")["peak_concurrent_users"] == 1


def test_a_user_offline_between_two_events_does_not_count_in_the_gap(db_conn, users):
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])  # online until 10:05
    add_event(db_conn, utc("2026-05-10 10:07"), users["admin"])  # and again from 10:07
    add_event(db_conn, utc("2026-05-10 10:01"), users["manager"])  # online until 10:06
    add_event(db_conn, utc("2026-05-10 10:05:30"), users["driver"])  # offline again at 10:10:30
    processor(db_conn).summarize_day(D(2026, 5, 10))
    assert summary(db_conn, "2026-05-10")["peak_concurrent_users"] == 2


def test_events_shortly_before_the_day_count_for_its_first_minutes(db_conn, users):
    tz = "Europe/Berlin"
    add_event(db_conn, local("2026-05-10 23:57", tz), users["admin"], "a")
    add_event(db_conn, local("2026-05-10 23:55", tz), users["viewer"], "v")  # offline exactly at midnight
    add_event(db_conn, local("2026-05-11 00:01", tz), users["manager"], "m")
    processor(db_conn, tz).summarize_day(D(2026, 5, 11))
    row = summary(db_conn, "2026-05-11")
    assert (row["unique_users"], row["peak_concurrent_users"]) == (1, 2)


def test_berlin_spring_forward_day_has_23_hours(db_conn, users):
    tz = "Europe/Berlin"
    for moment in (
        "2026-03-28 22:59:59",  # 23:59:59 on the 28th
        "2026-03-28 23:00:00",  # 00:00 CET
        "2026-03-29 00:59:59",  # 01:59:59 CET
        "2026-03-29 01:00:00",  # 03:00 CEST
        "2026-03-29 01:30:00",  # 03:30 CEST
        "2026-03-29 21:59:59",  # 23:59:59 CEST
        "2026-03-29 22:00:00",  # 00:00 on the 30th
    ):
        add_event(db_conn, utc(moment), users["admin"], moment)
    processor(db_conn, tz).summarize_day(D(2026, 3, 29))
    row = summary(db_conn, "2026-03-29")
    assert (row["utc_start"], row["utc_end"]) == ("2026-03-28 23:00:00", "2026-03-29 22:00:00")
    assert (row["total_events"], row["peak_hour"]) == (5, 3)


def test_berlin_fall_back_day_has_25_hours_and_counts_the_repeated_hour_twice(db_conn, users):
    tz = "Europe/Berlin"
    add_event(db_conn, utc("2026-10-24 21:59:59"), users["admin"], "before")  # 23:59:59 on the 24th
    add_event(db_conn, utc("2026-10-24 22:00:00"), users["admin"], "first")  # 00:00 CEST
    add_event(db_conn, utc("2026-10-25 00:30:00"), users["admin"], "repeat")  # 02:30 CEST
    add_event(db_conn, utc("2026-10-25 01:30:00"), users["admin"], "repeat")  # 02:30 CET, an hour later
    add_event(db_conn, utc("2026-10-25 22:59:59"), users["admin"], "last")  # 23:59:59 CET
    add_event(db_conn, utc("2026-10-25 23:00:00"), users["admin"], "after")  # 00:00 on the 26th
    processor(db_conn, tz).summarize_day(D(2026, 10, 25))
    row = summary(db_conn, "2026-10-25")
    assert (row["utc_start"], row["utc_end"]) == ("2026-10-24 22:00:00", "2026-10-25 23:00:00")
    assert (row["total_events"], row["total_sessions"], row["peak_hour"]) == (4, 3, 2)
    assert row["avg_session_duration_seconds"] == 1200  # (0 + 3600 + 0) / 3: elapsed, not wall-clock


def test_new_york_days_of_23_and_25_hours(db_conn, users):
    tz = "America/New_York"
    add_event(db_conn, utc("2026-03-08 06:59:59"), users["admin"])  # 01:59:59 EST
    add_event(db_conn, utc("2026-03-08 07:00:00"), users["admin"])  # 03:00 EDT
    add_event(db_conn, utc("2026-11-01 05:30:00"), users["admin"])  # 01:30 EDT
    add_event(db_conn, utc("2026-11-01 06:30:00"), users["admin"])  # 01:30 EST
    add_event(db_conn, utc("2026-11-02 04:59:59"), users["admin"])  # 23:59:59 EST
    processor(db_conn, tz).process_range(D(2026, 3, 8), D(2026, 3, 8))
    processor(db_conn, tz).process_range(D(2026, 11, 1), D(2026, 11, 1))
    spring, autumn = summary(db_conn, "2026-03-08"), summary(db_conn, "2026-11-01")
    assert (spring["utc_start"], spring["utc_end"]) == ("2026-03-08 05:00:00", "2026-03-09 04:00:00")
    assert (spring["total_events"], spring["peak_hour"]) == (2, 1)
    assert (autumn["utc_start"], autumn["utc_end"]) == ("2026-11-01 04:00:00", "2026-11-02 05:00:00")
    assert (autumn["total_events"], autumn["peak_hour"]) == (3, 1)


def test_a_rerun_is_idempotent_and_leaves_the_data_version(db_conn, users):
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])
    days = processor(db_conn)
    first = days.process_range(D(2026, 5, 9), D(2026, 5, 11))
    rows = [summary(db_conn, f"2026-05-{n:02}") for n in (9, 10, 11)]
    version = read_data_version(db_conn)
    again = days.process_range(D(2026, 5, 9), D(2026, 5, 11))
    assert [summary(db_conn, f"2026-05-{n:02}") for n in (9, 10, 11)] == rows
    assert read_data_version(db_conn) == version == 3
    assert [r.changed for r in first.days] == [True] * 3
    assert [r.changed for r in again.days] == [False] * 3


def test_an_exception_mid_backfill_leaves_every_day_fully_old_or_fully_new(db_conn, users, monkeypatch):
    for day in (9, 10, 11):
        add_event(db_conn, utc(f"2026-05-{day:02} 10:00"), users["admin"])
    days = processor(db_conn)
    days.summarize_day(D(2026, 5, 10))
    old = summary(db_conn, "2026-05-10")
    add_event(db_conn, utc("2026-05-10 11:00"), users["manager"])  # makes 05-10 dirty
    calls = []

    def failing_bump(conn):
        calls.append(1)
        if len(calls) == 2:  # after 05-10's row was written, before its commit
            raise RuntimeError("disk on fire")
        return real_bump(conn)

    real_bump = daily_summaries.bump_data_version
    monkeypatch.setattr(daily_summaries, "bump_data_version", failing_bump)
    with pytest.raises(RuntimeError):
        days.process_range(D(2026, 5, 9), D(2026, 5, 11))
    assert summary(db_conn, "2026-05-09")["total_events"] == 1
    assert summary(db_conn, "2026-05-10") == old
    assert summary(db_conn, "2026-05-11") is None
    assert dirty_days(db_conn) == ["2026-05-10"]

    monkeypatch.setattr(daily_summaries, "bump_data_version", real_bump)
    report = processor(db_conn, now=utc("2026-05-12 12:00")).process_missing_days()
    assert report.dates == [D(2026, 5, 10), D(2026, 5, 11)]
    assert report.dirty_dates == [D(2026, 5, 10)]
    assert summary(db_conn, "2026-05-10")["unique_users"] == 2


def test_today_is_written_only_when_asked_partial_and_completed_after_midnight(db_conn, users):
    noon = utc("2026-05-10 12:00")
    add_event(db_conn, utc("2026-05-09 10:00"), users["admin"])
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])
    assert processor(db_conn, now=noon).process_missing_days().dates == [D(2026, 5, 9)]
    assert summary(db_conn, "2026-05-10") is None

    report = processor(db_conn, now=noon).process_missing_days(include_today=True)
    assert report.partial_dates == [D(2026, 5, 10)]
    assert summary(db_conn, "2026-05-10")["is_partial"] == 1
    add_event(db_conn, utc("2026-05-10 23:00"), users["manager"])
    assert dirty_days(db_conn) == []  # partial rows are recomputed anyway

    after_midnight = processor(db_conn, now=utc("2026-05-11 00:10"))
    assert after_midnight.process_missing_days().dates == [D(2026, 5, 10)]
    row = summary(db_conn, "2026-05-10")
    assert (row["is_partial"], row["unique_users"]) == (0, 2)


def test_a_day_that_has_not_begun_cannot_be_summarized(db_conn):
    with pytest.raises(ValueError, match="not begun"):
        processor(db_conn, now=utc("2026-05-10 12:00")).summarize_day(D(2026, 5, 11))


def test_a_data_version_bump_is_seen_at_once_by_other_connections(app, db_conn):
    other = connect(app.config["ACTIVITY_DATABASE"])
    try:
        before = read_data_version(other)
        assert bump_data_version(db_conn) == before + 1
        assert read_data_version(other) == before + 1
    finally:
        other.close()


def test_a_late_event_marks_its_final_day_dirty_and_the_next_run_recomputes_exactly_it(db_conn, users):
    add_event(db_conn, utc("2026-05-08 10:00"), users["admin"])
    days = processor(db_conn)
    days.process_range(D(2026, 5, 8), D(2026, 5, 12))
    version = read_data_version(db_conn)
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])
    assert dirty_days(db_conn) == ["2026-05-10"]
    report = processor(db_conn, now=utc("2026-05-13 01:00")).process_missing_days()
    assert report.dates == report.dirty_dates == [D(2026, 5, 10)]
    assert summary(db_conn, "2026-05-10")["total_events"] == 1
    assert dirty_days(db_conn) == []
    assert read_data_version(db_conn) == version + 1


def test_a_late_event_in_the_idle_minutes_before_a_day_marks_that_day_too(db_conn, users):
    processor(db_conn).process_range(D(2026, 5, 9), D(2026, 5, 10))
    add_event(db_conn, utc("2026-05-09 23:54"), users["admin"])
    assert dirty_days(db_conn) == ["2026-05-09"]
    add_event(db_conn, utc("2026-05-09 23:56"), users["admin"])
    assert dirty_days(db_conn) == ["2026-05-09", "2026-05-10"]


def test_changing_or_deleting_raw_events_marks_their_days_dirty(db_conn, users):
    add_event(db_conn, utc("2026-05-09 10:00"), users["admin"])
    add_event(db_conn, utc("2026-05-11 10:00"), users["admin"])
    processor(db_conn).process_range(D(2026, 5, 9), D(2026, 5, 11))
    db_conn.execute(
        "UPDATE user_activity_log SET timestamp = '2026-05-10 10:00:00' WHERE timestamp < '2026-05-10'"
    )
    assert dirty_days(db_conn) == ["2026-05-09", "2026-05-10"]
    db_conn.execute("DELETE FROM user_activity_log WHERE timestamp > '2026-05-11'")
    assert dirty_days(db_conn) == ["2026-05-09", "2026-05-10", "2026-05-11"]
    db_conn.execute("UPDATE user_activity_log SET status_code = 500")  # not a summarized column
    assert dirty_days(db_conn) == ["2026-05-09", "2026-05-10", "2026-05-11"]
    processor(db_conn, now=utc("2026-05-12 12:00")).process_missing_days()
    assert [summary(db_conn, f"2026-05-{n:02}")["total_events"] for n in (9, 10, 11)] == [0, 1, 0]


def test_missing_days_run_from_the_first_activity_and_include_rows_of_other_settings(db_conn, users):
    add_event(db_conn, utc("2026-05-08 10:00"), users["admin"])
    yesterday_evening = utc("2026-05-11 20:00")
    processor(db_conn, now=yesterday_evening).process_range(D(2026, 5, 8), D(2026, 5, 9))
    assert processor(db_conn, now=yesterday_evening).missing_days() == [D(2026, 5, 10)]
    berlin = processor(db_conn, "Europe/Berlin", now=yesterday_evening)
    assert berlin.missing_days() == [D(2026, 5, 8), D(2026, 5, 9), D(2026, 5, 10)]
    assert processor(db_conn, idle_minutes=10, now=yesterday_evening).missing_days()[0] == D(2026, 5, 8)


def test_a_row_computed_with_another_session_idle_time_is_recomputed_by_missing_days(db_conn):
    add_event(db_conn, utc("2026-05-10 10:00"), 7, "")
    add_event(db_conn, utc("2026-05-10 10:40"), 7, "")
    next_morning = utc("2026-05-11 08:00")
    processor(db_conn, now=next_morning, session_idle_minutes=30).process_missing_days()
    assert summary(db_conn, "2026-05-10")["total_sessions"] == 2
    longer = processor(db_conn, now=next_morning, session_idle_minutes=60)
    assert longer.missing_days() == [D(2026, 5, 10)]
    longer.process_missing_days()
    row = summary(db_conn, "2026-05-10")
    assert (row["session_idle_minutes"], row["total_sessions"]) == (60, 1)
    assert longer.missing_days() == []


def test_the_processor_runs_in_a_thread_with_its_own_connection(app, db_conn, users):
    add_event(db_conn, utc("2026-05-10 10:00"), users["admin"])
    results = []

    def work():
        with DailySummaryProcessor.from_app(app, clock=lambda: LATER) as days:
            results.append(days.summarize_day(D(2026, 5, 10)))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert results[0].metrics.unique_users == 1
    assert summary(db_conn, "2026-05-10")["unique_users"] == 1


@pytest.mark.sqlite_only
def test_a_day_is_read_by_a_range_scan_on_the_timestamp_index(db_conn):
    plan = " ".join(
        row[3]
        for row in db_conn.execute(
            "EXPLAIN QUERY PLAN " + EVENTS_SQL,
            {"window_start": "2026-05-09 23:55:00", "day_start": "2026-05-10", "day_end": "2026-05-11"},
        )
    )
    assert "USING INDEX idx_user_activity_log_timestamp (timestamp>? AND timestamp<?)" in plan
    assert "SCAN" not in plan
    assert "TEMP B-TREE" not in plan  # the index already yields time order


@pytest.mark.sqlite_only
def test_the_late_data_lookup_of_each_insert_is_an_index_range(db_conn):
    plan = " ".join(
        row[3]
        for row in db_conn.execute(
            """
            EXPLAIN QUERY PLAN
            SELECT date
            FROM activity_summary_daily
            WHERE utc_end > :t
              AND utc_end <= datetime(:t, '+7 days')
              AND window_start_utc <= :t
              AND is_partial = 0
            """,
            {"t": "2026-05-10 10:00:00"},
        )
    )
    assert "USING INDEX idx_activity_summary_daily_utc_end (utc_end>? AND utc_end<?)" in plan


# --- the definitions read literally, against random small event sets -----------------------------

MICROSECOND = dt.timedelta(microseconds=1)
# Integer ids and a string id (hosts with UUID keys), and the roles events may carry ('' is none).
USERS = (1, 2, 3, 4, "5d0c9a3e-7b1f-4a2c-9e8d-6f5a4b3c2d1e")
ROLES = ("admin", "manager", "driver", "viewer", "")
# '' is no session key: those sessions are derived per user from gaps.
SESSIONS = ("s1", "s2", "s3", "", "")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
# UTC instants near daylight-saving changes: Berlin and New York in spring and autumn, Lord Howe (30 minutes).
ANCHORS = (
    utc("2026-03-29 01:00"),
    utc("2026-10-25 01:00"),
    utc("2026-03-08 07:00"),
    utc("2026-11-01 06:00"),
    utc("2026-04-04 15:00"),
    utc("2026-06-15 12:00"),
)


def brute_force(events, day: dt.date, tz_name: str, idle_minutes: int, session_idle_minutes: int) -> dict:
    """Summarize a day straight from the issue's words, one event and one candidate instant at a time.

    Events are (moment, user, session, action, page, role) in the order they were written.
    """
    tz = ZoneInfo(tz_name)
    idle = dt.timedelta(minutes=idle_minutes)
    session_idle = dt.timedelta(minutes=session_idle_minutes)
    mine = [e for e in events if e[0].astimezone(tz).date() == day]
    sessions: dict[object, list[dt.datetime]] = {}
    for moment, _user, session, _action, _page, _role in mine:
        if session:
            sessions.setdefault(("named", session), []).append(moment)
    # Without a session key, a user's next event more than the session idle time later starts a new session.
    for user in {e[1] for e in mine}:
        session_start = previous = None
        for moment in sorted(e[0] for e in mine if e[1] == user and not e[2]):
            if previous is None or moment - previous > session_idle:
                session_start = moment
            sessions.setdefault(("derived", user, session_start), []).append(moment)
            previous = moment
    total = sum((max(times) - min(times) for times in sessions.values()), dt.timedelta(0))
    mean = Fraction(total // dt.timedelta(microseconds=1), 10**6) / len(sessions) if sessions else Fraction(0)
    day_start = dt.datetime.combine(day, dt.time.min, tzinfo=tz).astimezone(UTC)
    # The count only rises at an event, so the peak is at an event of the day or at the day's start.
    candidates = [day_start] + [e[0] for e in mine]

    def online(instant):
        return len({user for moment, user, *_ in events if moment <= instant < moment + idle})

    hours = Counter(e[0].astimezone(tz).hour for e in mine)
    pages = Counter(e[4] for e in mine if e[3] == "page_view")

    def by_count_then_page(item):
        return -item[1], item[0]

    users = {e[1] for e in mine}
    # A user's role is that of their last event of the day; of events at one instant, the last written.
    last_role = {}
    for _moment, user, *_, role in sorted(mine, key=lambda e: e[0]):  # a stable sort
        last_role[user] = role or "unknown"
    return {
        "unique_users": len(users),
        "total_sessions": len(sessions),
        "total_page_views": sum(e[3] == "page_view" for e in mine),
        "total_api_calls": sum(e[3] == "api_call" for e in mine),
        "avg_session_duration_seconds": math.floor(mean + Fraction(1, 2)),
        "peak_concurrent_users": max(online(instant) for instant in candidates),
        "peak_hour": min(h for h in hours if hours[h] == max(hours.values())) if hours else None,
        "top_pages": [{"page": p, "count": n} for p, n in sorted(pages.items(), key=by_count_then_page)[:10]],
        "user_distribution": dict(sorted(Counter(last_role.values()).items())),
    }


@st.composite
def event_sets(draw):
    """A zone, the two idle times and up to 31 events within a day and a half of a DST change."""
    tz_name = draw(st.sampled_from(ZONES))
    idle_minutes = draw(st.sampled_from((1, 5, 30, 90)))
    session_idle_minutes = draw(st.sampled_from((5, 30, 90)))
    anchor = draw(st.sampled_from(ANCHORS))
    tz = ZoneInfo(tz_name)
    local_anchor = anchor.astimezone(tz).date()
    midnights = [
        dt.datetime.combine(local_anchor + dt.timedelta(days=k), dt.time.min, tzinfo=tz).astimezone(UTC)
        for k in (-1, 0, 1, 2)
    ]
    # Instants where definitions change their mind: midnights, an idle time before them, a microsecond off.
    edges = [
        m + shift
        for m in midnights
        for shift in (dt.timedelta(0), -dt.timedelta(minutes=idle_minutes), -MICROSECOND)
    ]
    idle = dt.timedelta(minutes=idle_minutes)
    session_idle = dt.timedelta(minutes=session_idle_minutes)
    moment = st.one_of(
        st.sampled_from(edges),
        # On a grid of half idle times, intervals touch, overlap and just miss each other.
        st.tuples(st.sampled_from(midnights), st.integers(-12, 12)).map(lambda mk: mk[0] + mk[1] * idle / 2),
        # On a grid of session idle times, gaps are exactly the session idle time, or one microsecond more.
        st.tuples(st.sampled_from(midnights), st.integers(-4, 4), st.sampled_from((0, 1))).map(
            lambda mkd: mkd[0] + mkd[1] * session_idle + mkd[2] * MICROSECOND
        ),
        st.integers(-36 * 3600, 36 * 3600).map(lambda s: anchor + dt.timedelta(seconds=s)),
        st.integers(-(36 * 3600 * 10**6), 36 * 3600 * 10**6).map(lambda us: anchor + us * MICROSECOND),
    )
    event = st.tuples(
        moment,
        st.sampled_from(USERS),
        st.sampled_from(SESSIONS),
        st.sampled_from(("page_view", "page_view", "api_call", "file_download")),
        st.sampled_from(("/a", "/b", "/B", "/a/1")),
        st.sampled_from(ROLES),
    )
    events = draw(st.lists(event, max_size=25))
    # Pairs of one user's keyless events exactly the session idle time apart, or a microsecond more.
    for first, user, role, extra in draw(
        st.lists(st.tuples(moment, st.sampled_from(USERS), st.sampled_from(ROLES), st.booleans()), max_size=3)
    ):
        second = first + session_idle + extra * MICROSECOND
        events += [(first, user, "", "page_view", "/a", role), (second, user, "", "api_call", "/b", role)]
    return tz_name, idle_minutes, session_idle_minutes, events


@settings(max_examples=120, deadline=None)
@given(event_sets())
def test_summaries_match_a_literal_reading_of_the_definitions(case):
    tz_name, idle_minutes, session_idle_minutes, events = case
    conn = connect(":memory:")
    try:
        apply_migrations(conn)
        for moment, user, session, action, page, role in events:
            # Whole seconds are stored without a fraction, as other writers may.
            text = to_db_timestamp(moment)
            if moment.microsecond == 0:
                text = text.removesuffix(".000000")
            add_event(conn, text, user, session, page, action, role)
        tz = ZoneInfo(tz_name)
        local_days = sorted({e[0].astimezone(tz).date() for e in events}) or [dt.date(2026, 6, 15)]
        first, last = local_days[0] - dt.timedelta(days=1), local_days[-1] + dt.timedelta(days=1)
        processor(conn, tz_name, idle_minutes, session_idle_minutes=session_idle_minutes).process_range(
            first, last
        )
        for day in date_range(first, last):
            row = summary(conn, day)
            stored = {key: row[key] for key in (*METRIC_COLUMNS, "peak_hour")}
            stored["top_pages"] = json.loads(row["top_pages"])
            stored["user_distribution"] = json.loads(row["user_distribution"])
            assert stored == brute_force(events, day, tz_name, idle_minutes, session_idle_minutes), day
            assert list(stored["user_distribution"]) == sorted(stored["user_distribution"]), day
    finally:
        conn.close()
