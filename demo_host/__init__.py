"""The fleet-admin demo host: a small vending-fleet admin app that adopts the Activity Monitor
exactly as any other app would, through its public names only (see :func:`create_app`).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from activity_monitor import ActivityMonitor, Identity, flask_login_identity
from demo_host import auth, db, demo_data, pages, security_headers

# The host's own settings; the monitor's ACTIVITY_* keys are documented in activity_monitor.config.
HOST_DEFAULTS: dict[str, Any] = {
    # Path of the SQLite file of the host's users; the monitor shares it (None: instance/activity.sqlite3).
    "DATABASE": None,
    # Flask secret; None means one generated once and kept in instance/secret_key.
    "SECRET_KEY": None,
    # Hours a login lasts.
    "SESSION_LIFETIME_HOURS": 8,
    # Send the session cookie only over HTTPS.
    "SESSION_COOKIE_SECURE": False,
    # Name of the session cookie.
    "SESSION_COOKIE_NAME": "fleet_session",
    # The session cookie goes with same-site requests and top-level links only.
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Failed logins in a row, per username and address, that lock that pair.
    "LOGIN_MAX_FAILED_ATTEMPTS": 5,
    # Failed logins from one address, across usernames, that lock that address.
    "LOGIN_MAX_FAILED_PER_ADDRESS": 20,
    # Minutes a lock lasts, and the window failures are counted in.
    "LOGIN_LOCK_MINUTES": 15,
    # Proxies in front of the app whose X-Forwarded-* headers are trusted (0: none).
    "TRUSTED_PROXIES": 0,
    # A login lasts SESSION_LIFETIME_HOURS from the login itself, so the cookie need not be
    # signed and sent again with every answer.
    "SESSION_REFRESH_EACH_REQUEST": False,
    # CSRF is checked on the host's own forms (the monitor checks its own POSTs).
    "WTF_CSRF_CHECK_DEFAULT": False,
    # A form's CSRF token is good for the whole login (None), not an hour: a page left open
    # until lunch can still log out. The login itself ends after SESSION_LIFETIME_HOURS.
    "WTF_CSRF_TIME_LIMIT": None,
}


def load_or_create_secret_key(instance_path: str) -> str:
    """Read instance/secret_key, creating it once so every worker process shares it."""
    path = os.path.join(instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    # A worker that lost the creation race may read before the winner has written.
    for _ in range(100):
        with open(path) as handle:
            key = handle.read().strip()
        if key:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{path} exists but is empty; delete it and start again.")


def configure(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Load defaults, then instance/config.py, then FLASK_* variables, then the test config."""
    app.config.from_mapping(HOST_DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config["DATABASE"]:
        app.config["DATABASE"] = os.path.join(app.instance_path, "activity.sqlite3")
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_or_create_secret_key(app.instance_path)
    app.config["PERMANENT_SESSION_LIFETIME"] = app.config["SESSION_LIFETIME_HOURS"] * 3600
    app.config.setdefault("ACTIVITY_DATABASE", app.config["DATABASE"])


def load_identity_for_token(user_id: str) -> Identity | None:
    """The monitor's user_loader: who an API token's user (or create-token's USER) is now."""
    row = auth.load_user_row(db.get_db(), user_id)
    return Identity(row["id"], row["role"], username=row["username"]) if row is not None else None


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the demo host: its config, its login and pages, and the monitor."""
    app = Flask(__name__, instance_relative_config=True)
    configure(app, test_config)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    db.init_app(app)
    auth.init_app(app)
    app.register_blueprint(pages.bp)
    demo_data.init_app(app)
    security_headers.init_app(app)

    # Adopting the monitor: exactly the lines README shows.
    monitor = ActivityMonitor(
        identity_loader=flask_login_identity(role="role", session_key=auth.session_key),
        user_loader=load_identity_for_token,
        ACTIVITY_BASE_TEMPLATE="base.html",
        ACTIVITY_LOGIN_ENDPOINT="auth.login_page",
    )
    monitor.init_app(app)
    return app
