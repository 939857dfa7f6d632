"""Audit rows in activity_audit_log: the client address they record, the audit_recorded signal,
and that a failed audit write never fails the admin's request: the row is spooled and lands once."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from activity_monitor import audit, audit_recorded, event_spool
from activity_monitor.db import connect
from conftest import AuthActions

PREFIX = "/api/admin/activity"


@pytest.fixture
def app(make_app, tmp_path):
    """The app, with its event spool in the test's own folder."""
    return make_app(ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"))


def audit_rows(app, action: str | None = None) -> list[dict]:
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        rows = conn.execute(
            "SELECT * FROM activity_audit_log WHERE CAST(? AS TEXT) IS NULL OR action = ? ORDER BY id",
            (action, action),
        )
        return [dict(row) for row in rows]
    finally:
        conn.close()


def admin_headers(app) -> dict[str, str]:
    return {"Authorization": f"Bearer {AuthActions(app, app.test_client()).token('admin')}"}


def clear_cache_from(app, forwarded_for: str) -> None:
    headers = {**admin_headers(app), "X-Forwarded-For": forwarded_for}
    assert app.test_client().post(f"{PREFIX}/cache/clear", headers=headers).status_code == 200


# --- client address --------------------------------------------------------------------------


def test_forwarded_addresses_are_ignored_without_trusted_proxies(make_app) -> None:
    app = make_app()
    clear_cache_from(app, "203.0.113.9")
    assert [row["ip_address"] for row in audit_rows(app, "CLEAR_ACTIVITY_CACHE")] == ["127.0.0.1"]


def test_the_forwarded_address_is_recorded_behind_a_trusted_proxy(make_app) -> None:
    app = make_app(ACTIVITY_TRUSTED_PROXIES=1)
    clear_cache_from(app, "203.0.113.9")
    assert [row["ip_address"] for row in audit_rows(app, "CLEAR_ACTIVITY_CACHE")] == ["203.0.113.9"]


def test_audit_rows_carry_the_apps_clock(app, clock) -> None:
    clock.advance(hours=3)
    clear_cache_from(app, "203.0.113.9")
    (row,) = audit_rows(app, "CLEAR_ACTIVITY_CACHE")
    assert row["created_at"] == "2026-05-20 15:00:00.000000"


# --- the audit_recorded signal -----------------------------------------------------------------


def test_the_signal_delivers_each_row_as_written(app) -> None:
    headers = admin_headers(app)
    received: list[dict] = []

    def copy(sender, **row) -> None:
        received.append({"sender": sender, **row})

    client = app.test_client()
    with audit_recorded.connected_to(copy, sender=app):
        client.get(f"{PREFIX}/trends?start_date=2026-05-10&end_date=2026-05-19", headers=headers)
        client.post(f"{PREFIX}/cache/clear", headers=headers)
    stored = audit_rows(app)
    assert [r["action"] for r in received] == ["VIEW_ACTIVITY_TRENDS", "CLEAR_ACTIVITY_CACHE"]
    assert all(r["sender"] is app for r in received)
    for sent, row in zip(received, stored, strict=True):
        assert sent["id"] == row["id"]
        assert sent["user_id"] == row["user_id"]
        assert sent["ip_address"] == row["ip_address"]
        assert sent["created_at"] == row["created_at"]
        assert sent["details"] == json.loads(row["details"])


def test_the_signal_of_another_app_is_not_delivered(app, make_app) -> None:
    other = make_app()
    received: list[str] = []
    with audit_recorded.connected_to(lambda sender, **row: received.append(row["action"]), sender=other):
        clear_cache_from(app, "203.0.113.9")
    assert received == []


def test_a_failing_receiver_fails_neither_the_request_nor_the_receivers_after_it(
    app, caplog: pytest.LogCaptureFixture
) -> None:
    headers = admin_headers(app)
    received: list[str] = []

    def broken(sender, **row) -> None:
        raise RuntimeError("the host's copy failed")

    def copy(sender, **row) -> None:
        received.append(row["action"])

    with audit_recorded.connected_to(broken, sender=app), audit_recorded.connected_to(copy, sender=app):
        response = app.test_client().post(f"{PREFIX}/cache/clear", headers=headers)
    assert response.status_code == 200
    assert received == ["CLEAR_ACTIVITY_CACHE"]
    assert [row["action"] for row in audit_rows(app)] == ["CLEAR_ACTIVITY_CACHE"]
    assert "the host's copy failed" in caplog.text


# --- a failed audit write -------------------------------------------------------------------------


@pytest.fixture
def unwritable_audit_log(app) -> Iterator[None]:
    """Make every audit write fail, as a broken table would (the rest of the database works)."""
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        conn.execute("ALTER TABLE activity_audit_log RENAME TO activity_audit_log_away")
        yield
    finally:
        conn.close()


def restore_audit_log(app) -> None:
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        conn.execute("ALTER TABLE activity_audit_log_away RENAME TO activity_audit_log")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("trends?start_date=2026-05-10&end_date=2026-05-19", "VIEW_ACTIVITY_TRENDS"),
        ("export?start_date=2026-05-10&end_date=2026-05-19&format=json", "EXPORT_ACTIVITY_DATA"),
        ("export?start_date=2026-05-10&end_date=2026-05-19", "EXPORT_ACTIVITY_DATA"),
    ],
)
def test_a_failed_audit_write_never_fails_the_request_and_the_row_is_spooled(
    app, unwritable_audit_log, caplog: pytest.LogCaptureFixture, path: str, action: str
) -> None:
    headers = admin_headers(app)
    with caplog.at_level(logging.WARNING):
        response = app.test_client().get(f"{PREFIX}/{path}", headers=headers)
        body = response.get_data()
    assert response.status_code == 200, body[:300]
    # SQLite's words, or PostgreSQL's.
    missing = r'no such table: activity_audit_log|relation "activity_audit_log" does not exist'
    assert re.search(missing, caplog.text)
    spool = event_spool.get_spool(app)
    spool.sync()
    (line,) = [json.loads(text) for text in Path(spool.path).read_text().splitlines()]
    assert line["kind"] == "audit" and line["row"]["action"] == action and line["row"]["user_id"] == 1
    assert json.loads(line["row"]["details"])["start"] == "2026-05-10"
    restore_audit_log(app)
    # The request's own event, written after, may have woken the spool's thread meanwhile.
    assert event_spool.replay_pending(app)["error"] is None
    assert [row["action"] for row in audit_rows(app)] == [action]
    assert event_spool.health(app)["replayed"] == 1


