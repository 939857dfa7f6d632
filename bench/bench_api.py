"""Measure the activity API against a trivial endpoint, and the trends service against one SELECT.

Run from anywhere: ``python bench/bench_api.py [--rounds N]``. It builds throw-away
databases with 730 days of varying summaries, one on SQLite and, in the same run, one on
PostgreSQL (see backends.py; the host's users stay in a SQLite file), logs an admin in
through Flask's test client and prints, per backend:

1. medians through the test client of a trivial authenticated JSON endpoint
   (GET /api/devices), cached trends (365 days, all metrics), uncached trends
   (``cache_bypass=true``) and a CSV export of 365 days, measured in interleaved
   rounds so machine noise hits every case alike; the ratios cached/trivial
   (target <= 1.5) and uncached/trivial (target <= 10);
2. the issue-4 figure: uncached ``ActivityTrendsService.get_trends`` for 365 days x
   6 metrics plus JSON serialization, against one SELECT of those 365 rows plus
   ``json.dumps`` of them as lists (target ratio <= 4);
3. a cached ``trends_payload`` (in-memory cache hit) and ``cache.get(key)`` alone,
   in microseconds (target <= 20 us for the cache get).

then every figure of both backends side by side. Every missed target is followed by a
cProfile of that case. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import math
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import BenchDatabases, add_backends_option, label  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from activity_monitor.activity_trends_service import METRICS, ActivityTrendsService, dumps  # noqa: E402
from activity_monitor.daily_summaries import METRIC_COLUMNS  # noqa: E402
from activity_monitor.db import connect  # noqa: E402
from activity_monitor.storage import Connection  # noqa: E402
from activity_monitor.trends_cache import TrendsCache  # noqa: E402
from app import create_app  # noqa: E402
from demo_host import db as host_db  # noqa: E402
from demo_host.auth import create_user  # noqa: E402

TARGET_CACHED_RATIO = 1.5
TARGET_UNCACHED_RATIO = 10.0
TARGET_SERVICE_RATIO = 4.0
TARGET_CACHE_GET_US = 20.0
HISTORY_DAYS = 730
RANGE_DAYS = 365
# The bench's "now": fixed, so every run reads the same ranges whatever the date.
BENCH_NOW = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.UTC)
BENCH_TODAY = BENCH_NOW.date()
PASSWORD = "bench password"
SELECT_SQL = "SELECT * FROM activity_summary_daily WHERE date BETWEEN ? AND ?"


def daily_users(history_days: int) -> list[int]:
    """Return a realistic daily active-user series: growth, a weekly cycle, a yearly swell, noise."""
    values = []
    for n in range(history_days):
        weekday = n % 7
        weekly = 0.55 if weekday >= 5 else 1.0 + 0.05 * (weekday - 2)
        yearly = 1.0 + 0.15 * math.sin(2 * math.pi * n / 365.25)
        noise = 1.0 + 0.08 * math.sin(n * 12.9898) * math.cos(n * 78.233)
        values.append(round((120 + 0.12 * n) * weekly * yearly * noise))
    return values


def bench_clock() -> dt.datetime:
    """The ACTIVITY_CLOCK of the bench's apps: standing at BENCH_NOW."""
    return BENCH_NOW


def summary_rows(today: dt.date) -> list[tuple]:
    """Return 730 days of final summary rows ending yesterday: the users series, and the other
    metrics scaled from it to realistic sizes (in METRIC_COLUMNS order after the date)."""
    first = today - dt.timedelta(days=HISTORY_DAYS)
    rows = []
    for offset, users in enumerate(daily_users(HISTORY_DAYS)):
        day = first + dt.timedelta(days=offset)
        rows.append(
            (
                day.isoformat(),
                users,
                users * 3 + day.day % 7,
                users * 41 + (day.day * 13) % 97,
                users * 23 + (day.month * 31) % 89,
                420 + (users * 7) % 180,
                users // 6 + 1,
            )
        )
    return rows


def build_database(database: str, today: dt.date) -> None:
    """Write 730 days of summaries ending yesterday into a migrated monitor database."""
    conn = connect(database)
    try:
        with conn.transaction():
            conn.executemany(
                f"""
                INSERT INTO activity_summary_daily
                    (date, {", ".join(METRIC_COLUMNS)}, top_pages, user_distribution, is_partial, computed_at)
                VALUES (?, {", ".join("?" * len(METRIC_COLUMNS))}, '[]', '{{}}', 0, '2026-01-01 00:00:00')
                """,
                summary_rows(today),
            )
    finally:
        conn.close()


def median_ms(samples: list[float]) -> float:
    """Return the median of samples in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def interleaved(cases: dict[Hashable, Callable[[], object]], rounds: int) -> dict[Hashable, list[float]]:
    """Time each case once per round, cases in turn, so drift and noise hit all of them alike."""
    samples: dict[Hashable, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return samples


def per_call_us(run: Callable[[], object], calls: int = 2000, batches: int = 25) -> float:
    """Return the median over batches of the mean time of one call, in microseconds."""
    means = []
    for _ in range(batches):
        started = time.perf_counter_ns()
        for _ in range(calls):
            run()
        means.append((time.perf_counter_ns() - started) / calls / 1000)
    return statistics.median(means)


def profile(title: str, run: Callable[[], object], repeat: int = 20, top: int = 15) -> None:
    """Print the cProfile entries with the most cumulative time over ``repeat`` calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"\n--- profile: {title} ({repeat} calls) ---")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


