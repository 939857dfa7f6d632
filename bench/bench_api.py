"""Measure the activity API against a trivial endpoint, and the trends service against one SELECT.

Run from anywhere: ``python bench/bench_api.py [--rounds N]``. It builds a throw-away
database with 730 days of varying summaries, logs an admin in through Flask's test
client and prints, in one run:

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

Every missed target is followed by a cProfile of that case. Exits 1 when a target is missed.
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from activity_monitor.activity_trends_service import METRICS, ActivityTrendsService, dumps  # noqa: E402
from activity_monitor.db import connect  # noqa: E402
from activity_monitor.trends_cache import TrendsCache  # noqa: E402
from app import create_app  # noqa: E402
from demo_host import db as host_db  # noqa: E402
from demo_host.auth import create_user  # noqa: E402
from summary_rows import insert_series  # noqa: E402

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


def build_database(path: str, today: dt.date) -> None:
    """Write 730 days of summaries ending yesterday, each metric a scaled copy of the users series."""
    first = today - dt.timedelta(days=HISTORY_DAYS)
    users = daily_users(HISTORY_DAYS)
    conn = connect(path)
    try:
        conn.execute("BEGIN")
        # insert_series writes one value to all six metrics; scale the others to realistic sizes.
        insert_series(conn, first, users)
        conn.execute(
            """
            UPDATE activity_summary_daily
            SET total_sessions = unique_users * 3 + (CAST(substr(date, 9, 2) AS INTEGER) % 7),
                total_page_views = unique_users * 41 + (CAST(substr(date, 9, 2) AS INTEGER) * 13) % 97,
                total_api_calls = unique_users * 23 + (CAST(substr(date, 6, 2) AS INTEGER) * 31) % 89,
                avg_session_duration_seconds = 420 + (unique_users * 7) % 180,
                peak_concurrent_users = unique_users / 6 + 1
            """
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def median_ms(samples: list[float]) -> float:
    """Return the median of samples in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def interleaved(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Time each case once per round, cases in turn, so drift and noise hit all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="Interleaved rounds of the HTTP cases.")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="bench-api-")
    database = str(Path(workdir.name) / "activity.sqlite3")
    app = create_app(
        {
            "DATABASE": database,
            "SECRET_KEY": "bench",
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_RATE_LIMIT": "100000000 per minute",
            "ACTIVITY_CLOCK": bench_clock,
        }
    )
    today = BENCH_TODAY
    build_database(database, today)
    conn = host_db.connect(database)
    try:
        create_user(conn, "bench-admin", PASSWORD, "admin")
    finally:
        conn.close()

    client = app.test_client()
    login = client.post("/api/auth/login", json={"username": "bench-admin", "password": PASSWORD})
    assert login.status_code == 200, login.get_data(as_text=True)
    end = today - dt.timedelta(days=1)
    start = end - dt.timedelta(days=RANGE_DAYS - 1)
    trends_url = f"/api/admin/activity/trends?start_date={start}&end_date={end}"
    export_url = f"/api/admin/activity/export?start_date={start}&end_date={end}&format=csv"

    def get(url: str) -> Callable[[], bytes]:
        def run() -> bytes:
            response = client.get(url)
            body = response.get_data()  # consumes a streamed body too
            assert response.status_code == 200, body[:300]
            return body

        return run

    http_cases = {
        "trivial GET /api/devices": get("/api/devices"),
        "trends 365 days, cached": get(trends_url),
        "trends 365 days, uncached (cache_bypass)": get(trends_url + "&cache_bypass=true"),
        "CSV export 365 days": get(export_url),
    }
    get(trends_url)()  # fill the cache
    # Checked once here: parsing 300 KB of JSON in every timed call would dwarf a cache hit.
    assert http_cases["trends 365 days, cached"]().startswith(b'{"success":true,"cached":true,')
    assert http_cases["trends 365 days, uncached (cache_bypass)"]().startswith(
        b'{"success":true,"cached":false,'
    )
    interleaved(http_cases, 5)  # warm up imports, numpy, SQLite pages
    samples = interleaved(http_cases, args.rounds)
    medians = {name: median_ms(values) for name, values in samples.items()}

    print(f"HTTP through Flask's test client: {args.rounds} interleaved rounds, medians")
    for name, value in medians.items():
        print(f"  {name:<46} {value:10.2f} ms")
    trivial = medians["trivial GET /api/devices"]
    cached_ratio = medians["trends 365 days, cached"] / trivial
    uncached_ratio = medians["trends 365 days, uncached (cache_bypass)"] / trivial
    failures = []
    if not report("cached trends / trivial", cached_ratio, TARGET_CACHED_RATIO):
        failures.append(("cached trends request", http_cases["trends 365 days, cached"]))
    if not report("uncached trends / trivial", uncached_ratio, TARGET_UNCACHED_RATIO):
        failures.append(("uncached trends request", http_cases["trends 365 days, uncached (cache_bypass)"]))
    print(f"  {'CSV export / trivial':<46} {medians['CSV export 365 days'] / trivial:10.2f}    (no target)")

    # Issue 4: the service's whole analysis against the least any answer must cost.
    conn = connect(database)
    cache = TrendsCache(default_ttl=3600)
    service = ActivityTrendsService(conn, "UTC", cache=cache, cache_ttl=3600)

    def service_uncached() -> bytes:
        return dumps(service.get_trends(start, end, METRICS))  # the serializer requests use

    def select_and_dump() -> bytes:
        rows = conn.execute(SELECT_SQL, (start.isoformat(), end.isoformat())).fetchall()
        assert len(rows) == RANGE_DAYS
        return json.dumps([list(row) for row in rows], separators=(",", ":")).encode()

    interleaved({"a": service_uncached, "b": select_and_dump}, 3)
    service_samples = interleaved({"a": service_uncached, "b": select_and_dump}, args.rounds)
    a_ms, b_ms = median_ms(service_samples["a"]), median_ms(service_samples["b"])
    print("\nIssue 4: service against one SELECT, medians")
    print(f"  {'(a) get_trends 365 d x 6 metrics + json':<46} {a_ms:10.2f} ms")
    print(f"  {'(b) SELECT 365 rows + json.dumps as lists':<46} {b_ms:10.2f} ms")
    if not report("(a) / (b)", a_ms / b_ms, TARGET_SERVICE_RATIO):
        failures.append(("service get_trends + json", service_uncached))

    payload = service.trends_payload(start, end, METRICS)
    assert not payload.cached and service.trends_payload(start, end, METRICS).cached
    key = payload.key
    payload_us = per_call_us(lambda: service.trends_payload(start, end, METRICS))
    get_us = per_call_us(lambda: cache.get(key))
    print("\nCached get (in-memory cache hit), median of batch means")
    print(f"  {'service.trends_payload (version read + get)':<46} {payload_us:10.2f} us   (no target)")
    if not report("cache.get(key) alone", get_us, TARGET_CACHE_GET_US, " us"):
        failures.append(("cache.get", lambda: [cache.get(key) for _ in range(1000)]))

    for title, run in failures:
        profile(title, run)
    conn.close()
    workdir.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
