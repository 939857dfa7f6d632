"""Per-endpoint response times in bounded memory, for /health and slow-request warnings."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np
from flask import Flask, Response, current_app, g, request

log = logging.getLogger(__name__)

SAMPLES_PER_ENDPOINT = 2000
MONITORED_PREFIX = "activity_trends."


class PerformanceMonitor:
    """Keeps the last durations of each endpoint, its request count and its error count."""

    def __init__(self, samples: int = SAMPLES_PER_ENDPOINT):
        self.samples = samples
        self.lock = threading.Lock()
        self.durations: dict[str, deque[float]] = {}
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def record(self, endpoint: str, duration_ms: float, failed: bool) -> None:
        """Add one request's duration; ``failed`` means a 5xx answer."""
        with self.lock:
            if endpoint not in self.durations:
                self.durations[endpoint] = deque(maxlen=self.samples)
                self.counts[endpoint] = 0
                self.errors[endpoint] = 0
            self.durations[endpoint].append(duration_ms)
            self.counts[endpoint] += 1
            self.errors[endpoint] += int(failed)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return count, p50/p95/p99 in ms and the error rate of each endpoint."""
        with self.lock:
            copied = {
                name: (list(d), self.counts[name], self.errors[name]) for name, d in self.durations.items()
            }
        report = {}
        for name, (durations, count, errors) in sorted(copied.items()):
            p50, p95, p99 = np.percentile(durations, [50, 95, 99]).tolist()
            report[name] = {
                "count": count,
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
                "p99_ms": round(p99, 2),
                "error_rate": round(errors / count, 4),
            }
        return report


def start_timer() -> None:
    """Remember when the request began."""
    g.performance_started = time.perf_counter()


def slow_threshold_ms(label: str) -> float:
    """Return the slow-request threshold of an endpoint label."""
    thresholds = current_app.config["ACTIVITY_SLOW_MS"]
    return float(thresholds.get(label.split(":")[0], thresholds.get("default", 2000)))


def record_response(response: Response) -> Response:
    """Time API responses, add X-Response-Time and warn about slow requests."""
    endpoint = request.endpoint or ""
    started = g.get("performance_started")
    if started is None or not endpoint.startswith(MONITORED_PREFIX):
        return response
    duration_ms = (time.perf_counter() - started) * 1000
    # The trends view labels itself with hit or miss, so both are measured apart.
    label = g.get("performance_label") or endpoint[len(MONITORED_PREFIX) :]
    get_monitor().record(label, duration_ms, response.status_code >= 500)
    response.headers["X-Response-Time"] = f"{duration_ms:.2f}ms"
    if duration_ms > slow_threshold_ms(label):
        log.warning("Slow request: %s %s took %.0f ms (%s)", request.method, request.path, duration_ms, label)
    return response


def get_monitor(app: Flask | None = None) -> PerformanceMonitor:
    """Return the app's response-time monitor, creating it on first use."""
    from activity_monitor.extension import get_state

    state = get_state(app)
    if state.performance is None:
        state.performance = PerformanceMonitor()
    return state.performance
