"""Requests per second through real gunicorn (2 workers) for a trivial endpoint and for trends.

Run from anywhere: ``python bench/bench_gunicorn.py [--seconds S] [--rounds R] [--clients N]``. It builds a
throw-away monitor database with 730 days of summaries, on SQLite and, in the same run, on
PostgreSQL (see backends.py), and an admin in the host's SQLite file, then for each backend and
each cache storage, memory (no Redis) and Redis (``REDIS_URL``, default DB 15, under a
throw-away prefix deleted afterwards; skipped when Redis does not answer), starts gunicorn on
127.0.0.1 with a huge rate limit and measures, each for a fixed time after a warm-up:

- GET /api/devices (trivial, authenticated),
- trends over 365 days, all metrics, cached,
- the same with ``cache_bypass=true`` (uncached).

Every request carries the admin's login cookie (the host's endpoint takes no API token).
Load comes from ``wrk`` when it is installed, otherwise from N client processes, each with one
keep-alive connection. Every request also writes one activity row to the monitor's database, as
in production. Prints the table and cached/trivial per backend and storage; exits 1 when a
ratio is under the 0.70 target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import redis  # noqa: E402
from backends import SQLITE, BenchDatabases, add_backends_option, label  # noqa: E402
from bench_api import BENCH_TODAY, RANGE_DAYS, build_database  # noqa: E402

from app import create_app  # noqa: E402
from demo_host import db as host_db  # noqa: E402
from demo_host.auth import create_user  # noqa: E402
from host_cluster import free_port, stop_process_group  # noqa: E402

TARGET_CACHED_RATIO = 0.70
WARMUP_SECONDS = 1.0
CACHED_PREFIX = b'{"success":true,"cached":true,'
USERNAME, PASSWORD = "bench-admin", "bench password"


def prepare(host_database: str, monitor_database: str) -> None:
    """Migrate new databases, fill the monitor's with 730 days of summaries and create the admin."""
    app = create_app(
        {
            "DATABASE": host_database,
            "ACTIVITY_DATABASE": monitor_database,
            "SECRET_KEY": "bench",
            "ACTIVITY_BACKGROUND_TASKS": False,
        }
    )
    app.extensions["activity_monitor"].storage.close()
    # Summaries of fixed past days: the server runs on the system clock, and any later date accepts them.
    build_database(monitor_database, BENCH_TODAY)
    conn = host_db.connect(host_database)
    try:
        create_user(conn, USERNAME, PASSWORD, "admin")
    finally:
        conn.close()


