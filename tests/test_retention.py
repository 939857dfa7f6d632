"""Retention: raw events only of summarized days, summaries and audit rows, in batches."""

from __future__ import annotations

import datetime as dt

import pytest

from activity_events import add_event, add_user, dirty_days, processor, summary, utc
from activity_monitor.daily_summaries import RawDataPurgedError, read_data_version
from activity_monitor.retention import RetentionPolicy, RetentionPurge
from activity_monitor.timeutil import date_range, to_db_timestamp

D = dt.date
NOW = utc("2026-06-01 12:00")  # with 10 days of raw retention, raw events are kept from 2026-05-22
FIRST, LAST = D(2026, 5, 15), D(2026, 5, 31)


def purge(conn, now=NOW, **overrides):
    """Run the purge with a short test policy and a fixed clock."""
    policy = {
        "tz_name": "UTC",
        "idle_minutes": 5,
        "raw_days": 10,
        "summary_days": 730,
        "audit_days": 365,
        "batch_size": 3,
    }
    policy.update(overrides)
    return RetentionPurge(conn, RetentionPolicy(**policy), clock=lambda: now).purge()


def event_days(conn) -> list[str]:
    """Return the distinct UTC days that still have raw events."""
    sql = "SELECT DISTINCT substr(timestamp, 1, 10) FROM user_activity_log ORDER BY 1"
    return [row[0] for row in conn.execute(sql)]


@pytest.fixture
def user(db_conn) -> int:
    """One user with two events a day from FIRST to LAST."""
    user_id = add_user(db_conn, "driver")
    for day in date_range(FIRST, LAST):
        add_event(db_conn, dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC), user_id)
        add_event(db_conn, dt.datetime.combine(day, dt.time(17), tzinfo=dt.UTC), user_id)
    return user_id


def summarize(conn, first=FIRST, last=LAST):
    processor(conn, now=NOW).process_range(first, last)


def test_raw_events_of_summarized_days_past_retention_are_deleted(db_conn, user):
    summarize(db_conn)
    report = purge(db_conn)
    assert report.raw_events_deleted == 14
    assert report.raw_kept_from == D(2026, 5, 22)
    assert report.raw_held_back_from is None
    assert event_days(db_conn)[0] == "2026-05-22"
    assert summary(db_conn, "2026-05-15")["total_events"] == 2
    assert dirty_days(db_conn) == []


def test_raw_events_of_a_day_without_summary_are_never_deleted(db_conn, user):
    summarize(db_conn, FIRST, D(2026, 5, 17))
    summarize(db_conn, D(2026, 5, 19), LAST)
    report = purge(db_conn)
    assert (report.raw_kept_from, report.raw_held_back_from) == (D(2026, 5, 18), D(2026, 5, 18))
    assert event_days(db_conn)[0] == "2026-05-18"


def test_raw_events_of_a_dirty_or_partial_day_are_never_deleted(db_conn, user):
    summarize(db_conn)
    add_event(db_conn, utc("2026-05-17 10:00"), user)  # late data
    db_conn.execute("UPDATE activity_summary_daily SET is_partial = 1 WHERE date = '2026-05-19'")
    assert purge(db_conn).raw_kept_from == D(2026, 5, 17)
    processor(db_conn, now=NOW).process_missing_days()
    assert purge(db_conn).raw_kept_from == D(2026, 5, 22)


def test_raw_events_summarized_in_another_time_zone_are_kept(db_conn, user):
    summarize(db_conn)
    assert purge(db_conn, tz_name="Europe/Berlin").raw_events_deleted == 0


def test_raw_events_summarized_with_another_session_idle_time_are_kept(db_conn, user):
    summarize(db_conn)  # with the default 30 minutes
    report = purge(db_conn, session_idle_minutes=45)
    assert (report.raw_events_deleted, report.raw_kept_from) == (0, None)
    assert processor(db_conn, now=NOW, session_idle_minutes=45).missing_days()[0] == FIRST


def test_events_in_the_idle_minutes_before_the_first_kept_day_stay(db_conn, user):
    add_event(db_conn, utc("2026-05-21 23:54"), user, "late")
    add_event(db_conn, utc("2026-05-21 23:57"), user, "late")
    add_event(db_conn, utc("2026-05-22 00:01"), add_user(db_conn, "admin"), "early")
    summarize(db_conn)
    before = summary(db_conn, "2026-05-22")
    purge(db_conn)
    timestamps = [row[0] for row in db_conn.execute("SELECT timestamp FROM user_activity_log ORDER BY 1")]
    assert timestamps[0].startswith("2026-05-21 23:57")
    processor(db_conn, now=NOW).summarize_day(D(2026, 5, 22))
    assert summary(db_conn, "2026-05-22") == before
    assert before["peak_concurrent_users"] == 2


