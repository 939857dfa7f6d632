"""Score the trends forecast on real public daily series against weekly seasonal naive and the peers.

Run from anywhere: ``python bench/bench_forecast.py [--runs N]``. The protocol (52 weekly origins,
7 days ahead, 1,092 training days, MASE scaled by the in-sample seasonal-naive MAE) is in
forecast_protocol.py; the series and their sources are in bench/data/README.md. Our forecast is the
product's: ``analyze_many`` with a 7-day range and the training days as history. Prints per series
our MASE ratio to seasonal naive, and the peers' (statsforecast AutoETS and MSTL, Prophet) from
forecast_peers.json, written by ``make bench-peers``; then the time of ``analyze_many`` on six
metrics with 1,100 days of history, and of a whole uncached trends answer (``get_trends`` on a SQLite
file of 1,100 days of summaries, 7-day range). Targets (issue 12): every ratio ≤ 0.85, none above the best
peer's, and at most 5 ms per metric (30 ms for the six). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import forecast_protocol as protocol  # noqa: E402
import numpy as np  # noqa: E402
from bench_analysis import synthetic_series  # noqa: E402

from activity_monitor.activity_trends_service import METRICS as METRIC_NAMES  # noqa: E402
from activity_monitor.activity_trends_service import ActivityTrendsService  # noqa: E402
from activity_monitor.db import apply_migrations, connect  # noqa: E402
from activity_monitor.trend_analysis import analyze_many  # noqa: E402

TARGET_RATIO = 0.85
TARGET_MS_PER_METRIC = 5.0
METRICS = 6
HISTORY_DAYS = 1100
RANGE_DAYS = 7


def our_forecasts(dates: list[dt.date], train: np.ndarray) -> np.ndarray:
    """Return the product's forecasts (origins × HORIZON): one analyze_many call, an origin per row.

    Rows never mix and the weekday cycle is read from day positions, so the origins (a whole number of
    weeks apart) can share one call and one set of range dates.
    """
    range_dates = dates[:RANGE_DAYS]  # labels only
    results = analyze_many(train[:, -RANGE_DAYS:], range_dates, history=train)
    return np.array([[point["value"] for point in result["trend_analysis"]["forecast"]]
                     for result in results])


def time_trends(runs: int) -> list[float]:
    """Return the ms of each of `runs` analyze_many calls on METRICS × HISTORY_DAYS of history."""
    history = synthetic_series(HISTORY_DAYS)
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(RANGE_DAYS)]
    durations = []
    for index in range(runs + 5):
        started = time.perf_counter()
        analyze_many(history[:, -RANGE_DAYS:], dates, history=history)
        if index >= 5:  # warm-up
            durations.append((time.perf_counter() - started) * 1000)
    return durations


def time_service(runs: int) -> list[float]:
    """Return the ms of each of `runs` uncached trends answers (``get_trends``, 6 metrics, a 7-day
    range) on a SQLite file holding HISTORY_DAYS of summaries: the request's whole cost of reading
    the history, analysing it and building the answer."""
    history = synthetic_series(HISTORY_DAYS)
    first = dt.date(2024, 1, 1)
    with tempfile.TemporaryDirectory() as folder:
        conn = connect(str(Path(folder) / "bench.sqlite3"))
        try:
            apply_migrations(conn)
            columns, marks = ", ".join(METRIC_NAMES), ", ".join("?" * METRICS)
            conn.executemany(
                f"INSERT INTO activity_summary_daily (date, {columns}) VALUES (?, {marks})",
                [((first + dt.timedelta(days=day)).isoformat(), *(int(v) for v in history[:, day]))
                 for day in range(HISTORY_DAYS)],
            )
            service = ActivityTrendsService(conn, "UTC")
            end = first + dt.timedelta(days=HISTORY_DAYS - 1)
            start = end - dt.timedelta(days=RANGE_DAYS - 1)
            durations = []
            for index in range(runs + 5):
                started = time.perf_counter()
                service.get_trends(start, end)
                if index >= 5:  # warm-up
                    durations.append((time.perf_counter() - started) * 1000)
            return durations
        finally:
            conn.close()


def main() -> int:
    """Print the scores and the timing; return 1 when a target is missed, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed analyze_many calls")
    args = parser.parse_args()
    peers = json.loads(protocol.PEERS_FILE.read_text())["series"] if protocol.PEERS_FILE.exists() else {}
    print(f"protocol: last {protocol.ORIGINS} weekly origins, horizon {protocol.HORIZON}, "
          f"{protocol.TRAINING_DAYS} training days; MASE ratio to weekly seasonal naive (lower is better)")
    print(f"{'series':36s} {'ours':>6s} {'AutoETS':>8s} {'MSTL':>6s} {'Prophet':>8s}  {'SN MASE':>7s}")
    missed = []
    for name, (dates, values) in protocol.load_series().items():
        train, actual = protocol.training_windows(values)
        baseline = protocol.mase(train, actual, protocol.seasonal_naive(train))
        ratio = protocol.mase(train, actual, our_forecasts(dates, train)) / baseline
        theirs = {method: peers[name][method]["ratio"] for method in ("AutoETS", "MSTL", "Prophet")
                  if name in peers}
        print(f"{name:36s} {ratio:6.3f} " + " ".join(
            f"{theirs[method]:{width}.3f}" if method in theirs else f"{'-':>{width}s}"
            for method, width in (("AutoETS", 8), ("MSTL", 6), ("Prophet", 8))) + f"  {baseline:7.3f}")
        if ratio > TARGET_RATIO:
            missed.append(f"{name}: ratio {ratio:.3f} > {TARGET_RATIO}")
        if theirs and ratio > min(theirs.values()):
            best = min(theirs, key=theirs.get)
            missed.append(f"{name}: ratio {ratio:.3f} > {best}'s {theirs[best]:.3f}")
    if not peers:
        print("no peer figures: run `make bench-peers` to write", protocol.PEERS_FILE.name)
    durations = time_trends(args.runs)
    deciles = statistics.quantiles(durations, n=10)
    total = statistics.median(durations)
    print(f"analyze_many, {METRICS} metrics × {HISTORY_DAYS} days of history, {RANGE_DAYS}-day range: "
          f"{total:.1f} ms (p10 {deciles[0]:.1f}, p90 {deciles[-1]:.1f}), "
          f"{total / METRICS:.2f} ms per metric")
    if total / METRICS > TARGET_MS_PER_METRIC:
        missed.append(f"{total / METRICS:.2f} ms per metric > {TARGET_MS_PER_METRIC}")
    durations = time_service(max(20, args.runs // 2))
    deciles = statistics.quantiles(durations, n=10)
    request = statistics.median(durations)
    print(f"uncached get_trends, {METRICS} metrics, {RANGE_DAYS}-day range, {HISTORY_DAYS} days of summaries "
          f"(SQLite): {request:.1f} ms (p10 {deciles[0]:.1f}, p90 {deciles[-1]:.1f}), "
          f"{request / METRICS:.2f} ms per metric")
    if request / METRICS > TARGET_MS_PER_METRIC:
        missed.append(f"uncached trends: {request / METRICS:.2f} ms per metric > {TARGET_MS_PER_METRIC}")
    for line in missed:
        print("over target:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
