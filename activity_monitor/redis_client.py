"""redis-py, which is optional (``pip install flask-activity-monitor[redis]``).

Without it the monitor runs on its in-process cache, memory rate limits and the file
leader lock; a Redis URL in the config then fails at start-up with a sentence that
says what to install.
"""

from __future__ import annotations

from typing import Any

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # the extra is not installed
    redis = None  # type: ignore[assignment]
    NoBackoff = Retry = None  # type: ignore[assignment,misc]

# Errors that mean "Redis is not there right now" (as opposed to a bad command).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) if redis is not None else ()
)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def require_redis(key: str, url: Any) -> None:
    """Raise ConfigError when a setting names a Redis URL but redis-py is not installed."""
    from activity_monitor.config import ConfigError

    if redis is None and isinstance(url, str) and url.startswith(REDIS_SCHEMES):
        raise ConfigError(
            f"{key}={url!r} needs redis-py, which is not installed; "
            "install flask-activity-monitor[redis] or use a memory:// / file:// setting."
        )