def test_purged_days_are_never_recomputed(db_conn, user):
    summarize(db_conn)
    purge(db_conn)
    days = processor(db_conn, now=NOW)
    assert days.missing_days() == []
    with pytest.raises(RawDataPurgedError):
        days.summarize_day(D(2026, 5, 16))
    report = days.process_range(D(2026, 5, 20), D(2026, 5, 23))
    assert report.skipped_purged == [D(2026, 5, 20), D(2026, 5, 21)]
    assert report.dates == [D(2026, 5, 22), D(2026, 5, 23)]

    add_event(db_conn, utc("2026-05-16 10:00"), user)  # an import of old data
    assert dirty_days(db_conn) == ["2026-05-16"]
    assert days.process_missing_days().dates == []
    assert dirty_days(db_conn) == []
    assert summary(db_conn, "2026-05-16")["total_events"] == 2


def test_purging_twice_deletes_nothing_more(db_conn, user):
    summarize(db_conn)
    purge(db_conn)
    again = purge(db_conn)
    assert (again.raw_events_deleted, again.summaries_deleted, again.raw_kept_from) == (0, 0, D(2026, 5, 22))


def test_old_summaries_are_deleted_and_bump_the_data_version(db_conn, user):
    summarize(db_conn)
    version = read_data_version(db_conn)
    report = purge(db_conn, summary_days=15)  # summaries kept from 2026-05-17
    assert report.summaries_deleted == 2
    assert summary(db_conn, "2026-05-16") is None
    assert summary(db_conn, "2026-05-17") is not None
    assert read_data_version(db_conn) == version + 1


def test_summaries_of_days_whose_raw_events_are_kept_stay(db_conn, user):
    summarize(db_conn)
    report = purge(db_conn, summary_days=3)
    assert summary(db_conn, "2026-05-21") is None
    assert summary(db_conn, "2026-05-22") is not None
    assert report.summaries_deleted == 7
    assert processor(db_conn, now=NOW).missing_days() == []


def test_old_audit_rows_are_deleted_in_batches(db_conn):
    for age_days in (400, 380, 366, 364, 10):
        created = to_db_timestamp(NOW - dt.timedelta(days=age_days))
        db_conn.execute("INSERT INTO activity_audit_log (action, created_at) VALUES ('X', ?)", (created,))
    for _ in range(4):
        db_conn.execute(
            "INSERT INTO activity_audit_log (action, created_at) VALUES ('X', '2020-01-01 00:00:00')"
        )
    assert purge(db_conn).audit_rows_deleted == 7
    assert db_conn.execute("SELECT COUNT(*) FROM activity_audit_log").fetchone()[0] == 2


def test_job_runs_older_than_the_audit_retention_are_deleted(db_conn):
    for age_days in (400, 366, 364, 1):
        started = to_db_timestamp(NOW - dt.timedelta(days=age_days))
        db_conn.execute(
            "INSERT INTO activity_job_runs (job, started_at, status) VALUES ('refresh', ?, 'ok')", (started,)
        )
    assert purge(db_conn).job_runs_deleted == 2
    assert db_conn.execute("SELECT COUNT(*) FROM activity_job_runs").fetchone()[0] == 2


def test_a_purge_of_an_empty_database_does_nothing(db_conn):
    report = purge(db_conn)
    assert report.as_dict() | {"seconds": 0} == {
        "raw_events_deleted": 0,
        "raw_kept_from": None,
        "raw_held_back_from": None,
        "summaries_deleted": 0,
        "audit_rows_deleted": 0,
        "job_runs_deleted": 0,
        "seconds": 0,
    }


def test_the_policy_comes_from_the_app_config(make_app):
    app = make_app(
        ACTIVITY_RETENTION_DAYS=30,
        ACTIVITY_PURGE_BATCH_SIZE=100,
        ACTIVITY_TIMEZONE="Europe/Berlin",
        ACTIVITY_SESSION_IDLE_MINUTES=45,
    )
    policy = RetentionPolicy.from_config(app.config)
    assert (policy.raw_days, policy.summary_days, policy.audit_days) == (30, 730, 365)
    assert (policy.batch_size, policy.tz_name, policy.idle_minutes) == (100, "Europe/Berlin", 5)
    assert policy.session_idle_minutes == 45
