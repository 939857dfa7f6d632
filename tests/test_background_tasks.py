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

import pytest
import redis
import schedule

from activity_monitor import background_tasks
from activity_monitor.background_tasks import BackgroundTaskManager
from activity_monitor.db import connect
from activity_monitor.leader_lock import FileLeaderLock, RedisLeaderLock, lock_for_config
from conftest import redis_url

UTC = dt.UTC


class ScheduleClock:
    """Replaces the clock the ``schedule`` library reads, so tests move time instead of sleeping."""

    def __init__(self, start: dt.datetime):
        self.now = start
        clock = self

        class FrozenDateTime(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                moment = clock.now
                return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

        self.module = types.SimpleNamespace(datetime=FrozenDateTime, timedelta=dt.timedelta, time=dt.time)

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    fake = ScheduleClock(dt.datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # a Friday
    monkeypatch.setattr(schedule, "datetime", fake.module)
    return fake


@pytest.fixture
def manager_for(make_app):
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
    conn = connect(app.config["DATABASE"])
    try:
        if job:
            return conn.execute("SELECT * FROM activity_job_runs WHERE job = ?", (job,)).fetchall()
        return conn.execute("SELECT * FROM activity_job_runs").fetchall()
    finally:
        conn.close()


def test_daily_summaries_run_at_two_in_the_configured_zone(clock, manager_for):
    manager = manager_for(ACTIVITY_TIMEZONE="Europe/Berlin")
    job = manager.jobs["daily_summaries"].job
    # 02:00 in Berlin on 2026-03-28 (CET, UTC+1) is 01:00 UTC.
    assert job.next_run.astimezone(UTC) if job.next_run.tzinfo else True
    expected_local = dt.datetime(2026, 3, 28, 1, 0, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert job.next_run == expected_local


def test_every_job_is_scheduled_at_its_interval(clock, manager_for):
    manager = manager_for()
    now = clock.now.astimezone().replace(tzinfo=None)
    next_runs = {name: state.job.next_run for name, state in manager.jobs.items()}
    assert next_runs["cache_warming"] - now == dt.timedelta(minutes=60)
    assert next_runs["cache_cleanup"] - now == dt.timedelta(minutes=15)
    assert next_runs["log_cleanup"].weekday() == 6 and next_runs["log_cleanup"].hour == 3


def test_jobs_run_when_due_and_only_then(clock, manager_for):
    manager = manager_for()
    ran = []
    manager.jobs["cache_cleanup"].job.job_func = lambda: ran.append(clock.now)
    manager.is_leader, manager.caught_up = True, True
    manager.lock.acquire()
    manager.tick()
    assert ran == []
    clock.advance(minutes=15)
    manager.tick()
    assert len(ran) == 1
    manager.tick()
    assert len(ran) == 1


def test_a_failing_job_is_reported_and_rescheduled_not_rerun(clock, manager_for, app):
    manager = manager_for()
    calls = []

    def explode():
        calls.append(1)
        raise RuntimeError("disk on fire")

    state = manager.jobs["cache_cleanup"]
    state.job.job_func = lambda: manager.run_job("cache_cleanup", explode)
    manager.lock.acquire()
    manager.is_leader, manager.caught_up = True, True
    clock.advance(minutes=15)
    for _ in range(5):
        manager.tick()
    assert calls == [1]
    health = manager.health()["jobs"]["cache_cleanup"]
    assert health["last_status"] == "failed"
    assert health["last_error"] == "RuntimeError: disk on fire"
    assert health["failure_count"] == 1 and health["run_count"] == 1
    assert dt.datetime.fromisoformat(health["next_run"]) > clock.now
    clock.advance(minutes=15)
    manager.tick()
    assert calls == [1, 1]
    assert [r["status"] for r in job_runs(manager.app, "cache_cleanup")] == ["failed", "failed"]


def test_becoming_leader_catches_up_missing_days_then_warms_the_cache(manager_for, db_conn):
    manager = manager_for()
    yesterday = dt.datetime.now(UTC) - dt.timedelta(days=1)
    db_conn.execute("INSERT INTO users (id, username, password_hash, role) VALUES (1, 'u', 'x', 'driver')")
    db_conn.execute(
        """
        INSERT INTO user_activity_log (session_id, user_id, timestamp, page_url, action_type)
        VALUES (?, ?, ?, ?, ?)
        """,
        ("s1", 1, (yesterday - dt.timedelta(days=2)).strftime("%Y-%m-%d 10:00:00"), "/", "page_view"),
    )
    manager.tick()
    assert manager.is_leader
    days = db_conn.execute("SELECT COUNT(*) FROM activity_summary_daily WHERE is_partial = 0").fetchone()[0]
    assert days == 3
    catch_up = manager.health()["jobs"]["startup_catch_up"]
    assert catch_up["last_status"] == "ok"
    from activity_monitor.trends_cache import get_cache

    assert get_cache(manager.app).stats()["size"] >= 5


def test_daily_job_summarizes_yesterday_and_missing_days(manager_for, db_conn):
    manager = manager_for()
    result = manager.run_job("daily_summaries", manager.daily_summaries)
    yesterday = (dt.datetime.now(UTC) - dt.timedelta(days=1)).date().isoformat()
    assert result["yesterday"]["date"] == yesterday
    assert db_conn.execute("SELECT date FROM activity_summary_daily").fetchall()[0][0] == yesterday


def test_log_cleanup_runs_the_retention_purge(manager_for, db_conn):
    manager = manager_for()
    db_conn.execute(
        "INSERT INTO audit_log (action, details, created_at) VALUES ('X', '{}', '2000-01-01 00:00:00')"
    )
    result = manager.run_job("log_cleanup", manager.purge_logs)
    assert result["audit_rows_deleted"] == 1


def test_stop_ends_the_thread_within_a_second_and_releases_the_lock(manager_for, tmp_path):
    manager = manager_for(ACTIVITY_SCHEDULER_TICK_SECONDS=30)
    manager.start()
    deadline = time.monotonic() + 5
    while not manager.is_leader and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.is_leader
    started = time.monotonic()
    assert manager.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    other = FileLeaderLock(manager.app.config["DATABASE"] + ".leader.lock")
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
    manager = app.extensions["activity_background"]
    try:
        client = app.test_client()
        from conftest import AuthActions

        AuthActions(app, client).login("admin")
        scheduler = client.get("/api/admin/activity/health").get_json()["checks"]["scheduler"]
        assert scheduler["running"] is True
        assert set(scheduler["jobs"]) >= {"daily_summaries", "cache_warming", "cache_cleanup", "log_cleanup"}
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
    assert "activity_background" not in app.extensions


def test_cli_commands_never_start_the_scheduler(make_app, monkeypatch):
    started = []
    monkeypatch.setattr(BackgroundTaskManager, "start", lambda self: started.append(self))
    app = make_app(ACTIVITY_BACKGROUND_TASKS=True)
    app.extensions.pop("activity_background").stop()
    started.clear()
    result = app.test_cli_runner().invoke(args=["migrate"])
    assert result.exit_code == 0
    import click

    with click.Context(click.Command("migrate"), info_name="migrate"):
        assert background_tasks.should_start_here() is False
    with click.Context(click.Command("run"), info_name="run"):
        assert background_tasks.should_start_here() is True


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


def manager_process(database: str, lock_url: str, prefix: str, ready, leader_flag) -> None:
    from app import create_app

    app = create_app(
        {
            "DATABASE": database,
            "SECRET_KEY": "x",
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
            redis.Redis.from_url(redis_url()).delete(prefix + "leader")


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


def test_lock_kind_follows_the_config(app):
    assert lock_for_config(app.config).kind == "file"
    config = dict(app.config, ACTIVITY_REDIS_URL="redis://127.0.0.1:6379/15")
    assert lock_for_config(config).kind == "redis"
    config["ACTIVITY_LEADER_LOCK_URL"] = "file://"
    assert lock_for_config(config).kind == "file"


def test_a_new_leader_skips_the_daily_run_its_predecessor_finished(clock, manager_for):
    a, b = manager_for(), manager_for()
    a.tick()
    b.tick()
    clock.advance(hours=14, minutes=1)  # Friday 12:00 -> Saturday 02:01, the daily run is due
    a.tick()
    b.tick()
    a.stop()
    b.tick()
    assert b.is_leader
    assert len(job_runs(a.app, "daily_summaries")) == 1
    clock.advance(days=1)
    b.tick()
    assert len(job_runs(a.app, "daily_summaries")) == 2


def test_a_new_leader_makes_the_daily_run_its_predecessor_missed(clock, manager_for):
    a, b = manager_for(), manager_for()
    a.tick()
    b.tick()
    a.stop()
    clock.advance(hours=14, minutes=1)
    b.tick()
    assert b.is_leader
    assert len(job_runs(a.app, "daily_summaries")) == 1


def test_the_redis_lock_is_kept_while_a_job_outlives_its_ttl(make_app, redis_available):
    redis_available()
    prefix = f"test-bg-{uuid.uuid4().hex}:"
    app = make_app(ACTIVITY_REDIS_URL=redis_url(), ACTIVITY_REDIS_PREFIX=prefix, ACTIVITY_LEADER_LOCK_TTL=1)
    leader = BackgroundTaskManager(app)
    rival = RedisLeaderLock.from_url(redis_url(), prefix + "leader", 1)
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
    redis.Redis.from_url(redis_url()).delete(prefix + "leader")


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
