"""The admin activity API under ACTIVITY_API_PREFIX: validation, auth, responses.

No SQL here: the service answers, this module checks what was asked and who
asks, and shapes the answer (JSON, CSV, ETag, audit rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, url_for
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from activity_monitor import (
    activity_health,
    audit,
    hours,
    performance_monitor,
    rate_limiting,
    security_headers,
)
from activity_monitor.access import admin_required, client_ip
from activity_monitor.activity_trends_service import ActivityTrendsService, InvalidQuery
from activity_monitor.daily_summaries import bump_data_version
from activity_monitor.db import discard_db, get_db
from activity_monitor.errors import json_error
from activity_monitor.extension import get_state, now, today
from activity_monitor.identity import current_identity
from activity_monitor.openapi_spec import build_openapi
from activity_monitor.storage import Storage
from activity_monitor.trends_cache import get_cache
from activity_monitor.trends_query import (
    QueryError,
    parse_compare,
    parse_day,
    parse_flag,
    parse_measure,
    parse_metric_list,
    resolve_range,
)

# Registered at ACTIVITY_API_PREFIX; its hooks and error handlers touch only its own requests.
bp = Blueprint("activity_trends", __name__)
bp.before_request(performance_monitor.start_timer)
bp.after_request(performance_monitor.record_response)
bp.after_request(security_headers.add_security_headers)
bp.register_error_handler(RateLimitExceeded, rate_limiting.too_many_requests)
role_required = admin_required(json=True)

RANGE_PARAMS = ("start_date", "end_date")
TRENDS_PARAMS = frozenset({"start_date", "end_date", "metrics", "cache_bypass", "compare"})
EXPORT_PARAMS = frozenset({"start_date", "end_date", "metrics", "cache_bypass", "format"})
BREAKDOWN_PARAMS = frozenset({"start_date", "end_date"})
HOURS_PARAMS = frozenset({"start_date", "end_date", "measure"})


# --- parameters ----------------------------------------------------------------


def reject_unknown_parameters(accepted: frozenset[str]) -> None:
    """Refuse parameters the endpoint does not know, so a typo never goes unnoticed."""
    unknown = sorted(set(request.args) - accepted)
    if unknown:
        raise QueryError(
            f"Unknown parameter {unknown[0]!r}; this endpoint accepts {', '.join(sorted(accepted))}.",
            unknown[0],
        )


def single_arg(name: str) -> str | None:
    """Return a parameter given at most once."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise QueryError(f"Give {name} at most once.", name)
    return values[0] if values else None


def parse_range() -> tuple[dt.date, dt.date]:
    """Return (start, end); by default the last 30 completed local days."""
    return resolve_range(
        parse_day("start_date", single_arg("start_date")),
        parse_day("end_date", single_arg("end_date")),
        today(),
        current_app.config["ACTIVITY_MAX_RANGE_DAYS"],
    )


def parse_metrics() -> tuple[str, ...]:
    """Return the requested metrics (all when absent), duplicates dropped."""
    return parse_metric_list(single_arg("metrics"))


def parse_boolean(name: str) -> bool:
    """Parse true/false/1/0 (false when absent)."""
    return parse_flag(name, single_arg(name))


def parse_format() -> str:
    """Return the export format: csv (default) or json."""
    raw = single_arg("format") or "csv"
    if raw not in ("csv", "json"):
        raise QueryError("format must be csv or json.", "format")
    return raw


# --- helpers ---------------------------------------------------------------------


def trends_service() -> ActivityTrendsService:
    """Build the service for this request (its connection is the request's)."""
    return ActivityTrendsService(
        get_db(),
        current_app.config["ACTIVITY_TIMEZONE"],
        cache=get_cache(),
        cache_ttl=current_app.config["ACTIVITY_CACHE_TTL"],
    )


def record_audit(action: str, details: dict[str, Any]) -> None:
    """Write an audit row for the current user (through the request's connection).

    A write the database refuses is spooled by audit.record and replayed later; anything else
    that fails is logged with the whole row. Neither fails the admin's request.
    """
    identity = current_identity()
    user_id = identity.stored_user_id if identity is not None else None
    try:
        audit.record(get_db(), action, user_id=user_id, ip_address=client_ip(), details=details)
    except Exception:
        discard_db()
        current_app.logger.exception(
            "Could not write the audit row %r", {"action": action, "user_id": user_id, "details": details}
        )


def json_data(body: bytes) -> Response:
    """Answer a serialized ``data`` object in the API's success shape."""
    return Response(b'{"success":true,"data":' + body + b"}", mimetype="application/json")


def etag_matches(etag: str) -> bool:
    """Tell whether If-None-Match names this ETag (or *)."""
    return request.if_none_match.contains(etag) or request.if_none_match.star_tag


# --- endpoints ---------------------------------------------------------------------


