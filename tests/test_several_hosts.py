"""Two hosts behave as one install: two gunicorn masters, two workers each, on ports and host
user files of their own, sharing one PostgreSQL database (the monitor's ACTIVITY_DATABASE)
and one Redis (the rate limiter). Requests through both land in one log and read one set of
summaries; one leader among the four workers runs the jobs, once; a cache clear on one host
reaches the other; the rate limit counts both hosts' requests together; and when the leader's
host dies, the other takes over without running a job again.

PostgreSQL is used whatever ``--backend`` says, so the module is marked ``sqlite_only``: it
runs in the default run and the PostgreSQL run does not run it a second time. It is skipped
without PostgreSQL or Redis (failed under REQUIRE_POSTGRES=1 or REQUIRE_REDIS=1).

Each host has its own SQLite file of users, holding the same admins under the same ids, as
hosts fed from one directory would. The trends cache is per worker (``memory://``) on purpose:
a clear that reached only the host it was sent to would show there. The leader lock is
PostgreSQL's advisory lock, the default on a PostgreSQL database.

One cluster serves the whole module and the tests run in file order: the last one kills a
host. The servers run on the system clock (their schedulers must really fire), so nothing
here depends on the date: the summaries are of fixed past days and every request names them.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import postgres_support
from activity_monitor import api_tokens
from activity_monitor.db import connect
from app import create_app
from conftest import PASSWORD, redis_url
from demo_host import db as host_db
from demo_host.auth import create_user
from host_cluster import (
    DailyJobTime,
    GunicornHost,
    check_cache_clear_reaches_every_worker,
    delete_redis_keys,
    has_exited,
    wait_for,
)
from summary_rows import insert_series

pytestmark = pytest.mark.sqlite_only

# Sixty summarized days, long past whatever the date is; the trends asked for are their last 30.
DATA_START = dt.date(2026, 1, 1)
DATA_DAYS = 60
TRENDS_START = DATA_START + dt.timedelta(days=DATA_DAYS - 30)
TRENDS_END = DATA_START + dt.timedelta(days=DATA_DAYS - 1)
TRENDS = f"/api/admin/activity/trends?start_date={TRENDS_START}&end_date={TRENDS_END}"
# Tracked, admin-only and not rate limited: the requests whose log rows are counted.
CACHE_STATS = "/api/admin/activity/cache/stats"
RATE_LIMIT = 100
# Seconds after launch at which the daily job is due: both hosts have booted by then.
DAILY_JOB_DELAY = 12
TICK_SECONDS = 1
# A follower tries the lock every tick; ten leave room for a loaded machine, not for a bug.
TAKEOVER_TIMEOUT = 10 * TICK_SECONDS
# One admin per test: the rate limit counts per user.
ADMINS = ("log", "summaries", "limited", "daily", "cache", "failover")


class Cluster:
    """Two gunicorn hosts on one PostgreSQL schema and one Redis prefix."""

    def __init__(self, workdir: Path, database: str):
        self.database = database
        self.prefix = f"test-several-hosts-{uuid.uuid4().hex}:"
        self.hosts = [GunicornHost(workdir / name, name) for name in ("host-a", "host-b")]
        self.user_ids: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.daily_at: DailyJobTime | None = None
        self.started = False

    @staticmethod
    def users_file(host: GunicornHost) -> str:
        return str(host.workdir / "users.sqlite3")

    def prepare(self) -> None:
        """Migrate the shared database, create the same admins in each host's users file, give
        each a token (in the shared database), and write 60 days of summaries."""
        for host in self.hosts:
            host.workdir.mkdir(parents=True, exist_ok=True)
            app = create_app(
                {
                    "DATABASE": self.users_file(host),
                    "ACTIVITY_DATABASE": self.database,
                    "SECRET_KEY": "test",
                    "ACTIVITY_BACKGROUND_TASKS": False,
                }
            )
            app.extensions["activity_monitor"].storage.close()
            conn = host_db.connect(self.users_file(host))
            try:
                ids = {name: create_user(conn, f"{name}-admin", PASSWORD, "admin") for name in ADMINS}
            finally:
                conn.close()
            assert self.user_ids in ({}, ids), "both hosts must know each admin under one id"
            self.user_ids = ids
        conn = connect(self.database)
        try:
            for name, user_id in self.user_ids.items():
                self.tokens[name] = api_tokens.create_token(conn, user_id, "several-hosts test")[1]
            insert_series(conn, DATA_START, range(100, 100 + DATA_DAYS))
        finally:
            conn.close()

    def start(self) -> None:
        """Launch both hosts at once and wait until each answers /healthz."""
        self.daily_at = DailyJobTime(DAILY_JOB_DELAY)
        shared = {
            "FLASK_SECRET_KEY": "several-hosts-test-secret",
            "FLASK_ACTIVITY_DATABASE": self.database,
            "FLASK_ACTIVITY_REDIS_URL": redis_url(),
            "FLASK_ACTIVITY_REDIS_PREFIX": self.prefix,
            "FLASK_ACTIVITY_CACHE_URL": "memory://",
            "FLASK_ACTIVITY_RATE_LIMIT": f"{RATE_LIMIT} per minute",
            "FLASK_ACTIVITY_BACKGROUND_TASKS": "true",
            "FLASK_ACTIVITY_TIMEZONE": "UTC",
            "FLASK_ACTIVITY_SCHEDULER_TICK_SECONDS": str(TICK_SECONDS),
            "FLASK_ACTIVITY_DAILY_SUMMARY_AT": self.daily_at.setting,
        }
        self.started = True
        for host in self.hosts:
            host.launch({**shared, "FLASK_DATABASE": self.users_file(host)})
        for host in self.hosts:
            host.wait_until_serving()

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()

    def live_hosts(self) -> list[GunicornHost]:
        return [host for host in self.hosts if host.process is not None and host.process.poll() is None]

    def scheduler_checks(self, token: str) -> dict[tuple[str, int], dict[str, Any]]:
        """Return the scheduler check of every live worker of every live host, by (host, pid)."""
        return {
            (host.name, pid): check
            for host in self.live_hosts()
            for pid, check in host.scheduler_checks(token).items()
        }

    def job_runs(self) -> list[Any]:
        """Return every row of activity_job_runs, oldest first."""
        conn = connect(self.database)
        try:
            return conn.execute(
                "SELECT job, pid, status, finished_at, error FROM activity_job_runs ORDER BY id"
            ).fetchall()
        finally:
            conn.close()

    def logged_user_agents(self, user: str) -> list[str]:
        """Return the User-Agent of every activity row of an admin, oldest first."""
        conn = connect(self.database)
        try:
            rows = conn.execute(
                "SELECT user_agent FROM user_activity_log WHERE user_id = ? ORDER BY id",
                (self.user_ids[user],),
            ).fetchall()
        finally:
            conn.close()
        return [row["user_agent"] for row in rows]


@pytest.fixture(scope="module")
def two_hosts(postgres_server: postgres_support.ThrowawayDatabase, tmp_path_factory) -> Iterator[Cluster]:
    """The module's cluster on a schema of its own, started lazily by :func:`cluster` once
    Redis is known to answer."""
    schema, url = postgres_server.new_schema()
    instance = Cluster(tmp_path_factory.mktemp("several-hosts"), url)
    yield instance
    instance.stop()
    delete_redis_keys(redis_url(), instance.prefix)
    postgres_server.drop_schema(schema)


@pytest.fixture
def cluster(redis_available, two_hosts: Cluster) -> Cluster:
    """The running cluster (skips without Redis)."""
    redis_available()
    if not two_hosts.started:
        two_hosts.prepare()
        two_hosts.start()
    return two_hosts


def test_requests_through_both_hosts_land_in_one_log(cluster: Cluster) -> None:
    token = cluster.tokens["log"]
    sent: list[str] = []
    answered_by: set[tuple[str, int]] = set()
    for host in cluster.hosts:
        workers = {(host.name, pid) for pid in host.worker_pids()}
        for _ in range(60):
            status, _, probe = host.probed("GET", CACHE_STATS, token)
            assert status == 200
            sent.append(f"{host.name} {probe}")
            answered_by.add((host.name, host.answering_pids([probe])[probe]))
            if workers <= answered_by:
                break
        assert workers <= answered_by, f"both workers of {host.name} must answer, or the test proves less"

    # Each row is written before its answer is sent, so all are in by now.
    assert cluster.logged_user_agents("log") == sent
    assert len(answered_by) == 4


def test_both_hosts_answer_from_one_set_of_summaries(cluster: Cluster) -> None:
    token = cluster.tokens["summaries"]
    answers = [host.probed("GET", TRENDS, token) for host in cluster.hosts]

    assert [status for status, _, _ in answers] == [200, 200]
    (_, on_a, _), (_, on_b, _) = answers
    assert [point["value"] for point in on_a["data"]["metrics"]["unique_users"]] == list(range(130, 160))
    assert on_b["data"]["metrics"] == on_a["data"]["metrics"]
    assert on_b["data"]["summary"] == on_a["data"]["summary"]


def test_the_rate_limit_holds_exactly_across_both_hosts(cluster: Cluster) -> None:
    token = cluster.tokens["limited"]
    statuses = []
    for turn in range(RATE_LIMIT + 50):
        status, body, _ = cluster.hosts[turn % 2].probed("GET", TRENDS, token)
        statuses.append(status)

    assert statuses == [200] * RATE_LIMIT + [429] * 50
    assert body["code"] == "rate_limited"


def test_one_leader_across_both_hosts_runs_the_daily_job_once(cluster: Cluster) -> None:
    assert cluster.daily_at is not None
    cluster.daily_at.wait()

    wait_for(
        lambda: [run for run in cluster.job_runs() if run["job"] == "daily_summaries" and run["finished_at"]],
        20,
        what="the daily_summaries run to finish",
    )
    time.sleep(3 * TICK_SECONDS)  # three more ticks: a second scheduler would have run it by now

    runs = [run for run in cluster.job_runs() if run["job"] == "daily_summaries"]
    assert len(runs) == 1
    assert runs[0]["status"] == "ok", runs[0]["error"]
    schedulers = cluster.scheduler_checks(cluster.tokens["daily"])
    assert len(schedulers) == 4, "every worker of both hosts must have answered"
    assert {check["lock"]["kind"] for check in schedulers.values()} == {"postgresql"}
    leaders = [pid for (_, pid), check in schedulers.items() if check["role"] == "leader"]
    assert leaders == [runs[0]["pid"]]
    assert [check["jobs"]["daily_summaries"]["run_count"] for check in schedulers.values()].count(1) == 1


def test_a_cache_clear_on_one_host_is_seen_by_the_other(cluster: Cluster) -> None:
    host_a, host_b = cluster.hosts
    check_cache_clear_reaches_every_worker(host_a, host_b, TRENDS, cluster.tokens["cache"], tries=40)


def test_the_other_host_takes_over_when_the_leaders_host_dies(cluster: Cluster) -> None:
    """The leader's gunicorn master gets SIGKILL alone; its workers, orphaned, notice their parent
    changed and exit by themselves (gunicorn checks every second): worker_exit releases the
    advisory lock, and the end of the process would end its session anyway. Their process
    group is killed only at teardown, should any linger."""
    token = cluster.tokens["failover"]
    leaders = [key for key, check in cluster.scheduler_checks(token).items() if check["role"] == "leader"]
    assert len(leaders) == 1, f"one leader across both hosts, not {leaders}"
    [(dead_name, old_leader)] = leaders
    [dead] = [host for host in cluster.hosts if host.name == dead_name]
    [survivor] = [host for host in cluster.hosts if host is not dead]

    orphans = dead.kill_master()
    assert old_leader in orphans
    wait_for(lambda: all(map(has_exited, orphans)), 15, what=f"the workers of {dead.name} to exit")

    def new_leader() -> int | None:
        leaders = [
            pid for pid, check in survivor.scheduler_checks(token).items() if check["role"] == "leader"
        ]
        return leaders[0] if len(leaders) == 1 else None

    leader = wait_for(new_leader, TAKEOVER_TIMEOUT, what=f"a leader on {survivor.name}")
    time.sleep(3 * TICK_SECONDS)  # three more ticks: a job the new leader repeats would have run

    runs = cluster.job_runs()
    assert Counter(run["job"] for run in runs) == {"startup_catch_up": 2, "daily_summaries": 1}
    assert [run["pid"] for run in runs if run["job"] == "startup_catch_up"] == [old_leader, leader]
    assert all(run["status"] == "ok" and run["finished_at"] for run in runs), [tuple(run) for run in runs]
