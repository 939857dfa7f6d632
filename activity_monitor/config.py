"""Every configuration key of the extension, with its default, in one place.

A key is taken from the ``ActivityMonitor(**options)`` first, then from
``app.config``, then from :data:`DEFAULTS`. ``init_app`` writes the value in
force back into ``app.config``, so the host (and the extension) read one truth.
Options may be spelled as the key (``ACTIVITY_TIMEZONE``) or short and
lower-case (``timezone``).
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

DEFAULTS: dict[str, Any] = {
    # The monitor's database: a SQLite file path or sqlite:///path, or postgresql://user@host/db for
    # several hosts (the postgres extra) (None: instance/activity.sqlite3).
    "ACTIVITY_DATABASE": None,
    # Most connections each process's PostgreSQL pool opens (unused on SQLite).
    "ACTIVITY_DATABASE_POOL_SIZE": 10,
    # URL prefix of the JSON API.
    "ACTIVITY_API_PREFIX": "/api/admin/activity",
    # Path of the admin page.
    "ACTIVITY_PAGE_PATH": "/admin/activity",
    # Template the page extends (blocks title, head, content); the default is the extension's own.
    "ACTIVITY_BASE_TEMPLATE": "activity_monitor/base.html",
    # Endpoint anonymous visitors of the page are redirected to, with ?next= (None: a 401 page).
    "ACTIVITY_LOGIN_ENDPOINT": None,
    # Path of the plain-text liveness probe (None: not registered).
    "ACTIVITY_HEALTHZ_PATH": "/healthz",
    # Minutes without a request after which a user's next request starts a new session
    # (used when the host's identity gives no session key).
    "ACTIVITY_SESSION_IDLE_MINUTES": 30,
    # IANA time zone in which days are counted (summaries, ranges, schedules).
    "ACTIVITY_TIMEZONE": "UTC",
    # Callable returning the current aware UTC datetime, for tests and replays (None: the system clock).
    "ACTIVITY_CLOCK": None,
    # Minutes a user counts as online after each request (peak concurrency).
    "ACTIVITY_IDLE_MINUTES": 5,
    # Days of raw user_activity_log kept (only days with a final summary are purged).
    "ACTIVITY_RETENTION_DAYS": 90,
    # Days of activity_summary_daily rows kept.
    "ACTIVITY_SUMMARY_RETENTION_DAYS": 730,
    # Days of activity_audit_log rows (and of the background jobs' run history) kept.
    "ACTIVITY_AUDIT_RETENTION_DAYS": 365,
    # Rows deleted per statement by the retention purge (keeps writer locks short).
    "ACTIVITY_PURGE_BATCH_SIZE": 5000,
    # Run the background jobs (gunicorn.conf.py and `make run` turn it on; CLI commands never do).
    "ACTIVITY_BACKGROUND_TASKS": False,
    # Write one user_activity_log row per authenticated request.
    "ACTIVITY_TRACKING_ENABLED": True,
    # Path prefixes never tracked, in addition to /static/ and health probes.
    "ACTIVITY_TRACKING_EXCLUDE_PATHS": ["/favicon.ico"],
    # Milliseconds an event or audit write may wait for the database (its lock) before the row
    # goes to the spool instead, so a locked or failing database holds no request longer.
    "ACTIVITY_TRACKING_WRITE_TIMEOUT_MS": 100,
    # Folder of the event spool, where rows the database refused wait to be replayed, one file
    # per process (None: the instance folder's activity_spool).
    "ACTIVITY_SPOOL_FOLDER": None,
    # Rows kept in memory when the spool file cannot be written either; past it they are dropped.
    "ACTIVITY_SPOOL_MEMORY_LIMIT": 10000,
    # Seconds after which a process retries its spooled rows on its own (doubling up to a minute),
    # so rows of a process that serves no further request land once the database is back.
    "ACTIVITY_SPOOL_RETRY_SECONDS": 5,
    # Redis URL shared by cache, rate limiter and leader lock unless each is set.
    "ACTIVITY_REDIS_URL": None,
    # Trends cache backend: memory:// or redis://host:port/db (None: Redis URL or memory).
    "ACTIVITY_CACHE_URL": None,
    # Seconds a cached trends answer lives (bounds memory, not correctness).
    "ACTIVITY_CACHE_TTL": 3600,
    # Maximum number of entries in the in-process cache.
    "ACTIVITY_CACHE_MAX_ENTRIES": 100,
    # Maximum bytes of cached payloads in the in-process cache.
    "ACTIVITY_CACHE_MAX_BYTES": 64 * 1024 * 1024,
    # Key prefix for everything the monitor stores in Redis (the install id follows it).
    "ACTIVITY_REDIS_PREFIX": "activity:",
    # Flask-Limiter limit per user on /trends, /export, /breakdown and /hours, each counted separately.
    "ACTIVITY_RATE_LIMIT": "100 per minute",
    # Rate-limit storage: memory:// or redis://… (None: Redis URL or memory).
    "ACTIVITY_RATELIMIT_STORAGE_URL": None,
    # Longest range in days that /trends and /export accept.
    "ACTIVITY_MAX_RANGE_DAYS": 730,
    # Number of proxies in front of the app whose X-Forwarded-For is trusted (0: none).
    "ACTIVITY_TRUSTED_PROXIES": 0,
    # Requests slower than this (ms) log a warning, per endpoint.
    "ACTIVITY_SLOW_MS": {"trends": 2000, "export": 5000, "default": 2000},
    # Leader lock for background jobs: file:// (beside the database), redis://… or postgresql://…
    # (None: the database's advisory lock on PostgreSQL, else the Redis URL, else the file).
    "ACTIVITY_LEADER_LOCK_URL": None,
    # Seconds a Redis leader lock lives unless its holder renews it.
    "ACTIVITY_LEADER_LOCK_TTL": 30,
    # Seconds between scheduler ticks; also how often a follower tries to become leader.
    "ACTIVITY_SCHEDULER_TICK_SECONDS": 5,
    # Local time (HH:MM or HH:MM:SS, ACTIVITY_TIMEZONE) of the daily summaries job.
    "ACTIVITY_DAILY_SUMMARY_AT": "02:00",
    # Local time on Sundays of the retention purge (raw activity, summaries, audit log).
    "ACTIVITY_LOG_CLEANUP_AT": "03:00",
    # Minutes between cache warming runs.
    "ACTIVITY_CACHE_WARM_MINUTES": 60,
    # Minutes between removals of expired cache entries.
    "ACTIVITY_CACHE_CLEANUP_MINUTES": 15,
    # Seconds between the leader's refreshes of today's partial row and every dirty day.
    "ACTIVITY_REFRESH_SECONDS": 300,
}


# Late events mark summary days dirty within a week of their time (see migration 002).
MAX_IDLE_MINUTES = 6 * 24 * 60


class ConfigError(ValueError):
    """Raised at start-up when a configuration value cannot work."""


OPTION_PREFIX = "ACTIVITY_"
# Settings that may name a Redis URL.
REDIS_URL_KEYS = (
    "ACTIVITY_REDIS_URL",
    "ACTIVITY_CACHE_URL",
    "ACTIVITY_RATELIMIT_STORAGE_URL",
    "ACTIVITY_LEADER_LOCK_URL",
)


def option_key(name: str) -> str:
    """Return the config key an option names: ``timezone`` and ``ACTIVITY_TIMEZONE`` both
    name ``ACTIVITY_TIMEZONE``; raise ConfigError for a name that is no key."""
    key = name if name.isupper() else OPTION_PREFIX + name.upper()
    if key not in DEFAULTS:
        raise ConfigError(
            f"ActivityMonitor has no option {name!r}; the options are the keys of the README's table."
        )
    return key


def resolve_config(app_config: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Return every key's value in force: options, then app.config, then the defaults."""
    resolved = {key: app_config.get(key, default) for key, default in DEFAULTS.items()}
    resolved.update({option_key(name): value for name, value in options.items()})
    return resolved


