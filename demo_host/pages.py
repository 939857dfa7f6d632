"""A few pages of the vending-fleet admin app, so there is real traffic to monitor."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

from flask import Blueprint, Response, jsonify, render_template
from flask_login import login_required

from demo_host.auth import role_required
from demo_host.db import get_db

bp = Blueprint("host_pages", __name__)

SITES = ("Central Station", "City Hospital", "Tech Park", "University Library", "Airport T2", "Mall North")
ROUTE_NAMES = ("North loop", "South loop", "Downtown", "Campus", "Airport")


def fleet_devices() -> list[dict[str, Any]]:
    """Return the fleet's vending machines (fixed sample data for the host app)."""
    rng = random.Random(7)
    return [
        {
            "id": f"VM-{100 + i}",
            "site": SITES[i % len(SITES)],
            "route": ROUTE_NAMES[i % len(ROUTE_NAMES)],
            "fill_percent": rng.randint(5, 100),
            "status": rng.choice(("online", "online", "online", "needs service", "offline")),
        }
        for i in range(24)
    ]


def service_orders() -> list[dict[str, Any]]:
    """Return open service orders derived from the devices that need attention."""
    return [
        {"number": f"SO-{2000 + n}", "device": d["id"], "site": d["site"], "reason": d["status"]}
        for n, d in enumerate(fleet_devices())
        if d["status"] != "online" or d["fill_percent"] < 20
    ]


@bp.route("/")
@login_required
def home() -> str:
    """Show the fleet at a glance."""
    devices = fleet_devices()
    counts = {s: sum(1 for d in devices if d["status"] == s) for s in ("online", "needs service", "offline")}
    return render_template("home.html", counts=counts, orders=len(service_orders()))


@bp.route("/devices")
@login_required
def devices() -> str:
    """List the vending machines."""
    return render_template("devices.html", devices=fleet_devices())


@bp.route("/devices.csv")
@login_required
def devices_csv() -> Response:
    """Download the device list as CSV."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "site", "route", "fill_percent", "status"])
    writer.writeheader()
    writer.writerows(fleet_devices())
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="devices.csv"'},
    )


@bp.route("/routes")
@login_required
def routes() -> str:
    """List the drivers' routes with their machines."""
    by_route: dict[str, list[str]] = {name: [] for name in ROUTE_NAMES}
    for device in fleet_devices():
        by_route[device["route"]].append(device["id"])
    return render_template("routes.html", routes=by_route)


@bp.route("/service-orders")
@login_required
def orders() -> str:
    """List open service orders."""
    return render_template("service_orders.html", orders=service_orders())


@bp.route("/users")
@role_required("admin")
def users() -> str:
    """List the app's users (admins only)."""
    rows = get_db().execute(
        "SELECT username, role, is_active, last_login FROM users ORDER BY role, username LIMIT 500"
    ).fetchall()
    return render_template("users.html", users=rows)


@bp.get("/api/devices")
@login_required
def devices_api() -> Response:
    """Return the device list as JSON (the host app's own small API)."""
    return jsonify({"success": True, "devices": fleet_devices()})
