"""Specification of the trends cache: in-process LRU, Redis backend and its fallback, app wiring."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from activity_monitor import trends_cache
from activity_monitor.config import DEFAULTS
from activity_monitor.extension import ActivityMonitor, get_state
from activity_monitor.trends_cache import RedisCache, TrendsCache, build_cache, create_cache, get_cache
from redis_support import ThrowawayRedis, free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def redis_missing(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_REDIS=1."""
    if REQUIRE_REDIS:
        pytest.fail(f"{reason} (REQUIRE_REDIS=1)")
    pytest.skip(reason)


@pytest.fixture
def monotonic() -> FakeClock:
    """The monotonic clock of the caches under test (conftest's clock is the apps' wall clock)."""
    return FakeClock()


@pytest.fixture
def cache(monotonic: FakeClock) -> TrendsCache:
    return TrendsCache(default_ttl=60, max_entries=3, max_bytes=100, clock=monotonic)


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix unique to this test."""
    return f"test-trends-{uuid.uuid4().hex}:"


@pytest.fixture
def redis_client(prefix: str) -> Iterator[redis.Redis]:
    """A client on the shared test Redis; deletes every key under the test's prefix afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        redis_missing(f"no Redis answers at {REDIS_URL}: {exc}")
    yield client
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def make_redis_cache(
    request: pytest.FixtureRequest, prefix: str, monotonic: FakeClock
) -> Iterator[Callable[..., RedisCache]]:
    """Build RedisCache instances ("workers") on the test prefix, closed afterwards.

    Without a url they use the shared test Redis, which is then required (skip or fail).
    """
    made: list[RedisCache] = []

    def make(url: str | None = None, **options: object) -> RedisCache:
        if url is None:
            request.getfixturevalue("redis_client")
            url = REDIS_URL
        options = {"prefix": prefix, "default_ttl": 60, "clock": monotonic, "retry_interval": 5.0, **options}
        made.append(RedisCache.from_url(url, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        redis_missing("redis-server is not on PATH")
    server = ThrowawayRedis()
    server.start()
    yield server
    server.stop()


# In-process LRU


def test_least_recently_used_entry_is_evicted_first(cache: TrendsCache) -> None:
    for key in ("a", "b", "c"):
        cache.set(key, b"x")
    cache.set("d", b"x")
    assert cache.get("a") is None
    assert [cache.get(key) for key in ("b", "c", "d")] == [b"x", b"x", b"x"]


def test_get_refreshes_recency(cache: TrendsCache) -> None:
    for key in ("a", "b", "c"):
        cache.set(key, b"x")
    cache.get("a")
    cache.set("d", b"x")
    assert cache.get("a") == b"x"
    assert cache.get("b") is None


def test_overwriting_a_key_replaces_its_value_and_bytes(cache: TrendsCache) -> None:
    cache.set("a", b"12345")
    cache.set("a", b"12")
    assert cache.get("a") == b"12"
    assert cache.stats()["bytes"] == 2
    assert cache.stats()["size"] == 1


def test_entry_expires_after_default_ttl(cache: TrendsCache, monotonic: FakeClock) -> None:
    cache.set("a", b"x")
    monotonic.advance(59.9)
    assert cache.get("a") == b"x"
    monotonic.advance(0.1)
    assert cache.get("a") is None
    stats = cache.stats()
    assert (stats["expirations"], stats["misses"], stats["size"], stats["bytes"]) == (1, 1, 0, 0)


def test_per_set_ttl_overrides_default(cache: TrendsCache, monotonic: FakeClock) -> None:
    cache.set("short", b"x", ttl=5)
    cache.set("long", b"x", ttl=500)
    monotonic.advance(100)
    assert cache.get("short") is None
    assert cache.get("long") == b"x"


def test_non_positive_ttl_is_rejected(cache: TrendsCache) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache.set("a", b"x", ttl=0)


def test_non_bytes_value_is_rejected(cache: TrendsCache) -> None:
    with pytest.raises(TypeError, match="bytes"):
        cache.set("a", "text")  # type: ignore[arg-type]


def test_byte_budget_evicts_least_recent_until_value_fits(cache: TrendsCache) -> None:
    cache.set("a", b"x" * 40)
    cache.set("b", b"x" * 40)
    cache.set("c", b"x" * 50)
    assert cache.get("a") is None
    assert cache.get("b") == b"x" * 40
    assert cache.get("c") == b"x" * 50
    stats = cache.stats()
    assert (stats["bytes"], stats["evictions"]) == (90, 1)


def test_value_larger_than_byte_budget_is_not_stored(cache: TrendsCache) -> None:
    cache.set("a", b"old")
    assert cache.set("a", b"x" * 101) is False
    assert cache.get("a") is None
    assert cache.stats()["bytes"] == 0
    assert cache.set("b", b"x" * 100) is True


def test_stats_count_hits_misses_sets_and_hit_rate(cache: TrendsCache) -> None:
    assert cache.stats()["hit_rate"] == 0.0
    cache.set("a", b"abc")
    cache.get("a")
    cache.get("a")
    cache.get("a")
    cache.get("missing")
    assert cache.stats() == {
        "hits": 3,
        "misses": 1,
        "evictions": 0,
        "expirations": 0,
        "sets": 1,
        "size": 1,
        "bytes": 3,
        "hit_rate": 0.75,
    }


def test_cleanup_expired_removes_only_expired_entries(cache: TrendsCache, monotonic: FakeClock) -> None:
    cache.set("a", b"xx", ttl=10)
    cache.set("b", b"xxx", ttl=10)
    cache.set("c", b"y", ttl=100)
    monotonic.advance(10)
    assert cache.cleanup_expired() == 2
    stats = cache.stats()
    assert (stats["size"], stats["bytes"], stats["expirations"]) == (1, 1, 2)
    assert cache.get("c") == b"y"


def test_clear_removes_everything_and_returns_count(cache: TrendsCache) -> None:
    cache.set("a", b"x")
    cache.set("b", b"x")
    assert cache.clear() == 2
    assert cache.get("a") is None
    assert (cache.stats()["size"], cache.stats()["bytes"]) == (0, 0)


def test_delete_reports_whether_key_was_cached(cache: TrendsCache) -> None:
    cache.set("a", b"x")
    assert cache.delete("a") is True
    assert cache.delete("a") is False


def test_memory_health_is_always_reachable(cache: TrendsCache) -> None:
    health = cache.health()
    assert (health["backend"], health["reachable"], health["degraded"]) == ("memory", True, False)
    assert health["stats"]["size"] == 0


def test_concurrent_gets_and_sets_keep_stats_consistent() -> None:
    cache = TrendsCache(default_ttl=60, max_entries=20, max_bytes=10_000)
    threads_count, rounds, errors = 8, 2000, []
    barrier = threading.Barrier(threads_count)

    def hammer(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                key = f"k{(worker * 7 + i) % 50}"
                if cache.get(key) is None:
                    cache.set(key, b"v" * 10)
        except Exception as exc:  # any exception in a worker must fail the test, not vanish
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert errors == []
    assert stats["hits"] + stats["misses"] == threads_count * rounds
    assert stats["sets"] == stats["misses"]
    assert stats["size"] == 20
    assert stats["bytes"] == 20 * 10


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(min_value=0, max_value=60), st.booleans()),
        max_size=60,
    )
)
def test_limits_hold_after_any_sequence_of_sets_and_gets(operations: list[tuple[str, int, bool]]) -> None:
    cache = TrendsCache(default_ttl=60, max_entries=4, max_bytes=100, clock=FakeClock())
    stored: dict[str, bytes] = {}
    for key, length, is_set in operations:
        if is_set:
            cache.set(key, b"x" * length)
            stored[key] = b"x" * length
        else:
            assert cache.get(key) in (None, stored.get(key))
        stats = cache.stats()
        assert stats["size"] <= 4
        assert stats["bytes"] <= 100


