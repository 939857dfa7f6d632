"""BackgroundTaskManager: schedules, failure handling, leadership, shutdown, health."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
import types
import uuid

import click
import pytest
import redis
import schedule

from activity_monitor import get_state
from activity_monitor.activity_trends_service import preset_ranges
from activity_monitor.background_tasks import JOB_NAMES, BackgroundTaskManager
from activity_monitor.db import connect
from activity_monitor.leader_lock import FileLeaderLock, RedisLeaderLock, lock_for_config
from activity_monitor.timeutil import to_db_timestamp
from conftest import DEFAULT_NOW, AuthActions, redis_url

UTC = dt.UTC
# A Friday noon: the daily run is due at 02:00 on Saturday, the weekly purge at 03:00 on Sunday.
FRIDAY_NOON = dt.datetime(2026, 3, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def scheduled_clock(clock, monkeypatch):
    """The test clock, standing at FRIDAY_NOON, and also the clock the ``schedule`` library reads
    (naive local times), so tests move time for the jobs and the app alike instead of sleeping."""

    class ClockDateTime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            moment = clock.now
            return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    module = types.SimpleNamespace(datetime=ClockDateTime, timedelta=dt.timedelta, time=dt.time)
    monkeypatch.setattr(schedule, "datetime", module)
    clock.set(FRIDAY_NOON)
    return clock


@pytest.fixture
def manager_for(make_app):
    """Build managers (not started) on the test's database and clock; stop them afterwards."""
    made = []

    def build(**config):
        app = make_app(**config)
        manager = BackgroundTaskManager(app)
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.stop()


def job_runs(app, job=None):
    conn = connect(get_state(app).database)
    try:
        if job:
            return conn.execute("SELECT * FROM activity_job_runs WHERE job = ?", (job,)).fetchall()
        return conn.execute("SELECT * FROM activity_job_runs").fetchall()
    finally:
        conn.close()


def delete_redis_keys(prefix: str) -> None:
    """Delete every key under a test's Redis prefix."""
    client = redis.Redis.from_url(redis_url())
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_daily_summaries_run_at_two_in_the_configured_zone(scheduled_clock, manager_for):
    manager = manager_for(ACTIVITY_TIMEZONE="Europe/Berlin")
    job = manager.jobs["daily_summaries"].job
    # 02:00 in Berlin on 2026-03-28 (CET, UTC+1) is 01:00 UTC; schedule keeps naive local times.
    assert job.next_run == dt.datetime(2026, 3, 28, 1, 0, tzinfo=UTC).astimezone().replace(tzinfo=None)


def test_every_job_is_scheduled_at_its_interval(scheduled_clock, manager_for):
    manager = manager_for()
    now = scheduled_clock.now.astimezone().replace(tzinfo=None)
    next_runs = {name: state.job.next_run for name, state in manager.jobs.items()}
    assert next_runs["refresh"] - now == dt.timedelta(seconds=300)
    assert next_runs["cache_warming"] - now == dt.timedelta(minutes=60)
    assert next_runs["cache_cleanup"] - now == dt.timedelta(minutes=15)
    assert next_runs["log_cleanup"].weekday() == 6 and next_runs["log_cleanup"].hour == 3


def test_jobs_run_when_due_and_only_then(scheduled_clock, manager_for):
    manager = manager_for()
    ran = []
    manager.jobs["cache_cleanup"].job.job_func = lambda: ran.append(scheduled_clock.now)
    manager.is_leader, manager.caught_up = True, True
    manager.lock.acquire()
    manager.tick()
    assert ran == []
    scheduled_clock.advance(minutes=15)
    manager.tick()
    assert len(ran) == 1
    manager.tick()
    assert len(ran) == 1


def test_a_failing_job_is_reported_and_rescheduled_not_rerun(scheduled_clock, manager_for):
    manager = manager_for()
    calls = []

    def explode():
        calls.append(1)
        raise RuntimeError("disk on fire")

    state = manager.jobs["cache_cleanup"]
    state.job.job_func = lambda: manager.run_job("cache_cleanup", explode)
    manager.lock.acquire()
    manager.is_leader, manager.caught_up = True, True
    scheduled_clock.advance(minutes=15)
    for _ in range(5):
        manager.tick()
    assert calls == [1]
    health = manager.health()["jobs"]["cache_cleanup"]
    assert health["last_status"] == "failed"
    assert health["last_error"] == "RuntimeError: disk on fire"
    assert health["failure_count"] == 1 and health["run_count"] == 1
    assert dt.datetime.fromisoformat(health["next_run"]) > scheduled_clock.now
    scheduled_clock.advance(minutes=15)
    manager.tick()
    assert calls == [1, 1]
    assert [r["status"] for r in job_runs(manager.app, "cache_cleanup")] == ["failed", "failed"]


