"""The demo host's login defences: attempt limits under parallel load, locks per (username, address)
and per address, lock expiry, no username enumeration, safe ``next`` targets, bad text, CSRF."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from werkzeug.security import check_password_hash
from werkzeug.serving import make_server

from conftest import PASSWORD, AuthActions
from demo_host import auth as host_auth
from demo_host.auth import FAILED_LOGIN, LOCKED

ATTACKER = "198.51.100.7"
OFFICE = "203.0.113.10"


class PasswordChecks:
    """Counts the password-hash checks the login makes (each still runs the real check)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, pwhash: str, password: str) -> bool:
        with self.lock:
            self.count += 1
        return check_password_hash(pwhash, password)


@pytest.fixture
def checks(monkeypatch) -> PasswordChecks:
    """Count every password-hash check of the demo's login."""
    counter = PasswordChecks()
    monkeypatch.setattr(host_auth, "check_password_hash", counter)
    return counter


def json_login(client, username: str, password: str, address: str | None = None):
    """POST the JSON login, from ``address`` through one trusted proxy when given."""
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post("/api/auth/login", json={"username": username, "password": password}, headers=headers)


def form_login(client, auth, username: str, password: str = PASSWORD, **fields: str):
    """POST the HTML login form with the login page's CSRF token."""
    data = {"username": username, "password": password, "csrf_token": auth.host_csrf_token(), **fields}
    return client.post("/login", data=data)


@pytest.fixture
def proxied(make_app):
    """The demo behind one trusted proxy, so X-Forwarded-For names the client; and its auth helper."""
    app = make_app(TRUSTED_PROXIES=1)
    return app, AuthActions(app, app.test_client())


# --- parallel attempts ----------------------------------------------------------------------


@pytest.fixture
def live_server(app) -> Iterator[tuple[str, int]]:
    """The demo served by werkzeug on a free port of 127.0.0.1, a thread per request."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def post_json(address: tuple[str, int], path: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body over a connection of its own; return the status and the JSON answer."""
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_parallel_wrong_passwords_are_checked_at_most_the_limit(app, auth, checks, live_server):
    auth.ensure_user("driver")
    limit = app.config["LOGIN_MAX_FAILED_ATTEMPTS"]
    start = threading.Barrier(40)
    answers: list[tuple[int, dict]] = []

    def attempt(n: int) -> None:
        start.wait()
        answers.append(post_json(live_server, "/api/auth/login", {"username": "driver", "password": f"w{n}"}))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 40
    assert {status for status, _ in answers} == {401}
    assert Counter(body["error"] for _, body in answers) == {FAILED_LOGIN: limit, LOCKED: 40 - limit}
    assert checks.count == limit
    # The right password from the same address is refused too while the lock lasts.
    status, body = post_json(live_server, "/api/auth/login", {"username": "driver", "password": PASSWORD})
    assert (status, body["error"]) == (401, LOCKED)
    assert checks.count == limit


# --- what a lock holds ------------------------------------------------------------------------


def test_an_attacker_locks_only_their_own_address_out_of_the_account(proxied):
    app, auth = proxied
    auth.ensure_user("manager")
    client = auth.client
    for _ in range(app.config["LOGIN_MAX_FAILED_ATTEMPTS"]):
        assert json_login(client, "manager", "guess", ATTACKER).get_json()["error"] == FAILED_LOGIN
    assert json_login(client, "manager", PASSWORD, ATTACKER).get_json()["error"] == LOCKED
    assert json_login(client, "manager", PASSWORD, OFFICE).status_code == 200


def test_the_real_users_login_does_not_lift_the_attackers_lock(proxied):
    app, auth = proxied
    auth.ensure_user("manager")
    for _ in range(app.config["LOGIN_MAX_FAILED_ATTEMPTS"]):
        json_login(auth.client, "manager", "guess", ATTACKER)
    assert json_login(auth.client, "manager", PASSWORD, OFFICE).status_code == 200
    assert json_login(auth.client, "manager", PASSWORD, ATTACKER).get_json()["error"] == LOCKED