# create_cache and app wiring


def test_memory_url_builds_in_process_cache_with_given_limits() -> None:
    cache = create_cache("memory://", default_ttl=30, max_entries=7, max_bytes=999, prefix="p:")
    assert isinstance(cache, TrendsCache)
    assert (cache.backend, cache.default_ttl, cache.max_entries, cache.max_bytes) == ("memory", 30, 7, 999)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "rediss://cache.example:6380/2", "unix:///tmp/x.sock"]
)
def test_redis_urls_build_redis_cache_without_connecting(url: str) -> None:
    cache = create_cache(url, default_ttl=30, max_entries=7, max_bytes=999, prefix="p:")
    assert isinstance(cache, RedisCache)
    assert (cache.backend, cache.default_ttl, cache.prefix) == ("redis", 30, "p:")
    cache.close()


@pytest.mark.parametrize("url", ["memcached://localhost", "localhost:6379", "", "http://x"])
def test_unsupported_url_raises_value_error_naming_accepted_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="memory:// or redis://"):
        create_cache(url, default_ttl=30, max_entries=7, max_bytes=999, prefix="p:")


@pytest.fixture
def monitored_app(tmp_path) -> Callable[..., Flask]:
    """Return a factory of bare Flask apps with the monitor, each on a database file of its own."""
    made = 0

    def build(**options: object) -> Flask:
        nonlocal made
        made += 1
        app = Flask(__name__)
        app.config["SECRET_KEY"] = "test-secret"
        ActivityMonitor(app, database=str(tmp_path / f"activity-{made}.sqlite3"), **options)
        return app

    return build


