"""A Redis outage: the API keeps answering from its fallbacks, /health says so, and recovers after.

Cache, rate limiter and leader lock all use one throwaway redis-server that the tests stop and
start again on the same port.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from activity_monitor import get_state
from activity_monitor.db import connect
from conftest import AuthActions
from redis_support import ThrowawayRedis
from summary_rows import insert_series

TRENDS = "/api/admin/activity/trends"
HEALTH = "/api/admin/activity/health"
# The cache retries an unreachable Redis every 5 s; the lock on the next tick (1 s here).
RECOVERY_SECONDS = 10


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A running throwaway Redis, killed after the test whatever happened."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = ThrowawayRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_app(make_app, clock, throwaway_redis: ThrowawayRedis) -> Iterator[Flask]:
    """The app with cache, rate limiter and leader lock on the throwaway Redis, its scheduler running."""
    app = make_app(
        ACTIVITY_REDIS_URL=throwaway_redis.url,
        # The leader lock in Redis too (on PostgreSQL it would otherwise be the database's).
        ACTIVITY_LEADER_LOCK_URL=throwaway_redis.url,
        ACTIVITY_REDIS_PREFIX=f"test-outage-{uuid.uuid4().hex}:",
        ACTIVITY_BACKGROUND_TASKS=True,
        ACTIVITY_SCHEDULER_TICK_SECONDS=1,
        ACTIVITY_LEADER_LOCK_TTL=3,
    )
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        yesterday = clock.today(app.config["ACTIVITY_TIMEZONE"]) - dt.timedelta(days=1)
        insert_series(conn, yesterday - dt.timedelta(days=59), range(100, 160))
    finally:
        conn.close()
    yield app
    get_state(app).background.stop()


@pytest.fixture
def admin_headers(redis_app: Flask) -> dict[str, str]:
    """Bearer headers of an admin of the app."""
    return {"Authorization": f"Bearer {AuthActions(redis_app, redis_app.test_client()).token('admin')}"}


def health(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(HEALTH, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def wait_for_health(
    client: FlaskClient, headers: dict[str, str], until: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Poll /health until ``until(report)`` holds or the time is up; return the last report."""
    deadline = time.monotonic() + timeout
    report = health(client, headers)
    while not until(report) and time.monotonic() < deadline:
        time.sleep(0.25)
        report = health(client, headers)
    return report


def healthy(report: dict[str, Any]) -> bool:
    return report["status"] == "healthy"


def lock_unreachable(report: dict[str, Any]) -> bool:
    return report["checks"]["scheduler"]["lock"]["reachable"] is False


def lock_given_up(report: dict[str, Any]) -> bool:
    """The lock is unreachable and, once the key it set may have expired, no longer held."""
    return lock_unreachable(report) and report["checks"]["scheduler"]["role"] == "follower"


def test_requests_succeed_from_fallbacks_while_redis_is_down(
    redis_app: Flask, admin_headers: dict[str, str], throwaway_redis: ThrowawayRedis
) -> None:
    client = redis_app.test_client()
    for _ in range(3):
        assert client.get(TRENDS, headers=admin_headers).status_code == 200
    assert wait_for_health(client, admin_headers, healthy, RECOVERY_SECONDS)["status"] == "healthy"

    throwaway_redis.stop()
    started = time.monotonic()
    answers = [client.get(TRENDS, headers=admin_headers) for _ in range(10)]

    assert [answer.status_code for answer in answers] == [200] * 10
    assert answers[-1].get_json()["cached"] is True, "the in-process fallback serves repeated ranges"
    assert time.monotonic() - started < 5, "a dead Redis must not stall requests"
    report = wait_for_health(client, admin_headers, lock_given_up, RECOVERY_SECONDS)
    checks = report["checks"]
    assert report["status"] == "degraded"
    assert checks["cache"]["status"] == "degraded" and checks["cache"]["reachable"] is False
    assert checks["rate_limiter"]["reachable"] is False
    assert checks["rate_limiter"]["using_memory_fallback"] is True
    assert checks["scheduler"]["status"] == "degraded" and checks["scheduler"]["role"] == "follower"
    assert checks["database"]["status"] == "ok"
    assert client.get(TRENDS, headers=admin_headers).status_code == 200


def test_health_recovers_when_redis_returns(
    redis_app: Flask, admin_headers: dict[str, str], throwaway_redis: ThrowawayRedis
) -> None:
    client = redis_app.test_client()
    assert client.get(TRENDS, headers=admin_headers).status_code == 200
    throwaway_redis.stop()
    assert client.get(TRENDS, headers=admin_headers).status_code == 200
    assert wait_for_health(client, admin_headers, lock_unreachable, RECOVERY_SECONDS)["status"] == "degraded"

    throwaway_redis.start()
    report = wait_for_health(client, admin_headers, healthy, RECOVERY_SECONDS)

    assert report["status"] == "healthy", report["checks"]
    assert report["checks"]["cache"]["reachable"] is True
    assert report["checks"]["rate_limiter"]["reachable"] is True
    assert report["checks"]["scheduler"]["lock"]["reachable"] is True
    assert client.get(TRENDS, headers=admin_headers).status_code == 200
    prefix = get_state(redis_app).redis_prefix
    assert list(throwaway_redis.client().scan_iter(match=f"{prefix}trends:*")), (
        "answers are cached in Redis again"
    )
