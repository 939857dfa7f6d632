"""Two installs on two databases that share one Redis and one key prefix never meet: each sees its
own numbers, keeps its own cache statistics and rate-limit counts, and elects its own leader."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from activity_monitor import get_state
from activity_monitor.background_tasks import BackgroundTaskManager
from activity_monitor.db import connect
from conftest import AuthActions, redis_url
from summary_rows import insert_summary

PREFIX = "shared-test:"
DAY = dt.date(2026, 5, 18)


@pytest.fixture
def shared_redis(redis_available):
    """The Redis both installs use; every key under the test prefix is removed afterwards."""
    redis_available()
    client = redis.Redis.from_url(redis_url())
    yield client
    # Flask-Limiter's storage puts its own "LIMITS:LIMITER/" before the prefix.
    keys = list(client.scan_iter(match=f"*{PREFIX}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def installs(tmp_path, clock, shared_redis):
    """Two demo installs, each on its own database, both on the shared Redis and prefix."""
    from app import create_app

    built = []
    for name, sessions in (("a", 390), ("b", 440)):
        folder = tmp_path / name
        folder.mkdir()
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "shared",
                "DATABASE": str(folder / "activity.sqlite3"),
                "ACTIVITY_CLOCK": clock,
                "ACTIVITY_REDIS_URL": redis_url(),
                "ACTIVITY_REDIS_PREFIX": PREFIX,
                "ACTIVITY_LEADER_LOCK_TTL": 5,
            }
        )
        conn = connect(get_state(app).database)
        try:
            insert_summary(conn, DAY, values={"total_sessions": sessions})
        finally:
            conn.close()
        client = app.test_client()
        built.append((app, AuthActions(app, client).token("admin"), sessions))
    return built


def sessions_seen(app, token: str) -> int:
    """Return the total_sessions the install's trends endpoint serves for DAY."""
    answer = app.test_client().get(
        f"/api/admin/activity/trends?start_date={DAY}&end_date={DAY}&metrics=total_sessions",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.json
    return answer.json["data"]["metrics"]["total_sessions"][0]["value"]


def test_the_two_installs_have_different_ids(installs):
    (a, _, _), (b, _, _) = installs
    assert get_state(a).install_id != get_state(b).install_id
    assert get_state(a).redis_prefix == f"{PREFIX}{get_state(a).install_id}:"


def test_each_install_serves_its_own_numbers_from_the_shared_cache(installs):
    for _ in range(2):  # the second round is answered from the cache
        for app, token, sessions in installs:
            assert sessions_seen(app, token) == sessions


def test_every_key_an_install_writes_carries_its_own_id(installs, shared_redis):
    for app, token, _ in installs:
        sessions_seen(app, token)
    keys = [key.decode() for key in shared_redis.scan_iter(match=f"*{PREFIX}*")]
    ids = {get_state(app).install_id for app, _, _ in installs}
    assert keys
    assert {key.split(PREFIX, 1)[1].split(":", 1)[0] for key in keys} == ids
    assert any(":ratelimit" in key for key in keys)
    assert any(":trends:" in key for key in keys)


def test_a_cache_clear_of_one_install_leaves_the_others_entries(installs, shared_redis):
    (a, token_a, _), (b, token_b, _) = installs
    sessions_seen(a, token_a)
    sessions_seen(b, token_b)
    cleared = a.test_client().post(
        "/api/admin/activity/cache/clear", headers={"Authorization": f"Bearer {token_a}"}
    )
    assert cleared.status_code == 200
    b_entries = list(shared_redis.scan_iter(match=f"{get_state(b).redis_prefix}trends:*"))
    a_entries = list(shared_redis.scan_iter(match=f"{get_state(a).redis_prefix}trends:*"))
    assert b_entries and not a_entries


def test_each_install_elects_its_own_leader(installs):
    (a, _, _), (b, _, _) = installs
    managers = [BackgroundTaskManager(a), BackgroundTaskManager(b), BackgroundTaskManager(a)]
    try:
        assert [manager.lock.acquire() for manager in managers] == [True, True, False]
    finally:
        for manager in managers:
            manager.lock.release()
