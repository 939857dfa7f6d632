"""PerformanceMonitor: bounded per-endpoint timings and slow-request warnings."""

from __future__ import annotations

import logging

import pytest

from activity_monitor.performance_monitor import PerformanceMonitor


def test_snapshot_gives_count_percentiles_and_error_rate():
    monitor = PerformanceMonitor(samples=1000)
    for ms in range(1, 101):
        monitor.record("trends:miss", float(ms), failed=ms > 95)
    report = monitor.snapshot()["trends:miss"]
    assert report["count"] == 100
    assert report["p50_ms"] == pytest.approx(50.5)
    assert report["p95_ms"] == pytest.approx(95.05)
    assert report["p99_ms"] == pytest.approx(99.01)
    assert report["error_rate"] == 0.05


def test_memory_stays_bounded_but_the_count_does_not_stop():
    monitor = PerformanceMonitor(samples=10)
    for _ in range(1000):
        monitor.record("export", 1.0, failed=False)
    assert len(monitor.durations["export"]) == 10
    assert monitor.snapshot()["export"]["count"] == 1000


def test_slow_requests_log_a_warning(make_app, caplog):
    from conftest import AuthActions

    app = make_app(ACTIVITY_SLOW_MS={"trends": 0, "export": 5000, "default": 2000})
    client = app.test_client()
    AuthActions(app, client).login("admin")
    with caplog.at_level(logging.WARNING, logger="activity_monitor.performance_monitor"):
        response = client.get("/api/admin/activity/trends")
    assert response.status_code == 200
    assert response.headers["X-Response-Time"].endswith("ms")
    assert "Slow request: GET /api/admin/activity/trends" in caplog.text


def test_fast_requests_log_nothing(make_app, caplog):
    from conftest import AuthActions

    app = make_app()
    client = app.test_client()
    AuthActions(app, client).login("admin")
    with caplog.at_level(logging.WARNING, logger="activity_monitor.performance_monitor"):
        client.get("/api/admin/activity/cache/stats")
    assert "Slow request" not in caplog.text
