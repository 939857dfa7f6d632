"""Measure daily summaries: one day's cost against history size, and a full backfill against one scan.

Run from anywhere: ``python bench/bench_summaries.py [--events N] [--history-per-day N]``
(or ``BENCH_EVENTS=1000000`` for a quick run). It builds throw-away databases of
synthetic events and prints:

1. the best time of one day's summary with 1 month and with 3 years of history,
   and their ratio (target <= 1.3: a day is one range scan on the timestamp index);
2. a full backfill of ``--events`` events (default 10 million) over 365 days and one
   ``SELECT substr(timestamp,1,10), COUNT(*), COUNT(DISTINCT user_id) … GROUP BY 1``
   over the same table, both times, their ratio (target <= 3) and the backfill's
   peak RSS (target < 300 MB), measured in a child process of its own;
3. the cost of one tracker-style insert with and without the late-data triggers.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from activity_monitor import db  # noqa: E402
from activity_monitor.daily_summaries import DailySummaryProcessor  # noqa: E402

TARGET_HISTORY_RATIO = 1.3
TARGET_BACKFILL_RATIO = 3.0
TARGET_PEAK_RSS_MB = 300
FULL_RUN_EVENTS = 10_000_000
USERS = 400
ROLES = ("admin", "manager", "driver", "viewer")
PAGES = [f"/machines/{n}" for n in range(150)] + [f"/api/v1/resource/{n}" for n in range(50)]
ACTIONS = ("page_view", "api_call", "file_download")
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"
LAST_DAY = dt.date(2026, 6, 30)
SCAN_SQL = (
    "SELECT substr(timestamp,1,10), COUNT(*), COUNT(DISTINCT user_id) FROM user_activity_log GROUP BY 1"
)


def events_of_day(day: dt.date, count: int) -> list[tuple]:
    """Return about ``count`` synthetic events of one UTC day, in time order (same day, same events)."""
    rng = np.random.default_rng(day.toordinal())
    sessions = max(1, count // 15)
    per_session = rng.geometric(1 / 15, sessions)
    session_of = np.repeat(np.arange(sessions), per_session)
    # Sessions start mostly in working hours; events follow each other about 40 s apart.
    starts_us = (rng.normal(13, 3.5, sessions) * 3600e6).astype(np.int64)
    gaps = rng.exponential(40e6, len(session_of)).astype(np.int64)
    elapsed = np.cumsum(gaps)
    first = np.concatenate(([0], np.cumsum(per_session)[:-1]))
    offsets = elapsed - np.repeat(elapsed[first], per_session)
    midnight_us = int(dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC).timestamp() * 1e6)
    times = midnight_us + np.repeat(starts_us, per_session) + offsets
    order = np.argsort(times, kind="stable")
    times, session_of = times[order], session_of[order]
    users = rng.integers(1, USERS + 1, sessions)[session_of]
    pages = np.minimum(rng.zipf(1.4, len(times)), len(PAGES)) - 1
    actions = rng.choice(3, len(times), p=[0.6, 0.35, 0.05])
    texts = np.datetime_as_string(times.astype("datetime64[us]")).tolist()
    session_ids = [hashlib.sha256(f"{day}-{n}".encode()).hexdigest() for n in range(sessions)]
    return [
        (
            session_ids[s], u, ROLES[u % len(ROLES)], t.replace("T", " "), PAGES[p], ACTIONS[a],
            200, 12.5, "10.1.2.3", USER_AGENT,
        )
        for s, u, t, p, a in zip(
            session_of.tolist(), users.tolist(), texts, pages.tolist(), actions.tolist(), strict=True
        )
    ]


def build_database(path: str, days: int, per_day: int) -> int:
    """Create a migrated database with ``days`` days of events ending on LAST_DAY; return the event count."""
    conn = db.connect(path)
    db.apply_migrations(conn)
    conn.execute("PRAGMA synchronous=OFF")
    total = 0
    for offset in range(days - 1, -1, -1):
        rows = events_of_day(LAST_DAY - dt.timedelta(days=offset), per_day)
        with db.transaction(conn):
            conn.executemany(
                """
                INSERT INTO user_activity_log
                    (session_id, user_id, role, timestamp, page_url, action_type,
                     status_code, duration_ms, ip_address, user_agent)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                rows,
            )
        total += len(rows)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return total


def fixed_processor(path: str) -> DailySummaryProcessor:
    """Return a processor for which every generated day is over."""
    later = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    return DailySummaryProcessor(
        db.connect(path), "Europe/Berlin", 5, clock=lambda: later, owns_connection=True
    )


def one_day_seconds(paths: list[str], repeats: int) -> list[float]:
    """Return, per database, the best time of summarizing the same day (runs interleaved, so
    load from other processes falls on every database alike)."""
    day = LAST_DAY - dt.timedelta(days=3)
    processors = [fixed_processor(path) for path in paths]
    best = [float("inf")] * len(paths)
    for _ in range(repeats):
        for index, processor in enumerate(processors):
            started = time.perf_counter()
            processor.summarize_day(day)
            best[index] = min(best[index], time.perf_counter() - started)
    for processor in processors:
        processor.close()
    return best


