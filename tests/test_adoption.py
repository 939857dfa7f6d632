"""A foreign host adopts the monitor: its own accounts table, Flask-Login, its own error handlers and
base template, UUID user ids and roles of its own. Everything works through the public names only,
and the host's own pages and handlers stay exactly as they were."""

from __future__ import annotations

import csv
import datetime as dt
import inspect
import io
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, redirect, render_template_string, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

from activity_monitor import ActivityMonitor, Identity, flask_login_identity, get_state
from activity_monitor.db import connect
from test_db import tables

ADMIN_ID = str(uuid.UUID(int=1))
STAFF_ID = str(uuid.UUID(int=2))
LAYOUT = """<!doctype html><html><head><title>{% block title %}{% endblock %} | Foreign Ops</title>
{% block head %}{% endblock %}</head>
<body><nav>Foreign Ops</nav>{% block content %}{% endblock %}</body></html>"""


class Account(UserMixin):
    """A row of the host's own accounts table."""

    def __init__(self, row: sqlite3.Row):
        self.id, self.email, self.kind = row["id"], row["email"], row["kind"]


def adopt(app: Flask, database: str) -> ActivityMonitor:
    """The host's whole adoption of the monitor (README's lines)."""
    monitor = ActivityMonitor(
        identity_loader=flask_login_identity(role="kind", username="email"),
        is_admin=lambda identity: identity.role == "superuser",
        user_loader=lambda user_id: account_identity(app, user_id),
        ACTIVITY_DATABASE=database,
        ACTIVITY_BASE_TEMPLATE="layout.html",
    )
    monitor.init_app(app)
    return monitor


def account_identity(app: Flask, user_id: str) -> Identity | None:
    """The host's answer to "who is this user now?" for API tokens."""
    row = accounts_db(app).execute("SELECT * FROM accounts WHERE id = ?", (user_id,)).fetchone()
    return Identity(row["id"], row["kind"], username=row["email"]) if row else None


def accounts_db(app: Flask) -> sqlite3.Connection:
    """A connection to the host's own database."""
    conn = sqlite3.connect(app.config["HOST_DATABASE"], isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def build_foreign_host(tmp_path: Path, clock, monitor_database: str | None = None, **config) -> Flask:
    """Build the foreign host app with its own tables, login, pages and handlers."""
    templates = tmp_path / "foreign_templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "layout.html").write_text(LAYOUT)
    app = Flask("foreign_host", template_folder=str(templates), instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="foreign-secret",
        TESTING=True,
        HOST_DATABASE=str(tmp_path / "accounts.sqlite3"),
        ACTIVITY_CLOCK=clock,
        ACTIVITY_SCHEDULER_TICK_SECONDS=1,
        **config,
    )
    conn = accounts_db(app)
    conn.execute("CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, email TEXT, kind TEXT, pw TEXT)")
    conn.execute(
        "INSERT OR IGNORE INTO accounts VALUES (?, 'root@ops.example', 'superuser', 'pw')", (ADMIN_ID,)
    )
    conn.execute("INSERT OR IGNORE INTO accounts VALUES (?, 'sam@ops.example', 'staff', 'pw')", (STAFF_ID,))
    conn.close()

    login = LoginManager(app)

    @login.user_loader
    def load(user_id: str) -> Account | None:
        row = accounts_db(app).execute("SELECT * FROM accounts WHERE id = ?", (user_id,)).fetchone()
        return Account(row) if row else None

    @app.post("/signin")
    def signin() -> Response:
        row = (
            accounts_db(app)
            .execute(
                "SELECT * FROM accounts WHERE email = ? AND pw = ?",
                (request.form["email"], request.form["pw"]),
            )
            .fetchone()
        )
        if row is None:
            return Response("no", status=401)
        login_user(Account(row))
        return redirect("/desk")

    @app.get("/desk")
    @login_required
    def desk() -> str:
        return render_template_string("{% extends 'layout.html' %}{% block content %}desk{% endblock %}")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("host failure")

    @app.errorhandler(404)
    def host_not_found(_error) -> tuple[str, int]:
        return "Foreign 404 page", 404

    @app.errorhandler(500)
    def host_failure(_error) -> tuple[str, int]:
        return "Foreign 500 page", 500

    @app.after_request
    def host_header(response: Response) -> Response:
        response.headers["X-Foreign-Host"] = "yes"
        return response

    adopt(app, monitor_database or str(tmp_path / "monitor.sqlite3"))
    return app


@pytest.fixture
def host(tmp_path, clock, monitor_database) -> Flask:
    """The foreign host, on this test's clock and the run's backend."""
    clock.set(dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC))
    return build_foreign_host(tmp_path, clock, monitor_database)


def sign_in(client, email: str) -> None:
    """Log in through the host's own login."""
    assert client.post("/signin", data={"email": email, "pw": "pw"}).status_code == 302


