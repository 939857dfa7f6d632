"""Login for the fleet-admin demo host: Flask-Login sessions, Flask-WTF CSRF, its own users.

Logins are Flask-Login sessions in Flask's signed cookie; a login lasts
SESSION_LIFETIME_HOURS by the app's clock, and ends early when the user is disabled.

Defences:
- Failed logins are counted per (username, client address) and per address, and the
  attempt is reserved in one write transaction *before* the password is checked, so
  parallel attempts cannot get past the limit. A lock holds one pair (or one address),
  so an attacker elsewhere cannot keep the real user locked out.
- Unknown usernames are checked against a dummy hash of the same kind, and every
  failure gets the same answer, so neither time nor text tells which names exist.
- ``next`` targets are same-site paths only; control characters refuse the target.
- Strings that cannot be UTF-8 (lone surrogates in JSON) are refused with a 400.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.cli import with_appcontext
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.security import check_password_hash, generate_password_hash

from activity_monitor import now
from demo_host.db import connect, get_db

ROLES = ("admin", "manager", "driver", "viewer")
FAILED_LOGIN = "Wrong username or password."
LOCKED = "Too many failed logins from here; try again later."
SESSION_KEY = "fleet_session_key"
LOGGED_IN_AT = "fleet_logged_in_at"

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()


class User(UserMixin):
    """A row of the host's users table, as Flask-Login wants it."""

    def __init__(self, row: sqlite3.Row):
        self.id = row["id"]
        self.username = row["username"]
        self.role = row["role"]
        self.active = bool(row["is_active"])

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    def __getitem__(self, key: str) -> Any:
        """Let templates written for rows (``user['role']``) keep working."""
        return getattr(self, key)


class LoginFailed(Exception):
    """Raised when credentials do not log in; the message is safe to show."""


class BadText(ValueError):
    """Raised for a submitted string that is not valid Unicode text."""


def now_utc() -> dt.datetime:
    """Return the current time by ACTIVITY_CLOCK when the app has one (tests), else the system's."""
    return now(current_app)


