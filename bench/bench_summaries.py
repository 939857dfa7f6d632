"""Measure daily summaries: one day's cost against history size, and a full backfill against one scan.

Run from anywhere: ``python bench/bench_summaries.py [--events N] [--postgres-events N]
[--history-per-day N]`` (or ``BENCH_EVENTS=1000000`` for a quick run). It builds throw-away
databases of synthetic events, on SQLite and, in the same run, on PostgreSQL (see
backends.py), and prints per backend:

1. the best time of one day's summary with 1 month and with 3 years of history,
   and their ratio (target <= 1.3: a day is one range scan on the timestamp index);
2. a full backfill of ``--events`` events (default 10 million; on PostgreSQL
   ``--postgres-events``, default 3 million, to keep the run short) over 365 days and one
   ``SELECT substr(timestamp,1,10), COUNT(*), COUNT(DISTINCT user_id) … GROUP BY 1``
   over the same table, both times, their ratio (target <= 3, judged at 10 million events)
   and the backfill's peak RSS (target < 300 MB), measured in a child process of its own;
3. the cost of one tracker insert (autocommit, as the tracker writes it) with and without
   the late-data triggers;

then every figure of both backends side by side. The events go in through the storage's
bulk path (SQLite: multi-row INSERTs; PostgreSQL: COPY), as imports and demo data do.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
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
from backends import POSTGRESQL, SQLITE, BenchDatabases, add_backends_option, label  # noqa: E402

from activity_monitor import db  # noqa: E402
from activity_monitor.activity_tracker import INSERT_EVENT  # noqa: E402
from activity_monitor.daily_summaries import DailySummaryProcessor  # noqa: E402
from activity_monitor.event_import import EventImport  # noqa: E402
from activity_monitor.late_data import late_data_triggers_suspended  # noqa: E402
from activity_monitor.storage import Connection  # noqa: E402

TARGET_HISTORY_RATIO = 1.3
TARGET_BACKFILL_RATIO = 3.0
TARGET_PEAK_RSS_MB = 300
FULL_RUN_EVENTS = 10_000_000
# PostgreSQL's default scale: loading 10 M events (COPY, then VACUUM ANALYZE) and reading them back
# adds about 4 minutes, which would take ``make bench`` past 10; --postgres-events 10000000 judges it.
POSTGRES_DEFAULT_EVENTS = 3_000_000
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


def build_databases(databases: list[str], days: int, per_day: int) -> int:
    """Create migrated databases holding the same ``days`` days of events ending on LAST_DAY, loaded
    through each storage's bulk path in one transaction; return the event count of one."""
    conns = [db.connect(database) for database in databases]
    for conn in conns:
        db.apply_migrations(conn)
    total = 0
    with contextlib.ExitStack() as stack:
        loads = []
        for conn in conns:
            stack.enter_context(conn.storage.bulk_load(conn))
            stack.enter_context(conn.transaction())
            loads.append(EventImport(conn, stack.enter_context(late_data_triggers_suspended(conn))))
        for offset in range(days - 1, -1, -1):
            columns = list(zip(*events_of_day(LAST_DAY - dt.timedelta(days=offset), per_day), strict=True))
            for load in loads:
                load.add_columns(columns)
            total += len(columns[0])
    for conn in conns:
        settle(conn)
        conn.close()
    return total


def settle(conn: Connection) -> None:
    """Leave a freshly loaded database as a running one would be: SQLite's WAL checkpointed,
    PostgreSQL's table vacuumed and analyzed (as autovacuum would after a large load)."""
    if conn.dialect == SQLITE:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        conn.execute("VACUUM ANALYZE user_activity_log")