def monitor_rows(host: Flask, sql: str, *args) -> list[Any]:
    """Read the monitor's own database."""
    conn = connect(host.config["ACTIVITY_DATABASE"])
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_the_adoption_takes_at_most_ten_lines():
    body = inspect.getsource(adopt).split('"""', 2)[2]
    lines = [line for line in body.splitlines() if line.strip()]
    assert len(lines) <= 10


def test_the_host_keeps_its_own_tables_and_the_monitor_keeps_its_own(host):
    host_tables = {
        row[0] for row in accounts_db(host).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    conn = connect(host.config["ACTIVITY_DATABASE"])
    monitor_tables = tables(conn)
    conn.close()
    assert host_tables == {"accounts"}
    assert {"user_activity_log", "activity_summary_daily"} <= monitor_tables
    assert all(
        name in ("user_activity_log", "activity_summary_daily") or name.startswith("activity_")
        for name in monitor_tables
    )


def test_requests_are_tracked_with_the_hosts_ids_and_roles(host, clock):
    client = host.test_client()
    sign_in(client, "sam@ops.example")
    client.get("/desk")
    clock.advance(minutes=2)
    client.get("/desk")
    rows = monitor_rows(host, "SELECT user_id, role, session_id, page_url, timestamp FROM user_activity_log")
    desk = [row for row in rows if row["page_url"] == "/desk"]
    assert [(r["user_id"], r["role"], r["session_id"]) for r in desk] == [(STAFF_ID, "staff", "")] * 2
    assert [r["timestamp"][:16] for r in desk] == ["2026-03-10 09:00", "2026-03-10 09:02"]


def test_summaries_trends_export_and_cli_work_in_the_foreign_host(host, clock):
    staff, admin = host.test_client(), host.test_client()
    sign_in(staff, "sam@ops.example")
    staff.get("/desk")
    clock.advance(minutes=40)  # past the 30 idle minutes: a second derived session
    staff.get("/desk")
    sign_in(admin, "root@ops.example")
    admin.get("/desk")
    clock.set(dt.datetime(2026, 3, 11, 8, 0, tzinfo=dt.UTC))

    result = host.test_cli_runner().invoke(args=["activity", "backfill"])
    assert result.exit_code == 0, result.output
    (row,) = monitor_rows(host, "SELECT * FROM activity_summary_daily WHERE date = '2026-03-10'")
    assert row["unique_users"] == 2
    assert row["total_sessions"] == 3
    assert row["user_distribution"] == '{"staff": 1, "superuser": 1}'

    trends = admin.get("/api/admin/activity/trends?start_date=2026-03-10&end_date=2026-03-10")
    assert trends.status_code == 200
    assert trends.json["data"]["metrics"]["unique_users"][0]["value"] == 2

    export = admin.get("/api/admin/activity/export?start_date=2026-03-10&end_date=2026-03-10")
    assert export.status_code == 200
    table = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert table[0]["date"] == "2026-03-10" and table[0]["total_sessions"] == "3"
    audit = monitor_rows(
        host, "SELECT user_id, action FROM activity_audit_log WHERE action = 'EXPORT_ACTIVITY_DATA'"
    )
    assert [(r["user_id"], r["action"]) for r in audit] == [(ADMIN_ID, "EXPORT_ACTIVITY_DATA")]


def test_only_the_hosts_admins_open_the_api_and_the_page(host):
    staff = host.test_client()
    sign_in(staff, "sam@ops.example")
    assert staff.get("/api/admin/activity/trends").status_code == 403
    assert staff.get("/admin/activity").status_code == 403
    assert host.test_client().get("/api/admin/activity/trends").status_code == 401


def test_the_page_extends_the_hosts_layout_and_serves_its_own_static_files(host):
    admin = host.test_client()
    sign_in(admin, "root@ops.example")
    page = admin.get("/admin/activity")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<nav>Foreign Ops</nav>" in html and "Activity monitor | Foreign Ops" in html
    assert 'data-api="/api/admin/activity"' in html
    script = admin.get("/admin/activity/static/activity_monitor.js")
    assert script.status_code == 200 and b"X-CSRF-Token" in script.data


def test_health_and_liveness_answer_in_the_foreign_host(host):
    admin = host.test_client()
    sign_in(admin, "root@ops.example")
    health = admin.get("/api/admin/activity/health")
    assert health.status_code == 200
    assert set(health.json["checks"]) >= {"database", "cache", "rate_limiter", "scheduler"}
    assert health.json["checks"]["database"]["latency_ms"] >= 0
    assert host.test_client().get("/healthz").get_data(as_text=True) == "ok\n"


def test_a_token_created_for_a_host_admin_opens_the_api(host):
    result = host.test_cli_runner().invoke(args=["activity", "create-token", ADMIN_ID, "--label", "ops"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    answer = host.test_client().get(
        "/api/admin/activity/cache/stats", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200
    refused = host.test_cli_runner().invoke(args=["activity", "create-token", STAFF_ID])
    assert refused.exit_code != 0 and "not an admin" in refused.output


def test_the_hosts_error_handlers_and_headers_stay_the_hosts(host):
    client = host.test_client()
    missing = client.get("/no-such-page")
    assert (missing.status_code, missing.get_data(as_text=True)) == (404, "Foreign 404 page")
    host.config["TESTING"] = False  # let the host's 500 handler answer instead of raising
    failing = client.get("/boom")
    assert (failing.status_code, failing.get_data(as_text=True)) == (500, "Foreign 500 page")
    assert failing.headers["X-Foreign-Host"] == "yes"
    assert "Content-Security-Policy" not in missing.headers
    api_missing = client.get("/api/admin/activity/no-such-endpoint")
    assert api_missing.status_code == 404 and api_missing.json["code"] == "not_found"


def test_the_background_jobs_summarize_missing_days_in_the_foreign_host(tmp_path, clock, monitor_database):
    clock.set(dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC))
    first = build_foreign_host(tmp_path, clock, monitor_database)
    client = first.test_client()
    sign_in(client, "sam@ops.example")
    client.get("/desk")
    clock.set(dt.datetime(2026, 3, 12, 9, 0, tzinfo=dt.UTC))
    served = build_foreign_host(
        tmp_path / "second", clock, first.config["ACTIVITY_DATABASE"], ACTIVITY_BACKGROUND_TASKS=True
    )
    manager = get_state(served).background
    assert manager is not None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not monitor_rows(
            served, "SELECT 1 FROM activity_summary_daily WHERE date = '2026-03-10'"
        ):
            time.sleep(0.1)
        (row,) = monitor_rows(
            served, "SELECT unique_users FROM activity_summary_daily WHERE date = '2026-03-10'"
        )
        assert row["unique_users"] == 1
        assert manager.health()["leader"] is True
    finally:
        assert manager.stop()


def test_registering_twice_on_one_app_is_refused_with_a_clear_error(host):
    with pytest.raises(RuntimeError, match="already registered"):
        ActivityMonitor(host)


def test_one_monitor_object_serves_several_apps(tmp_path, clock):
    monitor = ActivityMonitor(identity_loader=lambda: None)
    apps = []
    for name in ("one", "two"):
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(
            SECRET_KEY="s", ACTIVITY_DATABASE=str(tmp_path / f"{name}.sqlite3"), ACTIVITY_CLOCK=clock
        )
        monitor.init_app(app)
        apps.append(app)
    assert get_state(apps[0]).install_id != get_state(apps[1]).install_id
    assert all(app.test_client().get("/healthz").status_code == 200 for app in apps)


def test_options_win_over_app_config_which_wins_over_defaults(tmp_path):
    app = Flask("precedence", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="s", ACTIVITY_TIMEZONE="Europe/Berlin", ACTIVITY_CACHE_TTL=60)
    ActivityMonitor(app, timezone="America/New_York", ACTIVITY_DATABASE=str(tmp_path / "m.sqlite3"))
    assert app.config["ACTIVITY_TIMEZONE"] == "America/New_York"
    assert app.config["ACTIVITY_CACHE_TTL"] == 60
    assert app.config["ACTIVITY_MAX_RANGE_DAYS"] == 730


def test_a_misspelt_option_is_refused_naming_it():
    with pytest.raises(ValueError, match="timezon"):
        ActivityMonitor(timezon="UTC")


def test_the_flask_login_adapter_gives_no_identity_to_anonymous_users(host):
    with host.test_request_context("/desk"):
        assert not current_user.is_authenticated
        assert flask_login_identity()() is None


def test_a_cookie_post_needs_the_monitors_csrf_token_whatever_the_hosts_login(host):
    admin = host.test_client()
    sign_in(admin, "root@ops.example")
    html = admin.get("/admin/activity").get_data(as_text=True)
    token = html.split('data-csrf-token="', 1)[1].split('"', 1)[0]
    refused = admin.post("/api/admin/activity/cache/clear")
    assert refused.status_code == 403 and refused.json["code"] == "csrf_failed"
    wrong = admin.post("/api/admin/activity/cache/clear", headers={"X-CSRF-Token": token[::-1]})
    assert wrong.status_code == 403
    cleared = admin.post("/api/admin/activity/cache/clear", headers={"X-CSRF-Token": token})
    assert cleared.status_code == 200 and cleared.json["success"] is True


def test_another_users_csrf_token_does_not_pass(host):
    admin = host.test_client()
    sign_in(admin, "root@ops.example")
    html = admin.get("/admin/activity").get_data(as_text=True)
    token = html.split('data-csrf-token="', 1)[1].split('"', 1)[0]
    other = host.test_client()
    sign_in(other, "root@ops.example")
    other.get("/admin/activity")
    assert other.post("/api/admin/activity/cache/clear", headers={"X-CSRF-Token": token}).status_code == 403


def test_the_monitors_security_headers_are_on_its_own_responses_only(host):
    admin = host.test_client()
    sign_in(admin, "root@ops.example")
    page = admin.get("/admin/activity")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    desk = admin.get("/desk")
    assert "Content-Security-Policy" not in desk.headers and "X-Frame-Options" not in desk.headers
