"""Freshness: the leader's refresh of today and dirty days, and what /health says about how current
the summaries are (today's row, the dirty backlog, gaps) and about the leader's jobs."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from activity_events import add_event, local, summary, utc
from activity_monitor import get_state
from activity_monitor.background_tasks import BackgroundTaskManager
from activity_monitor.daily_summaries import DailySummaryProcessor, read_data_version
from activity_monitor.db import connect
from activity_monitor.storage import DatabaseError
from activity_monitor.timeutil import parse_db_timestamp, to_db_timestamp
from conftest import AuthActions, TestClock
from summary_rows import insert_summary

PREFIX = "/api/admin/activity"
BERLIN = "Europe/Berlin"


@pytest.fixture
def leader_for(make_app: Callable[..., Flask]) -> Iterator[Callable[..., BackgroundTaskManager]]:
    """Build an app and a manager that leads its jobs (not started: tests run jobs themselves)."""
    made: list[BackgroundTaskManager] = []

    def build(**config: Any) -> BackgroundTaskManager:
        manager = BackgroundTaskManager(make_app(**config))
        assert manager.lock.acquire()
        manager.is_leader = manager.caught_up = True
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.stop()


@pytest.fixture
def leader(leader_for: Callable[..., BackgroundTaskManager]) -> BackgroundTaskManager:
    """The leading manager of the test's app (zone UTC)."""
    return leader_for()


def refresh(manager: BackgroundTaskManager) -> dict[str, Any]:
    """Run one refresh as the scheduler would (recorded in the job history)."""
    result = manager.run_job("refresh", manager.refresh)
    assert manager.jobs["refresh"].last_status == "ok", manager.jobs["refresh"].last_error
    return result


def admin_client(app: Flask) -> FlaskClient:
    """Return a client of the app logged in as an admin."""
    client = app.test_client()
    AuthActions(app, client).login("admin")
    return client