def test_the_app_cache_is_in_process_with_the_configured_limits(monitored_app) -> None:
    app = monitored_app(cache_ttl=120, cache_max_entries=5)
    cache = get_state(app).cache
    assert isinstance(cache, TrendsCache)
    assert (cache.default_ttl, cache.max_entries) == (120, 5)
    assert cache.max_bytes == DEFAULTS["ACTIVITY_CACHE_MAX_BYTES"]


def test_the_app_cache_uses_the_redis_url_under_the_install_prefix(monitored_app) -> None:
    app = monitored_app(redis_url="redis://127.0.0.1:1/0", redis_prefix="am:")
    state = get_state(app)
    assert isinstance(state.cache, RedisCache)
    assert state.cache.prefix == state.redis_prefix == f"am:{state.install_id}:"
    state.cache.close()


def test_build_cache_prefers_the_cache_url_over_the_redis_url(monitored_app) -> None:
    app = monitored_app(cache_url="memory://", redis_url="redis://127.0.0.1:1/0")
    assert isinstance(build_cache(app), TrendsCache)


def test_two_installs_sharing_one_redis_never_see_each_others_answers(
    monitored_app, redis_client: redis.Redis, prefix: str
) -> None:
    first = monitored_app(cache_url=REDIS_URL, redis_prefix=prefix)
    second = monitored_app(cache_url=REDIS_URL, redis_prefix=prefix)
    get_cache(first).set("trends:v1:UTC:2026-05-01:2026-05-07:unique_users", b"first install")
    assert get_cache(second).get("trends:v1:UTC:2026-05-01:2026-05-07:unique_users") is None
    assert get_cache(first).get("trends:v1:UTC:2026-05-01:2026-05-07:unique_users") == b"first install"
    for app in (first, second):
        get_cache(app).close()


def test_get_cache_returns_the_current_apps_cache(monitored_app) -> None:
    app = monitored_app()
    cache = get_state(app).cache
    with app.app_context():
        assert get_cache() is cache
    assert get_cache(app) is cache


def test_get_cache_of_an_app_without_the_monitor_explains_what_to_call() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        get_cache(Flask(__name__))


# Redis backend (real server)


def test_redis_set_stores_value_with_ttl_under_prefix(
    make_redis_cache: Callable[..., RedisCache], redis_client: redis.Redis, prefix: str
) -> None:
    cache = make_redis_cache()
    assert cache.set("a", b"payload") is True
    cache.set("b", b"other", ttl=5)
    assert cache.get("a") == b"payload"
    assert redis_client.get(f"{prefix}trends:a") == b"payload"
    assert 59 <= redis_client.ttl(f"{prefix}trends:a") <= 60
    assert 4 <= redis_client.ttl(f"{prefix}trends:b") <= 5


def test_redis_get_of_missing_key_is_a_miss(make_redis_cache: Callable[..., RedisCache]) -> None:
    cache = make_redis_cache()
    assert cache.get("missing") is None
    assert cache.stats()["misses"] == 1


def test_redis_stats_are_shared_between_workers(make_redis_cache: Callable[..., RedisCache]) -> None:
    worker_a, worker_b = make_redis_cache(), make_redis_cache()
    worker_a.set("a", b"12345")
    assert worker_b.get("a") == b"12345"
    assert worker_a.get("missing") is None
    for worker in (worker_a, worker_b):
        stats = worker.stats()
        assert (stats["hits"], stats["misses"], stats["sets"]) == (1, 1, 1)
        assert (stats["size"], stats["bytes"], stats["hit_rate"]) == (1, 5, 0.5)
        assert (stats["degraded"], stats["reachable"]) == (False, True)


