"""CacheWarmer: fills the trends cache for the ranges the dashboard offers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from activity_monitor.activity_trends_service import ActivityTrendsService, preset_ranges


class CacheWarmer:
    """Computes the default-metric trends of every preset range through the normal request path,
    so a warmed entry is byte for byte what a request for the same range would have produced."""

    def __init__(self, service_factory: Callable[[], ActivityTrendsService], today: Callable[[], dt.date]):
        self.service_factory = service_factory
        self.today = today

    def warm(self) -> dict[str, Any]:
        """Warm every preset range; return what was computed and what was already cached."""
        started = time.perf_counter()
        service = self.service_factory()
        computed, already_cached = [], []
        for name, (start, end) in preset_ranges(self.today()).items():
            if end < start:
                continue
            payload = service.trends_payload(start, end)
            (already_cached if payload.cached else computed).append(name)
        return {
            "computed": computed,
            "already_cached": already_cached,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
