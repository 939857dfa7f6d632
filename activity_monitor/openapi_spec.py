"""The OpenAPI 3.1 description of the activity API, built from the same constants the API uses."""

from __future__ import annotations

from typing import Any

from activity_monitor.activity_trends_service import METRICS

NUMBER_OR_NULL = {"type": ["number", "null"]}
DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


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
        "value": {"type": "number"},
        "7day_avg": {"type": "number"},
        "30day_avg": {"type": "number"},
        "filled": {"type": "boolean", "description": "True for a day with no summary row (value 0)."},
        "partial": {"type": "boolean", "description": "True for today's row while the day is running."},
    },
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

SUMMARY = {
    "type": "object",
    "required": [
        "average",
        "median",
        "std_dev",
        "min",
        "max",
        "total",
        "peak_date",
        "percentage_change",
        "trend_slope",
        "trend_confidence",
        "p_value",
        "trend_analysis",
        "anomalies",
        "previous_period",
    ],
    "properties": {
        "average": NUMBER_OR_NULL,
        "median": NUMBER_OR_NULL,
        "std_dev": NUMBER_OR_NULL,
        "min": NUMBER_OR_NULL,
        "max": NUMBER_OR_NULL,
        "total": NUMBER_OR_NULL,
        "peak_date": {"type": ["string", "null"]},
        "percentage_change": NUMBER_OR_NULL,
        "trend_slope": NUMBER_OR_NULL,
        "trend_confidence": NUMBER_OR_NULL,
        "p_value": NUMBER_OR_NULL,
        "trend_analysis": {
            "type": "object",
            "required": ["direction", "confidence", "slope", "strength", "forecast", "method", "backtest"],
            "properties": {
                "direction": {"enum": ["increasing", "decreasing", "stable"]},
                "confidence": NUMBER_OR_NULL,
                "slope": NUMBER_OR_NULL,
                "strength": NUMBER_OR_NULL,
                "forecast": {"type": "array", "items": FORECAST_POINT},
                "method": {"type": "string"},
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
        "previous_period": {
            "type": "object",
            "required": ["start", "end", "average", "total", "percentage_change"],
            "properties": {
                "start": DATE,
                "end": DATE,
                "average": NUMBER_OR_NULL,
                "total": {"type": "number"},
                "percentage_change": NUMBER_OR_NULL,
            },
        },
    },
}

PERIOD = {
    "type": "object",
    "required": ["start", "end", "days"],
    "properties": {"start": DATE, "end": DATE, "days": {"type": "integer", "minimum": 1}},
}

TRENDS_DATA = {
    "type": "object",
    "required": ["period", "metrics", "summary", "generated_at", "data_version"],
    "properties": {
        "period": PERIOD,
        "metrics": {"type": "object", "additionalProperties": {"type": "array", "items": POINT}},
        "summary": {"type": "object", "additionalProperties": SUMMARY},
        "generated_at": {"type": "string"},
        "data_version": {"type": "integer"},
    },
}

BREAKDOWN_DATA = {
    "type": "object",
    "required": ["period", "summarized_days", "top_pages", "users_by_role"],
    "properties": {
        "period": PERIOD,
        "summarized_days": {"type": "integer"},
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

HEALTH = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["healthy", "degraded", "unhealthy"]},
        "checks": {
            "type": "object",
            "required": ["database", "cache", "rate_limiter", "scheduler", "performance"],
            "properties": {
                name: {"type": "object"}
                for name in ("database", "cache", "rate_limiter", "scheduler", "performance")
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
                "parameters": [*RANGE_PARAMETERS, METRICS_PARAMETER, BYPASS_PARAMETER],
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
                        "description": "The file: CSV (header row date,<metrics…>) or JSON.",
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
                                        "data": {"type": "array", "items": {"type": "object"}},
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
