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
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import redis

from activity_monitor import api_tokens
from activity_monitor.db import connect
from app import create_app
from conftest import PASSWORD, redis_url
from demo_host.auth import create_user
from summary_rows import insert_series

ROOT = Path(__file__).resolve().parent.parent
# Sixty summarized days, long past whatever the date is; the trends asked for are their last 30.
DATA_START = dt.date(2026, 1, 1)
DATA_DAYS = 60
TRENDS_START = DATA_START + dt.timedelta(days=DATA_DAYS - 30)
TRENDS_END = DATA_START + dt.timedelta(days=DATA_DAYS - 1)
TRENDS = f"/api/admin/activity/trends?start_date={TRENDS_START}&end_date={TRENDS_END}"
HEALTH = "/api/admin/activity/health"
# Seconds after launch at which the daily job is due: the workers have booted by then.
DAILY_JOB_DELAY = 12
LEADER_LOCK_TTL = 3
# %(p)s is the pid of the worker that answered; the probe header ties a log line to one request.
ACCESS_LOG_FORMAT = '%(p)s probe=%({x-probe}i)s %(s)s "%(r)s"'
ACCESS_LINE = re.compile(r"^<(\d+)> probe=(\S+) (\d{3}) ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "") -> Any:
    """Return the first truthy result of ``condition`` within ``timeout`` seconds, else fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


class GunicornServer:
    """A gunicorn master with two workers on a temporary database, and clients for it."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.database = str(workdir / "activity.sqlite3")
        self.log_path = workdir / "gunicorn.log"
        self.prefix = f"test-multiworker-{uuid.uuid4().hex}:"
        self.port = free_port()
        self.tokens: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.daily_at: dt.datetime | None = None
        self.probes = count()

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
        # Real time, as the server's scheduler sees it; HH:MM:SS past midnight is still 12 s away.
        self.daily_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=DAILY_JOB_DELAY)
        env = {
            **os.environ,
            "FLASK_DATABASE": self.database,
            "FLASK_SECRET_KEY": "multiworker-test-secret",
            "FLASK_ACTIVITY_REDIS_URL": redis_url(),
            "FLASK_ACTIVITY_REDIS_PREFIX": self.prefix,
            "FLASK_ACTIVITY_CACHE_URL": "memory://",
            "FLASK_ACTIVITY_BACKGROUND_TASKS": "true",
            "FLASK_ACTIVITY_TIMEZONE": "UTC",
            "FLASK_ACTIVITY_SCHEDULER_TICK_SECONDS": "1",
            "FLASK_ACTIVITY_LEADER_LOCK_TTL": str(LEADER_LOCK_TTL),
            "FLASK_ACTIVITY_DAILY_SUMMARY_AT": self.daily_at.strftime("%H:%M:%S"),
            "GUNICORN_WORKERS": "2",
            "GUNICORN_THREADS": "4",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        command += ["--access-logformat", ACCESS_LOG_FORMAT, "app:create_app()"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self.answers_healthz, 30, what="gunicorn to answer /healthz")

    def answers_healthz(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            pytest.fail(f"gunicorn exited during start-up:\n{self.log_tail()}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master and its workers (the whole process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass
        self.process = None

    def delete_redis_keys(self) -> None:
        """Delete every key this server wrote (the limiter adds its own prefix before ours)."""
        client = redis.Redis.from_url(redis_url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            keys = list(client.scan_iter(match=f"*{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass
        finally:
            client.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- clients -----------------------------------------------------------------

    def request(
        self, method: str, path: str, token: str | None = None, probe: str = "-"
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request on a connection of its own, so the kernel may hand it to either worker."""
        headers = {"Connection": "close", "X-Probe": probe}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def probed(self, method: str, path: str, token: str) -> tuple[int, dict[str, Any], str]:
        """Send a request tagged with a fresh probe id; return (status, JSON body, probe id)."""
        probe = f"p{next(self.probes)}"
        status, _, body = self.request(method, path, token, probe)
        return status, json.loads(body), probe

    def answering_pids(self, probes: list[str], timeout: float = 5) -> dict[str, int]:
        """Return the worker pid that answered each probe, read from the access log."""

        def read() -> dict[str, int] | None:
            seen = {}
            for line in self.log_path.read_text(errors="replace").splitlines():
                match = ACCESS_LINE.match(line)
                if match:
                    seen[match.group(2)] = int(match.group(1))
            return seen if all(probe in seen for probe in probes) else None

        return wait_for(read, timeout, interval=0.05, what="the access log lines of the probes")

    def worker_pids(self) -> set[int]:
        """Return the pids of the master's live children (its workers)."""
        assert self.process is not None
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == self.process.pid:
                pids.add(int(stat.parent.name))
        return pids

    def scheduler_checks(self, token: str, attempts: int = 60) -> dict[int, dict[str, Any]]:
        """Ask /health until every live worker has answered or the attempts run out; return the
        scheduler check of each live worker that answered, by pid."""
        workers = self.worker_pids()
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(attempts):
            status, _, body = self.request("GET", HEALTH, token)
            assert status == 200, body[:300]
            scheduler = json.loads(body)["checks"]["scheduler"]
            seen[scheduler["pid"]] = scheduler
            if workers <= seen.keys():
                break
        return {pid: check for pid, check in seen.items() if pid in workers}

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
    time.sleep(max(0.0, (server.daily_at - dt.datetime.now(dt.UTC)).total_seconds()))

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
    token = server.tokens["cache"]
    cached_by: set[int] = set()
    for _ in range(60):
        status, body, probe = server.probed("GET", TRENDS, token)
        assert status == 200
        if body["cached"]:
            cached_by.add(server.answering_pids([probe])[probe])
        if len(cached_by) == 2:
            break
    assert len(cached_by) == 2, "both workers must hold the answer in their own cache first"
    old_version = body["data"]["data_version"]

    status, cleared, _ = server.probed("POST", "/api/admin/activity/cache/clear", token)
    assert status == 200
    assert cleared["data_version"] > old_version

    first_answers: dict[int, dict[str, Any]] = {}
    for _ in range(60):
        status, body, probe = server.probed("GET", TRENDS, token)
        assert status == 200
        first_answers.setdefault(server.answering_pids([probe])[probe], body)
        if len(first_answers) == 2:
            break
    assert len(first_answers) == 2
    for body in first_answers.values():
        assert body["cached"] is False
        assert body["data"]["data_version"] == cleared["data_version"]


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
