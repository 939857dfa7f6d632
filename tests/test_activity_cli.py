"""The ``flask activity`` summarize, backfill, purge, trends and replay-spool commands, on the app's clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from activity_events import add_event, add_user, dirty_days, summary


@pytest.fixture
def today(clock) -> dt.date:
    """The app's local day (UTC) by the test clock."""
    return clock.today()


@pytest.fixture
def days_ago(today):
    """Return the day n days before the app's today."""

    def before(n: int) -> dt.date:
        return today - dt.timedelta(days=n)

    return before


def at_noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)


@pytest.fixture
def user(db_conn) -> int:
    return add_user(db_conn, "manager")


def test_summarize_writes_the_given_day_and_says_what_it_did(runner, db_conn, user, days_ago):
    add_event(db_conn, at_noon(days_ago(3)), user)
    result = runner.invoke(args=["activity", "summarize", "--date", days_ago(3).isoformat()])
    assert result.exit_code == 0, result.output
    assert f"Summarized {days_ago(3)} (final)" in result.output
    assert "1 events, 1 users, 1 sessions" in result.output
    assert summary(db_conn, days_ago(3))["unique_users"] == 1


def test_summarize_defaults_to_yesterday(runner, db_conn, days_ago):
    result = runner.invoke(args=["activity", "summarize"])
    assert result.exit_code == 0, result.output
    assert summary(db_conn, days_ago(1))["is_partial"] == 0


def test_summarize_defaults_to_yesterday_in_the_apps_zone_by_its_clock(make_app, clock):
    clock.set(dt.datetime(2026, 1, 10, 23, 30, tzinfo=dt.UTC))  # already 11 January in Berlin
    app = make_app(ACTIVITY_TIMEZONE="Europe/Berlin")
    result = app.test_cli_runner().invoke(args=["activity", "summarize"])
    assert result.exit_code == 0, result.output
    assert "Summarized 2026-01-10 (final)" in result.output


def test_summarize_of_today_stores_a_partial_row(runner, db_conn, today):
    result = runner.invoke(args=["activity", "summarize", "--date", today.isoformat()])
    assert "(partial" in result.output
    assert summary(db_conn, today)["is_partial"] == 1


def test_summarize_refuses_a_day_that_has_not_begun(runner, db_conn, days_ago):
    result = runner.invoke(args=["activity", "summarize", "--date", days_ago(-2).isoformat()])
    assert result.exit_code == 2
    assert "has not begun" in result.output
    assert summary(db_conn, days_ago(-2)) is None


def test_backfill_without_dates_fills_every_missing_or_dirty_day(runner, db_conn, user, days_ago, today):
    add_event(db_conn, at_noon(days_ago(4)), user)
    assert runner.invoke(args=["activity", "summarize", "--date", days_ago(2).isoformat()]).exit_code == 0
    add_event(db_conn, at_noon(days_ago(2)), user)
    assert dirty_days(db_conn) == [days_ago(2).isoformat()]
    result = runner.invoke(args=["activity", "backfill"])
    assert result.exit_code == 0, result.output
    assert "Summarized 4 day(s)" in result.output
    assert f"Recomputed after late data: {days_ago(2)}." in result.output
    assert [summary(db_conn, days_ago(n))["total_events"] for n in (4, 3, 2, 1)] == [1, 0, 1, 0]
    assert summary(db_conn, today) is None
    assert "Summarized 0 day(s)" in runner.invoke(args=["activity", "backfill"]).output


