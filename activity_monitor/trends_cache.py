"""Cache of serialized trends answers: an in-process LRU, or Redis with an in-process fallback.

Values are ``bytes`` the caller serialized once; keys carry the data version, so a
stale hit is impossible and TTLs only bound memory. :func:`build_cache` builds the
backend named by the config (Redis keys under the install's prefix); the app's
MonitorState keeps it and :func:`get_cache` returns it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask

from activity_monitor.redis_client import UNAVAILABLE, NoBackoff, Retry, redis

log = logging.getLogger(__name__)

# Seconds; a dead or blackholed Redis may cost a request at most about this much.
REDIS_SOCKET_TIMEOUT = 0.25
# Seconds between attempts to reach a Redis that failed; requests meanwhile use the fallback.
REDIS_RETRY_INTERVAL = 5.0
# Seconds a value read from Redis is also kept in process (see RedisCache._near).
NEAR_CACHE_TTL = 60
# Seconds between sends of the near hits counted in process to the shared statistics.
NEAR_HITS_FLUSH_SECONDS = 1.0
# Keys per SCAN page and per UNLINK/STRLEN batch.
SCAN_BATCH = 500

_UNAVAILABLE = UNAVAILABLE
# One round trip per get, and the hit/miss counter cannot disagree with what was returned.
_GET_AND_COUNT = """
local value = redis.call('GET', KEYS[1])
redis.call('HINCRBY', KEYS[2], value and 'hits' or 'misses', 1)
return value
"""

T = TypeVar("T")


def _stats(
    *, hits: int, misses: int, evictions: int, expirations: int, sets: int, size: int, nbytes: int
) -> dict[str, Any]:
    """Return the statistics both backends report; hit_rate is 0.0 before the first lookup."""
    lookups = hits + misses
    return {
        "hits": hits,
        "misses": misses,
        "evictions": evictions,
        "expirations": expirations,
        "sets": sets,
        "size": size,
        "bytes": nbytes,
        "hit_rate": hits / lookups if lookups else 0.0,
    }


def _check_positive(name: str, value: object, *, whole: bool = False, optional: bool = False) -> None:
    """Raise ValueError unless ``value`` is a positive (whole) number, or None when optional."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive {'whole ' if whole else ''}number.")


class TrendsCache:
    """Thread-safe in-process LRU of bytes values with per-entry TTL, entry and byte limits."""

    backend = "memory"

    def __init__(
        self,
        *,
        default_ttl: float = 3600,
        max_entries: int = 100,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_positive("default_ttl", default_ttl)
        _check_positive("max_entries", max_entries, whole=True)
        _check_positive("max_bytes", max_bytes, whole=True, optional=True)
        self.default_ttl = default_ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expirations = self._sets = 0

    def get(self, key: str) -> bytes | None:
        """Return the value cached under ``key``, or None when absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            if entry[1] <= now:
                del self._entries[key]
                self._bytes -= len(entry[0])
                self._expirations += 1
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Cache ``value`` for ``ttl`` seconds (default_ttl when None); return False if too big to keep."""
        if not isinstance(value, bytes):
            raise TypeError(f"cache values must be bytes, not {type(value).__name__}")
        ttl = self.default_ttl if ttl is None else ttl
        _check_positive("ttl", ttl)
        expires_at = self._clock() + ttl
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            if self.max_bytes is not None and len(value) > self.max_bytes:
                return False
            self._entries[key] = (value, expires_at)
            self._bytes += len(value)
            self._sets += 1
            # The new entry is the most recent and fits alone, so it is never the one evicted.
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (evicted, _) = self._entries.popitem(last=False)
                self._bytes -= len(evicted)
                self._evictions += 1
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was cached."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return False
            self._bytes -= len(entry[0])
            return True

    def clear(self) -> int:
        """Remove every entry (statistics are kept); return how many were removed."""
        with self._lock:
            removed = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return removed

    def cleanup_expired(self) -> int:
        """Remove expired entries now rather than on their next lookup; return how many."""
        now = self._clock()
        with self._lock:
            expired = [key for key, (_, expires_at) in self._entries.items() if expires_at <= now]
            for key in expired:
                self._bytes -= len(self._entries.pop(key)[0])
            self._expirations += len(expired)
            return len(expired)

    def stats(self) -> dict[str, Any]:
        """Return counters since start-up plus the current size and bytes held."""
        with self._lock:
            return _stats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                sets=self._sets,
                size=len(self._entries),
                nbytes=self._bytes,
            )

    def health(self) -> dict[str, Any]:
        """Return the backend's health; an in-process cache is always reachable."""
        return {"backend": self.backend, "reachable": True, "degraded": False, "stats": self.stats()}

    def close(self) -> None:
        """Release resources (none for the in-process cache)."""