def db_time(moment: dt.datetime) -> str:
    """Format an instant as the UTC text the users table stores."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def require_text(value: str) -> str:
    """Return the value if it encodes as UTF-8, else raise BadText."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadText("The text holds characters that are not valid Unicode.") from None
    return value


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password, checked for unknown usernames so they take as long as known ones."""
    return generate_password_hash(secrets.token_urlsafe(16))


# --- users -------------------------------------------------------------------------


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


def load_user_row(conn: sqlite3.Connection, ref: str) -> sqlite3.Row | None:
    """Return the active user with that id (digits) or username."""
    column = "id" if ref.isdigit() else "username"
    return conn.execute(f"SELECT * FROM users WHERE {column} = ? AND is_active = 1", (ref,)).fetchone()


def login_expired() -> bool:
    """Tell whether the session's login is older than SESSION_LIFETIME_HOURS (or has no start)."""
    started = session.get(LOGGED_IN_AT)
    if not isinstance(started, str):
        return True
    lifetime = dt.timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"])
    return now_utc() - dt.datetime.fromisoformat(started) >= lifetime


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the active user with that id, while the login has not expired."""
    # The signed cookie keeps its own timestamp, but by the system clock; this one follows
    # the app's clock, so a login ends at the same instant for the host and the monitor.
    if not str(user_id).isdigit() or login_expired():
        return None
    row = load_user_row(get_db(), str(user_id))
    return User(row) if row is not None else None


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    """Answer an anonymous request: 401 JSON on the API, the login page (with ``next``) otherwise."""
    if wants_json():
        return json_error(401, "authentication_required", "Log in first: POST /api/auth/login.")
    return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))


def wants_json() -> bool:
    """Tell whether the request expects a JSON answer (the host's /api/ paths, or Accept)."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


# --- login attempts ----------------------------------------------------------------


def reserve_attempt(conn: sqlite3.Connection, username: str, address: str, at: dt.datetime) -> None:
    """Count this attempt as failed before the password is checked (undone on success), in one
    write transaction; raise LoginFailed when the pair or the address is locked or reaches its limit."""
    config = current_app.config
    window = dt.timedelta(minutes=config["LOGIN_LOCK_MINUTES"])
    at_text, lock_until = db_time(at), db_time(at + window)
    since = db_time(at - window)
    conn.execute("BEGIN IMMEDIATE")
    try:
        pair = conn.execute(
            """
            SELECT failures, first_failed_at, locked_until
            FROM login_failures
            WHERE username = ? AND ip_address = ?
            """,
            (username, address),
        ).fetchone()
        place = conn.execute(
            "SELECT failures, first_failed_at, locked_until FROM login_address_failures WHERE ip_address = ?",
            (address,),
        ).fetchone()
        for row in (pair, place):
            if row is not None and row["locked_until"] and row["locked_until"] > at_text:
                raise LoginFailed(LOCKED)

        def counted(row: sqlite3.Row | None) -> int:
            """Failures so far in the window; a lock that has run out starts the count afresh."""
            if row is None or row["first_failed_at"] < since or row["locked_until"]:
                return 0
            return int(row["failures"])

        pair_failures, place_failures = counted(pair) + 1, counted(place) + 1
        pair_first = at_text if pair_failures == 1 else pair["first_failed_at"]
        place_first = at_text if place_failures == 1 else place["first_failed_at"]
        conn.execute(
            """
            INSERT INTO login_failures (username, ip_address, failures, first_failed_at, locked_until)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (username, ip_address) DO UPDATE SET
                failures = excluded.failures,
                first_failed_at = excluded.first_failed_at,
                locked_until = excluded.locked_until
            """,
            (
                username,
                address,
                pair_failures,
                pair_first,
                lock_until if pair_failures >= config["LOGIN_MAX_FAILED_ATTEMPTS"] else None,
            ),
        )
        conn.execute(
            """
            INSERT INTO login_address_failures (ip_address, failures, first_failed_at, locked_until)
            VALUES (?, ?, ?, ?)
            ON CONFLICT (ip_address) DO UPDATE SET
                failures = excluded.failures,
                first_failed_at = excluded.first_failed_at,
                locked_until = excluded.locked_until
            """,
            (
                address,
                place_failures,
                place_first,
                lock_until if place_failures >= config["LOGIN_MAX_FAILED_PER_ADDRESS"] else None,
            ),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def forgive_attempt(conn: sqlite3.Connection, username: str, address: str) -> None:
    """After a correct password: forget the pair's failures and this attempt's count on the address."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM login_failures WHERE username = ? AND ip_address = ?", (username, address))
    conn.execute(
        """
        UPDATE login_address_failures
        SET failures = MAX(failures - 1, 0), locked_until = NULL
        WHERE ip_address = ? AND failures < ?
        """,
        (address, current_app.config["LOGIN_MAX_FAILED_PER_ADDRESS"]),
    )
    conn.execute("COMMIT")


def authenticate(username: str, password: str) -> User:
    """Check credentials under the attempt limits; return the user or raise LoginFailed."""
    conn = get_db()
    address = request.remote_addr or "unknown"
    at = now_utc()
    reserve_attempt(conn, username, address, at)
    row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
    # An unknown name costs one hash check too, so timing tells nothing.
    valid = check_password_hash(row["password_hash"] if row is not None else dummy_hash(), password)
    if row is None or not valid:
        raise LoginFailed(FAILED_LOGIN)
    forgive_attempt(conn, username, address)
    if not row["is_active"]:
        raise LoginFailed("This account is disabled.")
    conn.execute("UPDATE users SET last_login = ? WHERE id = ?", (db_time(at), row["id"]))
    return User(row)


def start_session(user: User) -> None:
    """Log the user in with a fresh session and a new session key for the monitor."""
    # Nothing a visitor's cookie carried before the login survives it (no session fixation).
    session.clear()
    session.permanent = True
    login_user(user)
    session[SESSION_KEY] = secrets.token_urlsafe(16)
    session[LOGGED_IN_AT] = now_utc().isoformat()


def session_key(_user: Any) -> str | None:
    """Return the current login session's key (the monitor counts sessions by it)."""
    return session.get(SESSION_KEY)


# --- access --------------------------------------------------------------------------


def role_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let only logged-in users with one of the roles through (login page, else a 403 page)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"Unknown roles {sorted(unknown)}")

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                message = (
                    f"This needs the role {' or '.join(roles)}; you are logged in as {current_user.role}."
                )
                return Response(render_template("forbidden.html", message=message), status=403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def safe_next(target: str | None) -> str:
    """Return a same-site path to go to after login; anything else goes home."""
    home = url_for("host_pages.home")
    if not target or any(ord(char) < 32 or ord(char) == 127 for char in target) or "\\" in target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return home
    return target


# --- views ---------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login_page() -> Any:
    """Show the login form and log in on a correct password (the form is CSRF-protected)."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    csrf.protect()
    try:
        user = authenticate(
            require_text(request.form.get("username", "")), require_text(request.form.get("password", ""))
        )
    except BadText as exc:
        return render_template("login.html", next="", error=str(exc)), 400
    except LoginFailed as exc:
        flash(str(exc))
        return render_template("login.html", next=request.form.get("next", "")), 401
    start_session(user)
    return redirect(safe_next(request.form.get("next")))


def json_error(status: int, code: str, message: str) -> Response:
    """The demo API's error answer, in the same shape as the monitor's."""
    response = jsonify({"success": False, "error": message, "code": code})
    response.status_code = status
    return response


@bp.post("/api/auth/login")
def api_login() -> Response:
    """Log in from JSON credentials (for scripts); the cookie comes back with the answer.

    No CSRF token: a cross-site form cannot send application/json, which this requires.
    """
    if not request.is_json:
        return json_error(415, "unsupported_media_type", "Send the credentials as application/json.")
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(k), str) for k in ("username", "password")
    ):
        return json_error(400, "invalid_request", 'Send JSON {"username": "...", "password": "..."}.')
    try:
        user = authenticate(require_text(payload["username"]), require_text(payload["password"]))
    except BadText as exc:
        return json_error(400, "invalid_request", f"{exc} Send the username and password as plain text.")
    except LoginFailed as exc:
        return json_error(401, "login_failed", str(exc))
    start_session(user)
    return jsonify(
        {
            "success": True,
            "user": {"id": user.id, "username": user.username, "role": user.role},
            "csrf_token": generate_csrf(),
        }
    )


@bp.post("/logout")
def logout() -> Response:
    """Log out (CSRF-checked like every form POST)."""
    csrf.protect()
    logout_user()
    session.clear()
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"success": True})
    return redirect(url_for("auth.login_page"))


# --- CLI -------------------------------------------------------------------------------


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


def csrf_refused(exc: CSRFError) -> tuple[Any, int]:
    """Answer a form POST without a valid CSRF token with a 400 that says what to do."""
    message = f"{exc.description} Reload the page and send the form again."
    if wants_json():
        return json_error(400, "csrf_failed", message), 400
    return render_template("error.html", title="Form refused", message=message), 400


def init_app(app: Flask) -> None:
    """Set up Flask-Login and CSRF for the host's forms, the views and the CLI."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login_page"
    login_manager.login_message = None
    csrf.init_app(app)
    app.register_error_handler(CSRFError, csrf_refused)
    dummy_hash()  # made now, so the first unknown username takes no longer than the others
    app.register_blueprint(bp)
    app.cli.add_command(create_user_command)
    app.cli.add_command(ensure_admin_command)
