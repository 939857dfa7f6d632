"""Measure a cached ``get`` (a hit) on the in-process cache and, when reachable, on Redis.

Run from anywhere: ``python bench/bench_cache.py [--calls N]``. Prints the median and
99th percentile per call in microseconds; exits 1 when the in-process median is over
the 20 µs target. Redis uses ``REDIS_URL`` (default DB 15) under a throwaway prefix
that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from activity_monitor.trends_cache import RedisCache, TrendsCache  # noqa: E402

TARGET_MEMORY_MEDIAN_US = 20.0
PAYLOAD = b"x" * 20_000  # about the size of a serialized 90-day trends answer


def time_gets(cache: TrendsCache | RedisCache, calls: int) -> list[float]:
    """Return the duration in µs of each of ``calls`` hits on one warm key."""
    cache.set("bench:key", PAYLOAD)
    for _ in range(min(calls, 1000)):
        cache.get("bench:key")
    durations = []
    timer = time.perf_counter_ns
    for _ in range(calls):
        start = timer()
        cache.get("bench:key")
        durations.append((timer() - start) / 1000)
    return durations


def report(name: str, durations: list[float]) -> float:
    """Print median and p99 of ``durations``; return the median."""
    median = statistics.median(durations)
    p99 = statistics.quantiles(durations, n=100)[98]
    print(f"{name:<8} cached get: median {median:8.2f} µs   p99 {p99:8.2f} µs   ({len(durations)} calls)")
    return median


def bench_redis(url: str, calls: int) -> None:
    """Benchmark RedisCache on ``url`` under a unique prefix, or say why it was skipped."""
    prefix = f"bench-{uuid.uuid4().hex}:"
    cache = RedisCache.from_url(url, prefix=prefix)
    probe = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        probe.ping()
    except redis.exceptions.RedisError as exc:
        print(f"redis    skipped: no Redis answers at {url} ({exc})")
        return
    try:
        report("redis", time_gets(cache, calls))
    finally:
        keys = list(probe.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            probe.delete(*keys)
        cache.close()
        probe.close()


def main() -> int:
    """Run both benchmarks; return 1 when the in-process median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="timed gets on the in-process cache")
    parser.add_argument("--redis-calls", type=int, default=5_000, help="timed gets on Redis")
    args = parser.parse_args()

    memory = TrendsCache(default_ttl=3600, max_entries=100, max_bytes=64 * 1024 * 1024)
    median = report("memory", time_gets(memory, args.calls))
    bench_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"), args.redis_calls)

    within = median <= TARGET_MEMORY_MEDIAN_US
    print(f"memory target ≤ {TARGET_MEMORY_MEDIAN_US:.0f} µs: {'met' if within else 'MISSED'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