def test_redis_clear_deletes_only_this_prefix(
    make_redis_cache: Callable[..., RedisCache], redis_client: redis.Redis, prefix: str
) -> None:
    cache = make_redis_cache()
    other = make_redis_cache(prefix=f"{prefix}other:")
    for i in range(trends_cache.SCAN_BATCH + 20):
        cache.set(f"k{i}", b"x")
    other.set("keep", b"y")
    redis_client.set(f"{prefix}unrelated", b"z")
    assert cache.clear() == trends_cache.SCAN_BATCH + 20
    assert cache.stats()["size"] == 0
    assert other.get("keep") == b"y"
    assert redis_client.get(f"{prefix}unrelated") == b"z"


def test_redis_prefix_with_glob_characters_matches_literally(
    make_redis_cache: Callable[..., RedisCache], prefix: str
) -> None:
    starred = make_redis_cache(prefix=f"{prefix}*:")
    plain = make_redis_cache(prefix=f"{prefix}a:")
    starred.set("k", b"1")
    plain.set("k", b"2")
    assert starred.clear() == 1
    assert plain.get("k") == b"2"


def test_redis_delete_removes_key(make_redis_cache: Callable[..., RedisCache]) -> None:
    cache = make_redis_cache()
    cache.set("a", b"x")
    assert cache.delete("a") is True
    assert cache.get("a") is None


def test_redis_health_reports_reachable(make_redis_cache: Callable[..., RedisCache]) -> None:
    health = make_redis_cache().health()
    assert (health["backend"], health["reachable"], health["degraded"]) == ("redis", True, False)


# Redis fallback (throwaway server)


def test_dead_redis_falls_back_to_memory_and_reports_degraded(
    make_redis_cache: Callable[..., RedisCache], throwaway_redis: ThrowawayRedis
) -> None:
    cache = make_redis_cache(throwaway_redis.url)
    cache.set("before", b"1")
    throwaway_redis.stop()
    assert cache.get("before") is None
    assert cache.set("during", b"2") is True
    assert cache.get("during") == b"2"
    health = cache.health()
    assert (health["reachable"], health["degraded"]) == (False, True)
    assert health["stats"]["hits"] == 1
    assert health["stats"]["size"] == 1


def test_dead_redis_is_tried_at_most_once_per_retry_interval(monotonic: FakeClock, prefix: str) -> None:
    attempts = []

    class CountingPool(redis.ConnectionPool):
        def get_connection(self, *args: object, **options: object) -> object:
            attempts.append(1)
            return super().get_connection(*args, **options)

    pool = CountingPool(port=free_port(), socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0))
    cache = RedisCache(redis.Redis(connection_pool=pool), prefix=prefix, clock=monotonic, retry_interval=5.0)
    for _ in range(100):
        cache.set("a", b"x")
        cache.get("a")
    assert len(attempts) == 1
    monotonic.advance(5)
    cache.get("a")
    assert len(attempts) == 2
    cache.close()


def test_redis_recovers_after_retry_interval_and_clears_fallback(
    make_redis_cache: Callable[..., RedisCache], throwaway_redis: ThrowawayRedis, monotonic: FakeClock
) -> None:
    cache = make_redis_cache(throwaway_redis.url)
    cache.get("warm-up")  # loads the Lua script, so recovery also proves NOSCRIPT is handled
    throwaway_redis.stop()
    cache.set("during", b"fallback")
    assert cache.health()["degraded"] is True
    throwaway_redis.start()
    monotonic.advance(4.9)
    assert cache.health()["degraded"] is True
    monotonic.advance(0.1)
    health = cache.health()
    assert (health["reachable"], health["degraded"]) == (True, False)
    assert cache.get("during") is None
    cache.set("after", b"redis")
    direct = throwaway_redis.client()
    assert direct.get(f"{cache.prefix}trends:after") == b"redis"
    assert cache.get("after") == b"redis"
    direct.close()


def test_redis_values_are_kept_near_and_still_counted_as_shared_hits(make_redis_cache):
    first, second = make_redis_cache(), make_redis_cache()
    first.set("k", b"payload")
    assert second.get("k") == b"payload"
    first.delete("k")
    # The second worker keeps its near copy (keys carry the data version, so it cannot be stale) ...
    assert second.get("k") == b"payload"
    # ... and its near hits still count in the shared statistics.
    assert first.stats()["hits"] == 2
    second.clear()
    assert second.get("k") is None