class RedisCache:
    """Cache in Redis shared by all workers, falling back to an in-process LRU while Redis is down.

    Entries live at ``<prefix>trends:<key>`` with ``SET … EX``; hits, misses and sets
    are counted in the hash ``<prefix>trends-stats`` so every worker sees the same
    figures. ``size`` and ``bytes`` are counted by SCAN + STRLEN when asked, so they
    stay exact although Redis expires keys on its own. Redis does not report its own
    expirations or maxmemory evictions per prefix, so those two counters stay 0.
    ``max_entries`` and ``max_bytes`` bound the fallback only.
    """

    backend = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "activity:",
        default_ttl: int = 3600,
        max_entries: int = 100,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_interval: float = REDIS_RETRY_INTERVAL,
    ) -> None:
        _check_positive("default_ttl", default_ttl, whole=True)
        self.default_ttl = default_ttl
        self.prefix = prefix
        self._client = client
        self._entry_prefix = f"{prefix}trends:"
        self._stats_key = f"{prefix}trends-stats"
        self._get_and_count = client.register_script(_GET_AND_COUNT)
        self._fallback = TrendsCache(
            default_ttl=default_ttl, max_entries=max_entries, max_bytes=max_bytes, clock=clock
        )
        # Values fetched from Redis, kept briefly so a hot answer (~150 KB) is not shipped
        # from Redis on every request. Callers' keys carry the data version, so a value
        # under a key never changes and a near copy cannot be stale.
        self._near = TrendsCache(
            default_ttl=min(NEAR_CACHE_TTL, default_ttl),
            max_entries=max_entries,
            max_bytes=max_bytes,
            clock=clock,
        )
        self._clock = clock
        self._retry_interval = retry_interval
        self._state_lock = threading.Lock()
        self._degraded = False
        self._next_attempt_at = 0.0
        self._pending_hits = 0
        self._hits_flush_at = 0.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisCache:
        """Return a cache on the Redis at ``url`` with short timeouts and no client-side retries."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
            # redis-py's default retries with backoff would stall requests; we fall back instead.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, **options)

    def get(self, key: str) -> bytes | None:
        """Return the value cached under ``key``, or None when absent or expired."""
        near = self._near.get(key)
        if near is not None:
            self._count_near_hit()
            return near
        reached, value = self._on_redis(
            lambda: self._get_and_count(keys=[self._entry_prefix + key, self._stats_key])
        )
        if not reached:
            return self._fallback.get(key)
        if value is not None:
            self._near.set(key, value)
        return value

    def set(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        """Cache ``value`` for ``ttl`` whole seconds (default_ttl when None); return whether it was kept."""
        if not isinstance(value, bytes):
            raise TypeError(f"cache values must be bytes, not {type(value).__name__}")
        ttl = self.default_ttl if ttl is None else ttl
        _check_positive("ttl", ttl, whole=True)

        def store() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._entry_prefix + key, value, ex=ttl)
            pipe.hincrby(self._stats_key, "sets", 1)
            pipe.execute()

        reached, _ = self._on_redis(store)
        return reached or self._fallback.set(key, value, ttl)

    def delete(self, key: str) -> bool:
        """Remove ``key`` from Redis and the fallback; return whether it was cached."""
        self._near.delete(key)
        reached, removed = self._on_redis(lambda: self._client.delete(self._entry_prefix + key))
        in_fallback = self._fallback.delete(key)
        return bool(reached and removed) or in_fallback

    def clear(self) -> int:
        """Remove every entry under this prefix (SCAN + UNLINK in batches); return how many."""

        def unlink_all() -> int:
            return sum(self._client.unlink(*batch) for batch in self._scan_entries())

        self._near.clear()
        reached, removed = self._on_redis(unlink_all)
        return (removed if reached else 0) + self._fallback.clear()

    def _count_near_hit(self) -> None:
        """Count a near hit in the shared statistics, in batches: a round trip per hit would cost
        more than the hit itself. Pending hits are sent at most every NEAR_HITS_FLUSH_SECONDS."""
        with self._state_lock:
            self._pending_hits += 1
            now = self._clock()
            if now < self._hits_flush_at:
                return
            self._hits_flush_at = now + NEAR_HITS_FLUSH_SECONDS
        self._flush_near_hits()

    def _flush_near_hits(self) -> None:
        """Add the near hits not yet counted to the shared statistics."""
        with self._state_lock:
            pending, self._pending_hits = self._pending_hits, 0
        if pending:
            reached, _ = self._on_redis(lambda: self._client.hincrby(self._stats_key, "hits", pending))
            if not reached:
                with self._state_lock:
                    self._pending_hits += pending

    def cleanup_expired(self) -> int:
        """Remove expired fallback entries (Redis expires its own); return how many."""
        return self._fallback.cleanup_expired()

    def stats(self) -> dict[str, Any]:
        """Return the counters shared by all workers, or the fallback's while Redis is unreachable."""

        self._flush_near_hits()

        def read() -> dict[str, Any]:
            counters = self._client.hgetall(self._stats_key)
            size = total_bytes = 0
            for batch in self._scan_entries():
                pipe = self._client.pipeline(transaction=False)
                for entry_key in batch:
                    pipe.strlen(entry_key)
                lengths = pipe.execute()
                # A key can expire between SCAN and STRLEN; it then reads as length 0.
                size += sum(1 for length in lengths if length)
                total_bytes += sum(lengths)
            hits, misses, sets = (int(counters.get(name, 0)) for name in (b"hits", b"misses", b"sets"))
            return _stats(
                hits=hits, misses=misses, evictions=0, expirations=0, sets=sets, size=size, nbytes=total_bytes
            )

        reached, stats = self._on_redis(read)
        if not reached:
            stats = self._fallback.stats()
        return {**stats, "degraded": not reached, "reachable": reached}

    def health(self) -> dict[str, Any]:
        """Return whether Redis answers and whether the fallback is in use, with the stats."""
        stats = self.stats()
        reachable = stats["reachable"]
        return {"backend": self.backend, "reachable": reachable, "degraded": not reachable, "stats": stats}

    def close(self) -> None:
        """Close the Redis connections."""
        self._client.close()

    def _scan_entries(self) -> Iterator[list[bytes]]:
        """Yield this cache's Redis keys in batches of at most SCAN_BATCH."""
        batch: list[bytes] = []
        pattern = _glob_escape(self._entry_prefix) + "*"
        for entry_key in self._client.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(entry_key)
            if len(batch) >= SCAN_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _on_redis(self, operation: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``operation`` unless Redis is known down; return (reached Redis, result)."""
        if self._degraded and not self._claim_attempt():
            return False, None
        try:
            result = operation()
        except _UNAVAILABLE as exc:
            self._mark_unreachable(exc)
            return False, None
        if self._degraded:
            self._mark_reachable()
        return True, result

    def _claim_attempt(self) -> bool:
        """Return True for one caller per retry interval, which then tries Redis again."""
        with self._state_lock:
            now = self._clock()
            if now < self._next_attempt_at:
                return False
            self._next_attempt_at = now + self._retry_interval
            return True

    def _mark_unreachable(self, exc: Exception) -> None:
        """Switch to the fallback until the next retry interval."""
        with self._state_lock:
            if not self._degraded:
                log.warning("Redis cache unreachable, serving from in-process fallback: %s", exc)
            self._degraded = True
            self._next_attempt_at = self._clock() + self._retry_interval

    def _mark_reachable(self) -> None:
        """Leave the fallback, emptying it: other workers may have changed Redis meanwhile."""
        with self._state_lock:
            if not self._degraded:
                return
            self._degraded = False
        self._fallback.clear()
        # A restarted Redis may be empty: let the next request store its answer there again.
        self._near.clear()
        log.info("Redis cache reachable again; in-process fallback cleared")


Cache = TrendsCache | RedisCache


def _glob_escape(text: str) -> str:
    """Escape the characters Redis MATCH patterns treat specially."""
    return "".join("\\" + char if char in "\\*?[]" else char for char in text)


def create_cache(
    url: str, *, default_ttl: int, max_entries: int, max_bytes: int | None, prefix: str
) -> Cache:
    """Return an in-process cache for ``memory://`` or a Redis cache for redis://, rediss://, unix://."""
    scheme = urlsplit(url).scheme if url else ""
    if scheme == "memory":
        return TrendsCache(default_ttl=default_ttl, max_entries=max_entries, max_bytes=max_bytes)
    if scheme in ("redis", "rediss", "unix"):
        return RedisCache.from_url(
            url, prefix=prefix, default_ttl=default_ttl, max_entries=max_entries, max_bytes=max_bytes
        )
    raise ValueError(
        f"Cache URL {url!r} is not supported: use memory:// or redis://host:port/db "
        "(rediss:// for TLS, unix:// for a socket)."
    )


def build_cache(app: Flask) -> Cache:
    """Build the trends cache from the app's config; Redis keys carry the install's prefix."""
    from activity_monitor.extension import get_state

    config = app.config
    url = config["ACTIVITY_CACHE_URL"] or config["ACTIVITY_REDIS_URL"] or "memory://"
    return create_cache(
        url,
        default_ttl=config["ACTIVITY_CACHE_TTL"],
        max_entries=config["ACTIVITY_CACHE_MAX_ENTRIES"],
        max_bytes=config["ACTIVITY_CACHE_MAX_BYTES"],
        prefix=get_state(app).redis_prefix,
    )


def get_cache(app: Flask | None = None) -> Cache:
    """Return the trends cache of ``app`` (the current app when None)."""
    from activity_monitor.extension import get_state

    cache = get_state(app).cache
    if cache is None:
        raise RuntimeError("The trends cache is not set up yet.")
    return cache
