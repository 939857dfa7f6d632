"""Leader election for background jobs: one process among all workers runs them.

On one host an ``fcntl.flock`` on a file beside the database is enough, and the
kernel releases it the moment the holder dies. Across hosts, PostgreSQL's session
advisory lock (``pg_try_advisory_lock``) on a connection of its own does the same: the
server releases it when the holder's session ends. A Redis key with a TTL, renewed
while held, also works; a dead holder's key expires.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import socket
import time
from typing import Any, Protocol

from activity_monitor.redis_client import NoBackoff, Retry, redis
from activity_monitor.storage import DatabaseError, is_postgres_url

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


class PostgresLeaderLock:
    """A session advisory lock on a dedicated connection; the server releases it when the
    holder's session ends: at once when its process dies, and within about 20 s (TCP
    keepalive) when its host drops off the network."""

    kind = "postgresql"

    # Server-side keepalive of the lock's session: probe after 10 s idle, every 3 s, 3 times.
    SESSION_SETTINGS = (
        "SET tcp_keepalives_idle = 10",
        "SET tcp_keepalives_interval = 3",
        "SET tcp_keepalives_count = 3",
    )

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name
        # pg_try_advisory_lock takes one bigint: the first 8 bytes of the name's SHA-256.
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self.conn: Any = None
        self.held = False
        self.reachable = True

    def connect(self) -> Any:
        """Open the lock's own connection (short timeouts: a dead server must not stall ticks)."""
        import psycopg

        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=2, keepalives_idle=10, tcp_user_timeout=5000
        )
        for statement in self.SESSION_SETTINGS:
            conn.execute(statement)
        return conn

    def acquire(self) -> bool:
        """Take the advisory lock if no session holds it."""
        if self.held:
            return self.renew()
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self.connect()
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self.held = bool(row[0])
            self.reachable = True
        except DatabaseError as exc:
            self._unreachable(exc)
        return self.held

    def renew(self) -> bool:
        """The lock lives as long as its session: check that the session still answers."""
        if not self.held:
            return False
        try:
            self.conn.execute("SELECT 1")
            self.reachable = True
        except DatabaseError as exc:
            # The session is gone or unreachable, and with it (on the server) the lock.
            self._unreachable(exc)
        return self.held

    def release(self) -> None:
        """Unlock and close the lock's connection."""
        if self.conn is not None:
            try:
                if self.held and not self.conn.closed:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except DatabaseError:
                pass  # the session is gone, and the server freed the lock with it
            finally:
                self.conn.close()
                self.conn = None
        self.held = False

    def describe(self) -> dict[str, Any]:
        """Return the lock's key and whether the server answered last time."""
        return {"kind": self.kind, "key": self.key, "name": self.name, "reachable": self.reachable}

    def _unreachable(self, exc: Exception) -> None:
        if self.reachable:
            log.warning(
                "Leader lock: PostgreSQL is unreachable (%s); background jobs pause until it returns.", exc
            )
        self.reachable = False
        self.held = False
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def lock_for_config(config: Any, database: str, redis_prefix: str) -> LeaderLock:
    """Return the lock the config asks for: ACTIVITY_LEADER_LOCK_URL; else the database's advisory
    lock on PostgreSQL; else Redis when ACTIVITY_REDIS_URL is set; else a file beside the SQLite
    database. The lock's name carries the install's prefix, so each install elects its own leader."""
    url = config["ACTIVITY_LEADER_LOCK_URL"]
    if url is None and is_postgres_url(config["ACTIVITY_DATABASE"]):
        url = config["ACTIVITY_DATABASE"]
    url = url or config["ACTIVITY_REDIS_URL"] or "file://"
    if url.startswith("file://"):
        path = url[len("file://") :] or database + ".leader.lock"
        return FileLeaderLock(path)
    if is_postgres_url(url):
        return PostgresLeaderLock(url, redis_prefix + "leader")
    return RedisLeaderLock.from_url(url, redis_prefix + "leader", config["ACTIVITY_LEADER_LOCK_TTL"])