def report(label: str, value: float, target: float, unit: str = "") -> bool:
    """Print a figure against its target; return whether it is met."""
    met = value <= target
    print(f"  {label:<46} {value:10.2f}{unit}   target <= {target}{unit}   {'ok' if met else 'OVER TARGET'}")
    return met


def logged_in_app(workdir: Path, database: str) -> tuple[Flask, FlaskClient]:
    """Build the demo host on its own user file with the monitor in ``database``, fill the
    summaries, create the admin and log a test client in."""
    host_database = str(workdir / f"host-{len(list(workdir.glob('host-*.sqlite3')))}.sqlite3")
    app = create_app(
        {
            "DATABASE": host_database,
            "ACTIVITY_DATABASE": database,
            "SECRET_KEY": "bench",
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_RATE_LIMIT": "100000000 per minute",
            "ACTIVITY_CLOCK": bench_clock,
        }
    )
    build_database(database, BENCH_TODAY)
    conn = host_db.connect(host_database)
    try:
        create_user(conn, "bench-admin", PASSWORD, "admin")
    finally:
        conn.close()
    client = app.test_client()
    login = client.post("/api/auth/login", json={"username": "bench-admin", "password": PASSWORD})
    assert login.status_code == 200, login.get_data(as_text=True)
    return app, client


def http_cases(client: FlaskClient, start: dt.date, end: dt.date) -> dict[str, Callable[[], bytes]]:
    """Return the timed requests of one app, by name."""
    trends_url = f"/api/admin/activity/trends?start_date={start}&end_date={end}"
    export_url = f"/api/admin/activity/export?start_date={start}&end_date={end}&format=csv"

    def get(url: str) -> Callable[[], bytes]:
        def run() -> bytes:
            response = client.get(url)
            body = response.get_data()  # consumes a streamed body too
            assert response.status_code == 200, body[:300]
            return body

        return run

    cases = {
        TRIVIAL: get("/api/devices"),
        CACHED: get(trends_url),
        UNCACHED: get(trends_url + "&cache_bypass=true"),
        EXPORT: get(export_url),
    }
    cases[CACHED]()  # fill the cache
    # Checked once here: parsing 300 KB of JSON in every timed call would dwarf a cache hit.
    assert cases[CACHED]().startswith(b'{"success":true,"cached":true,')
    assert cases[UNCACHED]().startswith(b'{"success":true,"cached":false,')
    return cases


TRIVIAL = "trivial GET /api/devices"
CACHED = "trends 365 days, cached"
UNCACHED = "trends 365 days, uncached (cache_bypass)"
EXPORT = "CSV export 365 days"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="Interleaved rounds of the HTTP cases.")
    add_backends_option(parser)
    args = parser.parse_args()

    end = BENCH_TODAY - dt.timedelta(days=1)
    start = end - dt.timedelta(days=RANGE_DAYS - 1)
    failures: list[tuple[str, Callable[[], object]]] = []
    figures: dict[str, dict[str, str]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as folder,
        BenchDatabases(folder, args.backends) as databases,
    ):
        backends = databases.backends
        monitor_databases = {backend: databases.new(backend, "activity") for backend in backends}
        apps = {backend: logged_in_app(Path(folder), db) for backend, db in monitor_databases.items()}
        # Each backend's cases interleaved with each other, one backend after the other: PostgreSQL's
        # server keeps working a moment after answering (WAL, statistics), which would slow
        # whichever SQLite case came next.
        cases: dict[tuple[str, str], Callable[[], bytes]] = {}
        medians: dict[tuple[str, str], float] = {}
        for backend, (_, client) in apps.items():
            runs = http_cases(client, start, end)
            cases.update({(backend, name): run for name, run in runs.items()})
            interleaved(runs, 5)  # warm up imports, numpy, database pages
            samples = interleaved(runs, args.rounds)
            medians.update({(backend, name): median_ms(values) for name, values in samples.items()})
        for backend in backends:
            figures[backend] = {}
            print(f"{label(backend)}: HTTP through Flask's test client, {args.rounds} rounds, medians")
            for name in (TRIVIAL, CACHED, UNCACHED, EXPORT):
                print(f"  {name:<46} {medians[(backend, name)]:10.2f} ms")
                figures[backend][f"{name} (ms)"] = f"{medians[(backend, name)]:.2f}"
            trivial = medians[(backend, TRIVIAL)]
            for name, title, target in (
                (CACHED, "cached trends / trivial", TARGET_CACHED_RATIO),
                (UNCACHED, "uncached trends / trivial", TARGET_UNCACHED_RATIO),
            ):
                ratio = medians[(backend, name)] / trivial
                met = report(title, ratio, target)
                figures[backend][f"  {title} (<= {target:g})"] = flagged(ratio, met)
                if not met:
                    failures.append((f"{label(backend)}: {name}", cases[(backend, name)]))
            export_ratio = medians[(backend, EXPORT)] / trivial
            print(f"  {'CSV export / trivial':<46} {export_ratio:10.2f}    (no target)")
            figures[backend]["  CSV export / trivial (no target)"] = f"{export_ratio:.2f}"

        # Issue 4: the service's whole analysis against the least any answer must cost.
        conns = {backend: connect(database) for backend, database in monitor_databases.items()}
        services = {backend: ServiceCases(conn, start, end) for backend, conn in conns.items()}
        service_samples = {}
        for backend, service_cases in services.items():
            interleaved(service_cases.runs, 3)
            for name, values in interleaved(service_cases.runs, args.rounds).items():
                service_samples[(backend, name)] = values
        for backend, service_cases in services.items():
            a_ms, b_ms = (median_ms(service_samples[(backend, name)]) for name in ("a", "b"))
            failures += service_cases.report(label(backend), a_ms, b_ms, figures[backend])

        print(f"\n{'':<50}" + "".join(f"{label(backend):>14}" for backend in figures))
        for name in dict.fromkeys(name for values in figures.values() for name in values):
            print(f"{name:<50}" + "".join(f"{values.get(name, '-'):>14}" for values in figures.values()))
        for title, run in failures:
            profile(title, run)
        for conn in conns.values():
            conn.close()
        for app, _ in apps.values():
            app.extensions["activity_monitor"].storage.close()
    return 1 if failures else 0


