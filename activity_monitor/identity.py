"""Who is asking: the host's answer, as a small value the monitor can store.

The host owns its users, logins and roles, as with Flask-Login's ``user_loader``.
It gives the monitor an ``identity_loader`` that returns an :class:`Identity`
for the current request (or None), and optionally a ``user_loader`` that returns
one for a stored user id (used for API tokens). The monitor keeps the answer on
``g`` for the rest of the request and never reads the host's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request

IdentityLoader = Callable[[], "Identity | None"]
UserLoader = Callable[[str], "Identity | None"]
AdminCheck = Callable[["Identity"], bool]

# How a request was authenticated, as stored on g.
AUTH_HOST = "host"
AUTH_TOKEN = "token"


@dataclass(frozen=True)
class Identity:
    """One of the host's users as the monitor sees them.

    ``user_id`` is the host's id (an int, or a string such as a UUID); ``role`` is
    the host's own role name; ``session_key`` names the login session when the host
    has one (else sessions are derived from gaps, see ACTIVITY_SESSION_IDLE_MINUTES);
    ``username`` is shown in exports when given.
    """

    user_id: int | str
    role: str
    session_key: str | None = None
    username: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.user_id, bool) or not isinstance(self.user_id, (int, str)) or self.user_id == "":
            raise TypeError(f"Identity.user_id must be an int or a non-empty string, not {self.user_id!r}.")
        if not isinstance(self.role, str):
            raise TypeError(f"Identity.role must be a string, not {self.role!r}.")

    @property
    def stored_user_id(self) -> int | str:
        """Return the id as stored: digit strings become ints, so '42' and 42 are one user."""
        return stored_user_id(self.user_id)


def stored_user_id(user_id: int | str) -> int | str:
    """Return a host user id in its stored form: digit strings (shorter than 19 digits) as ints."""
    if isinstance(user_id, str) and user_id.isdigit() and len(user_id) < 19:
        return int(user_id)
    return user_id


def default_is_admin(identity: Identity) -> bool:
    """The default admin check: the host's role is exactly 'admin'."""
    return identity.role == "admin"


def flask_login_identity(
    role: str | Callable[[Any], str] = "role",
    username: str | Callable[[Any], str | None] | None = "username",
    session_key: Callable[[Any], str | None] | None = None,
) -> IdentityLoader:
    """Return an identity loader for a host that uses Flask-Login's ``current_user``.

    ``role`` and ``username`` name an attribute of the user object or are callables
    taking it; ``session_key`` is an optional callable (by default sessions are
    derived from gaps). The id is ``current_user.get_id()``.
    """

    def read(user: Any, source: str | Callable[[Any], Any] | None) -> Any:
        if source is None:
            return None
        return source(user) if callable(source) else getattr(user, source, None)

    def load() -> Identity | None:
        from flask_login import current_user

        # The proxy once: each attribute read through it would resolve it again, on every request.
        user = current_user._get_current_object()  # type: ignore[attr-defined]
        if not getattr(user, "is_authenticated", False):
            return None
        user_id = user.get_id()
        if user_id is None:
            return None
        name = read(user, username)
        return Identity(
            user_id=user_id,
            role=str(read(user, role) or ""),
            session_key=session_key(user) if session_key else None,
            username=None if name is None else str(name),
        )

    return load


# The blueprints of the monitor itself: the only requests an API token authenticates.
MONITOR_BLUEPRINTS = frozenset({"activity_trends", "activity_dashboard"})


def bearer_token() -> str | None:
    """Return the monitor's API token (``Authorization: Bearer amt_…``) of a request to the
    monitor's own endpoints, else None."""
    from activity_monitor.api_tokens import TOKEN_PREFIX

    # The host never sees these tokens, so on its own pages the host's answer is the only one:
    # a token sent there would otherwise record the host's refused request as its admin's.
    header = request.headers.get("Authorization")  # most requests have none: the cheap test first
    if not header or request.blueprint not in MONITOR_BLUEPRINTS:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX):
        return None
    return value


def current_identity() -> Identity | None:
    """Return who asks in this request: a bearer token's user, else the host's answer (cached on g).

    A request that sends an ``amt_`` token is judged by that token alone: a wrong or revoked
    token is anonymous even when a login cookie comes with it.
    """
    if "activity_identity" in g:
        return g.activity_identity
    from activity_monitor.extension import get_state

    state = get_state()
    identity: Identity | None = None
    g.activity_auth_method = None
    token = bearer_token()
    if token is not None:
        from activity_monitor import api_tokens

        identity = api_tokens.identity_for_token(token)
        if identity is not None:
            g.activity_auth_method = AUTH_TOKEN
    elif state.monitor.identity_loader_callback is not None:
        identity = state.monitor.identity_loader_callback()
        if identity is not None and not isinstance(identity, Identity):
            raise TypeError(
                f"The identity_loader returned {type(identity).__name__}; it must return an Identity or None."
            )
        if identity is not None:
            g.activity_auth_method = AUTH_HOST
    g.activity_identity = identity
    return identity


def is_admin(identity: Identity) -> bool:
    """Tell whether the host says this identity may use the monitor's API and page."""
    from activity_monitor.extension import get_state

    return bool(get_state(current_app).monitor.is_admin_callback(identity))
