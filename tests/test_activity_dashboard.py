"""The activity monitor page: who may see it, its headers and safety, and the page in a real browser."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from activity_monitor import ActivityMonitor, Identity
from activity_monitor.activity_trends_service import METRICS, preset_ranges
from activity_monitor.db import connect
from activity_monitor.security_headers import CONTENT_SECURITY_POLICY
from browser_support import (  # noqa: F401  (the fixtures register by being imported)
    MARKUP_PAGE,
    LiveServer,
    WatchedPage,
    admin_context_fixture,
    browser_fixture,
    empty_server_fixture,
    live_server_fixture,
    log_in,
    screenshot,
    serving,
    watched_fixture,
)
from summary_rows import insert_series

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "activity_monitor"
PAGE = "/admin/activity"
PAGE_STATIC = "/admin/activity/static/"


# --- the page without a browser --------------------------------------------------------------


def test_admin_gets_the_page_with_a_strict_csp(client, auth):
    auth.login("admin")
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert 'id="activity-monitor"' in response.get_data(as_text=True)


def test_page_has_no_inline_script_or_style(client, auth):
    auth.login("admin")
    html = client.get(PAGE).get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts, "the page loads its code from its static files"
    for attributes, body in scripts:
        assert f'src="{PAGE_STATIC}' in attributes
        assert body.strip() == ""
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)


@pytest.mark.parametrize("role", ["manager", "driver", "viewer"])
def test_other_roles_are_refused(client, auth, role):
    auth.login(role)
    response = client.get(PAGE)
    assert response.status_code == 403
    assert "admin" in response.get_data(as_text=True)


def test_anonymous_user_is_sent_to_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert "next=/admin/activity" in response.headers["Location"]


def test_nav_links_admins_to_the_page(client, auth):
    auth.login("admin")
    assert 'href="/admin/activity"' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.UTC), id="mid-month"),
        pytest.param(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC), id="first-of-month-after-30-days"),
    ],
)
def test_page_offers_the_preset_ranges_of_the_service(clock, moment, client, auth):
    clock.set(moment)
    auth.login("admin")
    html = client.get(PAGE).get_data(as_text=True)
    for name, (start, end) in preset_ranges(clock.today()).items():
        assert re.search(
            rf'value="{name}"\s+data-start="{start}" data-end="{end}"', html
        ), f"{name} should be offered as {start} to {end}"


def test_every_metric_has_a_labelled_toggle(client, auth):
    auth.login("admin")
    html = client.get(PAGE).get_data(as_text=True)
    for metric in METRICS:
        assert f'id="am-metric-{metric}"' in html
        assert f'<label for="am-metric-{metric}"' in html


def test_chart_library_is_served_locally_with_its_license(client):
    script = client.get(f"{PAGE_STATIC}vendor/chartjs/chart.umd.min.js")
    assert script.status_code == 200
    assert b"Chart.js v4." in script.data[:200]
    assert b"MIT" in client.get(f"{PAGE_STATIC}vendor/chartjs/LICENSE.md").data
    readme = (PACKAGE / "static/vendor/README.md").read_text()
    assert "npm" in readme and "MIT" in readme and re.search(r"\b4\.\d+\.\d+\b", readme)


def test_page_loads_nothing_from_other_sites(client, auth):
    auth.login("admin")
    html = client.get(PAGE).get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "cdn" not in html.lower()


@pytest.mark.parametrize("template_name", ["page.html", "base.html"])
def test_templates_never_insert_unescaped_html(template_name):
    template = (PACKAGE / "templates/activity_monitor" / template_name).read_text()
    assert "|safe" not in template.replace(" ", "") and "Markup" not in template
    assert "autoescape false" not in template


def test_script_never_inserts_html():
    script = (PACKAGE / "static/activity_monitor.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, f"{sink} would parse server data as HTML or code"


# --- the page on a bare Flask app, in the extension's own layout ---------------------------------


@pytest.fixture
def make_bare_app(tmp_path, clock):
    """Return a factory of bare Flask apps with only the monitor, whose every visitor is admin 1."""

    def build(**config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="bare-secret",
            TESTING=True,
            ACTIVITY_DATABASE=str(tmp_path / "bare.sqlite3"),
            ACTIVITY_CLOCK=clock,
            **config,
        )
        ActivityMonitor(app, identity_loader=lambda: Identity(1, "admin"))
        return app

    return build


def page_assets(html: str) -> list[str]:
    """Return the URLs of the page's scripts and stylesheets."""
    return re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html) + re.findall(
        r'<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"', html
    )


