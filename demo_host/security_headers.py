"""Security headers on the host's own responses, and a strict Content-Security-Policy on its pages.

The monitor sets the same on its own blueprints; this covers the host's pages (the
monitor leaves the host's responses alone).
"""

from __future__ import annotations

from flask import Flask, Response

# No inline script or style in the host's templates: everything comes from /static/.
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


def init_app(app: Flask) -> None:
    """Attach the headers to every response of the app."""
    app.after_request(add_security_headers)
