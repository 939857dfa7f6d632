"""Security headers on the monitor's own responses, and a strict Content-Security-Policy on its page.

The monitor's blueprints attach them (``bp.after_request``); the host's pages keep whatever
headers the host sets.
"""

from __future__ import annotations

from flask import Response

# No inline script or style anywhere: every page loads its code from /static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def add_security_headers(response: Response) -> Response:
    """Set nosniff, referrer and framing policy everywhere, and the CSP on HTML."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response
