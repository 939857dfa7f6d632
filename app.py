"""The application factory: configuration and wiring, nothing else.

``flask --app app …`` and ``gunicorn 'app:create_app()'`` both call
:func:`create_app`; importing this module does nothing by itself.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import activity_cli
import activity_dashboard
import activity_health
import activity_tracker
import activity_trends_api
import auth
import background_tasks
import db
import demo_data
import host_pages
import performance_monitor
import security_headers
import trends_cache
from config import DEFAULTS, validate_config


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
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config["DATABASE"]:
        app.config["DATABASE"] = os.path.join(app.instance_path, "activity.sqlite3")
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_or_create_secret_key(app.instance_path)
    validate_config(app.config)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configure, migrate the database, attach every component."""
    app = Flask(__name__, instance_relative_config=True)
    configure(app, test_config)
    if app.config["ACTIVITY_TRUSTED_PROXIES"]:
        hops = app.config["ACTIVITY_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    db.init_app(app)
    conn = db.connect(app.config["DATABASE"])
    try:
        db.apply_migrations(conn)
    finally:
        conn.close()

    # Order matters: timers first, then the user, so later hooks and views see g.user.
    activity_tracker.init_app(app)
    performance_monitor.init_app(app)
    auth.init_app(app)
    security_headers.init_app(app)
    trends_cache.init_app(app)
    app.register_blueprint(host_pages.bp)
    app.register_blueprint(activity_dashboard.bp)
    activity_health.init_app(app)
    activity_trends_api.init_app(app)
    activity_cli.init_app(app)
    demo_data.init_app(app)
    background_tasks.init_app(app)
    return app