def trends(client: FlaskClient, start: dt.date, end: dt.date, metric: str = "unique_users") -> dict[str, Any]:
    """GET /trends for a range and one metric; return the whole answer."""
    response = client.get(
        f"{PREFIX}/trends", query_string={"start_date": str(start), "end_date": str(end), "metrics": metric}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def point(answer: dict[str, Any], day: dt.date, metric: str = "unique_users") -> dict[str, Any]:
    """Return one day's point of a trends answer."""
    [found] = [p for p in answer["data"]["metrics"][metric] if p["date"] == day.isoformat()]
    return found


def health(client: FlaskClient) -> dict[str, Any]:
    """GET /health and return the whole report."""
    return client.get(f"{PREFIX}/health").get_json()


def summarize(app: Flask, clock: TestClock, *days: dt.date) -> None:
    """Write the final rows of past days, as the daily job would."""
    with DailySummaryProcessor.from_app(app, clock=clock) as processor:
        for day in days:
            processor.summarize_day(day)


def data_version(app: Flask) -> int:
    conn = connect(get_state(app).database)
    try:
        return read_data_version(conn)
    finally:
        conn.close()


# --- the refresh ---------------------------------------------------------------------------------


def test_a_tracked_request_shows_in_today_after_one_refresh(leader, clock):
    client = admin_client(leader.app)
    today = clock.today()
    before = point(trends(client, today - dt.timedelta(days=6), today), today)
    assert before["value"] == 0 and "partial" not in before

    refresh(leader)

    after = trends(client, today - dt.timedelta(days=6), today)
    assert after["cached"] is False
    assert point(after, today)["value"] == 1 and point(after, today)["partial"] is True


def test_a_late_event_changes_a_past_days_answer_after_one_refresh(leader, clock, db_conn):
    app, client = leader.app, admin_client(leader.app)
    day = clock.today() - dt.timedelta(days=3)
    add_event(db_conn, utc(f"{day} 09:00"), 101)
    summarize(app, clock, day)
    assert point(trends(client, day, day), day)["value"] == 1

    add_event(db_conn, utc(f"{day} 15:00"), 102)  # late: the day's row is final, so it turns dirty
    stale = trends(client, day, day)
    assert stale["cached"] is True and point(stale, day)["value"] == 1

    result = refresh(leader)

    assert day.isoformat() in result["changed"]
    fresh = trends(client, day, day)
    assert fresh["cached"] is False and point(fresh, day)["value"] == 2
    assert fresh["data"]["data_version"] > stale["data"]["data_version"]


def test_the_first_refresh_after_midnight_completes_yesterdays_partial_row(leader, clock, db_conn):
    today = clock.today()
    clock.set(utc(f"{today} 23:50"))
    add_event(db_conn, utc(f"{today} 23:49"), 101)
    refresh(leader)
    add_event(db_conn, utc(f"{today} 23:58"), 102)  # after the day's last refresh; no trigger marks it
    clock.set(utc(f"{today + dt.timedelta(days=1)} 00:05"))

    result = refresh(leader)

    assert today.isoformat() in result["changed"]
    answer = point(trends(admin_client(leader.app), today, today), today)
    assert answer["value"] == 2 and "partial" not in answer


def test_a_refresh_without_new_events_leaves_the_data_version_alone(leader, clock, db_conn):
    app = leader.app
    add_event(db_conn, clock.now - dt.timedelta(hours=1), 101)
    refresh(leader)
    version = data_version(app)
    first_computed = summary(db_conn, clock.today())["computed_at"]

    clock.advance(minutes=5)
    assert refresh(leader)["changed"] == []
    assert data_version(app) == version
    # The row was written again (its age restarts) without counting as a change.
    assert summary(db_conn, clock.today())["computed_at"] == to_db_timestamp(clock.now) != first_computed

    add_event(db_conn, clock.now, 102)
    clock.advance(minutes=5)
    assert refresh(leader)["changed"] == [clock.today().isoformat()]
    assert data_version(app) == version + 1


def test_the_refresh_replays_the_spool_first_so_spooled_events_count_today(leader, clock, db_conn):
    from activity_monitor import event_spool
    from activity_monitor.activity_tracker import EVENT_COLUMNS

    event = dict.fromkeys(EVENT_COLUMNS)
    event.update(
        session_id="s1",
        user_id=101,
        role="driver",
        timestamp=to_db_timestamp(clock.now),
        page_url="/home",
        action_type="page_view",
    )
    with leader.app.app_context():
        event_spool.get_spool(leader.app).append("event", event, sqlite3.OperationalError("disk I/O error"))

    result = refresh(leader)

    assert result["spool"]["replayed"] == 1
    assert summary(db_conn, clock.today())["total_page_views"] == 1


def test_the_refresh_recomputes_today_and_dirty_days_only(leader, clock, db_conn):
    today = clock.today()
    old, dirty = today - dt.timedelta(days=5), today - dt.timedelta(days=2)
    for day in (old, dirty):
        add_event(db_conn, utc(f"{day} 09:00"), 101)
    summarize(leader.app, clock, old, dirty)
    add_event(db_conn, utc(f"{dirty} 10:00"), 102)

    days = [entry["date"] for entry in refresh(leader)["days"]]

    assert days == [dirty.isoformat(), today.isoformat()]
    assert db_conn.execute("SELECT COUNT(*) FROM activity_dirty_days").fetchone()[0] == 0


def test_the_refresh_fills_a_gap_inside_the_summarized_span(leader, clock, db_conn):
    today = clock.today()
    first, gap, last = (today - dt.timedelta(days=n) for n in (4, 3, 2))
    insert_summary(db_conn, first, value=1)
    insert_summary(db_conn, last, value=1)
    add_event(db_conn, utc(f"{gap} 09:00"), 101)

    assert gap.isoformat() in [entry["date"] for entry in refresh(leader)["days"]]
    assert summary(db_conn, gap)["unique_users"] == 1


def wait_until(condition: Callable[[], Any], timeout: float) -> Any:
    """Return the first truthy result of ``condition`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    return None


class WritingMidRead(DailySummaryProcessor):
    """A processor that, while it reads a day's events, has another connection write one event
    with a short lock timeout, and notes whether the write got through."""

    def __init__(self, conn: Any, writer: Any, moment: dt.datetime, clock: TestClock):
        super().__init__(conn, "UTC", 5, clock)
        self.writer, self.moment, self.outcome = writer, moment, None

    def _read_events(self, window: Any) -> Any:
        try:
            with self.writer.storage.bounded_write(self.writer, 200):
                add_event(self.writer, self.moment, 777)
            self.outcome = "written"
        except DatabaseError:
            self.writer.execute("SELECT 1")  # the connection is usable again after the timeout
            self.outcome = "kept out"
        return super()._read_events(window)


def test_reading_todays_events_keeps_no_event_writer_waiting(app, clock, db_conn):
    writer = connect(app.config["ACTIVITY_DATABASE"])
    try:
        processor = WritingMidRead(db_conn, writer, clock.now, clock)
        processor.summarize_day(clock.today())
        # The past day's read, by contrast, keeps writers out (a late event must mark it dirty).
        past = WritingMidRead(db_conn, writer, clock.now - dt.timedelta(days=2), clock)
        past.summarize_day(clock.today() - dt.timedelta(days=2))
    finally:
        writer.close()
    assert processor.outcome == "written"
    assert past.outcome == "kept out"


def test_the_leader_refreshes_every_interval_on_its_own_thread(make_app, clock):
    app = make_app(
        ACTIVITY_BACKGROUND_TASKS=True, ACTIVITY_REFRESH_SECONDS=1, ACTIVITY_SCHEDULER_TICK_SECONDS=1
    )
    manager = get_state(app).background
    # Past the new leader's catch-up, so only a refresh can bring the request below into today's row.
    assert wait_until(
        lambda: "startup_catch_up" in manager.jobs and manager.jobs["startup_catch_up"].run_count, 20
    )
    client = admin_client(app)
    today = clock.today()
    client.get("/")  # a tracked page view

    shown = wait_until(
        lambda: point(trends(client, today, today, "total_page_views"), today, "total_page_views")["value"],
        20,
    )

    assert shown == 1, "today's row never showed the tracked page view"
    assert manager.jobs["refresh"].run_count >= 1


def test_the_refresh_interval_must_be_a_positive_whole_number(make_app):
    from activity_monitor.config import ConfigError

    for bad in (0, -5, 1.5, "300", True):
        with pytest.raises(ConfigError, match="ACTIVITY_REFRESH_SECONDS"):
            make_app(ACTIVITY_REFRESH_SECONDS=bad)


# --- /health: today's row --------------------------------------------------------------------------


def test_health_gives_the_age_of_todays_row(leader, clock):
    refreshed_at = clock.now
    refresh(leader)
    clock.advance(seconds=100)
    freshness = health(admin_client(leader.app))["checks"]["freshness"]
    assert freshness["today"] == {
        "date": clock.today().isoformat(),
        "computed_at": refreshed_at.isoformat(),
        "age_seconds": 100.0,
        "stale": False,
    }
    assert freshness["refresh_seconds"] == 300 and freshness["stale_after_seconds"] == 600


def test_a_stale_today_degrades_health_where_background_jobs_are_expected(leader, clock):
    refresh(leader)
    clock.advance(seconds=601)
    client = admin_client(leader.app)
    leader.app.config["ACTIVITY_BACKGROUND_TASKS"] = True  # the setting of this install's serving processes
    report = health(client)
    freshness = report["checks"]["freshness"]
    assert freshness["today"]["stale"] is True and freshness["today"]["age_seconds"] == 601.0
    assert freshness["status"] == "degraded" and report["status"] == "degraded"
    assert "Today's row" in freshness["reasons"][0]


def test_a_stale_today_is_only_reported_on_a_cli_driven_install(leader, clock):
    refresh(leader)
    clock.advance(hours=5)
    freshness = health(admin_client(leader.app))["checks"]["freshness"]
    assert freshness["background_jobs_expected"] is False
    assert freshness["today"]["stale"] is True
    assert freshness["status"] == "ok" and freshness["reasons"] == []


def test_after_midnight_a_missing_today_row_gets_two_refresh_intervals_of_grace(leader, clock):
    app = leader.app
    app.config["ACTIVITY_BACKGROUND_TASKS"] = True
    clock.set(dt.datetime(2026, 5, 21, 0, 9, tzinfo=dt.UTC))
    client = admin_client(app)
    freshness = health(client)["checks"]["freshness"]
    assert freshness["today"]["computed_at"] is None and freshness["today"]["age_seconds"] is None
    assert freshness["today"]["stale"] is False and freshness["status"] == "ok"
    clock.set(dt.datetime(2026, 5, 21, 0, 11, tzinfo=dt.UTC))
    assert health(client)["checks"]["freshness"]["today"]["stale"] is True


# --- /health: the dirty backlog ------------------------------------------------------------------


def test_health_reports_the_dirty_backlog_and_how_long_it_waited(leader, clock, db_conn):
    app = leader.app
    app.config["ACTIVITY_BACKGROUND_TASKS"] = True
    today = clock.today()
    days = [today - dt.timedelta(days=n) for n in (4, 2)]
    for day in days:
        add_event(db_conn, utc(f"{day} 09:00"), 101)
    summarize(app, clock, *days)
    refresh(leader)
    for day in days:
        add_event(db_conn, utc(f"{day} 10:00"), 102)
    # The triggers stamp marked_at by the database's clock, and the wait is read on that clock
    # (whatever the app's says): back-date the marks by the database's own now.
    def marked_ago(seconds: float, day: dt.date | None = None) -> None:
        database_now = db_conn.execute(f"SELECT {db_conn.storage.current_time_text()}").fetchone()[0]
        marked = to_db_timestamp(parse_db_timestamp(database_now) - dt.timedelta(seconds=seconds))
        where, params = ("WHERE date = ?", (marked, day.isoformat())) if day else ("", (marked,))
        db_conn.execute(f"UPDATE activity_dirty_days SET marked_at = ? {where}", params)

    marked_ago(0)
    marked_ago(90, days[1])
    client = admin_client(app)

    freshness = health(client)["checks"]["freshness"]
    dirty = freshness["dirty_days"]
    assert dirty["count"] == 2 and dirty["oldest_date"] == days[0].isoformat()
    assert 90.0 <= freshness["dirty_days"]["longest_wait_seconds"] < 120
    assert freshness["status"] == "ok"

    clock.advance(seconds=500)  # the app's clock does not age the marks
    freshness = health(client)["checks"]["freshness"]
    assert freshness["dirty_days"]["longest_wait_seconds"] < 120 and freshness["status"] == "ok"

    marked_ago(601, days[1])
    freshness = health(client)["checks"]["freshness"]
    assert 601.0 <= freshness["dirty_days"]["longest_wait_seconds"] < 630
    assert freshness["status"] == "degraded"

    refresh(leader)
    freshness = health(client)["checks"]["freshness"]
    assert freshness["dirty_days"] == {"count": 0, "oldest_date": None, "longest_wait_seconds": None}
    assert freshness["status"] == "ok"


# --- /health: gaps -----------------------------------------------------------------------------------


def test_a_day_with_events_but_no_summary_inside_the_span_is_a_gap_and_degrades_health(
    leader, clock, db_conn
):
    today = clock.today()
    first, gap, empty, last = (today - dt.timedelta(days=n) for n in (5, 4, 3, 2))
    insert_summary(db_conn, first, value=3)
    insert_summary(db_conn, last, value=3)
    add_event(db_conn, utc(f"{gap} 09:00"), 101)
    add_event(db_conn, utc(f"{today} 09:00"), 101)  # after the span: the daily job's business, no gap
    client = admin_client(leader.app)

    report = health(client)
    assert report["checks"]["freshness"]["gaps"] == {"count": 1, "days": [gap.isoformat()]}
    assert report["checks"]["freshness"]["status"] == "degraded" and report["status"] == "degraded"
    assert empty.isoformat() not in report["checks"]["freshness"]["gaps"]["days"]

    refresh(leader)
    assert health(client)["checks"]["freshness"]["gaps"] == {"count": 0, "days": []}


def test_gaps_are_listed_up_to_ten_and_counted_in_full(leader, clock, db_conn):
    today = clock.today()
    insert_summary(db_conn, today - dt.timedelta(days=20), value=1)
    insert_summary(db_conn, today - dt.timedelta(days=1), value=1)
    gaps = [today - dt.timedelta(days=n) for n in range(19, 7, -1)]
    for day in gaps:
        add_event(db_conn, utc(f"{day} 12:00"), 101)
    report = health(admin_client(leader.app))["checks"]["freshness"]["gaps"]
    assert report == {"count": 12, "days": [day.isoformat() for day in gaps[:10]]}


@pytest.mark.parametrize(
    ("gap", "moment"),
    [
        # Spring forward: a 23-hour local day from 23:00 UTC the day before (CET) to 22:00 UTC.
        pytest.param(dt.date(2026, 3, 29), "2026-03-29 00:30", id="23-hour-day"),
        # Fall back: a 25-hour local day from 22:00 UTC the day before (CEST) to 23:00 UTC.
        pytest.param(dt.date(2026, 10, 25), "2026-10-25 00:30", id="25-hour-day"),
    ],
)
def test_gaps_follow_local_days_across_dst(leader_for, clock, db_conn, gap, moment):
    clock.set(dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC))
    manager = leader_for(ACTIVITY_TIMEZONE=BERLIN)
    for day in (gap - dt.timedelta(days=1), gap + dt.timedelta(days=1)):
        insert_summary(db_conn, day, value=1)
        # Events on the days that have their row, right at the gap's local midnights, are no gap.
        add_event(db_conn, local(f"{day} 23:59:59", BERLIN), 101)
        add_event(db_conn, local(f"{day} 00:00", BERLIN), 101)
    # The gap's only event falls on the UTC day before: only local-day bounds find it.
    add_event(db_conn, local(moment, BERLIN), 102)
    assert local(moment, BERLIN).date() == gap - dt.timedelta(days=1)

    freshness = health(admin_client(manager.app))["checks"]["freshness"]
    assert freshness["gaps"] == {"count": 1, "days": [gap.isoformat()]}


def test_an_install_without_gaps_probes_no_raw_events(leader, clock, db_conn):
    # Every day of the span has its row: the check reads the dates and nothing else.
    today = clock.today()
    for n in range(1, 31):
        insert_summary(db_conn, today - dt.timedelta(days=n), value=1)
    processor = DailySummaryProcessor(db_conn, "UTC", 5, clock)
    statements: list[str] = []
    execute = db_conn.execute

    def counting(sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    db_conn.execute = counting  # type: ignore[method-assign]
    try:
        assert processor.gap_days() == []
    finally:
        db_conn.execute = execute  # type: ignore[method-assign]
    assert len(statements) == 1


# --- /health: the scheduler from the shared history ---------------------------------------------------


def test_a_process_running_no_jobs_shows_the_leaders_runs(leader, make_app, clock):
    refresh(leader)
    other = make_app()  # another worker on the same database, its background jobs off
    scheduler = health(admin_client(other))["checks"]["scheduler"]
    assert scheduler["role"] == "none" and scheduler["running"] is False and scheduler["leader"] is False
    assert scheduler["status"] == "ok" and scheduler["failed_jobs"] == []
    run = scheduler["history"]["refresh"]["last_run"]
    assert run["status"] == "ok" and run["error"] is None
    assert run["started_at"] == clock.now.isoformat() and run["finished_at"] == clock.now.isoformat()
    assert (run["host"], run["pid"]) == (socket.gethostname(), os.getpid())
    assert isinstance(run["duration_ms"], float)
    assert scheduler["history"]["refresh"]["last_ok"] == run
    assert scheduler["history"]["log_cleanup"] == {"last_run": None, "last_ok": None}


def test_a_failed_leader_run_degrades_every_workers_health(leader, make_app, clock):
    refresh(leader)
    ok_run_at = clock.now
    clock.advance(minutes=5)

    def explode() -> None:
        raise RuntimeError("disk on fire")

    leader.run_job("refresh", explode)
    scheduler = health(admin_client(make_app()))["checks"]["scheduler"]
    assert scheduler["status"] == "degraded" and scheduler["failed_jobs"] == ["refresh"]
    history = scheduler["history"]["refresh"]
    assert history["last_run"]["status"] == "failed"
    assert history["last_run"]["error"] == "RuntimeError: disk on fire"
    assert history["last_ok"]["started_at"] == ok_run_at.isoformat()


def test_a_follower_is_not_degraded_for_being_a_follower(leader, make_app, clock, db_conn):
    insert_summary(db_conn, clock.today() - dt.timedelta(days=1), value=1)  # the summaries are current
    refresh(leader)
    follower_app = make_app(ACTIVITY_BACKGROUND_TASKS=True, ACTIVITY_SCHEDULER_TICK_SECONDS=30)
    report = health(admin_client(follower_app))
    scheduler = report["checks"]["scheduler"]
    assert scheduler["role"] == "follower" and scheduler["running"] is True
    assert scheduler["status"] == "ok"
    assert scheduler["history"]["refresh"]["last_run"]["pid"] == os.getpid()
    assert report["checks"]["freshness"]["status"] == "ok"
    assert report["status"] == "healthy"