def test_the_address_limit_stops_one_address_trying_many_usernames(make_app, checks):
    # A lower limit than the default 20 keeps the test quick; the rule is the same.
    app = make_app(TRUSTED_PROXIES=1, LOGIN_MAX_FAILED_PER_ADDRESS=8)
    auth = AuthActions(app, app.test_client())
    auth.ensure_user("viewer")
    per_address = app.config["LOGIN_MAX_FAILED_PER_ADDRESS"]
    for n in range(per_address):
        answer = json_login(auth.client, f"user{n}", "guess", ATTACKER)
        assert answer.get_json()["error"] == FAILED_LOGIN
    assert checks.count == per_address
    # Every name from that address is now refused unchecked, even a real one with its password.
    for username, password in (("someone-new", "guess"), ("viewer", PASSWORD)):
        answer = json_login(auth.client, username, password, ATTACKER)
        assert (answer.status_code, answer.get_json()["error"]) == (401, LOCKED)
    assert checks.count == per_address
    assert json_login(auth.client, "viewer", PASSWORD, OFFICE).status_code == 200


def test_client_addresses_come_from_remote_addr_without_trusted_proxies(client, auth, app):
    auth.ensure_user("driver")
    limit = app.config["LOGIN_MAX_FAILED_ATTEMPTS"]
    # Without a trusted proxy, a forged X-Forwarded-For does not make each attempt a new address.
    for n in range(limit):
        json_login(client, "driver", "guess", f"192.0.2.{n}")
    assert json_login(client, "driver", PASSWORD, "192.0.2.200").get_json()["error"] == LOCKED
    other = app.test_client()
    answer = other.post(
        "/api/auth/login",
        json={"username": "driver", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": OFFICE},
    )
    assert answer.status_code == 200


# --- locks run out ------------------------------------------------------------------------------


def lock_out(client, app, username: str) -> None:
    """Fail the login of a user as often as the limit allows."""
    for _ in range(app.config["LOGIN_MAX_FAILED_ATTEMPTS"]):
        assert json_login(client, username, "guess").get_json()["error"] == FAILED_LOGIN
    assert json_login(client, username, PASSWORD).get_json()["error"] == LOCKED


def test_a_lock_expires_after_the_lock_minutes(client, auth, app, clock):
    auth.ensure_user("driver")
    lock_out(client, app, "driver")
    clock.advance(minutes=app.config["LOGIN_LOCK_MINUTES"], seconds=-1)
    assert json_login(client, "driver", PASSWORD).get_json()["error"] == LOCKED
    clock.advance(seconds=1)
    assert json_login(client, "driver", PASSWORD).status_code == 200


def test_after_a_lock_expires_the_count_starts_afresh(client, auth, app, clock, checks):
    auth.ensure_user("driver")
    limit = app.config["LOGIN_MAX_FAILED_ATTEMPTS"]
    lock_out(client, app, "driver")
    clock.advance(minutes=app.config["LOGIN_LOCK_MINUTES"])
    before = checks.count
    lock_out(client, app, "driver")
    assert checks.count - before == limit


def test_failures_older_than_the_window_are_forgotten(client, auth, app, clock):
    auth.ensure_user("driver")
    limit = app.config["LOGIN_MAX_FAILED_ATTEMPTS"]
    for _ in range(limit - 1):
        json_login(client, "driver", "guess")
    clock.advance(minutes=app.config["LOGIN_LOCK_MINUTES"], seconds=1)
    for _ in range(limit - 1):
        assert json_login(client, "driver", "guess").get_json()["error"] == FAILED_LOGIN
    assert json_login(client, "driver", PASSWORD).status_code == 200


# --- no username enumeration ----------------------------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_json_answer(client, auth, checks):
    auth.ensure_user("viewer")
    wrong = json_login(client, "viewer", "nope")
    assert checks.count == 1
    unknown = json_login(client, "ghost", "nope")
    assert checks.count == 2
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json() == wrong.get_json() == {
        "success": False,
        "error": FAILED_LOGIN,
        "code": "login_failed",
    }


def test_unknown_user_and_wrong_password_get_the_same_form_answer(client, auth, checks):
    auth.ensure_user("viewer")
    wrong = form_login(client, auth, "viewer", "nope")
    assert checks.count == 1
    unknown = form_login(client, auth, "ghost", "nope")
    assert checks.count == 2
    assert unknown.status_code == wrong.status_code == 401
    for answer in (wrong, unknown):
        assert FAILED_LOGIN in answer.get_data(as_text=True)


# --- next targets -----------------------------------------------------------------------------------

OFF_SITE = [
    "//evil.example",
    "///evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "https:evil.example",
    "HTTPS://evil.example/devices",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "evil.example",
    "/\x00/evil.example",
    "/\x7f/evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(client, auth, target):
    auth.ensure_user("viewer")
    page = client.get("/login", query_string={"next": target})
    assert page.status_code == 200
    response = form_login(client, auth, "viewer", next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/devices?x=1", "/routes", "/service-orders?site=Mall%20North"])
def test_login_keeps_a_same_site_next_target(client, auth, target):
    auth.ensure_user("viewer")
    response = form_login(client, auth, "viewer", next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == target
    assert not urlsplit(response.headers["Location"]).netloc


# --- text that is not Unicode ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "\\ud800", "password": "x"}',
        b'{"username": "viewer", "password": "\\udfff"}',
        b'{"username": "a\\ud800b", "password": "\\ud800"}',
        # Raw bytes of a surrogate: Python's JSON decoder lets them through (surrogatepass).
        b'{"username": "\xed\xa0\x80", "password": "x"}',
    ],
)
def test_lone_surrogates_in_the_json_login_are_a_400_with_a_sentence(client, auth, checks, body):
    auth.ensure_user("viewer")
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["code"] == "invalid_request"
    assert answer["error"].startswith("The text holds characters that are not valid Unicode.")
    assert checks.count == 0


def test_json_bytes_that_are_not_utf8_are_a_400_with_a_sentence(client):
    body = b'{"username": "\xff", "password": "x"}'
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == 'Send JSON {"username": "...", "password": "..."}.'


def test_a_lone_surrogate_does_not_count_as_a_failed_login(client, auth, app):
    auth.ensure_user("viewer")
    for _ in range(app.config["LOGIN_MAX_FAILED_ATTEMPTS"] + 1):
        body = b'{"username": "viewer", "password": "\\ud800"}'
        assert client.post("/api/auth/login", data=body, content_type="application/json").status_code == 400
    assert auth.login("viewer").status_code == 200


@pytest.mark.parametrize(
    "encoded",
    [
        b"username=%ED%A0%80&password=x",
        b"username=viewer&password=%ED%B0%80%FF",
    ],
)
def test_url_encoded_form_bytes_that_are_not_utf8_are_an_ordinary_failed_login(client, auth, encoded):
    # Werkzeug keeps undecodable %-escapes as text, so no lone surrogate reaches the form login.
    auth.ensure_user("viewer")
    token = auth.host_csrf_token().encode()
    response = client.post(
        "/login", data=encoded + b"&csrf_token=" + token, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 401
    assert FAILED_LOGIN in response.get_data(as_text=True)


def test_multipart_form_bytes_that_are_not_utf8_are_an_ordinary_failed_login(client, auth):
    # Werkzeug decodes multipart fields with replacement characters, so no lone surrogate either.
    auth.ensure_user("viewer")
    token = auth.host_csrf_token().encode()
    fields = {"username": b"viewer", "password": b"\xed\xa0\x80\xff", "csrf_token": token}
    parts = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in fields.items()
    )
    response = client.post(
        "/login", data=parts + b"--B--\r\n", content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 401
    assert FAILED_LOGIN in response.get_data(as_text=True)


# --- CSRF on the host's forms -----------------------------------------------------------------------


def test_the_login_form_without_a_csrf_token_is_refused(client, auth, checks):
    auth.ensure_user("viewer")
    response = client.post("/login", data={"username": "viewer", "password": PASSWORD})
    assert response.status_code == 400
    assert "The CSRF token is missing." in response.get_data(as_text=True)
    assert checks.count == 0
    assert client.get("/devices").status_code == 302


def test_the_login_form_with_a_wrong_csrf_token_is_refused(client, auth):
    auth.ensure_user("viewer")
    auth.host_csrf_token()
    response = client.post("/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": "x"})
    assert response.status_code == 400
    assert client.get("/devices").status_code == 302


def test_logout_without_a_csrf_token_is_refused(client, auth):
    auth.login("viewer")
    response = client.post("/logout")
    assert response.status_code == 400
    assert "The CSRF token is missing." in response.get_data(as_text=True)
    assert client.get("/devices").status_code == 200


def test_logout_with_another_sessions_csrf_token_is_refused(client, auth, app):
    other = app.test_client()
    foreign = AuthActions(app, other).host_csrf_token()
    auth.login("viewer")
    assert client.post("/logout", data={"csrf_token": foreign}).status_code == 400
    assert client.get("/devices").status_code == 200


def test_a_refused_json_logout_answers_json(client, auth):
    auth.login("viewer")
    response = client.post("/logout", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["code"] == "csrf_failed"
