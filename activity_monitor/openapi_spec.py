"""The OpenAPI 3.1 description of the activity API, built from the same constants the API uses."""

from __future__ import annotations

from typing import Any

from activity_monitor.activity_trends_service import COMPARISONS, METRICS
from activity_monitor.hours import MEASURES, WEEKDAYS

NUMBER_OR_NULL = {"type": ["number", "null"]}
DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
DATE_OR_NULL = {"type": ["string", "null"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
HOUR = {"type": "integer", "minimum": 0, "maximum": 23}
HOUR_OR_NULL = {"type": ["integer", "null"], "minimum": 0, "maximum": 23}
COUNT = {"type": "integer", "minimum": 0}


def parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Describe one query parameter."""
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


RANGE_PARAMETERS = [
    parameter("start_date", "First day (local, YYYY-MM-DD). Default: 30 days before end_date.", DATE),
    parameter("end_date", "Last day (local, YYYY-MM-DD), not after today. Default: yesterday.", DATE),
]
METRICS_PARAMETER = parameter(
    "metrics",
    f"Comma list of metrics; duplicates dropped. Default: all of {', '.join(METRICS)}.",
    {"type": "string"},
)
BYPASS_PARAMETER = parameter(
    "cache_bypass",
    "true/1 recomputes instead of reading the cache.",
    {"type": "string", "enum": ["true", "false", "1", "0"]},
)
FORMAT_PARAMETER = parameter("format", "csv (default) or json.", {"type": "string", "enum": ["csv", "json"]})
COMPARE_PARAMETER = parameter(
    "compare",
    "What the range is compared with: previous (default), the period just before shifted by the "
    "range's length rounded up to whole weeks so weekdays line up; or year, the same weekdays "
    "364 days earlier.",
    {"type": "string", "enum": list(COMPARISONS)},
)
MEASURE_PARAMETER = parameter(
    "measure",
    "What each cell counts: events (default), or users (distinct users; each margin counts distinct "
    "users too, so it is not the sum of its cells).",
    {"type": "string", "enum": list(MEASURES)},
)

ERROR = {
    "type": "object",
    "required": ["success", "error", "code"],
    "properties": {
        "success": {"const": False},
        "error": {"type": "string", "description": "A sentence saying what was wrong and what is accepted."},
        "code": {"type": "string"},
        "details": {"type": "object"},
    },
}

POINT = {
    "type": "object",
    "required": ["date", "value", "7day_avg", "30day_avg"],
    "properties": {
        "date": DATE,
        "value": NUMBER_OR_NULL,
        "7day_avg": NUMBER_OR_NULL,
        "30day_avg": NUMBER_OR_NULL,
        "filled": {
            "type": "boolean",
            "description": "True for a day after tracking began with no summary row (value 0).",
        },
        "no_data": {
            "const": True,
            "description": "Present on days before tracking began: value, 7day_avg and 30day_avg "
            "are then null, and the day takes part in no statistic.",
        },
        "partial": {"type": "boolean", "description": "True for today's row while the day is running."},
    },
    "if": {"required": ["no_data"]},
    "then": {
        "properties": {"value": {"type": "null"}, "7day_avg": {"type": "null"}, "30day_avg": {"type": "null"}}
    },
    "else": {"properties": {"value": {"type": "number"}}},
}

FORECAST_POINT = {
    "type": "object",
    "required": ["date", "value", "lower", "upper"],
    "properties": {
        "date": DATE,
        "value": {"type": "number"},
        "lower": {"type": "number"},
        "upper": {"type": "number"},
    },
}


def comparison_schema(change: str, description: str) -> dict[str, Any]:
    """Describe the comparison object of a summary, whose change is named ``change``."""
    return {
        "type": "object",
        "description": description,
        "required": ["start", "end", "shift_days", "days_with_data", "average", "total", change],
        "properties": {
            "start": DATE,
            "end": DATE,
            "shift_days": {"type": "integer", "minimum": 1, "description": "How many days earlier it lies."},
            "days_with_data": {
                "type": "integer",
                "minimum": 0,
                "description": "Its days on or after the day tracking began (the others are left out).",
            },
            "average": NUMBER_OR_NULL,
            "total": {"type": "number"},
            change: {
                **NUMBER_OR_NULL,
                "description": "(range average − its average) / its average × 100; null when its "
                "average is 0 or unknown.",
            },
        },
        "additionalProperties": False,
    }


PREVIOUS_PERIOD = comparison_schema(
    "change_vs_previous_percent",
    "With compare=previous: the period as long as the range, shift_days earlier (the range's length "
    "rounded up to whole weeks, so weekdays line up).",
)
PREVIOUS_YEAR = comparison_schema(
    "change_vs_previous_year_percent",
    "With compare=year: the same weekdays 364 days (52 weeks) earlier.",
)

SUMMARY = {
    "type": "object",
    "description": "Statistics over the tracked days of the range (days before tracking began are "
    "left out), and one comparison object: previous_period or previous_year, as compare asks.",
    "required": [
        "average",
        "median",
        "std_dev",
        "min",
        "max",
        "total",
        "peak_date",
        "percentage_change",
        "change_first_to_last_week_percent",
        "tracked_days",
        "trend_slope",
        "trend_confidence",
        "p_value",
        "trend_analysis",
        "anomalies",
    ],
    "oneOf": [{"required": ["previous_period"]}, {"required": ["previous_year"]}],
    "properties": {
        "average": NUMBER_OR_NULL,
        "median": NUMBER_OR_NULL,
        "std_dev": NUMBER_OR_NULL,
        "min": NUMBER_OR_NULL,
        "max": NUMBER_OR_NULL,
        "total": NUMBER_OR_NULL,
        "peak_date": {"type": ["string", "null"]},
        "change_first_to_last_week_percent": {
            **NUMBER_OR_NULL,
            "description": "The mean of the last 7 tracked days of the range against the mean of "
            "the first 7 (of all of them when fewer), in percent; null when the first mean is 0.",
        },
        "percentage_change": {
            **NUMBER_OR_NULL,
            "description": "Alias of change_first_to_last_week_percent (the same value), kept for "
            "older clients.",
        },
        "tracked_days": {
            "type": "integer",
            "minimum": 0,
            "description": "Days of the range on or after the day tracking began, up to the last "
            "complete one: today's running row is drawn but left out of every figure.",
        },
        "trend_slope": NUMBER_OR_NULL,
        "trend_confidence": NUMBER_OR_NULL,
        "p_value": {
            **NUMBER_OR_NULL,
            "description": "Two-sided p-value of the trend slope, in significant figures: a tiny "
            "value stays tiny (such as 1.2e-12), never rounded to 0.",
        },
        "trend_analysis": {
            "type": "object",
            "required": ["direction", "confidence", "slope", "strength", "forecast", "method", "backtest"],
            "properties": {
                "direction": {
                    "enum": ["increasing", "decreasing", "stable", None],
                    "description": "null, like every figure of the summary, when the range has no "
                    "tracked day.",
                },
                "confidence": NUMBER_OR_NULL,
                "slope": NUMBER_OR_NULL,
                "strength": NUMBER_OR_NULL,
                "forecast": {"type": "array", "items": FORECAST_POINT},
                "method": {"type": ["string", "null"]},
                "backtest": {
                    "type": "object",
                    "required": ["mase", "seasonal_naive_mase", "origins"],
                    "properties": {
                        "mase": NUMBER_OR_NULL,
                        "seasonal_naive_mase": NUMBER_OR_NULL,
                        "origins": {"type": "integer"},
                    },
                },
            },
        },
        "anomalies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["date", "value", "expected", "score"],
                "properties": {
                    "date": DATE,
                    "value": NUMBER_OR_NULL,
                    "expected": NUMBER_OR_NULL,
                    "score": NUMBER_OR_NULL,
                },
            },
        },
        "previous_period": PREVIOUS_PERIOD,
        "previous_year": PREVIOUS_YEAR,
    },
}

PERIOD = {
    "type": "object",
    "required": ["start", "end", "days"],
    "properties": {"start": DATE, "end": DATE, "days": {"type": "integer", "minimum": 1}},
}

TRACKING_BEGAN = {
    **DATE_OR_NULL,
    "description": "The local day tracking began: the earlier of the first raw event's day and the "
    "first summary row's; null before either exists.",
}

TRENDS_DATA = {
    "type": "object",
    "required": [
        "period",
        "tracking_began",
        "compare",
        "metrics",
        "summary",
        "days",
        "generated_at",
        "data_version",
    ],
    "properties": {
        "period": PERIOD,
        "tracking_began": TRACKING_BEGAN,
        "compare": {"enum": list(COMPARISONS)},
        "metrics": {"type": "object", "additionalProperties": {"type": "array", "items": POINT}},
        "summary": {"type": "object", "additionalProperties": SUMMARY},
        "days": {
            "type": "array",
            "description": "One entry per day of the range, in order.",
            "items": {
                "type": "object",
                "required": ["date", "peak_hour"],
                "properties": {
                    "date": DATE,
                    "peak_hour": {
                        **HOUR_OR_NULL,
                        "description": "The local hour (0–23) with the most events that day; null "
                        "without events or summary.",
                    },
                },
            },
        },
        "generated_at": {"type": "string"},
        "data_version": {"type": "integer"},
    },
}

BREAKDOWN_DATA = {
    "type": "object",
    "required": [
        "period",
        "tracking_began",
        "tracked_days",
        "summarized_days",
        "top_pages",
        "top_pages_exact",
        "top_pages_source",
        "peak_hour",
        "peak_hour_source",
        "users_by_role",
    ],
    "properties": {
        "period": PERIOD,
        "tracking_began": TRACKING_BEGAN,
        "tracked_days": {
            "type": "integer",
            "minimum": 0,
            "description": "Days of the range on or after the day tracking began (role averages "
            "divide by it).",
        },
        "summarized_days": {"type": "integer"},
        "top_pages_exact": {
            "type": "boolean",
            "description": "True when top_pages are exact page-view counts from the raw events (while "
            "every raw event of the range is kept); false when they add up each day's top list, "
            "which misses a page outside a day's top 10 on that day.",
        },
        "top_pages_source": {"enum": ["raw_events", "daily_top_lists"]},
        "peak_hour": {
            **HOUR_OR_NULL,
            "description": "The local hour with the most events over the range; null without events.",
        },
        "peak_hour_source": {
            "enum": ["raw_events", "daily_peaks", None],
            "description": "raw_events: counted exactly; daily_peaks: the hour most often the daily "
            "peak (after the raw events were purged); null with peak_hour.",
        },
        "top_pages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["page", "count"],
                "properties": {"page": {"type": "string"}, "count": {"type": "integer"}},
            },
        },
        "users_by_role": {
            "type": "object",
            "description": "The host's roles seen in the range; users whose events carry no role "
            "count as 'unknown'.",
            "additionalProperties": {
                "type": "object",
                "required": ["average_daily", "max_daily"],
                "properties": {"average_daily": {"type": "number"}, "max_daily": {"type": "integer"}},
            },
        },
    },
}

HOURS_DATA = {
    "type": "object",
    "required": ["period", "time_zone", "measure", "weekdays", "cells", "by_hour", "by_weekday", "peak"],
    "properties": {
        "period": PERIOD,
        "time_zone": {
            "type": "string",
            "description": "ACTIVITY_TIMEZONE, whose local hours and days these are.",
        },
        "measure": {"enum": list(MEASURES)},
        "weekdays": {"const": list(WEEKDAYS), "description": "The names of the rows of cells, Monday first."},
        "cells": {
            "type": "array",
            "description": "cells[weekday][hour]: events, or distinct users, of that local weekday "
            "and wall-clock hour over the range. The hour a DST change repeats counts both passes; "
            "the hour it skips is 0.",
            "minItems": 7,
            "maxItems": 7,
            "items": {"type": "array", "minItems": 24, "maxItems": 24, "items": COUNT},
        },
        "by_hour": {
            "type": "array",
            "description": "Per local hour over every weekday (for users, distinct users of the hour).",
            "minItems": 24,
            "maxItems": 24,
            "items": COUNT,
        },
        "by_weekday": {
            "type": "array",
            "description": "Per weekday over every hour (for users, distinct users of the weekday).",
            "minItems": 7,
            "maxItems": 7,
            "items": COUNT,
        },
        "peak": {
            "description": "The busiest cell (the earliest in the week on a tie); null when every cell is 0.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["weekday", "hour", "value"],
                    "properties": {
                        "weekday": {"enum": list(WEEKDAYS)},
                        "hour": HOUR,
                        "value": {"type": "integer", "minimum": 1},
                    },
                },
                {"type": "null"},
            ],
        },
    },
}

EXPORT_ROW = {
    "type": "object",
    "description": "One day: date, the requested metrics and peak_hour. On a day before tracking "
    "began every metric and peak_hour are null and no_data is true; a gap day after it has 0.",
    "required": ["date", "peak_hour"],
    "properties": {
        "date": DATE,
        "peak_hour": HOUR_OR_NULL,
        "no_data": {"const": True},
        **{metric: NUMBER_OR_NULL for metric in METRICS},
    },
    "additionalProperties": False,
}

STATUS = {"enum": ["ok", "degraded", "unhealthy"]}
INTEGER = {"type": "integer", "minimum": 0}
STRING_OR_NULL = {"type": ["string", "null"]}
FRESHNESS_CHECK = {
    "type": "object",
    "description": "How current the summaries are: today's partial row (refreshed every "
    "ACTIVITY_REFRESH_SECONDS by the leader), the dirty backlog, and summary gaps.",
    # When the figures cannot be read, only status and error are given.
    "required": ["status"],
    "properties": {
        "status": STATUS,
        "reasons": {"type": "array", "items": {"type": "string"}},
        "refresh_seconds": INTEGER,
        "stale_after_seconds": INTEGER,
        "background_jobs_expected": {"type": "boolean"},
        "today": {
            "type": "object",
            "required": ["date", "computed_at", "age_seconds", "stale"],
            "properties": {
                "date": DATE,
                "computed_at": STRING_OR_NULL,
                "age_seconds": NUMBER_OR_NULL,
                "stale": {"type": "boolean"},
            },
        },
        "dirty_days": {
            "type": "object",
            "required": ["count", "oldest_date", "longest_wait_seconds"],
            "properties": {
                "count": INTEGER,
                "oldest_date": DATE_OR_NULL,
                "longest_wait_seconds": NUMBER_OR_NULL,
            },
        },
        "gaps": {
            "type": "object",
            "description": "Days inside the summarized span with raw events but no summary (the first 10).",
            "required": ["count", "days"],
            "properties": {"count": INTEGER, "days": {"type": "array", "items": DATE}},
        },
        "error": {"type": "string"},
    },
}
EVENT_SPOOL_CHECK = {
    "type": "object",
    "description": "This process's event spool: rows the database refused wait in a local file until "
    "replayed, exactly once.",
    "required": ["status", "spooled", "replayed", "duplicates_skipped", "dropped", "torn_lines", "rejected",
                 "pending", "in_memory", "files", "writes_failing", "last_error", "last_failure_at"],
    "properties": {
        "status": STATUS,
        **{name: INTEGER for name in ("spooled", "replayed", "duplicates_skipped", "dropped", "torn_lines",
                                      "rejected", "pending", "in_memory", "files")},
        "writes_failing": {"type": "boolean"},
        "last_error": STRING_OR_NULL,
        "last_failure_at": STRING_OR_NULL,
        "folder": {"type": "string"},
        "detail": {"type": "string"},
    },
}
HEALTH_CHECKS = ("database", "cache", "rate_limiter", "scheduler", "performance", "freshness", "event_spool")
HEALTH = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["healthy", "degraded", "unhealthy"]},
        "checks": {
            "type": "object",
            "required": list(HEALTH_CHECKS),
            "properties": {
                **{name: {"type": "object"} for name in HEALTH_CHECKS},
                "freshness": FRESHNESS_CHECK,
                "event_spool": EVENT_SPOOL_CHECK,
            },
        },
    },
}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Describe a JSON response."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(description: str) -> dict[str, Any]:
    """Describe an error response in the one error shape."""
    return json_response(description, {"$ref": "#/components/schemas/Error"})


AUTH_ERRORS = {
    "401": error_response("Not logged in and no valid bearer token."),
    "403": error_response("Logged in without the admin role (or a cookie POST without its CSRF token)."),
}
RATE_LIMITED = {
    "429": {
        **error_response("Too many requests; details.retry_after says how many seconds to wait."),
        "headers": {
            "Retry-After": {"schema": {"type": "integer"}},
            "X-RateLimit-Limit": {"schema": {"type": "integer"}},
            "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
            "X-RateLimit-Reset": {"schema": {"type": "integer"}},
        },
    }
}
BAD_REQUEST = {"400": error_response("A parameter was not accepted; the message says what is.")}


HEALTHZ_PATH_ITEM = {
    "get": {
        "summary": "Liveness probe: ok when the database answers",
        "security": [],
        "responses": {
            "200": {
                "description": "ok",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "503": {"description": "The database does not answer."},
        },
    }
}


def build_openapi(api_path: str, healthz_path: str | None, session_cookie: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for the API at ``api_path`` (as url_for gives it)."""
    security = [{"session": []}, {"bearer": []}]
    paths = api_paths(api_path, security)
    if healthz_path:
        paths[healthz_path] = HEALTHZ_PATH_ITEM
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Activity Monitor API",
            "version": "1.0.0",
            "description": "Usage trends of this app, for its admins. Days are local days in "
            "ACTIVITY_TIMEZONE. Every error has the shape of the Error schema.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": {
                "Error": ERROR,
                "TrendsData": TRENDS_DATA,
                "BreakdownData": BREAKDOWN_DATA,
                "HoursData": HOURS_DATA,
                "Health": HEALTH,
            },
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": session_cookie},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": paths,
    }


def api_paths(prefix: str, security: list[dict[str, list]]) -> dict[str, Any]:
    """Return the path items of the API under its prefix."""
    return {
        f"{prefix}/trends": {
            "get": {
                "summary": "Daily trends with moving averages, summary, forecast and comparison",
                "security": security,
                "parameters": [*RANGE_PARAMETERS, METRICS_PARAMETER, BYPASS_PARAMETER, COMPARE_PARAMETER],
                "responses": {
                    "200": {
                        **json_response(
                            "Trends of the range.",
                            {
                                "type": "object",
                                "required": ["success", "cached", "cache_ttl", "data"],
                                "properties": {
                                    "success": {"const": True},
                                    "cached": {"type": "boolean"},
                                    "cache_ttl": {"type": "integer"},
                                    "data": {"$ref": "#/components/schemas/TrendsData"},
                                },
                            },
                        ),
                        "headers": {"ETag": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified since the ETag given in If-None-Match."},
                    **BAD_REQUEST,
                    **AUTH_ERRORS,
                    **RATE_LIMITED,
                },
            }
        },
        f"{prefix}/export": {
            "get": {
                "summary": "Daily values as a CSV or JSON download (streamed)",
                "security": security,
                "parameters": [*RANGE_PARAMETERS, METRICS_PARAMETER, BYPASS_PARAMETER, FORMAT_PARAMETER],
                "responses": {
                    "200": {
                        "description": "The file. CSV: a header row date,<metrics…>,peak_hour and one "
                        "row per day; an empty cell is a missing value (every metric of a day before "
                        "tracking began, the peak hour of a day without events), never 0. JSON: "
                        "the same rows as objects, missing values null.",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["export_date", "user", "period", "metrics", "data"],
                                    "properties": {
                                        "export_date": {"type": "string"},
                                        "user": {"type": "string"},
                                        "period": PERIOD,
                                        "metrics": {"type": "array", "items": {"enum": list(METRICS)}},
                                        "data": {"type": "array", "items": EXPORT_ROW},
                                    },
                                }
                            },
                        },
                    },
                    **BAD_REQUEST,
                    **AUTH_ERRORS,
                    **RATE_LIMITED,
                },
            }
        },
        f"{prefix}/breakdown": {
            "get": {
                "summary": "Top pages and users by role over a range",
                "security": security,
                "parameters": RANGE_PARAMETERS,
                "responses": {
                    "200": json_response(
                        "The breakdown.",
                        {
                            "type": "object",
                            "required": ["success", "data"],
                            "properties": {
                                "success": {"const": True},
                                "data": {"$ref": "#/components/schemas/BreakdownData"},
                            },
                        },
                    ),
                    **BAD_REQUEST,
                    **AUTH_ERRORS,
                    **RATE_LIMITED,
                },
            }
        },
        f"{prefix}/hours": {
            "get": {
                "summary": "Events or users per local hour and weekday over a range, from the raw events",
                "description": "Exact while the range's raw events are kept: a start_date before the "
                "first day whose raw events are all kept (see ACTIVITY_RETENTION_DAYS) is a 400 "
                "naming that day in details.earliest_start_date.",
                "security": security,
                "parameters": [*RANGE_PARAMETERS, MEASURE_PARAMETER],
                "responses": {
                    "200": json_response(
                        "The counts.",
                        {
                            "type": "object",
                            "required": ["success", "data"],
                            "properties": {
                                "success": {"const": True},
                                "data": {"$ref": "#/components/schemas/HoursData"},
                            },
                        },
                    ),
                    **BAD_REQUEST,
                    **AUTH_ERRORS,
                    **RATE_LIMITED,
                },
            }
        },
        f"{prefix}/health": {
            "get": {
                "summary": "Health of database, cache, rate limiter, scheduler, and response times",
                "security": security,
                "responses": {
                    "200": json_response("Healthy or degraded.", {"$ref": "#/components/schemas/Health"}),
                    "503": json_response("Unhealthy.", {"$ref": "#/components/schemas/Health"}),
                    **AUTH_ERRORS,
                },
            }
        },
        f"{prefix}/cache/stats": {
            "get": {
                "summary": "Statistics of the trends cache",
                "security": security,
                "responses": {
                    "200": json_response(
                        "Cache statistics.",
                        {
                            "type": "object",
                            "required": ["success", "stats"],
                            "properties": {"success": {"const": True}, "stats": {"type": "object"}},
                        },
                    ),
                    **AUTH_ERRORS,
                },
            }
        },
        f"{prefix}/cache/clear": {
            "post": {
                "summary": "Clear the trends cache for every worker",
                "description": "Cookie-authenticated calls must send X-CSRF-Token.",
                "security": security,
                "parameters": [
                    {
                        "name": "X-CSRF-Token",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": json_response(
                        "Cleared.",
                        {
                            "type": "object",
                            "required": ["success", "entries_removed", "data_version"],
                            "properties": {
                                "success": {"const": True},
                                "entries_removed": {"type": "integer"},
                                "data_version": {"type": "integer"},
                            },
                        },
                    ),
                    **AUTH_ERRORS,
                },
            }
        },
        f"{prefix}/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "The OpenAPI document.", "content": {"application/json": {}}}
                },
            }
        },
    }