def test_page_renders_in_the_extensions_own_layout_in_a_bare_app(make_bare_app):
    response = make_bare_app().test_client().get(PAGE)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<body class="am-standalone">' in html
    assert "<title>Activity monitor</title>" in html
    assert 'id="activity-monitor"' in html


def test_page_assets_come_from_the_blueprints_static_url_and_load(make_bare_app):
    client = make_bare_app().test_client()
    assets = page_assets(client.get(PAGE).get_data(as_text=True))
    assert len(assets) == 3, "the stylesheet, the chart library and the page's script"
    for url in assets:
        assert url.startswith(PAGE_STATIC), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.mimetype in {"text/css", "text/javascript", "application/javascript"}, url


def test_page_assets_follow_a_moved_page(make_bare_app):
    client = make_bare_app(ACTIVITY_PAGE_PATH="/ops/usage").test_client()
    assets = page_assets(client.get("/ops/usage").get_data(as_text=True))
    assert assets and all(url.startswith("/ops/usage/static/") for url in assets)
    assert all(client.get(url).status_code == 200 for url in assets)


def test_page_points_its_script_at_the_configured_api_prefix(make_bare_app):
    client = make_bare_app(ACTIVITY_API_PREFIX="/internal/usage-api").test_client()
    html = client.get(PAGE).get_data(as_text=True)
    [api] = re.findall(r'data-api="([^"]*)"', html)
    assert api == "/internal/usage-api"
    assert client.get(f"{api}/health").status_code == 200


# --- the page in a real browser ------------------------------------------------------------

READY = '#activity-monitor[data-state="ready"]'
CHART_DATA = """() => Object.fromEntries(Object.entries(window.activityCharts).map(([metric, chart]) => [
    metric,
    {labels: chart.data.labels, datasets: chart.data.datasets.map((d) => ({key: d.key, data: d.data}))},
]))"""


def open_page(watched: WatchedPage, server: LiveServer, query: str = "", state: str = "ready") -> Any:
    """Open the page and wait until it has settled in the given state."""
    page = watched.page
    page.goto(f"{server.url}{PAGE}{query}")
    page.wait_for_selector(f'#activity-monitor[data-state="{state}"]')
    return page


def api_data(page: Any, server: LiveServer, path: str, **params: str) -> dict[str, Any]:
    """Fetch an API answer with the page's session and return its data."""
    response = page.request.get(f"{server.url}/api/admin/activity/{path}", params=params)
    assert response.ok, response.text()
    return response.json()["data"]


def datasets_by_key(chart: dict[str, Any]) -> dict[str, list]:
    """Return a chart's datasets by their key."""
    return {dataset["key"]: dataset["data"] for dataset in chart["datasets"]}


def visible_text(page: Any) -> str:
    """Return the text a user reads on the page."""
    return page.inner_text("body")


def test_page_loads_without_console_errors(watched, live_server):
    page = open_page(watched, live_server)
    page.wait_for_selector('#am-health-badge:not([data-status="unknown"])')
    page.wait_for_selector("#am-cache-stats dd")
    assert watched.errors == []
    text = visible_text(page)
    assert "undefined" not in text and "NaN" not in text and "null" not in text
    assert page.locator("#am-cards .am-card").count() == 2
    assert page.locator("#am-charts canvas").count() == 2
    assert page.locator("#am-pages tbody tr").count() > 3
    assert page.locator("#am-roles tbody tr").count() == 4
    screenshot(page, "activity_monitor_1280x800")
    screenshot(page, "activity_monitor_1280x800_full", full_page=True)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{live_server.url}{PAGE}?range=last_90_days&metrics=unique_users,total_sessions,total_page_views,"
              "avg_session_duration_seconds&ma7=1&ma30=1&forecast=1&anomalies=1&previous=1")
    page.wait_for_selector(READY)
    page.wait_for_selector('#am-health-badge:not([data-status="unknown"])')
    screenshot(page, "activity_monitor_1920x1080")
    screenshot(page, "activity_monitor_1920x1080_full", full_page=True)
    assert watched.errors == []