def test_backfill_with_dates_writes_exactly_those_days(runner, db_conn, user, days_ago):
    add_event(db_conn, at_noon(days_ago(40)), user)
    result = runner.invoke(
        args=["activity", "backfill", "--from", days_ago(10).isoformat(), "--to", days_ago(8).isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "Summarized 3 day(s)" in result.output
    written = [row[0] for row in db_conn.execute("SELECT date FROM activity_summary_daily ORDER BY date")]
    assert written == [days_ago(n).isoformat() for n in (10, 9, 8)]


def test_backfill_from_alone_runs_through_yesterday(runner, db_conn, days_ago):
    result = runner.invoke(args=["activity", "backfill", "--from", days_ago(2).isoformat()])
    assert "Summarized 2 day(s)" in result.output


def test_backfill_refuses_a_range_that_ends_before_it_starts(runner, days_ago):
    result = runner.invoke(
        args=["activity", "backfill", "--from", days_ago(1).isoformat(), "--to", days_ago(3).isoformat()]
    )
    assert result.exit_code == 2
    assert "is after --to" in result.output


def test_purge_says_what_it_deleted(runner, db_conn, user, days_ago):
    add_event(db_conn, at_noon(days_ago(100)), user)
    add_event(db_conn, at_noon(days_ago(2)), user)
    runner.invoke(args=["activity", "backfill"])
    result = runner.invoke(args=["activity", "purge"])
    assert result.exit_code == 0, result.output
    assert f"Deleted 1 raw event(s); raw events are kept from {days_ago(90)}." in result.output
    assert "Deleted 0 summary row(s) and 0 audit row(s)" in result.output


def test_purge_says_when_an_unsummarized_day_holds_raw_events_back(runner, db_conn, user, days_ago):
    add_event(db_conn, at_noon(days_ago(100)), user)
    result = runner.invoke(args=["activity", "purge"])
    assert "Deleted 0 raw event(s)" in result.output
    assert f"Kept raw events from {days_ago(100)} on past retention" in result.output


def test_trends_prints_the_same_data_object_as_the_api(runner, app, db_conn, client, auth, days_ago):
    import json

    from summary_rows import insert_series

    insert_series(db_conn, days_ago(20), [5, 9, 14, 3, 8, 12, 7, 6, 10, 11])
    args = ["activity", "trends", "--from", days_ago(20).isoformat(), "--to", days_ago(11).isoformat()]
    result = runner.invoke(args=[*args, "--metrics", "unique_users,total_sessions"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    auth.login("admin")
    query = f"start_date={days_ago(20)}&end_date={days_ago(11)}&metrics=total_sessions,unique_users"
    served = client.get(f"/api/admin/activity/trends?{query}").get_json()["data"]
    assert printed["metrics"] == served["metrics"]
    assert printed["summary"] == served["summary"]
    assert list(printed["metrics"]["unique_users"][0]) == ["date", "value", "7day_avg", "30day_avg"]


def test_trends_refuses_bad_input_with_the_api_rules(runner, today):
    future = runner.invoke(args=["activity", "trends", "--to", (today + dt.timedelta(days=2)).isoformat()])
    assert future.exit_code == 2 and "--to" in future.output and "in the future" in future.output
    unknown = runner.invoke(args=["activity", "trends", "--metrics", "visits"])
    assert unknown.exit_code == 2 and "valid metrics are" in unknown.output
    bad_day = runner.invoke(args=["activity", "trends", "--from", "2026-02-30"])
    assert bad_day.exit_code == 2 and "YYYY-MM-DD" in bad_day.output


def spool_folder(app):
    from activity_monitor import event_spool

    return Path(event_spool.get_spool(app).folder)


def test_replay_spool_replays_the_files_of_ended_processes_of_any_host_and_says_what_it_did(
    runner, app, db_conn
):
    from test_event_spool import write_dead_file

    dead = write_dead_file(spool_folder(app), "old-container-7-0a0b0c0d.jsonl", ["/gone", "/gone-too"])
    result = runner.invoke(args=["activity", "replay-spool"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Replayed 2 row(s) from 1 spool file(s) of ended processes in ")
    assert "0 file(s) belong to running processes" in result.output
    assert result.output.count("\n") == 1
    pages = [row[0] for row in db_conn.execute("SELECT page_url FROM user_activity_log ORDER BY id")]
    assert pages == ["/gone", "/gone-too"]
    assert not dead.exists()


def test_replay_spool_says_why_and_exits_1_when_the_database_does_not_take_the_rows(
    runner, app, unreachable_storage
):
    from activity_monitor.extension import get_state
    from test_event_spool import write_dead_file

    dead = write_dead_file(spool_folder(app), "old-container-7-0a0b0c0d.jsonl", ["/gone"])
    state = get_state(app)
    reachable, state.storage = state.storage, unreachable_storage
    try:
        result = runner.invoke(args=["activity", "replay-spool"])
    finally:
        state.storage = reachable
    assert result.exit_code == 1, result.output
    assert result.output.startswith("The database did not take the spooled rows (")
    assert "Run it again once the database takes writes." in result.output
    assert dead.exists() and dead.read_text().count("\n") == 1
