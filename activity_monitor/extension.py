"""The ActivityMonitor extension object: configuration, wiring, and per-app state.

One object may serve several apps (the factory pattern): everything that belongs
to one app lives in its :class:`MonitorState` under
``app.extensions["activity_monitor"]``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from activity_monitor.config import ConfigError, resolve_config, validate_config
from activity_monitor.identity import (
    AdminCheck,
    IdentityLoader,
    UserLoader,
    default_is_admin,
)
from activity_monitor.storage import open_storage
from activity_monitor.timeutil import local_today, utc_now

if TYPE_CHECKING:
    from flask_limiter import Limiter

    from activity_monitor.background_tasks import BackgroundTaskManager
    from activity_monitor.performance_monitor import PerformanceMonitor
    from activity_monitor.storage import Storage
    from activity_monitor.trends_cache import Cache

EXTENSION_NAME = "activity_monitor"
log = logging.getLogger(__name__)


@dataclass
class MonitorState:
    """Everything the monitor keeps for one app."""

    monitor: ActivityMonitor
    # The database as health shows it: the SQLite file's path, or the URL without its password.
    database: str
    install_id: str
    redis_prefix: str
    storage: Storage
    cache: Cache | None = None
    limiter: Limiter | None = None
    performance: PerformanceMonitor | None = None
    background: BackgroundTaskManager | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def get_state(app: Flask | None = None) -> MonitorState:
    """Return the monitor's state of an app (the current app by default)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[EXTENSION_NAME]
    except KeyError:
        raise RuntimeError(
            "ActivityMonitor is not registered on this app; call monitor.init_app(app)."
        ) from None


def now(app: Flask | None = None) -> dt.datetime:
    """Return the current instant by the app's clock (ACTIVITY_CLOCK, else the system clock), aware UTC."""
    clock = (app or current_app).config.get("ACTIVITY_CLOCK")
    return clock() if clock is not None else utc_now()


def today(app: Flask | None = None) -> dt.date:
    """Return the current local day in ACTIVITY_TIMEZONE by the app's clock."""
    app = app or current_app
    return local_today(app.config["ACTIVITY_TIMEZONE"], now(app))


class ActivityMonitor:
    """Records every authenticated request of a Flask app and serves its activity trends.

    ``ActivityMonitor(app)`` or ``monitor = ActivityMonitor(); monitor.init_app(app)``.
    ``identity_loader()`` returns the :class:`~activity_monitor.Identity` of the current
    request (or None); ``is_admin(identity)`` decides who may use the API and page
    (default: role 'admin'); ``options`` are config keys and win over ``app.config``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        identity_loader: IdentityLoader | None = None,
        is_admin: AdminCheck | None = None,
        user_loader: UserLoader | None = None,
        **options: Any,
    ):
        self.identity_loader_callback = identity_loader
        self.is_admin_callback: AdminCheck = is_admin or default_is_admin
        self.user_loader_callback = user_loader
        self.options = options
        resolve_config({}, options)  # a misspelt option fails here, not at init_app
        if app is not None:
            self.init_app(app)

    # --- the host's callbacks, as decorators ----------------------------------------

    def identity_loader(self, callback: IdentityLoader) -> IdentityLoader:
        """Register the callback that returns the current request's Identity or None."""
        self.identity_loader_callback = callback
        return callback

    def admin_check(self, callback: AdminCheck) -> AdminCheck:
        """Register the callback that tells whether an Identity may use the monitor."""
        self.is_admin_callback = callback
        return callback

    def user_loader(self, callback: UserLoader) -> UserLoader:
        """Register the callback that returns the Identity of a user id given as text
        (for API tokens and ``flask activity create-token``), or None."""
        self.user_loader_callback = callback
        return callback

    # --- registration -------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Configure the monitor for an app, migrate its database and register everything."""
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError(
                "ActivityMonitor is already registered on this app; call init_app once per app."
            )
        config = resolve_config(app.config, self.options)
        if not config["ACTIVITY_DATABASE"]:
            os.makedirs(app.instance_path, exist_ok=True)
            config["ACTIVITY_DATABASE"] = os.path.join(app.instance_path, "activity.sqlite3")
        validate_config(config)
        if not app.config.get("SECRET_KEY"):
            raise ConfigError(
                "ActivityMonitor needs the app's SECRET_KEY (it signs the page's CSRF token); set it "
                "before init_app."
            )
        app.config.update(config)

        from activity_monitor import (
            activity_cli,
            activity_dashboard,
            activity_health,
            activity_tracker,
            activity_trends_api,
            background_tasks,
            db,
            trends_cache,
        )

        storage = open_storage(config["ACTIVITY_DATABASE"], pool_size=config["ACTIVITY_DATABASE_POOL_SIZE"])
        storage.prepare()
        # A connection outside any pool: a gunicorn master that preloads the app must fork none.
        conn = storage.direct_connection()
        try:
            db.apply_migrations(conn)
            install_id = db.read_install_id(conn)
        finally:
            conn.close()

        state = MonitorState(
            monitor=self,
            database=storage.target,
            install_id=install_id,
            # The install id follows the configured prefix, so two installs sharing one Redis never meet.
            redis_prefix=f"{config['ACTIVITY_REDIS_PREFIX']}{install_id}:",
            storage=storage,
        )
        app.extensions[EXTENSION_NAME] = state
        db.init_app(app)
        activity_tracker.init_app(app)
        with app.app_context():
            state.cache = trends_cache.build_cache(app)
        activity_trends_api.init_app(app)
        activity_dashboard.init_app(app)
        activity_health.init_app(app)
        activity_cli.init_app(app)
        state.background = background_tasks.init_app(app)
        if self.identity_loader_callback is None:
            log.warning(
                "ActivityMonitor has no identity_loader: no request is tracked and nobody can open the "
                "API or the page until one is registered."
            )
