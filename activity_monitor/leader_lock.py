"""Leader election for background jobs: one process among all workers runs them.

On one host an ``fcntl.flock`` on a file beside the database is enough, and the
kernel releases it the moment the holder dies. Across hosts a Redis key with a
TTL, renewed while held, does the same job; a dead holder's key expires.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import time
from typing import Any, Protocol

from activity_monitor.redis_client import NoBackoff, Retry, redis

log = logging.getLogger(__name__)

# Only the holder may extend or delete the key: compare the token first.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock(Protocol):
    """What the task manager needs of a lock."""

    kind: str

    def acquire(self) -> bool:
        """Try once, without waiting; return whether this process now holds the lock."""

    def renew(self) -> bool:
        """Keep holding the lock; return False when it was lost."""

    def release(self) -> None:
        """Give the lock up if held."""

    def describe(self) -> dict[str, Any]:
        """Return what /health shows about the lock."""


class FileLeaderLock:
    """An exclusive ``flock`` on a file; released by the kernel when the process dies."""

    kind = "file"

    def __init__(self, path: str):
        self.path = path
        self.handle: Any = None

    def acquire(self) -> bool:
        """Take the lock if no other process (or other manager in this one) holds it."""
        if self.handle is not None:
            return True
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    def renew(self) -> bool:
        """A held flock cannot be lost while the process lives."""
        return self.handle is not None

    def release(self) -> None:
        """Unlock and close the file."""
        if self.handle is not None:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            finally:
                self.handle.close()
                self.handle = None

    def describe(self) -> dict[str, Any]:
        """Return the lock file's path."""
        return {"kind": self.kind, "path": self.path, "reachable": True}


class RedisLeaderLock:
    """A Redis key set with NX and a TTL, renewed by its holder, expiring when the holder dies."""

    kind = "redis"

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: int):
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.held = False
        self.reachable = True
        self.renewed_at = 0.0

    @classmethod
    def from_url(cls, url: str, key: str, ttl_seconds: int) -> RedisLeaderLock:
        """Connect lazily with short timeouts, so a dead Redis never stalls the scheduler long."""
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        return cls(client, key, ttl_seconds)

    def acquire(self) -> bool:
        """Set the key if nobody holds it."""
        if self.held:
            return self.renew()
        try:
            self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
            self.reachable = True
            if self.held:
                self.renewed_at = time.monotonic()
        except redis.RedisError as exc:
            self._unreachable(exc)
        return self.held

    def renew(self) -> bool:
        """Extend the TTL if the key is still ours. A key found gone means we stop leading; a
        failed renewal (a slow or restarting Redis) keeps us leading only while the key we set
        last is sure to live, i.e. for half its TTL, so two leaders never overlap."""
        if not self.held:
            return False
        try:
            self.held = bool(self.client.eval(RENEW_SCRIPT, 1, self.key, self.token, self.ttl_ms))
            self.reachable = True
            if self.held:
                self.renewed_at = time.monotonic()
        except redis.RedisError as exc:
            self._unreachable(exc)
            self.held = (time.monotonic() - self.renewed_at) * 1000 < self.ttl_ms / 2
        return self.held

    def release(self) -> None:
        """Delete the key if it is still ours."""
        if self.held:
            try:
                self.client.eval(RELEASE_SCRIPT, 1, self.key, self.token)
            except redis.RedisError as exc:
                self._unreachable(exc)
        self.held = False

    def describe(self) -> dict[str, Any]:
        """Return the key, TTL and whether Redis answered last time."""
        return {
            "kind": self.kind,
            "key": self.key,
            "ttl_seconds": self.ttl_ms / 1000,
            "reachable": self.reachable,
        }

    def _unreachable(self, exc: Exception) -> None:
        if self.reachable:
            log.warning(
                "Leader lock: Redis is unreachable (%s); background jobs pause until it returns.", exc
            )
        self.reachable = False


def lock_for_config(config: Any, database: str, redis_prefix: str) -> LeaderLock:
    """Return the lock the config asks for: ACTIVITY_LEADER_LOCK_URL, else Redis when
    ACTIVITY_REDIS_URL is set, else a file beside the database. A Redis key carries the
    install's prefix, so each install elects its own leader."""
    url = config["ACTIVITY_LEADER_LOCK_URL"] or config["ACTIVITY_REDIS_URL"] or "file://"
    if url.startswith("file://"):
        path = url[len("file://") :] or database + ".leader.lock"
        return FileLeaderLock(path)
    return RedisLeaderLock.from_url(url, redis_prefix + "leader", config["ACTIVITY_LEADER_LOCK_TTL"])
