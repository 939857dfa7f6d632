"""Real gunicorn masters for the tests of several workers and several hosts.

A :class:`GunicornHost` is one master with its workers on a port of its own, started with the
settings a test gives it (FLASK_* variables, which the demo host reads). It sends requests
tagged with a probe id, reads from its access log which worker answered each, and asks
/health what each worker's scheduler says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
HEALTH = "/api/admin/activity/health"
# %(p)s is the pid of the worker that answered; the probe header ties a log line to one request.
ACCESS_LOG_FORMAT = '%(p)s probe=%({x-probe}i)s %(s)s "%(r)s"'
ACCESS_LINE = re.compile(r"^<(\d+)> probe=(\S+) (\d{3}) ")


def free_port() -> int:
    """Return a TCP port free on the loopback interface."""
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


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a gunicorn master started in a process group of its own, and its workers: SIGTERM,
    SIGKILL after 10 s, then SIGKILL to any worker a killed master left behind."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


class DailyJobTime:
    """When, ``delay`` seconds from now, a server's daily job falls due. Servers in processes of
    their own run on the system clock, so this is the one read of it: only the time of day is
    handed over (HH:MM:SS, UTC), which is ``delay`` seconds away across midnight too, and the wait
    counts on the monotonic clock. No date enters."""

    def __init__(self, delay: float):
        self.setting = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)).strftime("%H:%M:%S")
        self.due = time.monotonic() + delay

    def wait(self) -> None:
        """Sleep until the job is due."""
        time.sleep(max(0.0, self.due - time.monotonic()))


def delete_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under an install's prefix (the limiter adds its own prefix before it)."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


def process_state(pid: int) -> str | None:
    """Return a process's state letter from /proc (R, S, Z…), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def has_exited(pid: int) -> bool:
    """Tell whether a process has ended (a zombie has: it serves nothing and holds no session)."""
    return process_state(pid) in (None, "Z", "X")


class GunicornHost:
    """A gunicorn master with its workers on a port of its own, and clients for it."""

    def __init__(self, workdir: Path, name: str = "gunicorn", workers: int = 2, threads: int = 4):
        self.workdir = workdir
        self.name = name
        self.workers = workers
        self.threads = threads
        self.log_path = workdir / f"{name}.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.probes = count()

    # --- lifecycle ---------------------------------------------------------------

    def launch(self, settings: dict[str, str]) -> None:
        """Start gunicorn in its own process group with these environment variables added
        (FLASK_* ones configure the demo host); do not wait for it."""
        env = {
            **os.environ,
            **settings,
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        command += ["--access-logformat", ACCESS_LOG_FORMAT, "app:create_app()"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_until_serving(self, timeout: float = 30) -> None:
        """Wait until the server answers /healthz (fail if it exits first)."""
        wait_for(self.answers_healthz, timeout, what=f"{self.name} to answer /healthz")

    def start(self, settings: dict[str, str]) -> None:
        """Launch gunicorn and wait until it answers /healthz."""
        self.launch(settings)
        self.wait_until_serving()

    def answers_healthz(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            pytest.fail(f"{self.name} exited during start-up:\n{self.log_tail()}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def kill_master(self) -> set[int]:
        """SIGKILL the master alone, as a crash would; return the pids of the workers it leaves
        behind (gunicorn workers notice their parent changed within a second and exit)."""
        assert self.process is not None
        orphans = self.worker_pids()
        self.process.kill()
        self.process.wait(timeout=5)
        return orphans

    def stop(self) -> None:
        """Stop the master and its workers (the whole process group, orphans included)."""
        if self.process is None:
            return
        stop_process_group(self.process)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- clients -----------------------------------------------------------------

    def request(
        self, method: str, path: str, token: str | None = None, probe: str = "-"
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request on a connection of its own, so the kernel may hand it to any worker.
        Its User-Agent names the host and the probe, so the activity row it makes says both."""
        headers = {"Connection": "close", "X-Probe": probe, "User-Agent": f"{self.name} {probe}"}
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

        return wait_for(read, timeout, interval=0.05, what=f"the access log lines of {self.name}'s probes")

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


def answers_per_worker(host: GunicornHost, path: str, token: str, workers: set[int], tries: int = 60) -> dict:
    """GET ``path`` until every worker of ``workers`` has answered; return each one's first body."""
    answers: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        status, body, probe = host.probed("GET", path, token)
        assert status == 200
        answers.setdefault(host.answering_pids([probe])[probe], body)
        if answers.keys() == workers:
            break
    assert answers.keys() == workers, f"not every worker answered {path}"
    return answers


def check_cache_clear_reaches_every_worker(
    clearing: GunicornHost, reading: GunicornHost, path: str, token: str, tries: int = 60
) -> None:
    """Fill the per-worker caches of ``reading``, clear through ``clearing``, then check that each
    worker of ``reading`` answers anew with the new data version."""
    workers = reading.worker_pids()
    cached_by: set[int] = set()
    for _ in range(tries):
        status, body, probe = reading.probed("GET", path, token)
        assert status == 200
        if body["cached"]:
            cached_by.add(reading.answering_pids([probe])[probe])
        if cached_by == workers:
            break
    assert cached_by == workers, "every worker must hold the answer in its own cache first"
    status, cleared, _ = clearing.probed("POST", "/api/admin/activity/cache/clear", token)
    assert status == 200
    assert cleared["data_version"] > body["data"]["data_version"]
    for answer in answers_per_worker(reading, path, token, workers, tries).values():
        assert answer["cached"] is False
        assert answer["data"]["data_version"] == cleared["data_version"]