def login_cookie(port: int) -> str:
    """Log the admin in through the JSON login; return the header that carries its session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"username": USERNAME, "password": PASSWORD})
        conn.request("POST", "/api/auth/login", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the bench admin could not log in ({response.status})")
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    finally:
        conn.close()
    return f"Cookie: {cookie}"


class Server:
    """gunicorn with 2 workers on a free loopback port, in its own process group."""

    def __init__(
        self, host_database: str, monitor_database: str, redis_url: str | None, prefix: str, log_path: Path
    ):
        self.port = free_port()
        env = {
            **os.environ,
            "FLASK_DATABASE": host_database,
            "FLASK_ACTIVITY_DATABASE": monitor_database,
            "FLASK_SECRET_KEY": "bench-secret",
            "FLASK_ACTIVITY_RATE_LIMIT": "100000000 per minute",
            "FLASK_ACTIVITY_REDIS_PREFIX": prefix,
            "GUNICORN_WORKERS": "2",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_LOGLEVEL": "warning",
        }
        for key in (
            "FLASK_ACTIVITY_CACHE_URL",
            "FLASK_ACTIVITY_RATELIMIT_STORAGE_URL",
            "FLASK_ACTIVITY_REDIS_URL",
        ):
            env.pop(key, None)
        if redis_url:
            env["FLASK_ACTIVITY_REDIS_URL"] = redis_url
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
        ]
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until /healthz answers (and a moment more, so the second worker is up too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    time.sleep(2)
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer /healthz in time")

    def stop(self) -> None:
        """Stop the master and its workers."""
        stop_process_group(self.process)
        self.log.close()


def client_loop(port: int, path: str, header: str, seconds: float) -> tuple[int, int, int]:
    """Send GETs on one keep-alive connection for ``seconds``; return (ok, cached, failed) counts."""
    name, _, value = header.partition(": ")
    headers = {name: value}
    ok = cached = failed = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        if response.status == 200:
            ok += 1
            cached += body.startswith(CACHED_PREFIX)
        else:
            failed += 1
    conn.close()
    return ok, cached, failed


def python_load(
    pool: multiprocessing.pool.Pool, port: int, path: str, header: str, seconds: float, clients: int
) -> tuple[float, float, int]:
    """Run ``clients`` processes for ``seconds``; return (requests per second, share cached, failed)."""
    started = time.perf_counter()
    results = pool.starmap(client_loop, [(port, path, header, seconds)] * clients)
    elapsed = time.perf_counter() - started
    ok = sum(r[0] for r in results)
    return ok / elapsed, sum(r[1] for r in results) / max(ok, 1), sum(r[2] for r in results)


def wrk_load(port: int, path: str, header: str, seconds: float, clients: int) -> tuple[float, float, int]:
    """Run wrk for ``seconds``; return (requests per second, -1 for share cached unknown, non-2xx count)."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s"]
        + ["-H", header, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return rps, -1, int(bad.group(1)) if bad else 0


def measure(
    pool: multiprocessing.pool.Pool, port: int, path: str, header: str, seconds: float, clients: int
) -> tuple[float, float, int]:
    """Load ``path`` with wrk when installed, else with the Python clients."""
    if shutil.which("wrk"):
        return wrk_load(port, path, header, seconds, clients)
    return python_load(pool, port, path, header, seconds, clients)


def redis_reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        return True
    except redis.RedisError:
        return False


def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under the bench's prefix (the limiter puts its own prefix before ours)."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def measure_all(
    pool: multiprocessing.pool.Pool,
    servers: dict[str, Server],
    cells: dict[str, str],
    headers: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, dict[str, list[float]]]:
    """Warm every cell up, then measure all cells of all servers in turn for ``rounds`` rounds, so
    noise from the rest of the machine hits every cell alike; return requests per second per round."""
    for storage, server in servers.items():
        for path in cells.values():
            # Fills each worker's cache and warms SQLite pages.
            measure(pool, server.port, path, headers[storage], WARMUP_SECONDS, args.clients)
    rps: dict[str, dict[str, list[float]]] = {storage: {name: [] for name in cells} for storage in servers}
    for _ in range(args.rounds):
        for storage, server in servers.items():
            for name, path in cells.items():
                value, cached, failed = measure(
                    pool, server.port, path, headers[storage], args.seconds / args.rounds, args.clients
                )
                if failed:
                    raise RuntimeError(f"{failed} requests to {path} failed ({storage})")
                if name == "cached" and 0 <= cached < 0.99:
                    raise RuntimeError(f"only {cached:.0%} of the cached trends answers came from the cache")
                rps[storage][name].append(value)
    return rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Measured seconds per cell.")
    parser.add_argument(
        "--rounds", type=int, default=5, help="Interleaved rounds the seconds are split into."
    )
    parser.add_argument("--clients", type=int, default=4, help="Concurrent keep-alive connections.")
    add_backends_option(parser)
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    end = BENCH_TODAY - dt.timedelta(days=1)
    start = end - dt.timedelta(days=RANGE_DAYS - 1)
    trends = f"/api/admin/activity/trends?start_date={start}&end_date={end}"
    cells = {"trivial": "/api/devices", "cached": trends, "uncached": trends + "&cache_bypass=true"}
    storages = {"memory": None, "redis": redis_url}
    if not redis_reachable(redis_url):
        print(f"(no Redis at {redis_url}: the Redis rows are skipped)")
        del storages["redis"]
    tool = "wrk" if shutil.which("wrk") else "Python client processes"

    pool = multiprocessing.get_context("spawn").Pool(args.clients)
    servers: dict[str, Server] = {}
    prefixes: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-gunicorn-") as folder,
        BenchDatabases(folder, args.backends) as databases,
    ):
        print(
            f"gunicorn, 2 workers on 127.0.0.1; load: {tool}, {args.clients} connections; "
            f"{args.seconds:g} s a cell in {args.rounds} interleaved rounds"
        )
        try:
            # Every server runs at once (idle while another is measured), so their cells interleave.
            for backend in databases.backends:
                host_database = str(Path(folder) / f"host-{backend}.sqlite3")
                # On SQLite the monitor shares the host's file, as the demo host does by default.
                monitor_database = host_database if backend == SQLITE else databases.new(backend, "activity")
                prepare(host_database, monitor_database)
                for storage, url in storages.items():
                    name = f"{label(backend)}/{storage}"
                    prefixes[name] = f"bench-gunicorn-{uuid.uuid4().hex}:"
                    log_path = Path(folder) / f"gunicorn-{backend}-{storage}.log"
                    servers[name] = Server(host_database, monitor_database, url, prefixes[name], log_path)
            for server in servers.values():
                server.wait_ready()
            headers = {name: login_cookie(server.port) for name, server in servers.items()}
            results = measure_all(pool, servers, cells, headers, args)
        finally:
            for server in servers.values():
                server.stop()
            for name in servers:
                if name.endswith("/redis"):
                    delete_keys(redis_url, prefixes[name])
            pool.close()
            pool.join()

    print("\nrequests per second, median of the rounds (min-max); cached/trivial per round, median (min-max)")
    print(f"{'server':<20}{'trivial':>20}{'cached':>20}{'uncached':>16}{'cached/trivial':>22}")
    failures = []
    for name, rps in results.items():
        ratios = [cached / trivial for cached, trivial in zip(rps["cached"], rps["trivial"], strict=True)]
        ratio = statistics.median(ratios)
        if ratio < TARGET_CACHED_RATIO:
            failures.append(name)
        cells_text = "".join(
            f"{spread(rps[cell], '.0f'):>{width}}"
            for cell, width in (("trivial", 20), ("cached", 20), ("uncached", 16))
        )
        verdict = "ok" if ratio >= TARGET_CACHED_RATIO else "UNDER TARGET"
        print(
            f"{name:<20}{cells_text}{spread(ratios, '.2f'):>22}   target >= {TARGET_CACHED_RATIO} {verdict}"
        )
    return 1 if failures else 0


def spread(values: list[float], fmt: str) -> str:
    """Return 'median (min-max)' of the values."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


if __name__ == "__main__":
    sys.exit(main())