def validate_config(config: dict[str, Any]) -> None:
    """Check the values that would otherwise fail on the first request."""
    try:
        zoneinfo.ZoneInfo(str(config["ACTIVITY_TIMEZONE"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"ACTIVITY_TIMEZONE={config['ACTIVITY_TIMEZONE']!r} is not an IANA time zone "
            "name such as 'UTC' or 'Europe/Berlin'."
        ) from exc
    for key in (
        "ACTIVITY_IDLE_MINUTES",
        "ACTIVITY_RETENTION_DAYS",
        "ACTIVITY_SUMMARY_RETENTION_DAYS",
        "ACTIVITY_AUDIT_RETENTION_DAYS",
        "ACTIVITY_PURGE_BATCH_SIZE",
        "ACTIVITY_CACHE_TTL",
        "ACTIVITY_CACHE_MAX_ENTRIES",
        "ACTIVITY_CACHE_MAX_BYTES",
        "ACTIVITY_MAX_RANGE_DAYS",
        "ACTIVITY_SESSION_IDLE_MINUTES",
        "ACTIVITY_LEADER_LOCK_TTL",
        "ACTIVITY_SCHEDULER_TICK_SECONDS",
        "ACTIVITY_CACHE_WARM_MINUTES",
        "ACTIVITY_CACHE_CLEANUP_MINUTES",
        "ACTIVITY_REFRESH_SECONDS",
        "ACTIVITY_DATABASE_POOL_SIZE",
        "ACTIVITY_TRACKING_WRITE_TIMEOUT_MS",
        "ACTIVITY_SPOOL_MEMORY_LIMIT",
        "ACTIVITY_SPOOL_RETRY_SECONDS",
    ):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key}={value!r} must be a positive whole number.")
    if not isinstance(config["ACTIVITY_TRUSTED_PROXIES"], int) or config["ACTIVITY_TRUSTED_PROXIES"] < 0:
        raise ConfigError("ACTIVITY_TRUSTED_PROXIES must be a whole number of proxies, 0 or more.")
    for key in ("ACTIVITY_CACHE_URL", "ACTIVITY_RATELIMIT_STORAGE_URL", "ACTIVITY_REDIS_URL"):
        url = config[key]
        if url is not None and not str(url).startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ConfigError(f"{key}={url!r} must start with memory:// or redis://.")
    if config["ACTIVITY_IDLE_MINUTES"] > MAX_IDLE_MINUTES:
        raise ConfigError(
            f"ACTIVITY_IDLE_MINUTES={config['ACTIVITY_IDLE_MINUTES']} is more than six days "
            f"({MAX_IDLE_MINUTES}); late events could then change days the summaries do not watch."
        )
    lock_url = config["ACTIVITY_LEADER_LOCK_URL"]
    lock_schemes = ("file://", "redis://", "rediss://", "unix://", "postgresql://", "postgres://")
    if lock_url is not None and not str(lock_url).startswith(lock_schemes):
        raise ConfigError(
            f"ACTIVITY_LEADER_LOCK_URL={lock_url!r} must start with file://, redis:// or postgresql://."
        )
    from activity_monitor.redis_client import require_redis

    for key in (
        "ACTIVITY_REDIS_URL",
        "ACTIVITY_CACHE_URL",
        "ACTIVITY_RATELIMIT_STORAGE_URL",
        "ACTIVITY_LEADER_LOCK_URL",
    ):
        require_redis(key, config[key])
    for key in ("ACTIVITY_DAILY_SUMMARY_AT", "ACTIVITY_LOG_CLEANUP_AT"):
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?", str(config[key])):
            raise ConfigError(f"{key}={config[key]!r} must be a local time HH:MM or HH:MM:SS.")
    if not isinstance(config["ACTIVITY_TRACKING_EXCLUDE_PATHS"], (list, tuple)):
        raise ConfigError("ACTIVITY_TRACKING_EXCLUDE_PATHS must be a list of path prefixes.")
    spool_folder = config["ACTIVITY_SPOOL_FOLDER"]
    if spool_folder is not None and (not isinstance(spool_folder, str) or not spool_folder):
        raise ConfigError(
            f"ACTIVITY_SPOOL_FOLDER={spool_folder!r} must be a folder path, or None for the "
            "instance folder's."
        )
    for key in ("ACTIVITY_API_PREFIX", "ACTIVITY_PAGE_PATH"):
        path = config[key]
        if not isinstance(path, str) or not path.startswith("/") or path.endswith("/") or "//" in path:
            raise ConfigError(
                f"{key}={path!r} must be a path such as '/admin/activity' (a leading /, none at the end)."
            )
    healthz = config["ACTIVITY_HEALTHZ_PATH"]
    if healthz is not None and (not isinstance(healthz, str) or not healthz.startswith("/")):
        raise ConfigError(f"ACTIVITY_HEALTHZ_PATH={healthz!r} must be a path starting with / or None.")
    if config["ACTIVITY_CLOCK"] is not None and not callable(config["ACTIVITY_CLOCK"]):
        raise ConfigError("ACTIVITY_CLOCK must be a callable returning an aware UTC datetime, or None.")
    database = config["ACTIVITY_DATABASE"]
    accepted = "a SQLite file path, sqlite:///path or postgresql://user@host:port/database"
    if not isinstance(database, str) or not database:
        raise ConfigError(f"ACTIVITY_DATABASE={database!r} must be {accepted}.")
    if "://" in database and not database.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"ACTIVITY_DATABASE={database!r} is not supported; give {accepted}.")
