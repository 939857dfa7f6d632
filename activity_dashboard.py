"""The activity monitor page for admins: charts, breakdowns, export and health of the activity API.

The page is a template plus static JavaScript; it reads everything from the JSON API under
/api/admin/activity. The server only renders the controls, with the named ranges computed in
ACTIVITY_TIMEZONE so the page asks for exactly the ranges the cache warmer fills.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from activity_trends_service import METRICS, preset_ranges
from auth import role_required
from timeutil import local_today

bp = Blueprint("activity_dashboard", __name__)

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
BACKFILL_COMMAND = "flask --app app activity backfill"


@bp.get("/admin/activity")
@role_required("admin")
def activity_monitor() -> str:
    """Render the activity monitor page (its data comes from the activity API)."""
    tz_name = current_app.config["ACTIVITY_TIMEZONE"]
    today = local_today(tz_name)
    ranges = preset_ranges(today)
    presets = [
        {"name": name, "label": label, "start": start.isoformat(), "end": end.isoformat()}
        for name, label in PRESET_LABELS.items()
        for start, end in [ranges[name]]
    ]
    metrics = [{"name": name, "label": METRIC_LABELS[name]} for name in METRICS]
    return render_template(
        "activity_monitor.html",
        presets=presets,
        metrics=metrics,
        today=today.isoformat(),
        tz_name=tz_name,
        max_range_days=current_app.config["ACTIVITY_MAX_RANGE_DAYS"],
        backfill_command=BACKFILL_COMMAND,
    )