@bp.get("/trends")
@role_required
def trends() -> Response:
    """Daily trends over a range with summaries, forecast and comparison."""
    reject_unknown_parameters(TRENDS_PARAMS)
    start, end = parse_range()
    metrics = parse_metrics()
    bypass = parse_boolean("cache_bypass")
    compare = parse_compare(single_arg("compare"))
    payload = trends_service().trends_payload(start, end, metrics, bypass_cache=bypass, compare=compare)
    g.performance_label = "trends:hit" if payload.cached else "trends:miss"
    not_modified = etag_matches(payload.etag)
    record_audit(
        "VIEW_ACTIVITY_TRENDS",
        {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "metrics": list(metrics),
            "compare": compare,
            "cache": "hit" if payload.cached else "miss",
            "not_modified": not_modified,
        },
    )
    ttl = current_app.config["ACTIVITY_CACHE_TTL"]
    if not_modified:
        response = Response(status=304)
    else:
        head = b'{"success":true,"cached":%s,"cache_ttl":%d,"data":' % (
            b"true" if payload.cached else b"false",
            ttl,
        )
        response = Response(head + payload.body + b"}", mimetype="application/json")
    response.set_etag(payload.etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/export")
@role_required
def export() -> Response:
    """Daily values over a range as a CSV or JSON download, streamed."""
    reject_unknown_parameters(EXPORT_PARAMS)
    start, end = parse_range()
    metrics = parse_metrics()
    parse_boolean("cache_bypass")  # accepted for symmetry with /trends; exports always read fresh
    fmt = parse_format()
    rows = (end - start).days + 1
    record_audit(
        "EXPORT_ACTIVITY_DATA",
        {
            "format": fmt,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "metrics": list(metrics),
            "rows": rows,
        },
    )
    daily = stream_daily_values(
        get_state().storage, current_app.config["ACTIVITY_TIMEZONE"], start, end, metrics
    )
    filename = f"activity_{start}_{end}.{fmt}"
    if fmt == "csv":
        body, mimetype = csv_lines(daily, metrics), "text/csv"
    else:
        head = {
            "export_date": now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "user": export_user_name(),
            "period": {"start": start.isoformat(), "end": end.isoformat(), "days": rows},
            "metrics": list(metrics),
        }
        body, mimetype = json_document(head, daily), "application/json"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def export_user_name() -> str:
    """Return how the export names who made it: the host's username, else the user id."""
    identity = current_identity()
    if identity is None:
        return ""
    return identity.username if identity.username is not None else str(identity.user_id)


def stream_daily_values(
    storage: Storage, tz_name: str, start: dt.date, end: dt.date, metrics: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    """Yield the export rows from a connection of their own: the body is sent after the request's
    connection has been let go at teardown."""
    conn = storage.connect()
    try:
        yield from ActivityTrendsService(conn, tz_name).iter_daily_values(start, end, metrics)
    finally:
        conn.close()


def csv_lines(daily: Iterator[dict[str, Any]], metrics: tuple[str, ...]) -> Iterator[str]:
    """Yield the CSV header (date, the metrics, peak_hour) and one line per day.

    A missing value (every metric of a day before tracking began, the peak hour of a day without
    events) is an empty cell, as the csv module writes None: never a 0 that reads as a count.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["date", *metrics, "peak_hour"])
    for row in daily:
        writer.writerow([row["date"], *(row[m] for m in metrics), row.get("peak_hour")])
        if buffer.tell() > 8192:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_document(head: dict[str, Any], daily: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Yield a JSON object whose ``data`` list is written one day at a time."""
    yield json.dumps(head, separators=(",", ":"))[:-1] + ',"data":['
    for index, row in enumerate(daily):
        yield ("," if index else "") + json.dumps(row, separators=(",", ":"))
    yield "]}"


@bp.get("/breakdown")
@role_required
def breakdown() -> Response:
    """Top pages, the peak hour and users by role over a range."""
    reject_unknown_parameters(BREAKDOWN_PARAMS)
    start, end = parse_range()
    record_audit("VIEW_ACTIVITY_BREAKDOWN", {"start": start.isoformat(), "end": end.isoformat()})
    service = trends_service()
    body = service.cached_answer("breakdown", (start, end), lambda: service.breakdown(start, end))
    return json_data(body)


@bp.get("/hours", endpoint="hours")
@role_required
def hours_by_weekday() -> Response:
    """Events or users per local hour and weekday over a range, from the raw events."""
    reject_unknown_parameters(HOURS_PARAMS)
    start, end = parse_range()
    measure = parse_measure(single_arg("measure"))
    service = trends_service()

    def answer() -> dict[str, Any]:
        report = hours.hours_report(service.conn, service.tz_name, start, end, measure)
        period = {"start": start.isoformat(), "end": end.isoformat(), "days": (end - start).days + 1}
        return {"period": period, **report}

    body = service.cached_answer("hours", (start, end, measure), answer)
    record_audit(
        "VIEW_ACTIVITY_HOURS", {"start": start.isoformat(), "end": end.isoformat(), "measure": measure}
    )
    return json_data(body)


@bp.get("/health")
@role_required
def health() -> Response:
    """Status of the database, cache, rate limiter, scheduler and response times."""
    report = activity_health.health_report(current_app._get_current_object(), get_db())  # type: ignore[attr-defined]
    status = 503 if report["status"] == "unhealthy" else 200
    response = jsonify(report)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/cache/stats")
@role_required
def cache_stats() -> Response:
    """Statistics of the trends cache."""
    return jsonify({"success": True, "stats": get_cache().stats()})


@bp.post("/cache/clear")
@role_required
def cache_clear() -> Response:
    """Clear the trends cache for every worker: drop entries and bump the data version."""
    removed = get_cache().clear()
    version = bump_data_version(get_db())
    record_audit("CLEAR_ACTIVITY_CACHE", {"entries_removed": removed, "data_version": version})
    return jsonify({"success": True, "entries_removed": removed, "data_version": version})


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    api_path = url_for("activity_trends.openapi").rsplit("/", 1)[0]
    healthz = url_for("activity_liveness.healthz") if current_app.config["ACTIVITY_HEALTHZ_PATH"] else None
    return jsonify(build_openapi(api_path, healthz, current_app.config["SESSION_COOKIE_NAME"]))


# --- errors --------------------------------------------------------------------------


@bp.errorhandler(QueryError)
def bad_request(error: QueryError) -> Response:
    """Answer a rejected parameter with a 400 naming it."""
    details = {"parameter": error.parameter} if error.parameter is not None else None
    return json_error(400, "invalid_parameter", str(error), details)


@bp.errorhandler(hours.RawEventsPurged)
def raw_events_purged(error: hours.RawEventsPurged) -> Response:
    """Answer a range of /hours that reaches before the kept raw events, naming the first day accepted."""
    message = (
        f"Raw events before {error.kept_from} were purged (ACTIVITY_RETENTION_DAYS is "
        f"{current_app.config['ACTIVITY_RETENTION_DAYS']}), so hours are known only from then on; "
        f"give a start_date of {error.kept_from} or later."
    )
    return json_error(
        400,
        "invalid_parameter",
        message,
        {"parameter": "start_date", "earliest_start_date": str(error.kept_from)},
    )


@bp.errorhandler(InvalidQuery)
def invalid_query(error: InvalidQuery) -> Response:
    """Answer a range or metric list the service refused."""
    return json_error(400, "invalid_parameter", str(error))


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 500: "internal_error", 503: "unavailable"}
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# strict_slashes=False: the bare prefix gets the JSON 404 too, not an HTML redirect to prefix + "/".
@bp.route("/", defaults={"unknown": ""}, methods=ALL_METHODS, strict_slashes=False)
@bp.route("/<path:unknown>", methods=ALL_METHODS)
def no_such_endpoint(unknown: str) -> Response:
    """Answer a path under the prefix that no endpoint has (or a method it lacks) in the JSON shape.

    A catch-all of the blueprint rather than an app-wide 404 handler, so the host's own
    404 and 405 pages stay exactly as they were.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ALL_METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.add(method)
    if allowed and request.method not in allowed:
        return api_http_error(MethodNotAllowed(sorted(allowed)))
    return api_http_error(NotFound())


@bp.errorhandler(HTTPException)
def api_http_error(error: HTTPException) -> Response:
    """Give every HTTP error of the API the JSON error shape."""
    status = error.code or 500
    code = HTTP_CODES.get(status, f"http_{status}")
    document = url_for("activity_trends.openapi")
    message = {
        404: f"There is no such endpoint; see {document} for the ones that exist.",
        405: f"{request.method} is not allowed here; see {document}.",
    }.get(status, error.description or "The request failed.")
    response = json_error(status, code, message)
    if status == 405 and error.get_headers():
        response.headers.update({k: v for k, v in error.get_headers() if k.lower() == "allow"})
    return response


@bp.errorhandler(Exception)
def api_unexpected_error(error: Exception) -> Response:
    """Answer an unexpected exception of the API with a JSON 500, no stack trace (it is logged)."""
    if isinstance(error, HTTPException):
        return api_http_error(error)
    current_app.logger.exception("Unhandled error on %s", request.path)
    return json_error(500, "internal_error", "The server failed to answer; the error has been logged.")


def init_app(app: Flask) -> None:
    """Register the blueprint at ACTIVITY_API_PREFIX, with its rate limits."""
    app.register_blueprint(bp, url_prefix=app.config["ACTIVITY_API_PREFIX"])
    rate_limiting.init_app(app)
