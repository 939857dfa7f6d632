"""Per-user rate limits on the activity API, with Flask-Limiter.

The storage is memory by default; with Redis every worker shares the counts,
and Flask-Limiter falls back to memory while Redis is unreachable.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, current_app
from flask_limiter import Limiter, RateLimitExceeded

from activity_monitor.access import client_ip
from activity_monitor.errors import json_error
from activity_monitor.extension import get_state
from activity_monitor.identity import current_identity

# Endpoints limited separately, each with ACTIVITY_RATE_LIMIT.
LIMITED_ENDPOINTS = (
    "activity_trends.trends",
    "activity_trends.export",
    "activity_trends.breakdown",
    "activity_trends.hours",
)


def rate_limit_key() -> str:
    """Count requests per user; anonymous requests per client address (behind trusted proxies,
    the forwarded one, so not every anonymous caller shares the proxy's count)."""
    identity = current_identity()
    return f"user:{identity.stored_user_id}" if identity is not None else f"ip:{client_ip()}"


def storage_url(config: Any) -> str:
    """Return the limiter storage: its own URL, else the shared Redis URL, else memory."""
    return config["ACTIVITY_RATELIMIT_STORAGE_URL"] or config["ACTIVITY_REDIS_URL"] or "memory://"


def configured_limit() -> str:
    """Return the limit string from the config (read per request, so tests may change it)."""
    return current_app.config["ACTIVITY_RATE_LIMIT"]


def too_many_requests(error: RateLimitExceeded) -> Response:
    """Answer a breached limit in the API's JSON error shape, with retry_after."""
    # The error's own limit has no window; the limiter's current limit knows when it resets.
    current = get_state().limiter.current_limit
    retry_after = 1
    if current is not None:
        retry_after = max(1, int(current.reset_at - time.time()))
    response = json_error(
        429,
        "rate_limited",
        f"Too many requests: the limit is {error.description}. Try again in {retry_after} seconds.",
        {"retry_after": retry_after},
    )
    response.headers["Retry-After"] = str(retry_after)
    if current is not None:
        response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(max(0, current.remaining))
        response.headers["X-RateLimit-Reset"] = str(current.reset_at)
    return response


def limiter_health(app: Flask) -> dict[str, Any]:
    """Report the limiter's storage and whether it answers."""
    limiter = get_state(app).limiter
    assert limiter is not None
    url = storage_url(app.config)
    scheme = url.split("://", 1)[0]
    try:
        reachable = bool(limiter.storage.check())
    except Exception:  # any storage error means "not reachable" to ops
        reachable = False
    fallback = scheme != "memory" and not reachable
    return {
        "status": "ok" if reachable else "degraded",
        "storage": scheme,
        "reachable": reachable,
        "using_memory_fallback": fallback,
    }


def init_app(app: Flask) -> Limiter:
    """Create the app's limiter and limit the activity endpoints (call after registering them)."""
    limiter = Limiter(
        rate_limit_key,
        app=app,
        storage_uri=storage_url(app.config),
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        if storage_url(app.config).startswith(("redis", "rediss", "unix"))
        else {},
        # X-RateLimit-* only on 429 answers (too_many_requests): on every answer they cost
        # two more storage round trips, a third of a cached trends request's time with Redis.
        headers_enabled=False,
        in_memory_fallback_enabled=True,
        key_prefix=get_state(app).redis_prefix + "ratelimit",
        strategy="fixed-window",
    )
    for endpoint in LIMITED_ENDPOINTS:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = limiter.limit(configured_limit)(app.view_functions[endpoint])
    get_state(app).limiter = limiter
    return limiter
