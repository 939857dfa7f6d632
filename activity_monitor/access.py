"""Who may use the monitor's API and page, and CSRF protection of its cookie-authenticated POSTs.

The host decides who is an admin (``is_admin``); this module only asks. The CSRF
token is the extension's own, whatever login the host uses: a random value kept
in Flask's signed session, bound to the user by an HMAC with the app's secret.
Requests with an API token carry no cookie and need none.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, redirect, render_template, request, session, url_for

from activity_monitor import audit
from activity_monitor.db import get_db
from activity_monitor.errors import json_error
from activity_monitor.identity import AUTH_TOKEN, Identity, current_identity, is_admin

CSRF_HEADER = "X-CSRF-Token"
CSRF_SESSION_KEY = "_activity_monitor_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_ip() -> str | None:
    """Return the client address, trusting ACTIVITY_TRUSTED_PROXIES hops of X-Forwarded-For."""
    hops = current_app.config["ACTIVITY_TRUSTED_PROXIES"]
    if hops:
        forwarded = [
            part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr


def csrf_token() -> str:
    """Return the current user's CSRF token for the monitor, creating its session secret once."""
    identity = current_identity()
    secret = session.get(CSRF_SESSION_KEY)
    if not secret:
        secret = session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    user = "" if identity is None else str(identity.stored_user_id)
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"activity-csrf:{secret}:{user}".encode(), hashlib.sha256).hexdigest()


def csrf_failure() -> Response | None:
    """Refuse a state-changing request authenticated by the host's cookie without the monitor's token."""
    if request.method in SAFE_METHODS or g.get("activity_auth_method") == AUTH_TOKEN:
        return None
    sent = request.headers.get(CSRF_HEADER) or ""
    # Compared as bytes: compare_digest raises TypeError on a str holding non-ASCII characters,
    # which any client can send in a header.
    if session.get(CSRF_SESSION_KEY) and hmac.compare_digest(
        sent.encode("utf-8", "surrogateescape"), csrf_token().encode()
    ):
        return None
    return json_error(
        403,
        "csrf_failed",
        f"Missing or wrong CSRF token; send the {CSRF_HEADER} header with the token of the monitor's page.",
    )


def record_forbidden(identity: Identity) -> None:
    """Write a throttled UNAUTHORIZED_ACCESS_ATTEMPT audit row; never fails the request."""
    try:
        audit.record_unauthorized_attempt(
            get_db(),
            user_id=identity.stored_user_id,
            ip_address=client_ip(),
            endpoint=request.path,
            method=request.method,
        )
    except Exception:
        current_app.logger.exception(
            "Could not record an unauthorized attempt by %r on %s", identity.user_id, request.path
        )


def admin_required(*, json: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let only the host's admins through: 401 when nobody is logged in, 403 otherwise
    (JSON on the API, a small page on the page), and CSRF-check cookie-authenticated POSTs."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            identity = current_identity()
            if identity is None:
                message = "Log in to the app, or send an 'Authorization: Bearer' token."
                if json:
                    return json_error(401, "authentication_required", message)
                login_endpoint = current_app.config["ACTIVITY_LOGIN_ENDPOINT"]
                if login_endpoint:
                    return redirect(url_for(login_endpoint, next=request.full_path.rstrip("?")))
                return page_error(401, message)
            if not is_admin(identity):
                record_forbidden(identity)
                message = (
                    f"This needs an admin; you are logged in as {identity.role or 'a user without a role'}."
                )
                if json:
                    return json_error(403, "forbidden", message)
                return page_error(403, message)
            refused = csrf_failure()
            if refused is not None:
                return refused
            return view(*args, **kwargs)

        return wrapped

    return decorator


def page_error(status: int, message: str) -> Response:
    """Render the monitor's own small error page (it never uses the host's handlers)."""
    html = render_template("activity_monitor/error.html", status=status, message=message)
    return Response(html, status=status, mimetype="text/html")
