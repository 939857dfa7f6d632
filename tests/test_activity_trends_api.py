"""The activity API contract: endpoints, errors, auth, CSRF, rate limits, caching, exports, health."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from activity_events import add_event, local
from activity_monitor import ActivityMonitor, Identity, activity_health, get_state
from activity_monitor.activity_trends_service import METRICS
from activity_monitor.daily_summaries import bump_data_version
from activity_monitor.db import connect
from activity_monitor.security_headers import CONTENT_SECURITY_POLICY
from conftest import AuthActions, TestClock
from demo_host import auth as auth_module
from summary_rows import insert_series, insert_summary

PREFIX = "/api/admin/activity"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"
ERROR_KEYS = {"success", "error", "code", "details"}

# (method, path) of every endpoint; the public ones need no login.
PROTECTED_ENDPOINTS = [
    ("GET", f"{PREFIX}/trends"),
    ("GET", f"{PREFIX}/export"),
    ("GET", f"{PREFIX}/breakdown"),
    ("GET", f"{PREFIX}/hours"),
    ("GET", f"{PREFIX}/health"),
    ("GET", f"{PREFIX}/cache/stats"),
    ("POST", f"{PREFIX}/cache/clear"),
]
PUBLIC_ENDPOINTS = [("GET", f"{PREFIX}/openapi.json"), ("GET", "/healthz")]
RANGE_ENDPOINTS = ("trends", "export", "breakdown", "hours")


class Days:
    """The app's days (its zone is UTC) by the test's clock."""

    def __init__(self, clock: TestClock):
        self.clock = clock

    def today(self) -> dt.date:
        """Return today, as the API computes it."""
        return self.clock.today()

    def yesterday(self) -> dt.date:
        """Return the last completed day."""
        return self.today() - dt.timedelta(days=1)

    def ago(self, n: int) -> dt.date:
        """Return the day n days before today."""
        return self.today() - dt.timedelta(days=n)


@pytest.fixture
def days(clock: TestClock) -> Days:
    """The app's today, yesterday and earlier days by the test clock."""
    return Days(clock)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check the one JSON error shape (never HTML, never a stack trace) and return the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
    body = response.get_json()
    assert set(body) <= ERROR_KEYS
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"].endswith(".")
    if "details" in body:
        assert isinstance(body["details"], dict) and body["details"]
    return body


