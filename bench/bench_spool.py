"""Benchmark the event spool: how long a request is held when its event write fails, how fast the
spool replays, and what bounding the tracker's insert costs while the database is fine.

Run from anywhere: ``python bench/bench_spool.py [--requests 40] [--replay 5000]``.
Target: with the database's write lock held by another connection (SQLite: BEGIN IMMEDIATE;
PostgreSQL: LOCK TABLE user_activity_log IN ACCESS EXCLUSIVE MODE), a tracked request takes at
most HOLD_TARGET_MS longer than the same request with the database free (the issue asks for
about 100 ms; ACTIVITY_TRACKING_WRITE_TIMEOUT_MS is 100). Measured on SQLite and, in the same
run, on PostgreSQL (see backends.py). Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends import BenchDatabases, add_backends_option, label  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from activity_monitor import activity_tracker, event_spool  # noqa: E402
from activity_monitor.db import connect  # noqa: E402
from activity_monitor.extension import get_state  # noqa: E402
from app import create_app  # noqa: E402
from demo_host import auth  # noqa: E402
from demo_host import db as host_db  # noqa: E402

USERNAME, PASSWORD = "bench_driver", "bench-password-1"
HOLD_TARGET_MS = 150.0
PAGE = "/devices"


def logged_in_client(workdir: Path, monitor_database: str) -> tuple[Flask, FlaskClient]:
    """Build the demo host on its own SQLite users file and the given monitor database; log in."""
    host_file = workdir / "host.sqlite3"
    app = create_app(
        {
            "DATABASE": str(host_file),
            "ACTIVITY_DATABASE": monitor_database,
            "ACTIVITY_SPOOL_FOLDER": str(workdir / "spool"),
            # The replay is timed when the bench starts it, not when the spool's own retry would.
            "ACTIVITY_SPOOL_RETRY_SECONDS": 3600,
            "SECRET_KEY": "x",
            "TESTING": True,
        }
    )
    conn = host_db.connect(str(host_file))
    try:
        auth.create_user(conn, USERNAME, PASSWORD, "driver")
    finally:
        conn.close()
    client = app.test_client()
    response = client.post("/api/auth/login", json={"username": USERNAME, "password": PASSWORD})
    if response.status_code != 200:
        raise SystemExit(f"Login failed with {response.status_code}: {response.get_data(as_text=True)}")
    return app, client


def timed(client: FlaskClient, count: int) -> list[float]:
    """GET the page ``count`` times; return each latency in milliseconds."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(PAGE)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {PAGE} answered {response.status_code}.")
    return latencies


class WriteLock:
    """The database's write lock, held by a connection of its own."""

    def __init__(self, database: str):
        self.conn = connect(database)

    def __enter__(self) -> WriteLock:
        if self.conn.dialect == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.raw.execute("BEGIN")
            self.conn.raw.execute("LOCK TABLE user_activity_log IN ACCESS EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_hold(app: Flask, client: FlaskClient, database: str, count: int) -> dict[str, float]:
    """Return the free and locked latencies of a tracked request, and what the lock adds."""
    timed(client, 20)  # warm up
    free = timed(client, count)
    with WriteLock(database):
        locked = timed(client, count)
    event_spool.replay_pending(app)
    base = statistics.median(free)
    return {
        "free_median": base,
        "locked_median": statistics.median(locked),
        "locked_p95": percentile(locked, 0.95),
        "locked_max": max(locked),
        "added_max": max(locked) - base,
    }


def measure_replay(app: Flask, database: str, count: int) -> float:
    """Spool ``count`` events (the lock held), then return the replay's rate in rows a second."""
    event = ("s", 1, "driver", "2026-05-20 12:00:00.000000", PAGE, "page_view", 200, 1.0, "127.0.0.1", "b")
    timeout = app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"]
    app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"] = 1  # fill the spool quickly
    try:
        with WriteLock(database), app.test_request_context(PAGE):
            for _ in range(count):
                activity_tracker.record_event(event)
    finally:
        app.config["ACTIVITY_TRACKING_WRITE_TIMEOUT_MS"] = timeout
    started = time.perf_counter()
    result = event_spool.replay_pending(app)
    took = time.perf_counter() - started
    if result["error"] is not None or result["replayed"] < count:
        raise SystemExit(f"The replay failed: {result}")
    return count / took


def measure_insert_cost(database: str, count: int) -> tuple[float, float]:
    """Return the microseconds of the tracker's insert, autocommit and bounded (insert_bounded)."""
    conn = connect(database)
    event = ("s", 1, "driver", "2026-05-20 12:00:00.000000", PAGE, "page_view", 200, 1.0, "127.0.0.1", "b")
    plain: list[float] = []
    bounded: list[float] = []
    try:
        for round_number in range(20):
            for variant in (("plain", "bounded") if round_number % 2 == 0 else ("bounded", "plain")):
                started = time.perf_counter()
                for _ in range(count):
                    if variant == "plain":
                        conn.execute(activity_tracker.INSERT_EVENT, event)
                    else:
                        conn.storage.insert_bounded(conn, activity_tracker.INSERT_EVENT, event, 100)
                elapsed = (time.perf_counter() - started) / count * 1e6
                (plain if variant == "plain" else bounded).append(elapsed)
    finally:
        conn.close()
    return statistics.median(plain), statistics.median(bounded)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="Tracked requests measured each way.")
    parser.add_argument("--replay", type=int, default=5000, help="Events spooled, then replayed.")
    parser.add_argument("--inserts", type=int, default=200, help="Inserts per round of the insert cost.")
    add_backends_option(parser)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_spool_"))
    missed = False
    try:
        with BenchDatabases(workdir, args.backends) as databases:
            for backend in databases.backends:
                folder = workdir / backend
                folder.mkdir()
                database = databases.new(backend, "monitor")
                app, client = logged_in_client(folder, database)
                hold = measure_hold(app, client, database, args.requests)
                rate = measure_replay(app, database, args.replay)
                plain, bounded = measure_insert_cost(database, args.inserts)
                get_state(app).storage.close()
                over = hold["added_max"] > HOLD_TARGET_MS
                verdict = f"OVER the {HOLD_TARGET_MS:.0f} ms target" if over else "ok"
                missed |= over
                print(
                    f"{label(backend)}: GET {PAGE} median {hold['free_median']:.2f} ms with the database "
                    f"free; with its write lock held: median {hold['locked_median']:.1f} ms, p95 "
                    f"{hold['locked_p95']:.1f} ms, max {hold['locked_max']:.1f} ms (held at most "
                    f"{hold['added_max']:.1f} ms longer: {verdict}); replay {rate:,.0f} events/s; "
                    f"tracker insert {plain:.0f} us autocommit, {bounded:.0f} us bounded"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