def test_chart_data_equal_the_api_values(watched, live_server):
    query = (
        "?range=last_30_days&metrics=unique_users,total_page_views&ma7=1&ma30=1&forecast=1&anomalies=1&previous=1"
    )
    page = open_page(watched, live_server, query)
    start = page.get_attribute("#am-range-last_30_days", "data-start")
    end = page.get_attribute("#am-range-last_30_days", "data-end")
    trends = api_data(page, live_server, "trends", start_date=start, end_date=end)
    charts = page.evaluate(CHART_DATA)
    assert sorted(charts) == ["total_page_views", "unique_users"]
    for metric, chart in charts.items():
        points = trends["metrics"][metric]
        forecast = trends["summary"][metric]["trend_analysis"]["forecast"]
        days = len(points)
        assert days == 30
        assert chart["labels"] == [p["date"] for p in points] + [f["date"] for f in forecast]
        shown = datasets_by_key(chart)
        assert shown["value"][:days] == [p["value"] for p in points]
        assert shown["7day_avg"][:days] == [p["7day_avg"] for p in points]
        assert shown["30day_avg"][:days] == [p["30day_avg"] for p in points]
        assert shown["forecast"][days:] == [f["value"] for f in forecast]
        assert shown["forecast_lower"][days:] == [f["lower"] for f in forecast]
        assert shown["forecast_upper"][days:] == [f["upper"] for f in forecast]
        anomalies = {a["date"]: a["value"] for a in trends["summary"][metric]["anomalies"]}
        if anomalies:
            marked = {d: v for d, v in zip(chart["labels"], shown["anomalies"], strict=True) if v is not None}
            assert marked == anomalies
        previous = trends["summary"][metric]["previous_period"]
        before = api_data(page, live_server, "trends", start_date=previous["start"], end_date=previous["end"])
        assert shown["previous"][:days] == [p["value"] for p in before["metrics"][metric]]
    card = page.locator('#am-cards [data-metric="total_page_views"] .am-card-value').inner_text()
    assert card.replace(",", "") == f"{trends['summary']['total_page_views']['average']:.0f}"


def test_switching_a_preset_and_a_metric_updates_chart_and_url(watched, live_server):
    page = open_page(watched, live_server, "?range=last_30_days&metrics=unique_users")
    assert "range=last_30_days" in page.url
    page.click('label[for="am-range-last_7_days"]')
    page.wait_for_url(re.compile(r"range=last_7_days"))
    page.wait_for_selector(READY)
    labels = page.evaluate("() => window.activityCharts.unique_users.data.labels")
    assert labels[:7] == [str(live_server.yesterday - dt.timedelta(days=6 - i)) for i in range(7)]
    page.click('label[for="am-metric-total_sessions"]')
    page.wait_for_url(re.compile(r"metrics=unique_users,total_sessions"))
    shown = page.evaluate("() => Object.keys(window.activityCharts)")
    assert sorted(shown) == ["total_sessions", "unique_users"]
    assert page.locator("#am-charts canvas").count() == 2
    page.go_back()
    page.wait_for_url(re.compile(r"metrics=unique_users&"))
    assert page.evaluate("() => Object.keys(window.activityCharts)") == ["unique_users"]
    assert watched.errors == []


def test_a_bookmarked_view_is_restored_from_the_url(watched, live_server):
    start = str(live_server.yesterday - dt.timedelta(days=13))
    end = str(live_server.yesterday)
    query = f"?range=custom&start={start}&end={end}&metrics=total_api_calls&ma7=0&forecast=0"
    page = open_page(watched, live_server, query)
    assert page.is_checked("#am-range-custom")
    assert page.input_value("#am-start") == start and page.input_value("#am-end") == end
    assert page.is_checked("#am-metric-total_api_calls") and not page.is_checked("#am-metric-unique_users")
    assert not page.is_checked("#am-ma7") and not page.is_checked("#am-forecast")
    chart = page.evaluate(CHART_DATA)["total_api_calls"]
    assert len(chart["labels"]) == 14
    assert "forecast" not in datasets_by_key(chart) and "7day_avg" not in datasets_by_key(chart)


