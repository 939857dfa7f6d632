"""The one JSON error shape every API response uses."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


def json_error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """Return ``{"success": false, "error", "code", "details"?}`` with the given status."""
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    return response
