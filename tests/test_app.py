"""The demo host's factory: configuration sources, the secret key, start-up validation, headers."""

from __future__ import annotations

import multiprocessing

import pytest

from activity_monitor.config import ConfigError
from app import create_app
from demo_host import load_or_create_secret_key


@pytest.mark.sqlite_only
def test_factory_creates_the_host_tables_beside_the_monitors(app, db_conn):
    tables = {row[0] for row in db_conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "login_failures", "login_address_failures"} <= tables
    assert {"user_activity_log", "activity_summary_daily", "activity_schema_migrations"} <= tables
    assert db_conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0


@pytest.mark.sqlite_only
def test_the_monitor_uses_the_hosts_database(app):
    assert app.config["ACTIVITY_DATABASE"] == app.config["DATABASE"]


def test_the_app_can_be_built_twice_on_one_database(make_app):
    make_app()
    again = make_app()
    assert again.test_client().get("/login").status_code == 200


def test_config_comes_from_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_ACTIVITY_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("FLASK_ACTIVITY_IDLE_MINUTES", "7")
    monkeypatch.setenv("FLASK_LOGIN_MAX_FAILED_ATTEMPTS", "3")
    monkeypatch.setenv("FLASK_DATABASE", str(tmp_path / "env.sqlite3"))
    app = create_app({"SECRET_KEY": "x"})
    assert app.config["ACTIVITY_TIMEZONE"] == "Europe/Berlin"
    assert app.config["ACTIVITY_IDLE_MINUTES"] == 7
    assert app.config["LOGIN_MAX_FAILED_ATTEMPTS"] == 3
    assert app.config["DATABASE"] == str(tmp_path / "env.sqlite3")
    assert app.config["ACTIVITY_DATABASE"] == str(tmp_path / "env.sqlite3")


def _read_key(instance_path: str, results) -> None:
    results.put(load_or_create_secret_key(instance_path))


def test_generated_secret_key_is_created_once_and_shared_by_every_process(tmp_path):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_read_key, args=(str(tmp_path), results)) for _ in range(4)]
    for p in procs:
        p.start()
    keys = {results.get(timeout=10) for _ in procs}
    assert len(keys) == 1
    key = keys.pop()
    assert len(key) == 64
    assert (tmp_path / "secret_key").read_text().strip() == key
    assert load_or_create_secret_key(str(tmp_path)) == key


def test_unknown_time_zone_fails_at_start_up_with_a_clear_message(make_app):
    with pytest.raises(ConfigError, match="IANA time zone"):
        make_app(ACTIVITY_TIMEZONE="Mars/Olympus")


def test_non_positive_numbers_fail_at_start_up(make_app):
    with pytest.raises(ConfigError, match="ACTIVITY_RETENTION_DAYS"):
        make_app(ACTIVITY_RETENTION_DAYS=0)


@pytest.mark.parametrize("path", ["/", "/login", "/admin/activity"])
def test_pages_carry_a_strict_content_security_policy(client, auth, path):
    auth.login("admin")
    response = client.get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_host_api_answers_carry_nosniff_but_no_page_policy(client, auth):
    auth.login("viewer")
    response = client.get("/api/devices")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers


def test_idle_minutes_beyond_six_days_fail_at_start_up(make_app):
    with pytest.raises(ConfigError, match="ACTIVITY_IDLE_MINUTES"):
        make_app(ACTIVITY_IDLE_MINUTES=6 * 24 * 60 + 1)