def test_csv_export_downloads_the_rows_on_screen(watched, live_server):
    page = open_page(watched, live_server, "?range=last_7_days&metrics=unique_users,total_sessions")
    with page.expect_download() as download_info:
        page.click("#am-export-csv")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    charts = page.evaluate(CHART_DATA)
    dates = [str(live_server.yesterday - dt.timedelta(days=6 - i)) for i in range(7)]
    json_link = page.get_attribute("#am-export-json", "href")
    assert json_link == page.get_attribute("#am-export-csv", "href").replace("format=csv", "format=json")
    assert rows[0] == ["date", "unique_users", "total_sessions", "peak_hour"]
    assert [row[0] for row in rows[1:]] == dates
    for column, metric in enumerate(("unique_users", "total_sessions"), start=1):
        assert [float(row[column]) for row in rows[1:]] == datasets_by_key(charts[metric])["value"][:7]


def test_viewer_gets_403(browser, live_server):
    context = browser.new_context()
    try:
        log_in(context, live_server.url, "viewer")
        page = context.new_page()
        response = page.goto(f"{live_server.url}{PAGE}")
        assert response.status == 403
        assert "needs an admin" in page.inner_text("body")
        assert page.locator("#activity-monitor").count() == 0
    finally:
        context.close()


def test_page_path_with_markup_shows_as_text_and_runs_nothing(watched, live_server):
    page = watched.page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_page(watched, live_server, "?range=last_7_days")
    cell = page.locator("#am-pages tbody code", has_text="<img src=x")
    assert cell.count() == 1
    assert cell.inner_text() == MARKUP_PAGE
    assert page.locator("#am-pages img").count() == 0
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []


