"""Login sessions, the current user on ``g``, role checks and CSRF protection.

Sessions live server-side in ``sessions``; the cookie holds a random 256-bit
token and the table holds only its SHA-256, so a copy of the database opens no
session. Bearer tokens are checked by :mod:`api_tokens`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.cli import with_appcontext
from werkzeug.security import check_password_hash, generate_password_hash

import api_tokens
import audit
from api_tokens import hash_secret
from db import connect, get_db, transaction
from errors import json_error, wants_json
from timeutil import parse_db_timestamp, to_db_timestamp, utc_now

ROLES = ("admin", "manager", "driver", "viewer")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# Logging in replaces whatever session the request carried, so it needs no token.
CSRF_EXEMPT_ENDPOINTS = frozenset({"auth.login_page", "auth.api_login"})

bp = Blueprint("auth", __name__)


class LoginFailed(Exception):
    """Raised when credentials do not open a session; the message is safe to show."""


def csrf_token_for(session_token: str) -> str:
    """Derive the CSRF token of a session from its cookie value and the app secret."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def client_ip() -> str | None:
    """Return the client address (ProxyFix rewrites it when proxies are trusted)."""
    return request.remote_addr


# --- users -----------------------------------------------------------------


def create_user(
    conn: sqlite3.Connection, username: str, password: str, role: str, email: str | None = None
) -> int:
    """Insert a user with a hashed password and return its id."""
    if role not in ROLES:
        raise ValueError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
    cursor = conn.execute(
        "INSERT INTO users (username, email, password_hash, role) VALUES (?, ?, ?, ?)",
        (username, email, generate_password_hash(password), role),
    )
    return int(cursor.lastrowid)


def authenticate(conn: sqlite3.Connection, username: str, password: str) -> sqlite3.Row:
    """Check a password, counting failures and locking the account after too many.

    Returns the user row; raises :class:`LoginFailed` with a message that does not
    reveal whether the username exists.
    """
    config = current_app.config
    now = utc_now()
    user = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
    if user is None:
        raise LoginFailed("Wrong username or password.")
    if user["locked_until"] and parse_db_timestamp(user["locked_until"]) > now:
        raise LoginFailed("This account is locked after too many failed logins; try again later.")
    if not check_password_hash(user["password_hash"], password):
        attempts = user["failed_login_attempts"] + 1
        locked_until = None
        if attempts >= config["LOGIN_MAX_FAILED_ATTEMPTS"]:
            locked_until = to_db_timestamp(now + dt.timedelta(minutes=config["LOGIN_LOCK_MINUTES"]))
            attempts = 0
        conn.execute(
            "UPDATE users SET failed_login_attempts = ?, locked_until = ? WHERE id = ?",
            (attempts, locked_until, user["id"]),
        )
        raise LoginFailed("Wrong username or password.")
    if not user["is_active"]:
        raise LoginFailed("This account is disabled.")
    return user


def open_session(conn: sqlite3.Connection, user: sqlite3.Row) -> str:
    """Create a fresh session for the user and return the cookie token (never reused)."""
    token = secrets.token_urlsafe(32)
    now = utc_now()
    expires = now + dt.timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"])
    with transaction(conn):
        conn.execute(
            """
            INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity, ip_address, user_agent)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            (
                hash_secret(token),
                user["id"],
                to_db_timestamp(now),
                to_db_timestamp(expires),
                to_db_timestamp(now),
                client_ip(),
                request.user_agent.string[:500],
            ),
        )
        conn.execute(
            "UPDATE users SET last_login = ?, failed_login_attempts = 0, locked_until = NULL WHERE id = ?",
            (to_db_timestamp(now), user["id"]),
        )
    return token


def close_session(conn: sqlite3.Connection, token: str | None) -> None:
    """Delete the session a cookie token belongs to, if any."""
    if token:
        conn.execute("DELETE FROM sessions WHERE id = ?", (hash_secret(token),))


def set_session_cookie(response: Response, token: str) -> None:
    """Attach the session cookie: HttpOnly, SameSite=Lax, Secure when configured."""
    config = current_app.config
    response.set_cookie(
        config["SESSION_COOKIE_NAME"],
        token,
        max_age=config["SESSION_LIFETIME_HOURS"] * 3600,
        httponly=True,
        samesite="Lax",
        secure=bool(config["SESSION_COOKIE_SECURE"]),
    )


def login(username: str, password: str) -> str:
    """Authenticate and open a session, closing any session the request carried."""
    conn = get_db()
    user = authenticate(conn, username, password)
    close_session(conn, request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]))
    token = open_session(conn, user)
    g.user = user
    g.session_id = hash_secret(token)
    g.auth_method = "cookie"
    g.session_last_activity = to_db_timestamp(utc_now())  # open_session just set it
    return token


# --- the current user --------------------------------------------------------


def load_current_user() -> None:
    """Set ``g.user`` (or None), ``g.session_id``, ``g.auth_method`` and ``g.csrf_token``."""
    g.user = None
    g.session_id = None
    g.auth_method = None
    g.csrf_token = None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        found = api_tokens.resolve(get_db(), header[7:].strip())
        if found is not None:
            g.user, g.session_id = found
            g.auth_method = "token"
        return
    token = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
    if not token:
        return
    row = get_db().execute(
        """
        SELECT users.*, sessions.id AS session_id, sessions.last_activity AS session_last_activity
        FROM sessions
        JOIN users ON users.id = sessions.user_id
        WHERE sessions.id = ?
          AND sessions.expires_at > ?
          AND users.is_active = 1
        """,
        (hash_secret(token), to_db_timestamp(utc_now())),
    ).fetchone()
    if row is not None:
        g.user = row
        g.session_id = row["session_id"]
        g.session_last_activity = row["session_last_activity"]
        g.auth_method = "cookie"
        g.csrf_token = csrf_token_for(token)


def check_csrf() -> Response | None:
    """Refuse a state-changing request authenticated by cookie without the session's CSRF token."""
    if request.method in SAFE_METHODS or g.auth_method != "cookie":
        return None
    if request.endpoint in CSRF_EXEMPT_ENDPOINTS or request.routing_exception is not None:
        return None  # a 404 or 405 changes nothing, so it keeps its own answer
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
    if hmac.compare_digest(sent, g.csrf_token or ""):
        return None
    message = f"Missing or wrong CSRF token; send the {CSRF_HEADER} header from the page's meta tag."
    if wants_json(request.path):
        return json_error(403, "csrf_failed", message)
    abort(403, message)


def unauthenticated() -> Response:
    """Answer an anonymous request: 401 JSON on the API, a redirect to the login page otherwise."""
    if wants_json(request.path):
        return json_error(401, "authentication_required", "Log in or send an 'Authorization: Bearer' token.")
    return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))