class ServiceCases:
    """The issue-4 cases on one connection: (a) uncached ``get_trends`` plus the JSON requests
    use, (b) one SELECT of the same rows plus ``json.dumps``; and the cached get."""

    def __init__(self, conn: Connection, start: dt.date, end: dt.date):
        self.conn, self.start, self.end = conn, start, end
        self.cache = TrendsCache(default_ttl=3600)
        self.service = ActivityTrendsService(conn, "UTC", cache=self.cache, cache_ttl=3600)
        self.runs = {"a": self.service_uncached, "b": self.select_and_dump}

    def service_uncached(self) -> bytes:
        return dumps(self.service.get_trends(self.start, self.end, METRICS))  # the serializer requests use

    def select_and_dump(self) -> bytes:
        rows = self.conn.execute(SELECT_SQL, (self.start.isoformat(), self.end.isoformat())).fetchall()
        assert len(rows) == RANGE_DAYS
        return json.dumps([list(row) for row in rows], separators=(",", ":")).encode()

    def report(
        self, name: str, a_ms: float, b_ms: float, figures: dict[str, str]
    ) -> list[tuple[str, Callable[[], object]]]:
        """Print (a) against (b), then time the cached get; return the cases that missed a target."""
        failures: list[tuple[str, Callable[[], object]]] = []
        print(f"\n{name}: issue 4: service against one SELECT, medians")
        print(f"  {'(a) get_trends 365 d x 6 metrics + json':<46} {a_ms:10.2f} ms")
        print(f"  {'(b) SELECT 365 rows + json.dumps as lists':<46} {b_ms:10.2f} ms")
        met = report("(a) / (b)", a_ms / b_ms, TARGET_SERVICE_RATIO)
        figures["(a) get_trends + json (ms)"] = f"{a_ms:.2f}"
        figures["(b) SELECT + json.dumps (ms)"] = f"{b_ms:.2f}"
        figures[f"  (a) / (b) (<= {TARGET_SERVICE_RATIO:g})"] = flagged(a_ms / b_ms, met)
        if not met:
            failures.append((f"{name}: service get_trends + json", self.service_uncached))

        service, cache, start, end = self.service, self.cache, self.start, self.end
        payload = service.trends_payload(start, end, METRICS)
        assert not payload.cached and service.trends_payload(start, end, METRICS).cached
        key = payload.key
        payload_us = per_call_us(lambda: service.trends_payload(start, end, METRICS))
        get_us = per_call_us(lambda: cache.get(key))
        print(f"{name}: cached get (in-memory cache hit), median of batch means")
        print(f"  {'service.trends_payload (version read + get)':<46} {payload_us:10.2f} us   (no target)")
        met = report("cache.get(key) alone", get_us, TARGET_CACHE_GET_US, " us")
        figures["trends_payload, cached (us, no target)"] = f"{payload_us:.1f}"
        figures[f"  cache.get(key) (us, <= {TARGET_CACHE_GET_US:g})"] = flagged(get_us, met)
        if not met:
            failures.append((f"{name}: cache.get", lambda: [cache.get(key) for _ in range(1000)]))
        return failures


def flagged(value: float, met: bool) -> str:
    """Return a figure for the side-by-side table, flagged when it misses its target."""
    return f"{value:.2f}" if met else f"{value:.2f} OVER"


if __name__ == "__main__":
    sys.exit(main())