def test_empty_state_says_how_to_get_data(browser, empty_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        log_in(context, empty_server.url, "admin")
        page = context.new_page()
        page.goto(f"{empty_server.url}{PAGE}")
        page.wait_for_selector('#activity-monitor[data-state="empty"]')
        assert "flask activity backfill" in page.inner_text("#am-empty")
        assert page.locator("#am-charts canvas").count() == 0
        assert not page.is_visible("#am-results") and not page.is_visible("#am-pages")
        assert page.get_attribute("#am-export-csv", "aria-disabled") == "true"
        screenshot(page, "activity_monitor_empty")
    finally:
        context.close()


def test_a_range_before_the_data_shows_the_empty_state(watched, live_server):
    page = open_page(watched, live_server, "?range=custom&start=2020-01-01&end=2020-01-31", state="empty")
    assert page.is_visible("#am-empty")
    assert page.evaluate("() => Object.keys(window.activityCharts)") == []


def test_days_before_tracking_began_are_shaded_and_left_out(watched, live_server):
    page = open_page(watched, live_server)
    began = dt.date.fromisoformat(api_data(page, live_server, "trends")["tracking_began"])
    start, end = began - dt.timedelta(days=10), began + dt.timedelta(days=19)
    page = open_page(watched, live_server, f"?range=custom&start={start}&end={end}&metrics=unique_users")
    trends = api_data(page, live_server, "trends", start_date=str(start), end_date=str(end))
    assert [p.get("no_data", False) for p in trends["metrics"]["unique_users"]] == [True] * 10 + [False] * 20
    shown = datasets_by_key(page.evaluate(CHART_DATA)["unique_users"])
    assert shown["value"][:10] == [None] * 10 and None not in shown["value"][10:30]
    note = page.inner_text("#am-gaps-note")
    assert "10 days before tracking began" in note and "take part in no figure" in note
    plugins = page.evaluate("() => window.activityCharts.unique_users.config.plugins.map((p) => p.id)")
    assert "amNoData" in plugins
    card = page.locator('#am-cards [data-metric="unique_users"] .am-card-value').inner_text()
    # The card's average is the tracked days' (a rounded figure on screen).
    average = trends["summary"]["unique_users"]["average"]
    assert float(card.replace(",", "")) == pytest.approx(average, abs=0.5)
    screenshot(page, "activity_monitor_no_data_shaded")


def test_error_state_shows_the_servers_message_and_no_data(watched, live_server):
    end = str(live_server.yesterday)
    page = open_page(watched, live_server, f"?range=custom&start=2020-01-01&end={end}", state="error")
    message = page.inner_text("#am-error-message")
    assert "the longest accepted is 730" in message
    assert page.locator("#am-charts canvas").count() == 0
    assert page.locator("#am-pages tbody tr").count() == 0
    assert not page.is_visible("#am-results")
    screenshot(page, "activity_monitor_error")


def test_a_server_failure_is_reported_not_replaced_by_data(watched, live_server):
    page = watched.page
    page.route(
        "**/api/admin/activity/trends?*",
        lambda route: route.fulfill(
            status=500,
            content_type="application/json",
            body='{"success": false, "error": "The server failed to answer; the error has been logged.",'
            ' "code": "internal_error"}',
        ),
    )
    open_page(watched, live_server, state="error")
    assert page.inner_text("#am-error-message") == "The server failed to answer; the error has been logged."
    assert page.evaluate("() => Object.keys(window.activityCharts)") == []
    page.unroute("**/api/admin/activity/trends?*")
    page.click("#am-retry")
    page.wait_for_selector(READY)


def test_clearing_the_cache_asks_first_and_sends_the_csrf_token(watched, live_server):
    page = open_page(watched, live_server)
    page.wait_for_selector("#am-cache-stats dd")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#am-cache-clear")
    assert page.inner_text("#am-cache-message") == ""
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_request("**/api/admin/activity/cache/clear") as request_info:
        page.click("#am-cache-clear")
    # The monitor's own token, not the host's (Flask-WTF's, in the layout's meta tag).
    token = page.get_attribute("#activity-monitor", "data-csrf-token")
    assert token and request_info.value.headers["x-csrf-token"] == token
    page.wait_for_selector("#am-cache-message:has-text('Cache cleared')")
    assert watched.errors == []


def test_health_badge_reflects_the_health_endpoint(watched, live_server):
    page = open_page(watched, live_server)
    page.wait_for_selector('#am-health-badge:not([data-status="unknown"])')
    report = page.request.get(f"{live_server.url}/api/admin/activity/health").json()
    assert page.get_attribute("#am-health-badge", "data-status") == report["status"]
    assert report["status"] in page.inner_text("#am-health-badge")


def test_controls_are_labelled_and_reachable_by_keyboard(watched, live_server):
    page = open_page(watched, live_server, "?range=last_30_days")
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll('#am-controls input, #am-controls button'))
            .filter((el) => el.tagName === 'INPUT' ? el.labels.length === 0 : !el.textContent.trim())
            .map((el) => el.id)"""
    )
    assert unlabelled == []
    page.focus("#am-range-last_30_days")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"range=last_90_days"))
    assert page.evaluate("() => document.activeElement.id") == "am-range-last_90_days"
    page.wait_for_selector(READY)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.tagName") in {"INPUT", "BUTTON", "A"}


def test_standalone_page_in_a_bare_app_works_in_a_browser(browser, make_bare_app, clock):
    app = make_bare_app()
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        yesterday = clock.today() - dt.timedelta(days=1)
        insert_series(conn, yesterday - dt.timedelta(days=59), range(100, 160))
    finally:
        conn.close()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        with serving(app) as url:
            page.goto(f"{url}{PAGE}?range=last_30_days")
            page.wait_for_selector(READY)
            page.wait_for_selector('#am-health-badge:not([data-status="unknown"])')
            assert page.locator("#am-charts canvas").count() >= 1
            body_style = page.evaluate(
                "() => { const s = getComputedStyle(document.body); return [s.margin, s.fontFamily]; }"
            )
            assert body_style[0] == "0px" and "system-ui" in body_style[1], "the standalone styles apply"
            screenshot(page, "activity_monitor_standalone_1280x800", full_page=True)
        assert errors == []
    finally:
        context.close()