def test_job_history_is_written_in_the_apps_time(scheduled_clock, manager_for):
    manager = manager_for()
    manager.run_job("cache_cleanup", manager.cleanup_cache)
    [run] = job_runs(manager.app, "cache_cleanup")
    assert run["started_at"] == to_db_timestamp(FRIDAY_NOON)
    assert manager.health()["jobs"]["cache_cleanup"]["last_run"] == FRIDAY_NOON.isoformat()


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(DEFAULT_NOW, id="mid-month"),
        # November has 30 days: the 30-day, month-to-date and last-month ranges are one range.
        pytest.param(dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC), id="first-of-month-after-30-days"),
    ],
)
def test_becoming_leader_catches_up_missing_days_then_warms_the_cache(clock, moment, manager_for, db_conn):
    clock.set(moment)
    manager = manager_for()
    yesterday = clock.today() - dt.timedelta(days=1)
    db_conn.execute(
        """
        INSERT INTO user_activity_log (session_id, user_id, role, timestamp, page_url, action_type)
        VALUES ('s1', 1, 'driver', ?, '/', 'page_view')
        """,
        (f"{yesterday - dt.timedelta(days=2)} 10:00:00",),
    )
    token = AuthActions(manager.app, manager.app.test_client()).token("admin")

    manager.tick()

    assert manager.is_leader
    finals = db_conn.execute("SELECT date FROM activity_summary_daily WHERE is_partial = 0 ORDER BY date")
    assert [row[0] for row in finals] == [str(yesterday - dt.timedelta(days=n)) for n in (2, 1, 0)]
    # Today's partial row too, so today is current before the first refresh.
    partials = db_conn.execute("SELECT date FROM activity_summary_daily WHERE is_partial = 1")
    assert [row[0] for row in partials] == [str(clock.today())]
    assert manager.health()["jobs"]["startup_catch_up"]["last_status"] == "ok"
    client = manager.app.test_client()
    for name, (start, end) in preset_ranges(clock.today()).items():
        answer = client.get(
            "/api/admin/activity/trends",
            query_string={"start_date": str(start), "end_date": str(end)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
        assert answer.get_json()["cached"] is True, f"{name} ({start} to {end}) should have been warmed"


def test_daily_job_summarizes_yesterday_and_missing_days(clock, manager_for, db_conn):
    manager = manager_for()
    result = manager.run_job("daily_summaries", manager.daily_summaries)
    yesterday = str(clock.today() - dt.timedelta(days=1))
    assert result["yesterday"]["date"] == yesterday
    assert [row[0] for row in db_conn.execute("SELECT date FROM activity_summary_daily")] == [yesterday]


def test_log_cleanup_purges_the_audit_log_past_its_retention(clock, manager_for, db_conn):
    manager = manager_for(ACTIVITY_AUDIT_RETENTION_DAYS=365)
    for days_ago in (366, 364):
        db_conn.execute(
            "INSERT INTO activity_audit_log (action, details, created_at) VALUES (?, '{}', ?)",
            (f"{days_ago} days ago", to_db_timestamp(clock.now - dt.timedelta(days=days_ago))),
        )
    result = manager.run_job("log_cleanup", manager.purge_logs)
    assert result["audit_rows_deleted"] == 1
    assert [row[0] for row in db_conn.execute("SELECT action FROM activity_audit_log")] == ["364 days ago"]


def test_stop_ends_the_thread_within_a_second_and_releases_the_lock(manager_for):
    manager = manager_for(ACTIVITY_SCHEDULER_TICK_SECONDS=30)
    manager.start()
    deadline = time.monotonic() + 5
    while not manager.is_leader and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.is_leader
    started = time.monotonic()
    assert manager.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    state = get_state(manager.app)
    other = lock_for_config(manager.app.config, state.database, state.redis_prefix)
    assert other.acquire()
    other.release()


def test_followers_report_themselves(manager_for):
    leader = manager_for()
    follower = BackgroundTaskManager(leader.app)
    try:
        leader.tick()
        follower.tick()
        assert leader.health()["role"] == "leader"
        assert follower.health()["role"] == "follower" and not follower.health()["leader"]
    finally:
        follower.stop()


def test_health_endpoint_shows_the_scheduler(make_app):
    app = make_app(ACTIVITY_BACKGROUND_TASKS=True, ACTIVITY_SCHEDULER_TICK_SECONDS=30)
    manager = get_state(app).background
    try:
        client = app.test_client()
        AuthActions(app, client).login("admin")
        scheduler = client.get("/api/admin/activity/health").get_json()["checks"]["scheduler"]
        assert scheduler["running"] is True
        assert set(scheduler["jobs"]) >= {
            "daily_summaries",
            "refresh",
            "cache_warming",
            "cache_cleanup",
            "log_cleanup",
        }
        # The shared history, whichever worker answers (test_freshness covers what it holds).
        assert set(scheduler["history"]) == set(JOB_NAMES)
        for runs in scheduler["history"].values():
            assert set(runs) == {"last_run", "last_ok"}
        for job in scheduler["jobs"].values():
            assert set(job) >= {
                "last_run",
                "last_duration_ms",
                "last_status",
                "last_error",
                "next_run",
                "run_count",
            }
    finally:
        manager.stop()


def test_switch_off_means_no_scheduler(app):
    assert get_state(app).background is None
    assert app.test_client().get("/healthz").status_code == 200


def test_cli_commands_never_start_the_scheduler(make_app):
    with click.Context(click.Command("summarize"), info_name="summarize"):
        app = make_app(ACTIVITY_BACKGROUND_TASKS=True)
    assert get_state(app).background is None


def test_flask_run_starts_the_scheduler(make_app):
    with click.Context(click.Command("run"), info_name="run"):
        app = make_app(ACTIVITY_BACKGROUND_TASKS=True, ACTIVITY_SCHEDULER_TICK_SECONDS=30)
    manager = get_state(app).background
    try:
        assert manager is not None and manager.health()["running"] is True
    finally:
        manager.stop()


# --- leader election across processes ------------------------------------------------


def hold_file_lock(path: str, acquired, release) -> None:
    lock = FileLeaderLock(path)
    while not lock.acquire():
        time.sleep(0.02)
    acquired.set()
    release.wait(30)


def test_only_one_process_holds_the_file_lock_and_sigkill_hands_it_over(tmp_path):
    path = str(tmp_path / "db.leader.lock")
    ctx = multiprocessing.get_context("fork")
    # One release event each: a SIGKILLed waiter would make a shared Event.set() hang.
    first_acquired, first_release = ctx.Event(), ctx.Event()
    second_acquired, second_release = ctx.Event(), ctx.Event()
    first = ctx.Process(target=hold_file_lock, args=(path, first_acquired, first_release))
    first.start()
    assert first_acquired.wait(10)
    second = ctx.Process(target=hold_file_lock, args=(path, second_acquired, second_release))
    second.start()
    assert not second_acquired.wait(0.5)
    assert not FileLeaderLock(path).acquire()
    os.kill(first.pid, signal.SIGKILL)
    first.join(5)
    assert second_acquired.wait(10)
    second_release.set()
    second.join(5)
    assert second.exitcode == 0


def fixed_clock() -> dt.datetime:
    """The clock of the managers in other processes (a test clock cannot cross a spawn)."""
    return DEFAULT_NOW


def manager_process(database: str, lock_url: str, prefix: str, ready, leader_flag) -> None:
    from app import create_app

    app = create_app(
        {
            "DATABASE": database,
            "SECRET_KEY": "x",
            "ACTIVITY_CLOCK": fixed_clock,
            "ACTIVITY_LEADER_LOCK_URL": lock_url,
            "ACTIVITY_REDIS_PREFIX": prefix,
            "ACTIVITY_LEADER_LOCK_TTL": 2,
            "ACTIVITY_SCHEDULER_TICK_SECONDS": 1,
        }
    )
    manager = BackgroundTaskManager(app)
    manager.start()
    ready.set()
    while True:
        with leader_flag.get_lock():
            leader_flag.value = int(manager.is_leader)
        time.sleep(0.05)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_exactly_one_manager_leads_and_another_takes_over_after_sigkill(tmp_path, kind, redis_available):
    if kind == "redis":
        redis_available()
    database = str(tmp_path / "activity.sqlite3")
    connect(database).close()
    lock_url = "file://" if kind == "file" else redis_url()
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    ctx = multiprocessing.get_context("spawn")
    procs, flags = [], []
    for _ in range(3):
        ready, flag = ctx.Event(), ctx.Value("i", 0)
        proc = ctx.Process(
            target=manager_process, args=(database, lock_url, prefix, ready, flag), daemon=True
        )
        proc.start()
        procs.append(proc)
        flags.append(flag)
        assert ready.wait(30)
    try:
        assert wait_for(lambda: sum(f.value for f in flags) == 1, 15)
        time.sleep(1.5)
        assert sum(f.value for f in flags) == 1
        leader = next(i for i, f in enumerate(flags) if f.value)
        os.kill(procs[leader].pid, signal.SIGKILL)
        procs[leader].join(5)
        flags[leader].value = 0
        assert wait_for(lambda: sum(f.value for i, f in enumerate(flags) if i != leader) == 1, 20)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        if kind == "redis":
            delete_redis_keys(prefix)


def test_redis_lock_is_exclusive_renewed_and_released(redis_available):
    redis_available()
    client = redis.Redis.from_url(redis_url())
    key = f"test-{uuid.uuid4().hex[:8]}:leader"
    first, second = RedisLeaderLock(client, key, 5), RedisLeaderLock(client, key, 5)
    try:
        assert first.acquire() and not second.acquire()
        assert 0 < client.pttl(key) <= 5000
        assert first.renew()
        first.release()
        assert second.acquire()
        assert not first.renew()
    finally:
        client.delete(key)


def test_lock_kind_follows_the_config(app, backend):
    state = get_state(app)
    # The database's own lock on PostgreSQL (shared by every host), a file beside SQLite's.
    default = "postgresql" if backend == "postgresql" else "file"
    assert lock_for_config(app.config, state.database, state.redis_prefix).kind == default
    config = dict(app.config, ACTIVITY_REDIS_URL="redis://127.0.0.1:6379/15")
    assert lock_for_config(config, state.database, state.redis_prefix).kind == (
        "postgresql" if backend == "postgresql" else "redis"
    )
    config["ACTIVITY_LEADER_LOCK_URL"] = "redis://127.0.0.1:6379/15"
    lock = lock_for_config(config, state.database, state.redis_prefix)
    assert lock.kind == "redis" and lock.key == state.redis_prefix + "leader"
    config["ACTIVITY_LEADER_LOCK_URL"] = "file://"
    assert lock_for_config(config, state.database, state.redis_prefix).kind == "file"


def test_a_new_leader_skips_the_daily_run_its_predecessor_finished(scheduled_clock, manager_for):
    a, b = manager_for(), manager_for()
    a.tick()
    b.tick()
    scheduled_clock.advance(hours=14, minutes=1)  # Friday 12:00 -> Saturday 02:01, the daily run is due
    a.tick()
    b.tick()
    a.stop()
    b.tick()
    assert b.is_leader
    assert len(job_runs(a.app, "daily_summaries")) == 1
    scheduled_clock.advance(days=1)
    b.tick()
    assert len(job_runs(a.app, "daily_summaries")) == 2


def test_a_new_leader_makes_the_daily_run_its_predecessor_missed(scheduled_clock, manager_for):
    a, b = manager_for(), manager_for()
    a.tick()
    b.tick()
    a.stop()
    scheduled_clock.advance(hours=14, minutes=1)
    b.tick()
    assert b.is_leader
    assert len(job_runs(a.app, "daily_summaries")) == 1


def test_the_redis_lock_is_kept_while_a_job_outlives_its_ttl(make_app, redis_available):
    redis_available()
    prefix = f"test-bg-{uuid.uuid4().hex}:"
    app = make_app(
        ACTIVITY_REDIS_URL=redis_url(),
        ACTIVITY_LEADER_LOCK_URL=redis_url(),
        ACTIVITY_REDIS_PREFIX=prefix,
        ACTIVITY_LEADER_LOCK_TTL=1,
    )
    leader = BackgroundTaskManager(app)
    rival = RedisLeaderLock.from_url(redis_url(), get_state(app).redis_prefix + "leader", 1)
    try:
        assert leader.lock.acquire()
        seen = []
        worker = threading.Thread(target=leader.run_job, args=("slow", lambda: time.sleep(2.5)))
        worker.start()
        while worker.is_alive():
            seen.append(rival.acquire())
            time.sleep(0.1)
        assert not any(seen)
        assert leader.lock.renew()
        leader.lock.release()
    finally:
        delete_redis_keys(prefix)


def test_a_failed_renewal_keeps_the_redis_lock_only_for_half_its_ttl(redis_available):
    redis_available()
    key = f"test-{uuid.uuid4().hex[:8]}:leader"
    lock = RedisLeaderLock(redis.Redis.from_url(redis_url()), key, 2)
    try:
        assert lock.acquire()
        # Redis goes away: the key set a moment ago still lives, so one failed renewal keeps us leading ...
        lock.client = RedisLeaderLock.from_url("redis://127.0.0.1:1/0", key, 2).client
        assert lock.renew() is True and lock.describe()["reachable"] is False
        # ... but not past half the TTL, so no other holder can overlap with us.
        lock.renewed_at -= 1.1
        assert lock.renew() is False
    finally:
        redis.Redis.from_url(redis_url()).delete(key)