def audit_rows(conn: sqlite3.Connection, action: str) -> list[dict[str, Any]]:
    """Return the audit rows of one action, oldest first, with details decoded."""
    rows = conn.execute(
        "SELECT user_id, ip_address, details, created_at FROM activity_audit_log"
        " WHERE action = ? ORDER BY id",
        (action,),
    ).fetchall()
    return [{**dict(row), "details": json.loads(row["details"])} for row in rows]


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash passwords cheaply: logins are only set-up here (test_auth covers real hashing)."""
    monkeypatch.setattr(
        auth_module,
        "generate_password_hash",
        lambda password: generate_password_hash(password, "pbkdf2:sha256:1"),
    )


@pytest.fixture
def admin(client: FlaskClient, auth: AuthActions) -> FlaskClient:
    """The client, logged in as an admin by cookie."""
    auth.login("admin")
    return client


@pytest.fixture
def bearer(auth: AuthActions) -> dict[str, str]:
    """Authorization headers of an admin API token."""
    return {"Authorization": f"Bearer {auth.token('admin')}"}


@pytest.fixture
def limited(make_app: Callable[..., Flask]) -> Callable[..., tuple[Flask, FlaskClient, AuthActions]]:
    """Build an app with a small rate limit; return it with a client and its login helper."""

    def build(limit: str = "5 per minute", **config: Any) -> tuple[Flask, FlaskClient, AuthActions]:
        app = make_app(ACTIVITY_RATE_LIMIT=limit, **config)
        client = app.test_client()
        return app, client, AuthActions(app, client)

    return build


def redis_missing(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_REDIS=1."""
    if REQUIRE_REDIS:
        pytest.fail(f"{reason} (REQUIRE_REDIS=1)")
    pytest.skip(reason)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to this test on the test Redis; deletes the keys under it afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        redis_missing(f"no Redis answers at {REDIS_URL}: {exc}")
    prefix = f"test-api-{uuid.uuid4().hex}:"
    yield prefix
    # Flask-Limiter wraps the prefix in its own namespace (LIMITS:LIMITER/<prefix>…).
    keys = list(client.scan_iter(match=f"*{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


# --- /trends ---------------------------------------------------------------------------


def test_trends_answers_the_documented_envelope(admin: FlaskClient) -> None:
    response = admin.get(f"{PREFIX}/trends")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"success", "cached", "cache_ttl", "data"}
    assert body["success"] is True and body["cached"] is False and body["cache_ttl"] == 3600
    assert set(body["data"]) == {
        "period",
        "tracking_began",
        "compare",
        "metrics",
        "summary",
        "days",
        "generated_at",
        "data_version",
    }
    assert body["data"]["compare"] == "previous"
    assert list(body["data"]["metrics"]) == list(METRICS)
    assert "private" in [d.strip() for d in response.headers["Cache-Control"].split(",")]


def test_trends_default_to_the_last_30_completed_days(admin: FlaskClient, days: Days) -> None:
    period = admin.get(f"{PREFIX}/trends").get_json()["data"]["period"]
    assert period == {"start": days.ago(30).isoformat(), "end": days.yesterday().isoformat(), "days": 30}


def test_trends_with_only_a_start_date_run_to_yesterday(admin: FlaskClient, days: Days) -> None:
    start = days.ago(10).isoformat()
    period = admin.get(f"{PREFIX}/trends?start_date={start}").get_json()["data"]["period"]
    assert period == {"start": start, "end": days.yesterday().isoformat(), "days": 10}


def test_trends_accept_today_and_the_longest_range(admin: FlaskClient, days: Days) -> None:
    start = days.today() - dt.timedelta(days=729)
    response = admin.get(f"{PREFIX}/trends?start_date={start}&end_date={days.today()}")
    assert response.status_code == 200
    assert response.get_json()["data"]["period"]["days"] == 730


def test_trends_drop_duplicate_metrics_and_keep_the_canonical_order(admin: FlaskClient) -> None:
    response = admin.get(f"{PREFIX}/trends?metrics=total_sessions, unique_users,total_sessions")
    data = response.get_json()["data"]
    assert list(data["metrics"]) == ["unique_users", "total_sessions"]
    assert list(data["summary"]) == ["unique_users", "total_sessions"]


def test_trends_points_carry_summary_values_and_filled_gaps(admin: FlaskClient, db_conn, days: Days) -> None:
    insert_summary(db_conn, days.ago(3), values={"unique_users": 7})
    insert_summary(db_conn, days.ago(1), values={"unique_users": 9})
    url = f"{PREFIX}/trends?start_date={days.ago(4)}&end_date={days.yesterday()}&metrics=unique_users"
    points = admin.get(url).get_json()["data"]["metrics"]["unique_users"]
    # The first day lies before tracking began (the first summary): no data, not a 0.
    assert [p["value"] for p in points] == [None, 7, 0, 9]
    assert [p.get("no_data", False) for p in points] == [True, False, False, False]
    assert [p.get("filled", False) for p in points] == [False, False, True, False]
    assert "filled" not in points[1]  # only gap days carry the flag


# --- parameter errors -------------------------------------------------------------------

# (endpoints, query built from the app's days, parameter named in details, fragments the message must hold)
INVALID_QUERIES: list[tuple[tuple[str, ...], Callable[[Days], str], str, tuple[str, ...]]] = [
    (RANGE_ENDPOINTS, lambda _days: "start_date=2026-1-05", "start_date", ("YYYY-MM-DD",)),
    (RANGE_ENDPOINTS, lambda _days: "end_date=31/01/2026", "end_date", ("YYYY-MM-DD",)),
    (RANGE_ENDPOINTS, lambda _days: "start_date=2025-02-30", "start_date", ("YYYY-MM-DD",)),
    (RANGE_ENDPOINTS, lambda _days: "start_date=20260101", "start_date", ("YYYY-MM-DD",)),
    (RANGE_ENDPOINTS, lambda _days: "start_date=", "start_date", ("YYYY-MM-DD",)),
    (RANGE_ENDPOINTS, lambda _days: "end_date=1969-12-31", "end_date", ("1970-01-01 or later",)),
    (
        RANGE_ENDPOINTS,
        lambda days: f"end_date={days.today() + dt.timedelta(days=1)}",
        "end_date",
        ("future", "latest accepted day is today"),
    ),
    (
        RANGE_ENDPOINTS,
        lambda days: f"start_date={days.ago(2)}&end_date={days.ago(5)}",
        "end_date",
        ("before start_date",),
    ),
    (
        RANGE_ENDPOINTS,
        lambda days: f"start_date={days.today() - dt.timedelta(days=730)}&end_date={days.today()}",
        "start_date",
        ("731 days", "longest accepted is 730"),
    ),
    (RANGE_ENDPOINTS, lambda _days: "start_date=1970-01-01", "start_date", ("longest accepted is 730",)),
    (
        RANGE_ENDPOINTS,
        lambda _days: "start_date=2026-01-01&start_date=2026-01-02",
        "start_date",
        ("at most once",),
    ),
    (RANGE_ENDPOINTS, lambda _days: "end_date=2026-01-01&end_date=2026-01-01", "end_date", ("at most once",)),
    (RANGE_ENDPOINTS, lambda _days: "start=2026-01-01", "start", ("end_date", "start_date")),
    (("trends", "export"), lambda _days: "metrics=unique_users,bogus", "metrics", METRICS),
    (("trends", "export"), lambda _days: "metrics=unique_users,,total_sessions", "metrics", METRICS),
    (("trends", "export"), lambda _days: "metrics=Unique_Users", "metrics", METRICS),
    (
        ("trends", "export"),
        lambda _days: "metrics=unique_users&metrics=total_sessions",
        "metrics",
        ("at most once",),
    ),
    (("trends", "export"), lambda _days: "cache_bypass=yes", "cache_bypass", ("true, false, 1 or 0",)),
    (("trends", "export"), lambda _days: "cache_bypass=", "cache_bypass", ("true, false, 1 or 0",)),
    (("trends", "export"), lambda _days: "cache_bypass=1&cache_bypass=0", "cache_bypass", ("at most once",)),
    (
        ("trends",),
        lambda _days: "format=csv",
        "format",
        ("cache_bypass, compare, end_date, metrics, start_date",),
    ),
    (("trends",), lambda _days: "compare=week", "compare", ("previous or year",)),
    (("trends",), lambda _days: "compare=Year", "compare", ("previous or year",)),
    (("trends",), lambda _days: "compare=", "compare", ("previous or year",)),
    (("trends",), lambda _days: "compare=year&compare=previous", "compare", ("at most once",)),
    (("export", "breakdown", "hours"), lambda _days: "compare=year", "compare", ("start_date",)),
    (("hours",), lambda _days: "measure=sessions", "measure", ("events or users",)),
    (("hours",), lambda _days: "measure=", "measure", ("events or users",)),
    (("hours",), lambda _days: "measure=users&measure=events", "measure", ("at most once",)),
    (("hours",), lambda _days: "metrics=unique_users", "metrics", ("end_date, measure, start_date",)),
    (("export",), lambda _days: "format=xml", "format", ("csv or json",)),
    (("export",), lambda _days: "format=CSV", "format", ("csv or json",)),
    (("export",), lambda _days: "format=csv&format=json", "format", ("at most once",)),
    (
        ("export",),
        lambda _days: "limit=10",
        "limit",
        ("cache_bypass, end_date, format, metrics, start_date",),
    ),
    (("breakdown",), lambda _days: "metrics=unique_users", "metrics", ("end_date, start_date",)),
]
INVALID_CASES = [
    pytest.param(endpoint, query, parameter, fragments, id=f"{endpoint}-{parameter}-{index}")
    for index, (endpoints, query, parameter, fragments) in enumerate(INVALID_QUERIES)
    for endpoint in endpoints
]


@pytest.mark.parametrize(("endpoint", "query", "parameter", "fragments"), INVALID_CASES)
def test_a_rejected_parameter_is_a_400_naming_what_is_accepted(
    admin: FlaskClient,
    days: Days,
    endpoint: str,
    query: Callable[[Days], str],
    parameter: str,
    fragments: tuple[str, ...],
) -> None:
    body = assert_error(admin.get(f"{PREFIX}/{endpoint}?{query(days)}"), 400, "invalid_parameter")
    assert body["details"] == {"parameter": parameter}
    for fragment in fragments:
        assert fragment in body["error"]


def test_a_rejected_request_writes_no_audit_row(admin: FlaskClient, db_conn) -> None:
    admin.get(f"{PREFIX}/trends?metrics=bogus")
    admin.get(f"{PREFIX}/export?format=xml")
    assert audit_rows(db_conn, "VIEW_ACTIVITY_TRENDS") == []
    assert audit_rows(db_conn, "EXPORT_ACTIVITY_DATA") == []


# --- 404, 405, 500 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [f"{PREFIX}/nope", f"{PREFIX}/", f"{PREFIX}/trends/extra", f"{PREFIX}/cache", f"{PREFIX}"]
)
def test_an_unknown_path_under_the_prefix_is_a_json_404(admin: FlaskClient, path: str) -> None:
    body = assert_error(admin.get(path), 404, "not_found")
    assert "openapi.json" in body["error"]