def fixed_processor(database: str) -> DailySummaryProcessor:
    """Return a processor for which every generated day is over."""
    later = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    return DailySummaryProcessor(
        db.connect(database), "Europe/Berlin", 5, clock=lambda: later, owns_connection=True
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


def peak_rss_mb() -> float:
    """Return this process's peak resident memory in MB. Linux's VmHWM counts this program only;
    ru_maxrss also keeps the parent's size at the fork that started it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_backfill(database: str) -> None:
    """In a fresh process: time the scan (best of two) and the full backfill; print JSON."""
    conn = db.connect(database)
    scans = []
    for _ in range(2):
        started = time.perf_counter()
        conn.execute(SCAN_SQL).fetchall()
        scans.append(time.perf_counter() - started)
    conn.close()
    rss_before = peak_rss_mb()
    with fixed_processor(database) as processor:
        started = time.perf_counter()
        report = processor.process_missing_days()
        backfill = time.perf_counter() - started
    print(
        json.dumps(
            {
                "scan_seconds": min(scans),
                "backfill_seconds": backfill,
                "days": len(report.days),
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_mb": rss_before,
            }
        )
    )


def insert_microseconds(databases: list[str], inserts: int) -> list[float]:
    """Return, per database, the median cost in µs of one tracker insert, a single autocommit
    statement as the tracker writes it (inserts alternate between the databases)."""
    conns = [db.connect(database) for database in databases]
    moment = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC)
    durations: list[list[float]] = [[] for _ in databases]
    for n in range(inserts):
        timestamp = (moment + dt.timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
        row = ("f" * 64, 1 + n % USERS, "driver", timestamp, "/machines/1", "page_view", 200, 10.0,
               "10.1.2.3", USER_AGENT)
        for conn, times in zip(conns, durations, strict=True):
            started = time.perf_counter()
            conn.execute(INSERT_EVENT, row)
            times.append(time.perf_counter() - started)
    for conn in conns:
        conn.close()
    return [statistics.median(times) * 1e6 for times in durations]


def drop_late_data_triggers(database: str) -> None:
    """Drop the triggers on user_activity_log (the late-data ones) of a database."""
    conn = db.connect(database)
    if conn.dialect == SQLITE:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'user_activity_log'"
        ).fetchall()
        statement = 'DROP TRIGGER "{}"'
    else:
        rows = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'user_activity_log'::regclass AND NOT tgisinternal"
        ).fetchall()
        statement = 'DROP TRIGGER "{}" ON user_activity_log'
    for (name,) in rows:
        conn.execute(statement.format(name))
    conn.close()


def trigger_overhead(databases: BenchDatabases, backends: list[str], inserts: int) -> dict[str, tuple]:
    """Return per backend the insert cost in µs with the late-data triggers and 2 years of final
    rows, and without the triggers (the two interleaved, one backend after the other)."""
    pairs = {backend: [databases.new(backend, f"inserts-{n}") for n in (1, 2)] for backend in backends}
    build_databases([database for pair in pairs.values() for database in pair], 730, 10)
    for with_triggers, without in pairs.values():
        for database in (with_triggers, without):
            with fixed_processor(database) as processor:
                processor.process_missing_days()
        drop_late_data_triggers(without)
    costs = {}
    for backend, pair in pairs.items():
        costs[backend] = tuple(insert_microseconds(pair, inserts))
        for database in pair:
            databases.discard(database)
    return costs


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES TARGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", FULL_RUN_EVENTS)))
    parser.add_argument(
        "--postgres-events",
        type=int,
        default=int(os.environ.get("BENCH_POSTGRES_EVENTS", POSTGRES_DEFAULT_EVENTS)),
        help="Events of PostgreSQL's backfill (capped at --events).",
    )
    parser.add_argument(
        "--history-per-day", type=int, default=int(os.environ.get("BENCH_HISTORY_PER_DAY", 2000))
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--child-backfill", metavar="DB", help=argparse.SUPPRESS)
    add_backends_option(parser)
    args = parser.parse_args()
    if args.child_backfill:
        child_backfill(args.child_backfill)
        return 0

    figures: dict[str, dict[str, str]] = {}
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix="bench-summaries-") as folder,
        BenchDatabases(folder, args.backends) as databases,
    ):
        backends = databases.backends
        figures = {backend: {} for backend in backends}
        history = {
            (backend, days): databases.new(backend, f"history-{days}")
            for days in (30, 3 * 365)
            for backend in backends
        }
        for name, days in (("1 month", 30), ("3 years", 3 * 365)):
            started = time.perf_counter()
            count = build_databases([history[(b, days)] for b in backends], days, args.history_per_day)
            print(
                f"built {name} of history: {count:,} events, on {len(backends)} backends, "
                f"in {time.perf_counter() - started:.1f} s"
            )
        for backend in backends:
            # Each backend on its own: PostgreSQL's server keeps working a moment after answering
            # (WAL, statistics), which would slow whichever SQLite case came next.
            pair = [history[(backend, 30)], history[(backend, 3 * 365)]]
            month, years = one_day_seconds(pair, args.repeats)
            for database in pair:
                databases.discard(database)
            ratio = years / month
            ok &= ratio <= TARGET_HISTORY_RATIO
            print(
                f"{label(backend)}: one day's summary: {month * 1000:.1f} ms with 1 month, "
                f"{years * 1000:.1f} ms with 3 years of history; ratio {ratio:.2f} "
                f"(target <= {TARGET_HISTORY_RATIO}: {verdict(ratio <= TARGET_HISTORY_RATIO)})"
            )
            figures[backend]["one day, 1 month of history (ms)"] = f"{month * 1000:.1f}"
            figures[backend]["one day, 3 years of history (ms)"] = f"{years * 1000:.1f}"
            met = ratio <= TARGET_HISTORY_RATIO
            figures[backend]["  3 years / 1 month (<= 1.3)"] = mark(f"{ratio:.2f}", met)

        scale = {backend: args.events for backend in backends}
        if POSTGRESQL in scale:
            scale[POSTGRESQL] = min(args.postgres_events, args.events)
        for events in sorted(set(scale.values()), reverse=True):
            on = [backend for backend in backends if scale[backend] == events]
            targets = {backend: databases.new(backend, "backfill") for backend in on}
            started = time.perf_counter()
            count = build_databases(list(targets.values()), 365, events // 365)
            print(
                f"built 365 days: {count:,} events on {', '.join(map(label, on))} "
                f"in {time.perf_counter() - started:.1f} s"
            )
            for backend, database in targets.items():
                ok &= backfill(backend, database, count, figures[backend])
                databases.discard(database)

        costs = trigger_overhead(databases, backends, args.inserts)
        for backend, (with_triggers, without) in costs.items():
            print(
                f"{label(backend)}: one tracker insert: {with_triggers:.1f} µs with the late-data triggers "
                f"and 730 final days, {without:.1f} µs without them (median of {args.inserts})"
            )
            figures[backend]["tracker insert, triggers + 730 final days (µs)"] = f"{with_triggers:.1f}"
            figures[backend]["tracker insert, no triggers (µs)"] = f"{without:.1f}"
    print_side_by_side(figures)
    return 0 if ok else 1


def backfill(backend: str, database: str, count: int, figures: dict[str, str]) -> bool:
    """Time a full backfill against one GROUP BY scan in a child process; print the figures,
    add them to ``figures`` and return whether the targets are met."""
    child = subprocess.run(
        [sys.executable, __file__, "--child-backfill", database], check=True, capture_output=True, text=True
    )
    result = json.loads(child.stdout)
    ratio = result["backfill_seconds"] / result["scan_seconds"]
    rss_ok = result["peak_rss_mb"] < TARGET_PEAK_RSS_MB
    # Per-day costs weigh more on thin days, and the scan's sort less on a small table.
    judged = count >= FULL_RUN_EVENTS * 0.99
    target = (
        f"target <= {TARGET_BACKFILL_RATIO}: {verdict(ratio <= TARGET_BACKFILL_RATIO)}"
        if judged
        else f"smaller run: the target is for about {FULL_RUN_EVENTS:,} events"
    )
    print(
        f"{label(backend)}: full backfill of {result['days']} days, {count:,} events: "
        f"{result['backfill_seconds']:.2f} s; GROUP BY scan: {result['scan_seconds']:.2f} s; "
        f"ratio {ratio:.2f} ({target})"
    )
    print(
        f"{label(backend)}: peak RSS of the backfill process: {result['peak_rss_mb']:.0f} MB "
        f"({result['rss_before_mb']:.0f} MB before it began; "
        f"target < {TARGET_PEAK_RSS_MB} MB: {verdict(rss_ok)})"
    )
    figures["backfill events"] = f"{count:,}"
    figures["backfill (s)"] = f"{result['backfill_seconds']:.2f}"
    figures["GROUP BY scan (s)"] = f"{result['scan_seconds']:.2f}"
    figures["  backfill / scan (<= 3 at 10 M events)"] = mark(
        f"{ratio:.2f}", ratio <= TARGET_BACKFILL_RATIO or not judged
    ) + ("" if judged else " (not judged)")
    figures["backfill peak RSS (MB, < 300)"] = mark(f"{result['peak_rss_mb']:.0f}", rss_ok)
    return rss_ok and (ratio <= TARGET_BACKFILL_RATIO or not judged)


def mark(text: str, met: bool) -> str:
    """Return a figure, flagged when it misses its target."""
    return text if met else f"{text} MISSED"


def print_side_by_side(figures: dict[str, dict[str, str]]) -> None:
    """Print every figure of every backend in one table."""
    rows = list(dict.fromkeys(name for values in figures.values() for name in values))
    print(f"\n{'':<50}" + "".join(f"{label(backend):>26}" for backend in figures))
    for name in rows:
        print(f"{name:<50}" + "".join(f"{values.get(name, '-'):>26}" for values in figures.values()))


if __name__ == "__main__":
    sys.exit(main())
