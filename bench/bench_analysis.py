"""Measure ``analyze_many`` on six metrics of 365 and 730 days against analysing each row alone.

Run from anywhere: ``python bench/bench_analysis.py [--runs N]``. Prints, per length, the median
(with p10 and p90, to show the noise) of the batched call and of a loop of ``analyze`` over the
rows, in milliseconds, and the speed-up. The series are synthetic weekday-heavy traffic with a
drifting level, level shifts, holidays and spikes, so every code path (refits, anomalies) runs.
The share below is issue 12's cost budget for the analysis in an uncached trends request: at
most 5 ms per metric (bench_forecast.py measures the same call with 1,100 days of history).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from activity_monitor.trend_analysis import analyze, analyze_many  # noqa: E402

METRICS = 6
TARGET_BATCH_365_MS = 5.0 * METRICS
WEEKDAY_SHAPE = np.array([1.25, 1.3, 1.25, 1.2, 1.0, 0.25, 0.15])


def synthetic_series(days: int, seed: int = 0) -> np.ndarray:
    """Return (METRICS, days) non-negative daily counts of very different sizes and shapes."""
    rng = np.random.default_rng(seed)
    rows = []
    for metric in range(METRICS):
        level = 10.0 ** rng.uniform(1, 4) * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        level[rng.integers(days // 3, days):] *= rng.uniform(0.6, 1.5)
        values = level * WEEKDAY_SHAPE[(np.arange(days) + metric) % 7] * rng.lognormal(0, 0.1, days)
        values[rng.choice(days, 4, replace=False)] *= rng.choice([0.02, 5.0], 4)
        rows.append(rng.poisson(values).astype(float))
    return np.array(rows)


def time_call(call: Callable[[], object], runs: int) -> list[float]:
    """Return the duration in ms of each of ``runs`` calls, after a warm-up."""
    for _ in range(max(5, runs // 20)):
        call()
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        durations.append((time.perf_counter() - start) * 1000)
    return durations


def summary(durations: list[float]) -> str:
    """Return 'median (p10–p90) ms' of durations."""
    deciles = statistics.quantiles(durations, n=10)
    return f"{statistics.median(durations):7.3f} ms (p10 {deciles[0]:.3f}, p90 {deciles[-1]:.3f})"


def main() -> int:
    """Time the batch and the per-row loop for 365 and 730 days; always return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="timed calls of the batched analysis")
    args = parser.parse_args()

    for days in (365, 730):
        series = synthetic_series(days)
        dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(days)]
        batched = time_call(lambda series=series, dates=dates: analyze_many(series, dates), args.runs)
        per_row = time_call(lambda series=series, dates=dates: [analyze(row, dates) for row in series],
                            max(20, args.runs // 5))
        print(f"{METRICS} × {days} days  analyze_many: {summary(batched)}")
        print(f"{METRICS} × {days} days  analyze loop: {summary(per_row)}   "
              f"speed-up ×{statistics.median(per_row) / statistics.median(batched):.1f}")
        if days == 365:
            within = statistics.median(batched) <= TARGET_BATCH_365_MS
            print(f"batched 6 × 365 within the {TARGET_BATCH_365_MS:g} ms budget (5 ms per metric): {within}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