def test_a_404_under_the_prefix_is_json_for_anonymous_callers_too(client: FlaskClient) -> None:
    assert_error(client.get(f"{PREFIX}/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", f"{PREFIX}/trends", {"GET", "HEAD", "OPTIONS"}),
        ("POST", f"{PREFIX}/trends", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", f"{PREFIX}/export", {"GET", "HEAD", "OPTIONS"}),
        ("POST", f"{PREFIX}/breakdown", {"GET", "HEAD", "OPTIONS"}),
        ("PATCH", f"{PREFIX}/health", {"GET", "HEAD", "OPTIONS"}),
        ("GET", f"{PREFIX}/cache/clear", {"POST", "OPTIONS"}),
        ("DELETE", f"{PREFIX}/cache/stats", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    admin: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = admin.open(path, method=method)
    body = assert_error(response, 405, "method_not_allowed")
    assert method in body["error"]
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_an_unexpected_error_is_a_json_500_without_a_stack_trace(
    admin: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("activity_monitor.activity_trends_service.ActivityTrendsService.breakdown", explode)
    response = admin.get(f"{PREFIX}/breakdown")
    body = assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert "logged" in body["error"]
    assert "secret internals" in caplog.text


def test_an_unknown_path_outside_the_prefix_keeps_the_hosts_html_404(client: FlaskClient) -> None:
    host_page = client.get("/no-such-page")
    assert (host_page.status_code, host_page.mimetype) == (404, "text/html")
    for path in (f"{PREFIX}x", "/api/admin", "/api/nope"):
        response = client.get(path)
        assert (response.status_code, response.mimetype) == (404, "text/html"), path
        assert response.get_data() == host_page.get_data(), path


def test_a_wrong_method_on_a_host_page_keeps_the_hosts_html_405(client: FlaskClient) -> None:
    response = client.delete("/devices")
    assert (response.status_code, response.mimetype) == (405, "text/html")
    assert "success" not in response.get_data(as_text=True)


def test_a_host_error_inside_a_host_view_keeps_the_hosts_500(make_app) -> None:
    app = make_app(TESTING=False)

    @app.get("/host-fails")
    def host_fails() -> str:
        raise RuntimeError("host internals")

    response = app.test_client().get("/host-fails")
    assert (response.status_code, response.mimetype) == (500, "text/html")


# --- auth matrix --------------------------------------------------------------------------

IDENTITIES = [
    "anonymous",
    "cookie:admin",
    "cookie:manager",
    "cookie:driver",
    "cookie:viewer",
    "token:admin",
    "token:viewer",
    "token:unknown",
]


def identify(identity: str, client: FlaskClient, auth: AuthActions) -> dict[str, str]:
    """Set the client up as the identity; return the headers its requests need (CSRF included)."""
    kind, _, role = identity.partition(":")
    if kind == "cookie":
        auth.login(role)
        # Only admins may open the page that hands out the monitor's CSRF token.
        return {"X-CSRF-Token": auth.csrf_token()} if role == "admin" else {}
    if kind == "token":
        token = "amt_not-a-real-token" if role == "unknown" else auth.token(role)
        return {"Authorization": f"Bearer {token}"}
    return {}


@pytest.mark.parametrize(("method", "path"), PROTECTED_ENDPOINTS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_only_admins_reach_protected_endpoints(
    client: FlaskClient, auth: AuthActions, identity: str, method: str, path: str
) -> None:
    headers = identify(identity, client, auth)
    response = client.open(path, method=method, headers=headers)
    if identity in ("anonymous", "token:unknown"):
        assert_error(response, 401, "authentication_required")
    elif identity in ("cookie:admin", "token:admin"):
        assert response.status_code == 200
    else:
        body = assert_error(response, 403, "forbidden")
        assert "admin" in body["error"]


@pytest.mark.parametrize(("method", "path"), PUBLIC_ENDPOINTS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_public_endpoints_answer_everyone(
    client: FlaskClient, auth: AuthActions, identity: str, method: str, path: str
) -> None:
    headers = identify(identity, client, auth)
    assert client.open(path, method=method, headers=headers).status_code == 200


def test_a_forbidden_request_is_audited_once_per_user_endpoint_and_minute(
    client: FlaskClient, auth: AuthActions, db_conn
) -> None:
    auth.login("viewer")
    for _ in range(3):
        assert client.get(f"{PREFIX}/trends").status_code == 403
    rows = audit_rows(db_conn, "UNAUTHORIZED_ACCESS_ATTEMPT")
    assert [r["details"] for r in rows] == [{"endpoint": f"{PREFIX}/trends", "method": "GET"}]
    assert rows[0]["user_id"] == auth.user_ids["viewer"]

    client.get(f"{PREFIX}/export")
    client.get(f"{PREFIX}/export")
    assert [r["details"]["endpoint"] for r in audit_rows(db_conn, "UNAUTHORIZED_ACCESS_ATTEMPT")] == [
        f"{PREFIX}/trends",
        f"{PREFIX}/export",
    ]


def test_another_user_hitting_the_same_endpoint_gets_a_row_of_their_own(
    client: FlaskClient, auth: AuthActions, db_conn
) -> None:
    auth.login("viewer")
    client.get(f"{PREFIX}/trends")
    auth.login("driver")
    client.get(f"{PREFIX}/trends")
    rows = audit_rows(db_conn, "UNAUTHORIZED_ACCESS_ATTEMPT")
    assert [r["user_id"] for r in rows] == [auth.user_ids["viewer"], auth.user_ids["driver"]]


def test_a_forbidden_request_a_minute_later_is_audited_again(
    client: FlaskClient, auth: AuthActions, db_conn, clock: TestClock
) -> None:
    auth.login("manager")
    client.get(f"{PREFIX}/health")
    clock.advance(seconds=59)
    client.get(f"{PREFIX}/health")
    assert len(audit_rows(db_conn, "UNAUTHORIZED_ACCESS_ATTEMPT")) == 1
    clock.advance(seconds=2)
    client.get(f"{PREFIX}/health")
    assert [r["created_at"] for r in audit_rows(db_conn, "UNAUTHORIZED_ACCESS_ATTEMPT")] == [
        "2026-05-20 12:00:00.000000",
        "2026-05-20 12:01:01.000000",
    ]


# --- CSRF ------------------------------------------------------------------------------------


def test_cache_clear_by_cookie_without_a_csrf_token_is_refused(admin: FlaskClient, db_conn) -> None:
    body = assert_error(admin.post(f"{PREFIX}/cache/clear"), 403, "csrf_failed")
    assert "X-CSRF-Token" in body["error"]
    assert audit_rows(db_conn, "CLEAR_ACTIVITY_CACHE") == []


def test_cache_clear_by_cookie_with_a_wrong_csrf_token_is_refused(admin: FlaskClient, auth, db_conn) -> None:
    wrong = auth.csrf_token()[::-1]
    assert_error(admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": wrong}), 403, "csrf_failed")
    assert audit_rows(db_conn, "CLEAR_ACTIVITY_CACHE") == []


def test_cache_clear_by_cookie_with_the_page_csrf_token_succeeds(admin: FlaskClient, auth) -> None:
    response = admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": auth.csrf_token()})
    assert response.status_code == 200
    assert response.get_json()["success"] is True


def test_cache_clear_by_bearer_token_needs_no_csrf_token(client: FlaskClient, bearer) -> None:
    assert client.post(f"{PREFIX}/cache/clear", headers=bearer).status_code == 200


def test_a_csrf_token_of_another_session_is_refused(app: Flask, admin: FlaskClient, auth) -> None:
    other = AuthActions(app, app.test_client())
    other.login("admin", username="other-admin")
    stolen = other.csrf_token()
    assert_error(admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": stolen}), 403, "csrf_failed")


def test_a_csrf_token_with_characters_outside_ascii_is_a_403_not_a_500(admin: FlaskClient, auth) -> None:
    auth.csrf_token()  # the page gives the session its secret, so the sent token is compared
    response = admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": "caf\u00e9"})
    assert_error(response, 403, "csrf_failed")


def test_the_hosts_own_csrf_token_is_not_the_monitors(admin: FlaskClient, auth) -> None:
    host_token = auth.host_csrf_token()
    assert_error(
        admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": host_token}), 403, "csrf_failed"
    )


def test_a_csrf_token_of_an_earlier_login_is_refused_after_logging_in_again(admin: FlaskClient, auth) -> None:
    earlier = auth.csrf_token()
    auth.login("admin")
    assert_error(admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": earlier}), 403, "csrf_failed")
    response = admin.post(f"{PREFIX}/cache/clear", headers={"X-CSRF-Token": auth.csrf_token()})
    assert response.status_code == 200


def test_a_cookie_post_without_a_csrf_token_is_refused_even_for_a_forged_bearer(admin: FlaskClient) -> None:
    # An Authorization header that is no monitor token leaves the cookie to speak, CSRF check and all.
    headers = {"Authorization": "Bearer not-a-monitor-token"}
    assert_error(admin.post(f"{PREFIX}/cache/clear", headers=headers), 403, "csrf_failed")


# --- rate limits -------------------------------------------------------------------------------


def test_the_limit_allows_exactly_the_configured_number_of_requests(limited) -> None:
    _, client, auth = limited("5 per minute")
    auth.login("admin")
    statuses = [client.get(f"{PREFIX}/trends").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2


def test_the_default_limit_is_100_per_minute(client: FlaskClient, bearer) -> None:
    statuses = [client.get(f"{PREFIX}/trends", headers=bearer).status_code for _ in range(101)]
    assert statuses[:100] == [200] * 100
    assert statuses[100] == 429


def test_rate_limited_responses_carry_the_error_shape_and_headers(limited) -> None:
    _, client, auth = limited("5 per minute")
    auth.login("admin")
    # Flask-Limiter counts in real seconds (not by the app's clock): the window began between these.
    began = time.time()
    for _ in range(5):
        assert client.get(f"{PREFIX}/export").status_code == 200
    response = client.get(f"{PREFIX}/export")
    answered = time.time()
    body = assert_error(response, 429, "rate_limited")
    retry_after = body["details"]["retry_after"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= 61
    assert "5 per 1 minute" in body["error"]
    assert abs(int(response.headers["Retry-After"]) - retry_after) <= 1
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(began) + 60 <= int(response.headers["X-RateLimit-Reset"]) <= answered + 61


def test_each_endpoint_has_its_own_count(limited) -> None:
    _, client, auth = limited("3 per minute")
    auth.login("admin")
    for endpoint in RANGE_ENDPOINTS:
        statuses = [client.get(f"{PREFIX}/{endpoint}").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429], endpoint


def test_each_user_has_their_own_count(limited) -> None:
    app, client, auth = limited("3 per minute")
    auth.login("admin")
    assert [client.get(f"{PREFIX}/trends").status_code for _ in range(4)] == [200, 200, 200, 429]
    other = app.test_client()
    AuthActions(app, other).login("admin", username="second-admin")
    assert [other.get(f"{PREFIX}/trends").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_users_cookie_and_token_share_one_count(limited) -> None:
    app, client, auth = limited("4 per minute")
    auth.login("admin")
    headers = {"Authorization": f"Bearer {auth.token('admin')}"}
    token_client = app.test_client()
    assert [client.get(f"{PREFIX}/trends").status_code for _ in range(2)] == [200, 200]
    statuses = [token_client.get(f"{PREFIX}/trends", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_unlimited_endpoints_do_not_consume_the_limit(limited, auth) -> None:
    _, client, auth = limited("2 per minute")
    auth.login("admin")
    for _ in range(5):
        assert client.get(f"{PREFIX}/cache/stats").status_code == 200
    assert [client.get(f"{PREFIX}/trends").status_code for _ in range(3)] == [200, 200, 429]


def test_redis_storage_counts_exactly_across_workers(limited, redis_prefix: str) -> None:
    config = {"ACTIVITY_RATELIMIT_STORAGE_URL": REDIS_URL, "ACTIVITY_REDIS_PREFIX": redis_prefix}
    first, first_client, auth = limited("5 per minute", **config)
    second, second_client, _ = limited("5 per minute", **config)  # another worker on the same database
    headers = {"Authorization": f"Bearer {auth.token('admin')}"}
    statuses = [first_client.get(f"{PREFIX}/trends", headers=headers).status_code for _ in range(3)]
    statuses += [second_client.get(f"{PREFIX}/trends", headers=headers).status_code for _ in range(3)]
    statuses.append(first_client.get(f"{PREFIX}/trends", headers=headers).status_code)
    assert statuses == [200] * 5 + [429] * 2
    assert second_client.get(f"{PREFIX}/export", headers=headers).status_code == 200
    health = first_client.get(f"{PREFIX}/health", headers=headers).get_json()
    assert health["checks"]["rate_limiter"]["storage"] == "redis"
    assert health["checks"]["rate_limiter"]["reachable"] is True


def test_an_unreachable_redis_falls_back_to_counting_in_memory(limited) -> None:
    _, client, auth = limited("3 per minute", ACTIVITY_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0")
    headers = {"Authorization": f"Bearer {auth.token('admin')}"}
    statuses = [client.get(f"{PREFIX}/trends", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    health = client.get(f"{PREFIX}/health", headers=headers).get_json()
    assert health["status"] == "degraded"
    assert health["checks"]["rate_limiter"]["using_memory_fallback"] is True


# --- caching and ETags ------------------------------------------------------------------------------


def test_the_first_request_is_a_miss_and_the_second_a_hit(admin: FlaskClient, days: Days) -> None:
    url = f"{PREFIX}/trends?start_date={days.ago(10)}&end_date={days.yesterday()}"
    first, second = admin.get(url), admin.get(url)
    assert first.get_json()["cached"] is False
    assert second.get_json()["cached"] is True
    assert second.get_json()["data"] == first.get_json()["data"]


@pytest.mark.parametrize(("value", "bypassed"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_cache_bypass_recomputes_only_when_true(admin: FlaskClient, value: str, bypassed: bool) -> None:
    admin.get(f"{PREFIX}/trends")
    response = admin.get(f"{PREFIX}/trends?cache_bypass={value}")
    assert response.status_code == 200
    assert response.get_json()["cached"] is (not bypassed)


def test_every_200_carries_an_etag_and_a_matching_if_none_match_is_a_304(admin: FlaskClient) -> None:
    first = admin.get(f"{PREFIX}/trends")
    etag = first.headers["ETag"]
    assert etag
    again = admin.get(f"{PREFIX}/trends", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    assert admin.get(f"{PREFIX}/trends?cache_bypass=true").headers["ETag"] == etag


def test_a_stale_if_none_match_gets_the_full_answer(admin: FlaskClient) -> None:
    response = admin.get(f"{PREFIX}/trends", headers={"If-None-Match": '"something-else"'})
    assert response.status_code == 200
    assert response.get_json()["success"] is True


def test_a_new_data_version_gives_a_new_etag(admin: FlaskClient, db_conn) -> None:
    old = admin.get(f"{PREFIX}/trends").headers["ETag"]
    bump_data_version(db_conn)
    response = admin.get(f"{PREFIX}/trends", headers={"If-None-Match": old})
    assert response.status_code == 200
    assert response.headers["ETag"] != old
    assert response.get_json()["cached"] is False


def test_different_metrics_have_different_etags(admin: FlaskClient) -> None:
    one = admin.get(f"{PREFIX}/trends?metrics=unique_users").headers["ETag"]
    two = admin.get(f"{PREFIX}/trends?metrics=total_sessions").headers["ETag"]
    assert one != two


def test_cache_clear_makes_the_next_trends_request_a_miss(client: FlaskClient, bearer, db_conn) -> None:
    client.get(f"{PREFIX}/trends", headers=bearer)
    assert client.get(f"{PREFIX}/trends", headers=bearer).get_json()["cached"] is True
    response = client.post(f"{PREFIX}/cache/clear", headers=bearer)
    assert response.get_json() == {"success": True, "entries_removed": 1, "data_version": 1}
    assert client.get(f"{PREFIX}/trends", headers=bearer).get_json()["cached"] is False


def test_cache_stats_count_hits_and_misses(client: FlaskClient, bearer) -> None:
    client.get(f"{PREFIX}/trends", headers=bearer)
    client.get(f"{PREFIX}/trends", headers=bearer)
    body = client.get(f"{PREFIX}/cache/stats", headers=bearer).get_json()
    assert body["success"] is True
    stats = body["stats"]
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 1, 1)
    assert stats["hit_rate"] == 0.5


# --- /export ------------------------------------------------------------------------------------------


@pytest.fixture
def gappy_summaries(db_conn, days: Days) -> tuple[dt.date, dt.date]:
    """Insert varying rows with gaps inside the range, each with a peak hour but the first; return
    a range starting five days before any data (before tracking began)."""
    for offset in (20, 19, 18, 14, 13, 9, 8, 7, 3):
        day = days.ago(offset)
        insert_summary(db_conn, day, values={m: offset * (i + 3) + i for i, m in enumerate(METRICS)})
        if offset != 20:
            db_conn.execute(
                "UPDATE activity_summary_daily SET peak_hour = ? WHERE date = ?", (offset, day.isoformat())
            )
    return days.ago(25), days.yesterday()


def parse_csv(response: Any) -> list[dict[str, str]]:
    """Read a CSV answer back with the csv module."""
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_export_equals_the_trends_values_for_every_metric_and_day(
    admin: FlaskClient, gappy_summaries, days: Days
) -> None:
    start, end = gappy_summaries
    query = f"start_date={start}&end_date={end}"
    trends = admin.get(f"{PREFIX}/trends?{query}").get_json()["data"]["metrics"]
    response = admin.get(f"{PREFIX}/export?{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == "date," + ",".join(METRICS) + ",peak_hour"
    rows = parse_csv(response)
    assert len(rows) == (end - start).days + 1
    for metric in METRICS:
        assert [r["date"] for r in rows] == [p["date"] for p in trends[metric]]
        values = [int(r[metric]) if r[metric] != "" else None for r in rows]
        assert values == [p["value"] for p in trends[metric]], metric
    filled = [p["date"] for p in trends["unique_users"] if p.get("filled")]
    assert days.ago(16).isoformat() in filled
    assert all(int(r["unique_users"]) == 0 for r in rows if r["date"] in filled)


def test_csv_export_leaves_the_cells_of_days_before_tracking_began_empty(
    admin: FlaskClient, gappy_summaries, days: Days
) -> None:
    start, end = gappy_summaries
    rows = parse_csv(admin.get(f"{PREFIX}/export?start_date={start}&end_date={end}"))
    before = [r for r in rows if r["date"] < days.ago(20).isoformat()]
    assert len(before) == 5
    assert all(set(r.values()) == {r["date"], ""} for r in before)
    assert "no_data" not in rows[0]


def test_csv_export_ends_each_row_with_the_days_peak_hour(
    admin: FlaskClient, gappy_summaries, days: Days
) -> None:
    start, end = gappy_summaries
    query = f"start_date={start}&end_date={end}"
    trend_days = admin.get(f"{PREFIX}/trends?{query}").get_json()["data"]["days"]
    response = admin.get(f"{PREFIX}/export?{query}&metrics=unique_users")
    assert response.get_data(as_text=True).splitlines()[0] == "date,unique_users,peak_hour"
    peaks = {r["date"]: r["peak_hour"] for r in parse_csv(response)}
    assert peaks[days.ago(14).isoformat()] == "14"
    # A summary without a peak hour (no events), a gap day and a day before tracking: empty cells.
    assert (
        peaks[days.ago(20).isoformat()] == peaks[days.ago(16).isoformat()] == peaks[start.isoformat()] == ""
    )
    assert peaks == {d["date"]: "" if d["peak_hour"] is None else str(d["peak_hour"]) for d in trend_days}


def test_csv_export_names_the_file_after_the_range(admin: FlaskClient, days: Days) -> None:
    start, end = days.ago(7), days.yesterday()
    response = admin.get(f"{PREFIX}/export?start_date={start}&end_date={end}&format=csv")
    assert response.headers["Content-Disposition"] == f'attachment; filename="activity_{start}_{end}.csv"'


def test_csv_export_is_streamed(admin: FlaskClient, days: Days) -> None:
    response = admin.get(
        f"{PREFIX}/export?start_date={days.today() - dt.timedelta(days=729)}&end_date={days.today()}"
    )
    assert "Content-Length" not in response.headers
    assert len(parse_csv(response)) == 730


def test_csv_export_has_only_the_requested_metrics_in_canonical_order(admin: FlaskClient) -> None:
    response = admin.get(f"{PREFIX}/export?metrics=peak_concurrent_users,unique_users,unique_users")
    header = response.get_data(as_text=True).splitlines()[0]
    assert header == "date,unique_users,peak_concurrent_users,peak_hour"


def test_json_export_has_the_documented_shape(admin: FlaskClient, gappy_summaries, days: Days) -> None:
    start, end = gappy_summaries
    query = f"start_date={start}&end_date={end}&metrics=total_sessions,unique_users"
    trends = admin.get(f"{PREFIX}/trends?{query}").get_json()["data"]["metrics"]
    response = admin.get(f"{PREFIX}/export?{query}&format=json")
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == f'attachment; filename="activity_{start}_{end}.json"'
    body = response.get_json()
    assert set(body) == {"export_date", "user", "period", "metrics", "data"}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", body["export_date"])
    assert body["user"] == "admin"
    assert body["period"] == {"start": start.isoformat(), "end": end.isoformat(), "days": 25}
    assert body["metrics"] == ["unique_users", "total_sessions"]
    columns = {"date", "unique_users", "total_sessions", "peak_hour"}
    tracked = days.ago(20).isoformat()
    assert all(set(row) == columns for row in body["data"] if row["date"] >= tracked)
    for metric in body["metrics"]:
        assert [(r["date"], r[metric]) for r in body["data"]] == [
            (p["date"], p["value"]) for p in trends[metric]
        ]
    assert body["data"][0] == {
        "date": start.isoformat(),
        "unique_users": None,
        "total_sessions": None,
        "peak_hour": None,
        "no_data": True,
    }
    by_date = {row["date"]: row for row in body["data"]}
    assert by_date[days.ago(9).isoformat()]["peak_hour"] == 9
    assert by_date[days.ago(10).isoformat()] == {
        **dict.fromkeys(columns, 0),
        "date": days.ago(10).isoformat(),
        "peak_hour": None,
    }


# --- /breakdown -----------------------------------------------------------------------------------------


def test_breakdown_adds_up_top_pages_and_users_by_role(admin: FlaskClient, db_conn, days: Days) -> None:
    insert_summary(
        db_conn,
        days.ago(2),
        top_pages=[{"page": "/devices", "count": 5}, {"page": "/routes", "count": 2}],
        roles={"admin": 1, "manager": 2, "driver": 4, "viewer": 0},
    )
    insert_summary(
        db_conn,
        days.ago(1),
        top_pages=[{"page": "/routes", "count": 4}],
        roles={"admin": 3, "manager": 0, "driver": 2, "viewer": 1},
    )
    response = admin.get(f"{PREFIX}/breakdown?start_date={days.ago(4)}&end_date={days.yesterday()}")
    body = response.get_json()
    assert body["success"] is True
    data = body["data"]
    assert data["summarized_days"] == 2
    assert data["top_pages"] == [{"page": "/routes", "count": 6}, {"page": "/devices", "count": 5}]
    # Tracking began with the first summary: the two days before it are not averaged in.
    assert (data["tracking_began"], data["tracked_days"]) == (days.ago(2).isoformat(), 2)
    assert data["users_by_role"]["admin"] == {"average_daily": 2.0, "max_daily": 3}
    assert data["users_by_role"]["driver"] == {"average_daily": 3.0, "max_daily": 4}


# --- /hours ---------------------------------------------------------------------------------------------


@pytest.fixture
def berlin(make_app: Callable[..., Flask]) -> FlaskClient:
    """A client, logged in as an admin, of an app whose days are Berlin's."""
    app = make_app(ACTIVITY_TIMEZONE="Europe/Berlin")
    client = app.test_client()
    AuthActions(app, client).login("admin")
    return client


def empty_cells() -> list[list[int]]:
    """Seven weekdays of 24 hours of 0."""
    return [[0] * 24 for _ in range(7)]


def test_hours_count_events_per_local_weekday_and_hour(berlin: FlaskClient, db_conn) -> None:
    # The week of Monday 2026-05-11 (the test's own requests are tracked today, after it).
    add_event(db_conn, local("2026-05-12 14:10", "Europe/Berlin"), 1)
    add_event(db_conn, local("2026-05-12 14:50", "Europe/Berlin"), 1)
    add_event(db_conn, local("2026-05-12 14:20", "Europe/Berlin"), 2, action="api_call")
    add_event(db_conn, local("2026-05-17 00:30", "Europe/Berlin"), 1)  # 22:30 UTC on Saturday
    add_event(db_conn, local("2026-05-10 23:59", "Europe/Berlin"), 1)  # the day before the range
    response = berlin.get(f"{PREFIX}/hours?start_date=2026-05-11&end_date=2026-05-17")
    assert response.status_code == 200
    body = response.get_json()
    cells = empty_cells()
    cells[1][14], cells[6][0] = 3, 1
    by_hour = [0] * 24
    by_hour[0], by_hour[14] = 1, 3
    assert body == {
        "success": True,
        "data": {
            "period": {"start": "2026-05-11", "end": "2026-05-17", "days": 7},
            "time_zone": "Europe/Berlin",
            "measure": "events",
            "weekdays": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
            "cells": cells,
            "by_hour": by_hour,
            "by_weekday": [0, 3, 0, 0, 0, 0, 1],
            "peak": {"weekday": "Tuesday", "hour": 14, "value": 3},
        },
    }


def test_hours_and_breakdown_are_cached_until_the_summaries_change(berlin: FlaskClient, db_conn) -> None:
    add_event(db_conn, local("2026-05-12 14:10", "Europe/Berlin"), 1, page="/devices")
    hours_url = f"{PREFIX}/hours?start_date=2026-05-11&end_date=2026-05-17"
    breakdown_url = f"{PREFIX}/breakdown?start_date=2026-05-11&end_date=2026-05-17"
    assert berlin.get(hours_url).get_json()["data"]["by_weekday"][1] == 1
    assert berlin.get(breakdown_url).get_json()["data"]["top_pages"] == [{"page": "/devices", "count": 1}]
    add_event(db_conn, local("2026-05-12 15:10", "Europe/Berlin"), 1, page="/devices")
    # The same answers until the data version moves (a refresh or summary run changing a day).
    assert berlin.get(hours_url).get_json()["data"]["by_weekday"][1] == 1
    assert berlin.get(breakdown_url).get_json()["data"]["top_pages"] == [{"page": "/devices", "count": 1}]
    bump_data_version(db_conn)
    assert berlin.get(hours_url).get_json()["data"]["by_weekday"][1] == 2
    assert berlin.get(breakdown_url).get_json()["data"]["top_pages"] == [{"page": "/devices", "count": 2}]
    assert berlin.get(f"{hours_url}&measure=users").get_json()["data"]["by_weekday"][1] == 1


def test_hours_count_each_user_once_per_cell_with_measure_users(berlin: FlaskClient, db_conn) -> None:
    add_event(db_conn, local("2026-05-19 14:10", "Europe/Berlin"), 1)
    add_event(db_conn, local("2026-05-19 14:50", "Europe/Berlin"), 1)
    add_event(db_conn, local("2026-05-19 14:20", "Europe/Berlin"), 2)
    add_event(db_conn, local("2026-05-12 14:20", "Europe/Berlin"), 2)
    data = berlin.get(f"{PREFIX}/hours?start_date=2026-05-11&end_date=2026-05-19&measure=users").get_json()[
        "data"
    ]
    assert data["measure"] == "users"
    assert data["cells"][1][14] == 2
    assert data["by_weekday"][1] == 2
    assert data["peak"] == {"weekday": "Tuesday", "hour": 14, "value": 2}


def test_hours_count_both_passes_of_the_repeated_autumn_hour(berlin: FlaskClient, db_conn) -> None:
    # 2025-10-26 in Berlin: 02:00–03:00 runs twice, from 00:00 UTC (summer time) and 01:00 UTC.
    add_event(db_conn, "2025-10-26 00:30:00", 1)
    add_event(db_conn, "2025-10-26 01:30:00", 1)
    data = berlin.get(f"{PREFIX}/hours?start_date=2025-10-26&end_date=2025-10-26").get_json()["data"]
    assert data["cells"][6][2] == 2
    assert data["peak"] == {"weekday": "Sunday", "hour": 2, "value": 2}


def test_hours_default_to_the_last_30_completed_days_with_no_peak_when_empty(
    admin: FlaskClient, days: Days
) -> None:
    data = admin.get(f"{PREFIX}/hours").get_json()["data"]
    assert data["period"] == {
        "start": days.ago(30).isoformat(),
        "end": days.yesterday().isoformat(),
        "days": 30,
    }
    assert data["time_zone"] == "UTC" and data["measure"] == "events"
    assert data["cells"] == empty_cells()
    assert data["peak"] is None


def test_hours_before_the_kept_raw_events_are_a_400_naming_the_first_accepted_start(
    admin: FlaskClient, db_conn, days: Days
) -> None:
    kept_from = days.ago(90)
    db_conn.execute(
        "UPDATE activity_raw_retention SET kept_from_date = ? WHERE id = 1", (kept_from.isoformat(),)
    )
    response = admin.get(f"{PREFIX}/hours?start_date={days.ago(91)}&end_date={days.yesterday()}")
    body = assert_error(response, 400, "invalid_parameter")
    assert body["details"] == {"parameter": "start_date", "earliest_start_date": kept_from.isoformat()}
    assert f"Raw events before {kept_from} were purged" in body["error"]
    assert "ACTIVITY_RETENTION_DAYS is 90" in body["error"]
    assert f"start_date of {kept_from} or later" in body["error"]
    assert admin.get(f"{PREFIX}/hours?start_date={kept_from}&end_date={days.yesterday()}").status_code == 200


def test_viewing_hours_is_audited_with_range_and_measure(admin: FlaskClient, db_conn, days: Days) -> None:
    admin.get(f"{PREFIX}/hours?start_date={days.ago(7)}&end_date={days.yesterday()}&measure=users")
    admin.get(f"{PREFIX}/hours?measure=bogus")
    (row,) = audit_rows(db_conn, "VIEW_ACTIVITY_HOURS")
    assert row["details"] == {
        "start": days.ago(7).isoformat(),
        "end": days.yesterday().isoformat(),
        "measure": "users",
    }


# --- compare= on /trends ----------------------------------------------------------------------------------


def test_trends_compare_with_the_previous_period_shifted_by_whole_weeks_by_default(
    admin: FlaskClient, db_conn, days: Days
) -> None:
    insert_series(db_conn, days.ago(40), [5] * 40)
    url = f"{PREFIX}/trends?start_date={days.ago(10)}&end_date={days.yesterday()}&metrics=unique_users"
    data = admin.get(url).get_json()["data"]
    assert data["compare"] == "previous"
    summary = data["summary"]["unique_users"]
    assert "previous_year" not in summary
    previous = summary["previous_period"]
    # Ten days round up to two weeks: the same weekdays 14 days earlier.
    assert (previous["start"], previous["end"], previous["shift_days"]) == (
        days.ago(24).isoformat(),
        days.ago(15).isoformat(),
        14,
    )
    assert previous["change_vs_previous_percent"] == 0.0
    assert admin.get(url + "&compare=previous").get_json()["data"] == data


def test_trends_compare_year_compares_the_same_weekdays_364_days_earlier(
    admin: FlaskClient, db_conn, days: Days
) -> None:
    insert_series(db_conn, days.ago(371), [4] * 7)
    insert_series(db_conn, days.ago(7), [6] * 7)
    url = f"{PREFIX}/trends?start_date={days.ago(7)}&end_date={days.yesterday()}&metrics=unique_users"
    data = admin.get(url + "&compare=year").get_json()["data"]
    assert data["compare"] == "year"
    summary = data["summary"]["unique_users"]
    assert "previous_period" not in summary
    year = summary["previous_year"]
    assert (year["start"], year["end"], year["shift_days"]) == (
        days.ago(371).isoformat(),
        days.ago(365).isoformat(),
        364,
    )
    assert year["average"] == 4.0
    assert year["change_vs_previous_year_percent"] == 50.0


def test_each_comparison_has_its_own_etag(admin: FlaskClient) -> None:
    default = admin.get(f"{PREFIX}/trends").headers["ETag"]
    assert admin.get(f"{PREFIX}/trends?compare=previous").headers["ETag"] == default
    year = admin.get(f"{PREFIX}/trends?compare=year", headers={"If-None-Match": default})
    assert year.status_code == 200
    assert year.headers["ETag"] != default


# --- audit rows ---------------------------------------------------------------------------------------


def test_viewing_trends_is_audited_with_range_metrics_and_hit_or_miss(
    admin: FlaskClient, auth, db_conn, days: Days
) -> None:
    url = f"{PREFIX}/trends?start_date={days.ago(5)}&end_date={days.yesterday()}&metrics=unique_users"
    admin.get(url)
    admin.get(url)
    rows = audit_rows(db_conn, "VIEW_ACTIVITY_TRENDS")
    assert [r["details"]["cache"] for r in rows] == ["miss", "hit"]
    details = rows[0]["details"]
    assert details["start"] == days.ago(5).isoformat() and details["end"] == days.yesterday().isoformat()
    assert details["metrics"] == ["unique_users"]
    assert details["compare"] == "previous"
    assert rows[0]["user_id"] == auth.user_ids["admin"]
    assert rows[0]["ip_address"] == "127.0.0.1"


def test_exporting_is_audited_with_format_range_and_rows(admin: FlaskClient, db_conn, days: Days) -> None:
    admin.get(f"{PREFIX}/export?start_date={days.ago(10)}&end_date={days.yesterday()}&format=json")
    (row,) = audit_rows(db_conn, "EXPORT_ACTIVITY_DATA")
    assert row["details"]["format"] == "json"
    assert row["details"]["start"] == days.ago(10).isoformat()
    assert row["details"]["end"] == days.yesterday().isoformat()
    assert row["details"]["rows"] == 10
    assert row["details"]["metrics"] == list(METRICS)


def test_clearing_the_cache_is_audited(client: FlaskClient, bearer, auth, db_conn) -> None:
    client.get(f"{PREFIX}/trends", headers=bearer)
    client.post(f"{PREFIX}/cache/clear", headers=bearer)
    (row,) = audit_rows(db_conn, "CLEAR_ACTIVITY_CACHE")
    assert row["details"] == {"entries_removed": 1, "data_version": 1}
    assert row["user_id"] == auth.user_ids["admin"]


# --- /health and /healthz -------------------------------------------------------------------------------


def test_health_reports_every_check(admin: FlaskClient) -> None:
    response = admin.get(f"{PREFIX}/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] in ("healthy", "degraded")
    assert set(body["checks"]) == {
        "database",
        "freshness",
        "event_spool",
        "cache",
        "rate_limiter",
        "scheduler",
        "performance",
    }
    assert body["checks"]["database"]["status"] in ("ok", "degraded")
    assert body["checks"]["cache"]["backend"] == "memory"
    assert body["checks"]["rate_limiter"] == {
        "status": "ok",
        "storage": "memory",
        "reachable": True,
        "using_memory_fallback": False,
    }


def test_health_is_healthy_when_summaries_are_current(admin: FlaskClient, db_conn, days: Days) -> None:
    insert_series(db_conn, days.ago(3), [4, 5, 6])
    body = admin.get(f"{PREFIX}/health").get_json()
    assert body["checks"]["database"]["latest_summarized_day"] == days.yesterday().isoformat()
    assert body["checks"]["database"]["days_behind"] == 0
    assert body["status"] == "healthy"


def test_health_is_a_503_when_the_database_check_fails(admin: FlaskClient, db_conn) -> None:
    db_conn.execute("DROP TABLE activity_summary_daily")
    response = admin.get(f"{PREFIX}/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "unhealthy"
    assert "did not answer" in body["checks"]["database"]["error"]


def test_health_report_is_unhealthy_on_a_closed_connection(app: Flask) -> None:
    broken = connect(app.config["ACTIVITY_DATABASE"])
    broken.close()
    report = activity_health.health_report(app, broken)
    assert report["status"] == "unhealthy"
    assert report["checks"]["database"]["status"] == "unhealthy"


def test_healthz_is_ok_without_login(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok\n")


def test_healthz_is_a_503_when_the_database_cannot_be_opened(
    app: Flask, client: FlaskClient, unreachable_storage
) -> None:
    get_state(app).storage = unreachable_storage
    response = client.get("/healthz")
    assert (response.status_code, response.get_data(as_text=True)) == (503, "unavailable\n")


# --- performance -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["trends", "export", "breakdown", "health", "cache/stats", "trends?metrics=bogus"]
)
def test_api_responses_carry_x_response_time(client: FlaskClient, bearer, path: str) -> None:
    response = client.get(f"{PREFIX}/{path}", headers=bearer)
    assert re.fullmatch(r"\d+\.\d{2}ms", response.headers["X-Response-Time"])


def test_health_reports_timings_per_endpoint_with_trends_hits_and_misses_apart(
    client: FlaskClient, bearer
) -> None:
    client.get(f"{PREFIX}/trends", headers=bearer)
    client.get(f"{PREFIX}/trends", headers=bearer)
    client.get(f"{PREFIX}/trends", headers=bearer)
    client.get(f"{PREFIX}/export", headers=bearer)
    client.get(f"{PREFIX}/breakdown?start_date=bad", headers=bearer)
    performance = client.get(f"{PREFIX}/health", headers=bearer).get_json()["checks"]["performance"]
    assert performance["trends:miss"]["count"] == 1
    assert performance["trends:hit"]["count"] == 2
    assert performance["export"]["count"] == 1
    assert performance["breakdown"]["count"] == 1
    for stats in performance.values():
        assert set(stats) == {"count", "p50_ms", "p95_ms", "p99_ms", "error_rate"}
        assert 0 <= stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
        assert stats["error_rate"] == 0.0


def test_server_errors_count_in_the_error_rate(
    client: FlaskClient, bearer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get(f"{PREFIX}/breakdown", headers=bearer)

    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("activity_monitor.activity_trends_service.ActivityTrendsService.breakdown", explode)
    client.get(f"{PREFIX}/breakdown?start_date=2026-05-01&end_date=2026-05-02", headers=bearer)  # not cached
    performance = client.get(f"{PREFIX}/health", headers=bearer).get_json()["checks"]["performance"]
    assert performance["breakdown"]["count"] == 2
    assert performance["breakdown"]["error_rate"] == 0.5


# --- configurable paths ------------------------------------------------------------------------------

MOVED_API = "/ops/usage-api"
MOVED_PAGE = "/ops/usage"


@pytest.fixture
def moved(make_app: Callable[..., Flask]) -> tuple[Flask, FlaskClient, AuthActions]:
    """An app with the API and the page at other paths; its client is logged in as an admin."""
    app = make_app(ACTIVITY_API_PREFIX=MOVED_API, ACTIVITY_PAGE_PATH=MOVED_PAGE)
    client = app.test_client()
    auth = AuthActions(app, client)
    auth.login("admin")
    return app, client, auth


def page_attribute(client: FlaskClient, path: str, name: str) -> str:
    """Return a data-* attribute of the monitor's page at a path."""
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    match = re.search(rf'{name}="([^"]*)"', response.get_data(as_text=True))
    assert match, name
    return match.group(1)


def test_a_moved_prefix_moves_every_endpoint(moved) -> None:
    _, client, _ = moved
    headers = {"X-CSRF-Token": page_attribute(client, MOVED_PAGE, "data-csrf-token")}
    for method, path in [*PROTECTED_ENDPOINTS, ("GET", f"{PREFIX}/openapi.json")]:
        new_path = MOVED_API + path[len(PREFIX) :]
        assert client.open(new_path, method=method, headers=headers).status_code == 200, new_path


def test_a_moved_prefix_leaves_nothing_at_the_old_paths(moved) -> None:
    _, client, _ = moved
    host_404 = client.get("/no-such-page").get_data()
    for method, path in [*PROTECTED_ENDPOINTS, ("GET", f"{PREFIX}/openapi.json"), ("GET", PREFIX)]:
        response = client.open(path, method=method)
        assert (response.status_code, response.mimetype) == (404, "text/html"), path
        assert response.get_data() == host_404


def test_a_moved_prefix_answers_unknown_paths_and_methods_in_json(moved) -> None:
    _, client, _ = moved
    body = assert_error(client.get(f"{MOVED_API}/nope"), 404, "not_found")
    assert f"{MOVED_API}/openapi.json" in body["error"]
    assert_error(client.get(MOVED_API), 404, "not_found")
    response = client.delete(f"{MOVED_API}/trends")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_the_openapi_document_names_the_moved_paths(moved) -> None:
    _, client, _ = moved
    paths = client.get(f"{MOVED_API}/openapi.json").get_json()["paths"]
    api_paths = sorted(path for path in paths if path != "/healthz")
    assert api_paths == sorted(
        MOVED_API + path[len(PREFIX) :] for _, path in PUBLIC_ENDPOINTS[:1] + PROTECTED_ENDPOINTS
    )


def test_the_moved_page_points_its_script_at_the_moved_api(moved) -> None:
    _, client, _ = moved
    assert page_attribute(client, MOVED_PAGE, "data-api") == MOVED_API
    assert client.get("/admin/activity").status_code == 404


def test_the_moved_page_serves_its_own_static_files(moved) -> None:
    _, client, _ = moved
    html = client.get(MOVED_PAGE).get_data(as_text=True)
    script = re.search(r'src="([^"]*activity_monitor\.js)"', html).group(1)
    assert script.startswith(f"{MOVED_PAGE}/static/")
    assert client.get(script).status_code == 200


def test_the_moved_pages_csrf_token_lets_a_cookie_clear_the_cache(moved) -> None:
    _, client, _ = moved
    token = page_attribute(client, MOVED_PAGE, "data-csrf-token")
    assert_error(client.post(f"{MOVED_API}/cache/clear"), 403, "csrf_failed")
    assert client.post(f"{MOVED_API}/cache/clear", headers={"X-CSRF-Token": token}).status_code == 200


def test_an_anonymous_visitor_of_the_moved_page_is_sent_to_the_hosts_login(make_app) -> None:
    app = make_app(ACTIVITY_PAGE_PATH=MOVED_PAGE)
    response = app.test_client().get(MOVED_PAGE)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert (location.path, parse_qs(location.query)) == ("/login", {"next": [MOVED_PAGE]})


# --- security headers belong to the monitor's own responses ------------------------------------------


@pytest.fixture
def bare_host(tmp_path, clock: TestClock) -> Flask:
    """A bare Flask app with one page of its own and the monitor; ``X-User: <id>:<role>`` logs in."""
    app = Flask("bare_host", instance_path=str(tmp_path / "bare-instance"))
    app.config.update(SECRET_KEY="bare-secret", TESTING=True)

    @app.get("/")
    def home() -> str:
        return "<!doctype html><title>Host</title><p>The host's own page.</p>"

    def identity() -> Identity | None:
        user, _, role = request.headers.get("X-User", "").partition(":")
        return Identity(user, role) if user else None

    ActivityMonitor(
        app, identity_loader=identity, ACTIVITY_DATABASE=str(tmp_path / "bare.sqlite3"), ACTIVITY_CLOCK=clock
    )
    return app


ADMIN_USER = {"X-User": "7:admin"}
MONITOR_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


def test_the_monitors_page_carries_its_strict_csp(bare_host: Flask) -> None:
    response = bare_host.test_client().get("/admin/activity", headers=ADMIN_USER)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_monitors_json_answers_carry_nosniff_and_framing_policy(bare_host: Flask) -> None:
    client = bare_host.test_client()
    for path in (f"{PREFIX}/cache/stats", f"{PREFIX}/nope", f"{PREFIX}/trends"):
        response = client.get(path, headers=ADMIN_USER if path.endswith("stats") else {})
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path


def test_the_hosts_pages_do_not_get_the_monitors_headers(bare_host: Flask) -> None:
    client = bare_host.test_client()
    for path in ("/", "/no-such-page"):
        response = client.get(path, headers=ADMIN_USER)
        assert response.mimetype == "text/html"
        assert not set(MONITOR_HEADERS) & set(response.headers.keys()), (path, dict(response.headers))


def test_the_hosts_own_csp_is_left_as_the_host_set_it(bare_host: Flask) -> None:
    @bare_host.after_request
    def host_policy(response):
        response.headers["Content-Security-Policy"] = "default-src 'self' https://cdn.example"
        return response

    response = bare_host.test_client().get("/", headers=ADMIN_USER)
    assert response.headers["Content-Security-Policy"] == "default-src 'self' https://cdn.example"
