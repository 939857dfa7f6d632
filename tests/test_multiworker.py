"""Real gunicorn with two workers behaves as one app: a shared rate limit, one daily run,
a cache clear every worker sees, and a leader again after the leader dies.

One server serves the whole module and the tests run in file order: the last one kills a worker.
The trends cache is per worker (``memory://``) on purpose: that is where a clear reaching only
one worker would show; the rate limiter and the leader lock use the shared Redis.

The server runs on the system clock (its scheduler must really fire), so nothing here depends on
the date: the summaries are of fixed past days and every request names that range.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from activity_monitor import api_tokens
from activity_monitor.db import connect
from app import create_app
from conftest import PASSWORD, redis_url
from demo_host.auth import create_user
from host_cluster import (
    DailyJobTime,
    GunicornHost,
    check_cache_clear_reaches_every_worker,
    delete_redis_keys,
    wait_for,
)
from summary_rows import insert_series

# Sixty summarized days, long past whatever the date is; the trends asked for are their last 30.
DATA_START = dt.date(2026, 1, 1)
DATA_DAYS = 60
TRENDS_START = DATA_START + dt.timedelta(days=DATA_DAYS - 30)
TRENDS_END = DATA_START + dt.timedelta(days=DATA_DAYS - 1)
TRENDS = f"/api/admin/activity/trends?start_date={TRENDS_START}&end_date={TRENDS_END}"
# Seconds after launch at which the daily job is due: the workers have booted by then.
DAILY_JOB_DELAY = 12
LEADER_LOCK_TTL = 3


class GunicornServer(GunicornHost):
    """A gunicorn master with two workers on a temporary database, and clients for it."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.database = str(workdir / "activity.sqlite3")
        self.prefix = f"test-multiworker-{uuid.uuid4().hex}:"
        self.tokens: dict[str, str] = {}
        self.daily_at: DailyJobTime | None = None

    # --- lifecycle ---------------------------------------------------------------

    def prepare_database(self) -> None:
        """Migrate, create one admin (and token) per test, and write 60 days of summaries."""
        create_app({"DATABASE": self.database, "SECRET_KEY": "test", "ACTIVITY_BACKGROUND_TASKS": False})
        conn = connect(self.database)
        try:
            for name in ("limited", "daily", "cache", "failover"):
                user_id = create_user(conn, f"{name}-admin", PASSWORD, "admin")
                self.tokens[name] = api_tokens.create_token(conn, user_id, "multiworker test")[1]
            insert_series(conn, DATA_START, range(100, 100 + DATA_DAYS))
        finally:
            conn.close()

    def start(self) -> None:
        """Launch gunicorn in its own process group and wait until it answers /healthz."""
        self.daily_at = DailyJobTime(DAILY_JOB_DELAY)
        super().start(
            {
                "FLASK_DATABASE": self.database,
                "FLASK_SECRET_KEY": "multiworker-test-secret",
                "FLASK_ACTIVITY_REDIS_URL": redis_url(),
                "FLASK_ACTIVITY_REDIS_PREFIX": self.prefix,
                "FLASK_ACTIVITY_CACHE_URL": "memory://",
                "FLASK_ACTIVITY_BACKGROUND_TASKS": "true",
                "FLASK_ACTIVITY_TIMEZONE": "UTC",
                "FLASK_ACTIVITY_SCHEDULER_TICK_SECONDS": "1",
                "FLASK_ACTIVITY_LEADER_LOCK_TTL": str(LEADER_LOCK_TTL),
                "FLASK_ACTIVITY_DAILY_SUMMARY_AT": self.daily_at.setting,
            }
        )

    def delete_redis_keys(self) -> None:
        """Delete every key this server wrote."""
        delete_redis_keys(redis_url(), self.prefix)

    def job_runs(self, job: str) -> list[sqlite3.Row]:
        conn = connect(self.database)
        try:
            return conn.execute(
                "SELECT pid, status, finished_at, error FROM activity_job_runs WHERE job = ? ORDER BY id",
                (job,),
            ).fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory) -> Iterator[GunicornServer]:
    """The module's server, started lazily by :func:`server` once Redis is known to answer."""
    instance = GunicornServer(tmp_path_factory.mktemp("multiworker"))
    yield instance
    instance.stop()
    instance.delete_redis_keys()


@pytest.fixture
def server(redis_available, gunicorn: GunicornServer) -> GunicornServer:
    """The running server (skips without Redis)."""
    redis_available()
    if gunicorn.process is None:
        gunicorn.prepare_database()
        gunicorn.start()
    return gunicorn


def test_rate_limit_is_shared_by_all_workers(server: GunicornServer) -> None:
    answers = [server.probed("GET", TRENDS, server.tokens["limited"]) for _ in range(150)]

    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * 100 + [429] * 50
    assert answers[-1][1]["code"] == "rate_limited"
    pids = server.answering_pids([probe for _, _, probe in answers])
    assert len({pids[probe] for status, _, probe in answers if status == 200}) == 2, (
        "both workers must have let requests through, or the test proves nothing"
    )


def test_daily_job_runs_once_across_workers(server: GunicornServer) -> None:
    assert server.daily_at is not None
    server.daily_at.wait()

    runs = wait_for(
        lambda: [run for run in server.job_runs("daily_summaries") if run["finished_at"]],
        20,
        what="the daily_summaries run to finish",
    )
    time.sleep(3)  # three more ticks: a second scheduler would have run it by now

    runs = server.job_runs("daily_summaries")
    assert len(runs) == 1
    assert runs[0]["status"] == "ok", runs[0]["error"]
    schedulers = server.scheduler_checks(server.tokens["daily"])
    assert schedulers.keys() == server.worker_pids() and len(schedulers) == 2
    leaders = [pid for pid, check in schedulers.items() if check["role"] == "leader"]
    assert leaders == [runs[0]["pid"]]
    assert [check["jobs"]["daily_summaries"]["run_count"] for check in schedulers.values()].count(1) == 1


def test_cache_clear_through_one_worker_reaches_every_worker(server: GunicornServer) -> None:
    check_cache_clear_reaches_every_worker(server, server, TRENDS, server.tokens["cache"])


def test_a_killed_leader_is_replaced_within_a_minute(server: GunicornServer) -> None:
    token = server.tokens["failover"]
    before = server.scheduler_checks(token)
    [leader] = [pid for pid, check in before.items() if check["role"] == "leader"]

    os.kill(leader, signal.SIGKILL)

    def new_leader() -> int | None:
        workers = server.worker_pids()
        if len(workers) != 2 or leader in workers:
            return None  # gunicorn has not respawned the worker yet
        schedulers = server.scheduler_checks(token, attempts=20)
        if schedulers.keys() != workers:
            return None  # the new worker is still booting
        leaders = [pid for pid, check in schedulers.items() if check["role"] == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    assert wait_for(new_leader, 60, interval=0.5, what="a new leader") != leader
    assert len(server.job_runs("daily_summaries")) == 1, "the new leader must not run the daily job again"