def test_record_returns_none_when_the_row_is_spooled(app, unwritable_audit_log) -> None:
    with app.test_request_context():
        from activity_monitor.db import get_db

        assert audit.record(get_db(), "SOMETHING", user_id=7, ip_address="192.0.2.1") is None
        assert event_spool.health(app)["pending"] == 1
        restore_audit_log(app)
        row_id = audit.record(get_db(), "SOMETHING_ELSE", user_id=7, ip_address="192.0.2.1")
    assert isinstance(row_id, int)


def test_a_failed_audit_write_never_fails_a_forbidden_answer(app, unwritable_audit_log) -> None:
    client = app.test_client()
    AuthActions(app, client).login("viewer")
    response = client.get(f"{PREFIX}/trends")
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"
    restore_audit_log(app)
    event_spool.replay_pending(app)
    assert [row["action"] for row in audit_rows(app)] == ["UNAUTHORIZED_ACCESS_ATTEMPT"]


def test_a_spooled_row_lands_once_the_table_is_back_and_is_announced_once(app, unwritable_audit_log) -> None:
    headers = admin_headers(app)
    client = app.test_client()
    received: list[dict] = []

    def copy(sender, **row) -> None:
        received.append(row)

    with audit_recorded.connected_to(copy, sender=app):
        assert client.post(f"{PREFIX}/cache/clear", headers=headers).status_code == 200
        assert received == []  # not written yet: nothing to announce
        restore_audit_log(app)
        assert client.post(f"{PREFIX}/cache/clear", headers=headers).status_code == 200
        event_spool.replay_pending(app)
        event_spool.replay_pending(app)
    rows = audit_rows(app)
    assert [row["action"] for row in rows] == ["CLEAR_ACTIVITY_CACHE", "CLEAR_ACTIVITY_CACHE"]
    # The spooled row keeps its own time and is announced with the id it got on replay.
    assert sorted(r["id"] for r in received) == sorted(row["id"] for row in rows)
    spooled = next(row for row in rows if row["spool_key"])
    assert next(r for r in received if r["id"] == spooled["id"])["created_at"] == spooled["created_at"]