def forbidden(roles: tuple[str, ...]) -> Response:
    """Answer a logged-in user whose role is not allowed, writing a throttled audit row."""
    conn = get_db()
    audit.record_unauthorized_attempt(
        conn,
        user_id=g.user["id"],
        ip_address=client_ip(),
        endpoint=request.path,
        method=request.method,
    )
    message = f"This needs the role {' or '.join(roles)}; you are logged in as {g.user['role']}."
    if wants_json(request.path):
        return json_error(403, "forbidden", message)
    return Response(render_template("forbidden.html", message=message), status=403)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let only logged-in users (by cookie or token) through."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            return unauthenticated()
        return view(*args, **kwargs)

    return wrapped


def role_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let only users with one of the roles through: 401 when anonymous, 403 otherwise."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"Unknown roles {sorted(unknown)}")

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if g.get("user") is None:
                return unauthenticated()
            if g.user["role"] not in roles:
                return forbidden(roles)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# --- views -------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Return a same-site path to go to after login (never an absolute URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("host_pages.home")


@bp.route("/login", methods=["GET", "POST"])
def login_page() -> Any:
    """Show the login form and open a session on a correct password."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    try:
        token = login(request.form.get("username", ""), request.form.get("password", ""))
    except LoginFailed as exc:
        flash(str(exc))
        return render_template("login.html", next=request.form.get("next", "")), 401
    response = redirect(safe_next(request.form.get("next")))
    set_session_cookie(response, token)
    return response


@bp.post("/api/auth/login")
def api_login() -> Response:
    """Open a session from JSON credentials; the cookie comes back with the answer."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(k), str) for k in ("username", "password")
    ):
        return json_error(400, "invalid_request", 'Send JSON {"username": "...", "password": "..."}.')
    try:
        token = login(payload["username"], payload["password"])
    except LoginFailed as exc:
        return json_error(401, "login_failed", str(exc))
    user = g.user
    response = jsonify(
        {
            "success": True,
            "user": {"id": user["id"], "username": user["username"], "role": user["role"]},
            "csrf_token": csrf_token_for(token),
        }
    )
    set_session_cookie(response, token)
    return response


@bp.post("/logout")
def logout() -> Response:
    """Close the session (CSRF-checked like every cookie-authenticated POST)."""
    close_session(get_db(), request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]))
    if wants_json(request.path) or request.accept_mimetypes.best == "application/json":
        response: Response = jsonify({"success": True})
    else:
        response = redirect(url_for("auth.login_page"))
    response.delete_cookie(current_app.config["SESSION_COOKIE_NAME"])
    return response


# --- CLI ---------------------------------------------------------------------


@click.command("create-user")
@with_appcontext
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="The user's role.")
@click.option("--password", default=None, help="Password; prompted for when omitted.")
@click.option("--email", default=None, help="Optional e-mail address.")
def create_user_command(username: str, role: str, password: str | None, email: str | None) -> None:
    """Create a user who can log in."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("The password may not be empty.")
    conn = connect(current_app.config["DATABASE"])
    try:
        user_id = create_user(conn, username, password, role, email)
    except sqlite3.IntegrityError as exc:
        raise click.ClickException(f"User {username!r} (or that e-mail) already exists.") from exc
    finally:
        conn.close()
    click.echo(f"Created {role} {username!r} with id {user_id}.")


@click.command("ensure-admin")
@click.option("--username", default="admin", show_default=True, help="Name of the admin user.")
@with_appcontext
def ensure_admin_command(username: str) -> None:
    """Create an admin with a generated password unless one by that name exists; print it once."""
    conn = connect(current_app.config["DATABASE"])
    try:
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
            click.echo(f"User {username!r} already exists; its password is unchanged.")
            return
        password = secrets.token_urlsafe(12)
        create_user(conn, username, password, "admin")
    finally:
        conn.close()
    click.echo(f"Created admin {username!r}. Password (shown only now): {password}")


def inject_auth_context() -> dict[str, Any]:
    """Give templates the current user and the session's CSRF token."""
    return {"current_user": g.get("user"), "csrf_token": g.get("csrf_token") or ""}


def init_app(app: Flask) -> None:
    """Register the views, the per-request user loading and CSRF check, and the CLI."""
    app.register_blueprint(bp)
    app.before_request(load_current_user)
    app.before_request(check_csrf)
    app.context_processor(inject_auth_context)
    app.cli.add_command(create_user_command)
    app.cli.add_command(ensure_admin_command)
    api_tokens.init_app(app)