def child_backfill(path: str) -> None:
    """In a fresh process: time the scan (best of two) and the full backfill; print JSON."""
    conn = db.connect(path)
    scans = []
    for _ in range(2):
        started = time.perf_counter()
        conn.execute(SCAN_SQL).fetchall()
        scans.append(time.perf_counter() - started)
    conn.close()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with fixed_processor(path) as processor:
        started = time.perf_counter()
        report = processor.process_missing_days()
        backfill = time.perf_counter() - started
    print(
        json.dumps(
            {
                "scan_seconds": min(scans),
                "backfill_seconds": backfill,
                "days": len(report.days),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": rss_before / 1024,
            }
        )
    )


def insert_microseconds(paths: list[str], inserts: int) -> list[float]:
    """Return, per database, the median cost in µs of one tracker-style insert in its own
    transaction (inserts alternate between the databases)."""
    conns = [db.connect(path) for path in paths]
    moment = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC)
    durations: list[list[float]] = [[] for _ in paths]
    for n in range(inserts):
        row = ("f" * 64, 1 + n % USERS, (moment + dt.timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f"))
        for conn, times in zip(conns, durations, strict=True):
            started = time.perf_counter()
            with db.transaction(conn):
                conn.execute(
                    """
                    INSERT INTO user_activity_log
                        (session_id, user_id, role, timestamp, page_url, action_type,
                         status_code, duration_ms)
                    VALUES (?, ?, 'driver', ?, '/machines/1', 'page_view', 200, 10.0)
                    """,
                    row,
                )
            times.append(time.perf_counter() - started)
    for conn in conns:
        conn.close()
    return [statistics.median(times) * 1e6 for times in durations]


def trigger_overhead(folder: str, inserts: int) -> tuple[float, float]:
    """Return the insert cost in µs with the late-data triggers and 2 years of final rows, and without."""
    with_path, without_path = (os.path.join(folder, f"inserts-{n}.sqlite3") for n in (1, 2))
    build_database(with_path, 730, 10)
    with fixed_processor(with_path) as processor:
        processor.process_missing_days()
    source, copy = db.connect(with_path), db.connect(without_path)
    source.backup(copy)
    source.close()
    for (name,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        copy.execute(f"DROP TRIGGER {name}")
    copy.close()
    with_triggers, without = insert_microseconds([with_path, without_path], inserts)
    os.remove(with_path)
    os.remove(without_path)
    return with_triggers, without


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES TARGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", FULL_RUN_EVENTS)))
    parser.add_argument(
        "--history-per-day", type=int, default=int(os.environ.get("BENCH_HISTORY_PER_DAY", 2000))
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--child-backfill", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_backfill:
        child_backfill(args.child_backfill)
        return 0

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-summaries-") as folder:
        paths = []
        for label, days in (("1 month", 30), ("3 years", 3 * 365)):
            paths.append(os.path.join(folder, f"history-{days}.sqlite3"))
            started = time.perf_counter()
            count = build_database(paths[-1], days, args.history_per_day)
            print(f"built {label} of history: {count:,} events in {time.perf_counter() - started:.1f} s")
        month, years = one_day_seconds(paths, args.repeats)
        timings = {"1 month": month, "3 years": years}
        for path in paths:
            os.remove(path)
        ratio = timings["3 years"] / timings["1 month"]
        ok &= ratio <= TARGET_HISTORY_RATIO
        print(
            f"one day's summary: {timings['1 month'] * 1000:.1f} ms with 1 month, "
            f"{timings['3 years'] * 1000:.1f} ms with 3 years of history; "
            f"ratio {ratio:.2f} (target <= {TARGET_HISTORY_RATIO}: {verdict(ratio <= TARGET_HISTORY_RATIO)})"
        )

        path = os.path.join(folder, "backfill.sqlite3")
        started = time.perf_counter()
        count = build_database(path, 365, args.events // 365)
        print(f"built 365 days: {count:,} events in {time.perf_counter() - started:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--child-backfill", path], check=True, capture_output=True, text=True
        )
        result = json.loads(child.stdout)
        ratio = result["backfill_seconds"] / result["scan_seconds"]
        rss_ok = result["peak_rss_mb"] < TARGET_PEAK_RSS_MB
        # Per-day costs weigh more on thin days, and the scan's sort less on a small table.
        judged = args.events >= FULL_RUN_EVENTS
        ok &= rss_ok and (ratio <= TARGET_BACKFILL_RATIO or not judged)
        target = (
            f"target <= {TARGET_BACKFILL_RATIO}: {verdict(ratio <= TARGET_BACKFILL_RATIO)}"
            if judged
            else f"quick run: the target is for about {FULL_RUN_EVENTS:,} events"
        )
        print(
            f"full backfill of {result['days']} days: {result['backfill_seconds']:.2f} s; "
            f"GROUP BY scan: {result['scan_seconds']:.2f} s; ratio {ratio:.2f} ({target})"
        )
        print(
            f"peak RSS of the backfill process: {result['peak_rss_mb']:.0f} MB "
            f"({result['rss_before_mb']:.0f} MB before it began; "
            f"target < {TARGET_PEAK_RSS_MB} MB: {verdict(rss_ok)})"
        )
        with_triggers, without = trigger_overhead(folder, args.inserts)
        print(
            f"one tracker insert: {with_triggers:.1f} µs with the late-data triggers and 730 final days, "
            f"{without:.1f} µs without them (median of {args.inserts})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
