"""The activity monitor page for admins: charts, breakdowns, export and health of the activity API.

The page is a template plus static JavaScript, both inside this blueprint; it reads everything
from the JSON API (its URL comes from url_for). The server only renders the controls, with the
named ranges computed in ACTIVITY_TIMEZONE so the page asks for exactly the ranges the cache
warmer fills. The template extends ACTIVITY_BASE_TEMPLATE: the extension's own layout, or the
host's, which must have the blocks ``title``, ``head`` and ``content``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template, url_for

from activity_monitor import security_headers
from activity_monitor.access import admin_required, csrf_token
from activity_monitor.activity_trends_service import METRICS, preset_ranges
from activity_monitor.extension import today

# Registered at ACTIVITY_PAGE_PATH, with its own static files under <page>/static/.
bp = Blueprint(
    "activity_dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
bp.after_request(security_headers.add_security_headers)

# Button text of each named range of activity_trends_service.preset_ranges, in display order.
PRESET_LABELS = {
    "last_7_days": "7 days",
    "last_30_days": "30 days",
    "last_90_days": "90 days",
    "last_365_days": "365 days",
    "month_to_date": "Month to date",
    "last_month": "Last month",
}
# What each metric is called on the page.
METRIC_LABELS = {
    "unique_users": "Daily active users",
    "total_sessions": "Sessions",
    "total_page_views": "Page views",
    "total_api_calls": "API calls",
    "avg_session_duration_seconds": "Avg. session duration",
    "peak_concurrent_users": "Peak concurrent users",
}
BACKFILL_COMMAND = "flask activity backfill"


@bp.get("", strict_slashes=False)
@admin_required(json=False)
def activity_monitor() -> str:
    """Render the activity monitor page (its data comes from the activity API)."""
    tz_name = current_app.config["ACTIVITY_TIMEZONE"]
    day = today()
    ranges = preset_ranges(day)
    presets = [
        {"name": name, "label": label, "start": start.isoformat(), "end": end.isoformat()}
        for name, label in PRESET_LABELS.items()
        for start, end in [ranges[name]]
    ]
    metrics = [{"name": name, "label": METRIC_LABELS[name]} for name in METRICS]
    return render_template(
        "activity_monitor/page.html",
        base_template=current_app.config["ACTIVITY_BASE_TEMPLATE"],
        api_url=url_for("activity_trends.openapi").rsplit("/", 1)[0],
        activity_csrf_token=csrf_token(),
        presets=presets,
        metrics=metrics,
        today=day.isoformat(),
        tz_name=tz_name,
        max_range_days=current_app.config["ACTIVITY_MAX_RANGE_DAYS"],
        backfill_command=BACKFILL_COMMAND,
    )


def init_app(app: Flask) -> None:
    """Register the page at ACTIVITY_PAGE_PATH."""
    app.register_blueprint(bp, url_prefix=app.config["ACTIVITY_PAGE_PATH"])
