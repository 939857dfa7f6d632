"""The OpenAPI document: its shape, and that every JSON answer of the API validates against it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from activity_events import add_event
from activity_monitor import api_tokens
from activity_monitor.activity_trends_api import BREAKDOWN_PARAMS, EXPORT_PARAMS, HOURS_PARAMS, TRENDS_PARAMS
from activity_monitor.activity_trends_service import COMPARISONS, METRICS
from activity_monitor.db import connect
from activity_monitor.hours import MEASURES
from activity_monitor.openapi_spec import build_openapi
from activity_monitor.trends_query import BOOLEANS
from app import create_app
from conftest import TestClock
from demo_host import db as host_db
from demo_host.auth import create_user
from summary_rows import insert_summary

PREFIX = "/api/admin/activity"
DOCUMENT_URI = "urn:activity-monitor:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ACCEPTED_PARAMETERS = {
    f"{PREFIX}/trends": TRENDS_PARAMS,
    f"{PREFIX}/export": EXPORT_PARAMS,
    f"{PREFIX}/breakdown": BREAKDOWN_PARAMS,
    f"{PREFIX}/hours": HOURS_PARAMS,
}
PROTECTED_OPERATIONS = [
    ("get", f"{PREFIX}/trends"),
    ("get", f"{PREFIX}/export"),
    ("get", f"{PREFIX}/breakdown"),
    ("get", f"{PREFIX}/hours"),
    ("get", f"{PREFIX}/health"),
    ("get", f"{PREFIX}/cache/stats"),
    ("post", f"{PREFIX}/cache/clear"),
]
# The demo host's login cookie, which the session scheme names.
SESSION_COOKIE = "fleet_session"
DOCUMENT = build_openapi(PREFIX, "/healthz", SESSION_COOKIE)
# The catch-all that answers unknown paths under the prefix with the JSON 404/405 is no endpoint.
CATCH_ALL = "activity_trends.no_such_endpoint"


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (path, method, operation) for every documented operation."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Yield every object nested in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def pointer(*parts: str) -> str:
    """Return a JSON pointer fragment of the document for the given keys."""
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def response_validator(path: str, method: str, status: int, mimetype: str):
    """Return a validator for the schema the document gives one response, refs resolved in the document."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which is not documented"
    content = responses[str(status)].get("content", {})
    assert mimetype in content, f"{method.upper()} {path} {status} is not documented as {mimetype}"
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
    )
    schema_pointer = pointer("paths", path, method, "responses", str(status), "content", mimetype, "schema")
    return Draft202012Validator(
        {"$ref": DOCUMENT_URI + schema_pointer},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check_response(path: str, method: str, response: Any) -> None:
    """Assert the response is documented and, when JSON, valid against its documented schema."""
    validator = response_validator(path, method, response.status_code, response.mimetype)
    if response.mimetype == "application/json":
        validator.validate(response.get_json())


# --- the document's shape -------------------------------------------------------------------


def test_the_endpoint_serves_the_built_document(client: FlaskClient) -> None:
    response = client.get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT


def test_the_document_is_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    assert DOCUMENT["info"]["title"] and DOCUMENT["info"]["version"]
    assert set(DOCUMENT) <= {"openapi", "info", "servers", "paths", "components", "security", "tags"}
    for path, _method, operation in operations():
        assert path.startswith("/")
        assert operation["summary"]
        assert operation["responses"], path
        for status, response in operation["responses"].items():
            assert status.isdigit() and 100 <= int(status) <= 599
            assert response["description"]


def api_routes(app: Flask, prefix: str, healthz: str | None) -> set[tuple[str, str]]:
    """Return (path, method) of every route the app serves under the prefix, and the liveness probe."""
    return {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != CATCH_ALL and (rule.rule.startswith(prefix + "/") or rule.rule == healthz)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_of_the_api_is_documented_with_its_methods(app: Flask) -> None:
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == api_routes(app, PREFIX, "/healthz")


def test_a_moved_api_and_probe_are_documented_at_their_paths(make_app) -> None:
    app = make_app(ACTIVITY_API_PREFIX="/ops/usage-api", ACTIVITY_HEALTHZ_PATH="/ops/alive")
    served = app.test_client().get("/ops/usage-api/openapi.json").get_json()
    assert served == build_openapi("/ops/usage-api", "/ops/alive", SESSION_COOKIE)
    documented = {
        (path, method) for path, item in served["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert documented == api_routes(app, "/ops/usage-api", "/ops/alive")
    assert not any(path.startswith(PREFIX) for path in served["paths"])


def test_without_a_liveness_probe_none_is_documented(make_app) -> None:
    app = make_app(ACTIVITY_HEALTHZ_PATH=None)
    served = app.test_client().get(f"{PREFIX}/openapi.json").get_json()
    assert all(path.startswith(PREFIX + "/") for path in served["paths"])


def test_the_session_scheme_names_the_hosts_session_cookie(make_app) -> None:
    app = make_app(SESSION_COOKIE_NAME="ops_login")
    served = app.test_client().get(f"{PREFIX}/openapi.json").get_json()
    assert served["components"]["securitySchemes"]["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "ops_login",
    }


def test_every_parameter_the_api_accepts_is_documented() -> None:
    for path, accepted in ACCEPTED_PARAMETERS.items():
        parameters = DOCUMENT["paths"][path]["get"]["parameters"]
        assert {p["name"] for p in parameters if p["in"] == "query"} == accepted, path
        for parameter in parameters:
            assert parameter["description"] and parameter["schema"]


def test_documented_enums_are_the_accepted_values() -> None:
    parameters = {p["name"]: p for p in DOCUMENT["paths"][f"{PREFIX}/export"]["get"]["parameters"]}
    assert set(parameters["cache_bypass"]["schema"]["enum"]) == set(BOOLEANS)
    assert set(parameters["format"]["schema"]["enum"]) == {"csv", "json"}
    for metric in METRICS:
        assert metric in parameters["metrics"]["description"]
    trends = {p["name"]: p for p in DOCUMENT["paths"][f"{PREFIX}/trends"]["get"]["parameters"]}
    assert trends["compare"]["schema"]["enum"] == list(COMPARISONS)
    hours = {p["name"]: p for p in DOCUMENT["paths"][f"{PREFIX}/hours"]["get"]["parameters"]}
    assert hours["measure"]["schema"]["enum"] == list(MEASURES)


def test_error_responses_reference_the_error_schema() -> None:
    for path, method, operation in operations():
        for status, response in operation["responses"].items():
            if not 400 <= int(status) < 500:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_protected_operations_document_401_and_403_and_limited_ones_400_and_429() -> None:
    for method, path in PROTECTED_OPERATIONS:
        responses = DOCUMENT["paths"][path][method]["responses"]
        assert {"200", "401", "403"} <= set(responses), path
    for path in ACCEPTED_PARAMETERS:
        responses = DOCUMENT["paths"][path]["get"]["responses"]
        assert {"400", "429"} <= set(responses), path
        assert {"Retry-After", "X-RateLimit-Limit"} <= set(responses["429"]["headers"])


def test_security_names_defined_schemes_and_public_endpoints_need_none() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    for path, method, operation in operations():
        for requirement in operation["security"]:
            assert set(requirement) <= set(schemes), (path, method)
    assert DOCUMENT["paths"][f"{PREFIX}/openapi.json"]["get"]["security"] == []
    assert DOCUMENT["paths"]["/healthz"]["get"]["security"] == []
    assert schemes["session"]["name"] == SESSION_COOKIE


def test_every_ref_resolves() -> None:
    resolver = (
        Registry()
        .with_resource(DOCUMENT_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
        .resolver(DOCUMENT_URI)
    )
    refs = [node["$ref"] for node in walk(DOCUMENT) if "$ref" in node]
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        resolver.lookup(ref)


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for _path, _method, operation in operations():
        for parameter in operation.get("parameters", []):
            Draft202012Validator.check_schema(parameter["schema"])
        for response in operation["responses"].values():
            for media in response.get("content", {}).values():
                if "schema" in media:
                    Draft202012Validator.check_schema(media["schema"])


def test_the_error_schema_requires_the_one_error_shape() -> None:
    error = DOCUMENT["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"success", "error", "code"}
    assert set(error["properties"]) == {"success", "error", "code", "details"}


# --- answers against the document --------------------------------------------------------------------


# The fuzz app shares one app for the whole module, so it stands on a clock of its own that
# never moves; the fuzzed dates are drawn around its today.
FUZZ_CLOCK = TestClock()
FUZZ_TODAY = FUZZ_CLOCK.today()


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """An app with 200 days of varying summaries (with gaps) and a limit it never reaches."""
    database = str(tmp_path_factory.mktemp("openapi") / "activity.sqlite3")
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": database,
            "SECRET_KEY": "test-secret",
            "ACTIVITY_BACKGROUND_TASKS": False,
            "ACTIVITY_RATE_LIMIT": "1000000 per minute",
            "ACTIVITY_CLOCK": FUZZ_CLOCK,
        }
    )
    rng = random.Random(4)
    conn = connect(database)
    try:
        today = FUZZ_TODAY
        for offset in range(200, -1, -1):
            if rng.random() < 0.1:
                continue
            day = today - dt.timedelta(days=offset)
            insert_summary(
                conn,
                day,
                values={m: rng.randint(0, 50 * (i + 1)) for i, m in enumerate(METRICS)},
                top_pages=[{"page": f"/page/{rng.randint(1, 12)}", "count": rng.randint(1, 40)}],
                roles={"admin": rng.randint(0, 3), "manager": rng.randint(0, 5), "driver": 4, "viewer": 1},
                partial=offset == 0,
            )
        # Raw events of the last two weeks, for /hours and the exact breakdown.
        for _ in range(300):
            moment = FUZZ_CLOCK.now - dt.timedelta(seconds=rng.randint(0, 14 * 86400))
            add_event(conn, moment, rng.randint(1, 6), page=f"/page/{rng.randint(1, 12)}", role="driver")
    finally:
        conn.close()
    return app


@pytest.fixture(scope="module")
def admin_headers(fuzz_app: Flask) -> dict[str, str]:
    """Authorization headers of an admin of the fuzz app."""
    conn = connect(fuzz_app.config["ACTIVITY_DATABASE"])
    try:
        user_id = create_user(conn, "fuzz-admin", "correct horse battery", "admin")
        _, token = api_tokens.create_token(conn, user_id, "fuzz")
    finally:
        conn.close()
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("get", f"{PREFIX}/trends", ""),
        ("get", f"{PREFIX}/trends", "metrics=unique_users&cache_bypass=true"),
        ("get", f"{PREFIX}/trends", "compare=year"),
        ("get", f"{PREFIX}/trends", f"start_date={FUZZ_TODAY - dt.timedelta(days=400)}"),
        ("get", f"{PREFIX}/export", "format=json"),
        ("get", f"{PREFIX}/export", "format=csv"),
        ("get", f"{PREFIX}/breakdown", ""),
        ("get", f"{PREFIX}/breakdown", f"start_date={FUZZ_TODAY - dt.timedelta(days=7)}"),
        ("get", f"{PREFIX}/hours", ""),
        ("get", f"{PREFIX}/hours", "measure=users"),
        ("get", f"{PREFIX}/health", ""),
        ("get", f"{PREFIX}/cache/stats", ""),
        ("post", f"{PREFIX}/cache/clear", ""),
    ],
)
def test_admin_answers_validate_against_the_document(
    fuzz_app: Flask, admin_headers: dict[str, str], method: str, path: str, query: str
) -> None:
    response = fuzz_app.test_client().open(f"{path}?{query}", method=method, headers=admin_headers)
    assert response.status_code == 200
    check_response(path, method, response)


@pytest.mark.parametrize(("method", "path"), PROTECTED_OPERATIONS)
def test_auth_errors_validate_against_the_document(fuzz_app: Flask, method: str, path: str) -> None:
    host = host_db.connect(fuzz_app.config["DATABASE"])
    conn = connect(fuzz_app.config["ACTIVITY_DATABASE"])
    try:
        viewer = host.execute("SELECT id FROM users WHERE username = 'fuzz-viewer'").fetchone()
        viewer_id = viewer["id"] if viewer else create_user(host, "fuzz-viewer", "x", "viewer")
        _, token = api_tokens.create_token(conn, viewer_id, "fuzz")
    finally:
        conn.close()
        host.close()
    client = fuzz_app.test_client()
    anonymous = client.open(path, method=method)
    assert anonymous.status_code == 401
    check_response(path, method, anonymous)
    forbidden = client.open(path, method=method, headers={"Authorization": f"Bearer {token}"})
    assert forbidden.status_code == 403
    check_response(path, method, forbidden)


def test_rate_limited_answers_validate_against_the_document(make_app) -> None:
    app = make_app(ACTIVITY_RATE_LIMIT="1 per minute")
    client = app.test_client()
    client.get(f"{PREFIX}/breakdown")
    response = client.get(f"{PREFIX}/breakdown")
    assert response.status_code == 429
    check_response(f"{PREFIX}/breakdown", "get", response)


def test_hours_before_the_kept_raw_events_answer_a_documented_400(make_app) -> None:
    app = make_app()
    host = host_db.connect(app.config["DATABASE"])
    user_id = create_user(host, "admin", "x", "admin")
    host.close()
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        _, token = api_tokens.create_token(conn, user_id, "t")
        conn.execute("UPDATE activity_raw_retention SET kept_from_date = '2026-05-01' WHERE id = 1")
    finally:
        conn.close()
    response = app.test_client().get(
        f"{PREFIX}/hours?start_date=2026-04-30", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    check_response(f"{PREFIX}/hours", "get", response)
    assert response.get_json()["details"]["earliest_start_date"] == "2026-05-01"


def test_unhealthy_answers_validate_against_the_document(make_app, tmp_path) -> None:
    app = make_app()
    host = host_db.connect(app.config["DATABASE"])
    user_id = create_user(host, "admin", "x", "admin")
    host.close()
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        _, token = api_tokens.create_token(conn, user_id, "t")
        conn.execute("DROP TABLE activity_summary_daily")
    finally:
        conn.close()
    response = app.test_client().get(f"{PREFIX}/health", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    check_response(f"{PREFIX}/health", "get", response)


# --- fuzzing the range endpoints ----------------------------------------------------------------------

ENDPOINTS = {
    "trends": TRENDS_PARAMS,
    "export": EXPORT_PARAMS,
    "breakdown": BREAKDOWN_PARAMS,
    "hours": HOURS_PARAMS,
}
JUNK_TEXT = st.text(max_size=12)


def mostly(valid: st.SearchStrategy[str], invalid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Draw from ``valid`` four times in five, so most queries get past validation."""
    return st.integers(0, 4).flatmap(lambda k: invalid if k == 0 else valid)


def days_from_today(first: int, last: int) -> st.SearchStrategy[str]:
    """Days between today+first and today+last, as YYYY-MM-DD."""
    return st.integers(first, last).map(lambda n: (FUZZ_TODAY + dt.timedelta(days=n)).isoformat())


INVALID_DAYS = st.one_of(
    days_from_today(1, 400),
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(dt.date.isoformat),
    st.sampled_from(["2026-02-30", "0000-00-00", "1969-12-31", "1970-01-01", "2026-1-1", " 2026-01-01"]),
    st.sampled_from(["٢٠٢٦-٠١-٠١", "２０２６-01-01", "2026-01-01\n", "2026-01-01T00:00", ""]),
    JUNK_TEXT,
)
METRIC_NAMES = st.one_of(st.sampled_from(METRICS), st.sampled_from(METRICS).map(lambda m: f" {m} "))
VALUES = {
    "start_date": mostly(days_from_today(-800, 0), INVALID_DAYS),
    "end_date": mostly(days_from_today(-300, 0), INVALID_DAYS),
    "metrics": mostly(
        st.lists(METRIC_NAMES, min_size=1, max_size=8).map(",".join),
        st.lists(st.one_of(METRIC_NAMES, st.sampled_from(METRICS).map(str.upper), JUNK_TEXT), max_size=8).map(
            ",".join
        ),
    ),
    "cache_bypass": mostly(
        st.sampled_from(["true", "false", "1", "0", "TRUE", "False"]),
        st.one_of(st.sampled_from(["yes", "", "2", "on"]), JUNK_TEXT),
    ),
    "format": mostly(
        st.sampled_from(["csv", "json"]), st.one_of(st.sampled_from(["JSON", "xml", "tsv"]), JUNK_TEXT)
    ),
    "compare": mostly(
        st.sampled_from(COMPARISONS), st.one_of(st.sampled_from(["Year", "week", ""]), JUNK_TEXT)
    ),
    "measure": mostly(
        st.sampled_from(MEASURES), st.one_of(st.sampled_from(["Users", "sessions", ""]), JUNK_TEXT)
    ),
}
# How often a parameter is left out, given once, or repeated.
REPEATS = st.sampled_from([0, 0, 0, 1, 1, 1, 1, 1, 1, 2])


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, str]:
    """Draw an endpoint and a query string for it: known and unknown parameters, repeats, raw junk."""
    endpoint = draw(st.sampled_from(sorted(ENDPOINTS)))
    pairs: list[tuple[str, str]] = []
    for name in sorted(ENDPOINTS[endpoint]):
        pairs.extend((name, draw(VALUES[name])) for _ in range(draw(REPEATS)))
    if draw(st.integers(0, 9)) == 0:
        foreign = st.one_of(st.sampled_from(sorted(VALUES)), st.text(min_size=1, max_size=8))
        pairs.append((draw(foreign), draw(JUNK_TEXT)))
    pairs = draw(st.permutations(pairs))
    query = urlencode(pairs)
    if draw(st.integers(0, 19)) == 0:
        query += draw(st.sampled_from(["&%ff", "&%", "&start_date=%E2%82", "&=&=", "&&", "&metrics"]))
    return endpoint, query


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=queries())
def test_fuzzed_queries_never_fail_and_every_answer_matches_the_document(
    fuzz_app: Flask, admin_headers: dict[str, str], drawn: tuple[str, str]
) -> None:
    endpoint, query = drawn
    path = f"{PREFIX}/{endpoint}"
    response = fuzz_app.test_client().get(path, query_string=query, headers=admin_headers)
    assert response.status_code < 500, (query, response.get_data(as_text=True)[:500])
    assert response.status_code in (200, 400), (query, response.status_code)
    event(f"{endpoint} {response.status_code}")
    check_response(path, "get", response)
    if response.status_code == 400:
        assert "parameter" in response.get_json()["details"]
    elif response.mimetype == "text/csv":
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert rows[0][0] == "date" and rows[0][-1] == "peak_hour" and set(rows[0][1:-1]) <= set(METRICS)
    elif endpoint != "export":
        assert 1 <= response.get_json()["data"]["period"]["days"] <= 730
