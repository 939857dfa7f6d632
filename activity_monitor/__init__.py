"""Activity Monitor: usage trends of a Flask admin app, for its admins.

    from activity_monitor import ActivityMonitor, Identity

    monitor = ActivityMonitor(app, identity_loader=lambda: Identity(user.id, user.role))

Everything a host uses is importable from here; the modules behind it are not API.
"""

from activity_monitor.audit import audit_recorded
from activity_monitor.config import DEFAULTS, ConfigError
from activity_monitor.event_import import EVENT_COLUMNS, bulk_import_events
from activity_monitor.extension import ActivityMonitor, get_state, now, today
from activity_monitor.identity import Identity, default_is_admin, flask_login_identity

__all__ = [
    "DEFAULTS",
    "EVENT_COLUMNS",
    "ActivityMonitor",
    "ConfigError",
    "Identity",
    "audit_recorded",
    "bulk_import_events",
    "default_is_admin",
    "flask_login_identity",
    "get_state",
    "now",
    "today",
]
