"""The event spool: rows the database refuses (locked, full, read-only, its file gone) wait in a
local file and land exactly once when it takes writes again; no request waits on it."""

from __future__ import annotations

import fcntl as fcntl_module
import json
import os
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from activity_monitor import event_spool
from activity_monitor.db import connect
from activity_monitor.extension import get_state
from activity_monitor.storage import open_storage
from conftest import AuthActions

PREFIX = "/api/admin/activity"
RANGE = "start_date=2026-05-10&end_date=2026-05-19"
FILLER_PAGE = "/filler"
FILLER_ACTION = "FILLER"


# --- making the database refuse writes, for real ------------------------------------------------


def read_only_url(url: str) -> str:
    """Return a PostgreSQL URL whose sessions start read-only (default_transaction_read_only)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = (query.get("options", "") + " -cdefault_transaction_read_only=on").strip()
    # libpq reads %20 as a space, but not +.
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextmanager
def database_refusing_writes(app: Flask) -> Iterator[None]:
    """Make the app's database refuse every write while the block runs. SQLite: query_only on the
    serving thread's connection (the test client serves on this thread; root ignores a read-only
    file mode), so writes fail with SQLite's own "attempt to write a readonly database".
    PostgreSQL: the app's storage swapped for one whose sessions are read-only."""
    state = get_state(app)
    if state.storage.dialect == "sqlite":
        conn = state.storage.request_connection()
        conn.execute("PRAGMA query_only = ON")
        try:
            yield
        finally:
            conn.execute("PRAGMA query_only = OFF")
        return
    original = state.storage
    state.storage = open_storage(read_only_url(app.config["ACTIVITY_DATABASE"]))
    try:
        yield
    finally:
        state.storage.close()
        state.storage = original


DISK_FULL_FUNCTION = """
CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$
"""
FULL_TABLES = {
    "user_activity_log": "INSERT",
    "activity_audit_log": "INSERT",
    "activity_health_probe": "UPDATE",
}


@contextmanager
def database_full(app: Flask) -> Iterator[None]:
    """Make the app's database full while the block runs. SQLite: PRAGMA max_page_count at the
    file's size on the serving thread's connection, with the last pages of the event and audit
    tables filled by filler rows, so every further insert needs a page it cannot have ("database
    or disk is full"). PostgreSQL: triggers raising disk_full (SQLSTATE 53100) where the monitor writes."""
    state = get_state(app)
    if state.storage.dialect == "sqlite":
        conn = state.storage.request_connection()
        limit = conn.execute("PRAGMA max_page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        fillers = (
            "INSERT INTO user_activity_log (session_id, user_id, timestamp, page_url, action_type)"
            f" VALUES ('', 0, '2026-05-20 12:00:00.000000', '{FILLER_PAGE}', 'page_view')",
            "INSERT INTO activity_audit_log (action, created_at)"
            f" VALUES ('{FILLER_ACTION}', '2026-05-20 12:00:00.000000')",
        )
        for filler in fillers:
            for _ in range(100_000):
                try:
                    conn.execute(filler)
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc)
                    break
        try:
            yield
        finally:
            conn.execute(f"PRAGMA max_page_count = {limit}")
        return
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        conn.execute(DISK_FULL_FUNCTION)
        for table, operation in FULL_TABLES.items():
            conn.execute(
                f"CREATE TRIGGER test_disk_full BEFORE {operation} ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION test_disk_full()"
            )
        try:
            yield
        finally:
            for table in FULL_TABLES:
                conn.execute(f"DROP TRIGGER test_disk_full ON {table}")
            conn.execute("DROP FUNCTION test_disk_full()")
    finally:
        conn.close()


@contextmanager
def write_lock_held(app: Flask) -> Iterator[None]:
    """Hold the database's write lock from another connection while the block runs (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: LOCK TABLE user_activity_log IN ACCESS EXCLUSIVE MODE)."""
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        if conn.dialect == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.raw.execute("BEGIN")
            conn.raw.execute("LOCK TABLE user_activity_log IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


# --- reading what landed ---------------------------------------------------------------------------


def query(app: Flask, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    conn = connect(app.config["ACTIVITY_DATABASE"])
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def events(app: Flask) -> list[dict[str, Any]]:
    """The real events (not the filler rows), in id order."""
    return query(app, "SELECT * FROM user_activity_log WHERE page_url <> ? ORDER BY id", (FILLER_PAGE,))


def audit_actions(app: Flask) -> list[str]:
    rows = query(app, "SELECT action FROM activity_audit_log WHERE action <> ? ORDER BY id", (FILLER_ACTION,))
    return [row["action"] for row in rows]


def spool_health(app: Flask) -> dict[str, Any]:
    return event_spool.health(app)


def spool_files(app: Flask) -> list[Path]:
    return sorted(Path(event_spool.get_spool(app).folder).glob("*.jsonl"))


@pytest.fixture
def spool_app(make_app, tmp_path) -> Flask:
    """An app whose spool lives in the test's own folder."""
    return make_app(ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"))


@pytest.fixture
def driver(spool_app: Flask) -> FlaskClient:
    """A client logged in as a driver (its login is one event)."""
    client = spool_app.test_client()
    assert AuthActions(spool_app, client).login("driver").status_code == 200
    return client


@pytest.fixture
def admin(spool_app: Flask) -> FlaskClient:
    """A client logged in as an admin (its login is one event)."""
    client = spool_app.test_client()
    assert AuthActions(spool_app, client).login("admin").status_code == 200
    return client


# --- a held write lock ---------------------------------------------------------------------------


def test_with_the_write_lock_held_for_14_s_requests_answer_at_once_and_every_event_lands_once(
    spool_app: Flask, driver: FlaskClient, clock
) -> None:
    pages = ["/devices", "/routes", "/api/devices", "/devices.csv"]
    held_for: list[float] = []
    with write_lock_held(spool_app):
        locked_at = time.monotonic()
        for page in pages:
            clock.advance(seconds=1)
            started = time.monotonic()
            assert driver.get(page).status_code == 200
            held_for.append(time.monotonic() - started)
        health = spool_health(spool_app)
        assert (health["spooled"], health["pending"], health["status"]) == (4, 4, "degraded")
        # The 14 s: long past any busy timeout the requests could have waited out.
        time.sleep(max(0.0, 14 - (time.monotonic() - locked_at)))
    # The issue demands about 100 ms (bench/bench_spool.py measures it); this bound only proves
    # that no request waited out the lock (10 s before).
    assert max(held_for) < 2, held_for
    clock.advance(seconds=1)
    assert driver.get("/routes").status_code == 200  # a write that succeeds wakes the replay
    first = event_spool.replay_pending(spool_app)
    second = event_spool.replay_pending(spool_app)
    landed = events(spool_app)
    # The write that succeeded first, then the spooled ones in their order.
    assert [e["page_url"] for e in landed] == ["/api/auth/login", "/routes", *pages]
    # Each spooled event keeps the app clock's time of its request, and its key.
    spooled = sorted((e for e in landed if e["spool_key"]), key=lambda e: e["timestamp"])
    assert [e["page_url"] for e in spooled] == pages
    assert [e["timestamp"][11:19] for e in spooled] == ["12:00:01", "12:00:02", "12:00:03", "12:00:04"]
    assert len({e["spool_key"] for e in spooled}) == 4
    assert second["replayed"] == 0 and first["error"] is None and second["error"] is None
    health = spool_health(spool_app)
    assert (health["spooled"], health["replayed"], health["pending"], health["status"]) == (4, 4, 0, "ok")
    assert health["files"] == 0


# --- a full database ---------------------------------------------------------------------------------


def test_with_the_database_full_trends_and_export_answer_and_every_row_lands_once_space_returns(
    spool_app: Flask, admin: FlaskClient
) -> None:
    paths = [f"trends?{RANGE}", f"export?{RANGE}&format=json", f"export?{RANGE}", f"trends?{RANGE}"]
    with database_full(spool_app):
        for path in paths:
            response = admin.get(f"{PREFIX}/{path}")
            assert response.status_code == 200, response.get_data()[:300]
        health = admin.get(f"{PREFIX}/health")
        assert health.status_code == 503
        body = health.get_json()
        assert body["checks"]["database"]["status"] == "unhealthy"
        assert "full" in body["checks"]["database"]["error"]
        assert body["checks"]["event_spool"]["pending"] == 2 * len(paths)  # an event and an audit row each
        assert audit_actions(spool_app) == []
    result = event_spool.replay_pending(spool_app)
    assert result["error"] is None and result["replayed"] == 2 * len(paths)
    assert event_spool.replay_pending(spool_app)["replayed"] == 0
    expected_pages = [f"{PREFIX}/{path.split('?')[0]}" for path in paths]
    assert Counter(e["page_url"] for e in events(spool_app)) == Counter(["/api/auth/login", *expected_pages])
    assert audit_actions(spool_app) == [
        "VIEW_ACTIVITY_TRENDS",
        "EXPORT_ACTIVITY_DATA",
        "EXPORT_ACTIVITY_DATA",
        "VIEW_ACTIVITY_TRENDS",
    ]
    body = admin.get(f"{PREFIX}/health").get_json()
    assert body["checks"]["database"]["status"] in ("ok", "degraded")
    assert body["checks"]["database"]["writable"] is True
    assert body["checks"]["event_spool"]["status"] == "ok"


def test_an_idle_process_retries_its_spooled_rows_on_its_own(make_app, tmp_path) -> None:
    app = make_app(ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"), ACTIVITY_SPOOL_RETRY_SECONDS=1)
    client = app.test_client()
    assert AuthActions(app, client).login("driver").status_code == 200
    with database_refusing_writes(app):
        client.get("/devices")
        client.get("/routes")
        assert spool_health(app)["pending"] == 2
    # No further request and no leader: the spool's own thread delivers the rows.
    deadline = time.monotonic() + 30
    while spool_health(app)["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["page_url"] for e in events(app)] == ["/api/auth/login", "/devices", "/routes"]
    assert spool_health(app)["replayed"] == 2


def test_the_next_successful_write_replays_the_spool_in_the_background(
    spool_app: Flask, driver: FlaskClient
) -> None:
    with database_refusing_writes(spool_app):
        driver.get("/devices")
        driver.get("/routes")
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login"]
    driver.get("/api/devices")
    deadline = time.monotonic() + 10
    while spool_health(spool_app)["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    pages = [e["page_url"] for e in events(spool_app)]
    assert pages == ["/api/auth/login", "/api/devices", "/devices", "/routes"]
    assert spool_health(spool_app)["replayed"] == 2


# --- health tells the truth ----------------------------------------------------------------------------


def test_a_read_only_database_is_unhealthy_with_a_sentence(spool_app: Flask, admin: FlaskClient) -> None:
    with database_refusing_writes(spool_app):
        response = admin.get(f"{PREFIX}/health")
    assert response.status_code == 503
    database = response.get_json()["checks"]["database"]
    assert database["status"] == "unhealthy" and database["writable"] is False
    assert database["error"].startswith("The database answers reads but does not take writes: ")
    assert "read" in database["error"]  # "readonly database" / "read-only transaction"


def test_a_held_write_lock_degrades_health_but_is_not_unhealthy(spool_app: Flask, admin: FlaskClient) -> None:
    with write_lock_held(spool_app):
        assert admin.get("/devices").status_code == 200  # its event waits in the spool
        started = time.monotonic()
        response = admin.get(f"{PREFIX}/health")
        took = time.monotonic() - started
    body = response.get_json()
    assert response.status_code == 200
    assert body["checks"]["database"]["status"] == "degraded"
    assert body["checks"]["database"]["writable"] is False
    assert "lock" in body["checks"]["database"]["error"]
    assert body["checks"]["event_spool"]["pending"] == 1
    assert took < 5  # the check's own bound is 1 s a statement, not the 10 s busy timeout


@pytest.mark.sqlite_only
def test_a_deleted_database_file_is_reported_never_created_anew_and_events_are_spooled(
    make_app, tmp_path
) -> None:
    monitor_file = tmp_path / "monitor.sqlite3"
    app = make_app(
        DATABASE=str(tmp_path / "host.sqlite3"),
        ACTIVITY_DATABASE=str(monitor_file),
        ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"),
    )
    client = app.test_client()
    AuthActions(app, client).login("admin")
    assert client.get("/devices").status_code == 200  # the serving thread's connection is open
    for suffix in ("", "-wal", "-shm"):
        Path(f"{monitor_file}{suffix}").unlink(missing_ok=True)

    assert client.get("/healthz").status_code == 503
    response = client.get(f"{PREFIX}/health")
    assert response.status_code == 503
    database = response.get_json()["checks"]["database"]
    assert database["status"] == "unhealthy"
    sentence = f"The database file {monitor_file} was deleted or replaced while the app was running"
    assert sentence in database["error"]
    assert client.get("/routes").status_code == 200
    assert not monitor_file.exists()
    assert spool_health(app)["pending"] == 1


@pytest.mark.sqlite_only
def test_a_database_file_replaced_while_running_is_reported_and_left_alone(make_app, tmp_path) -> None:
    monitor_file = tmp_path / "monitor.sqlite3"
    app = make_app(
        DATABASE=str(tmp_path / "host.sqlite3"),
        ACTIVITY_DATABASE=str(monitor_file),
        ACTIVITY_SPOOL_FOLDER=str(tmp_path / "spool"),
    )
    client = app.test_client()
    AuthActions(app, client).login("driver")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{monitor_file}{suffix}").unlink(missing_ok=True)
    monitor_file.write_bytes(b"")  # someone's empty file in its place
    assert client.get("/devices").status_code == 200
    assert client.get("/healthz").status_code == 503
    assert monitor_file.stat().st_size == 0
    assert spool_health(app)["pending"] == 1


# --- exactly once, torn lines, dead processes' files ---------------------------------------------------


def spool_some_events(app: Flask, client: FlaskClient, pages: list[str]) -> None:
    with database_refusing_writes(app):
        for page in pages:
            assert client.get(page).status_code == 200


def test_a_crash_between_commit_and_truncation_lands_no_row_twice(
    spool_app: Flask, driver: FlaskClient
) -> None:
    spool_some_events(spool_app, driver, ["/devices", "/routes", "/api/devices"])
    event_spool.get_spool(spool_app).sync()
    (own,) = spool_files(spool_app)
    copy = own.read_bytes()
    assert copy.count(b"\n") == 3
    assert event_spool.replay_pending(spool_app)["replayed"] == 3
    # The same lines again, as a dead process's file would hold them had it died before truncating.
    (own.parent / f"{socket.gethostname()}-1-dead.jsonl").write_bytes(copy)
    again = event_spool.replay_pending(spool_app)
    assert (again["replayed"], again["duplicates"], again["files_replayed"]) == (0, 3, 1)
    pages = [e["page_url"] for e in events(spool_app)]
    assert pages == ["/api/auth/login", "/devices", "/routes", "/api/devices"]
    assert spool_files(spool_app) == [own] and own.stat().st_size == 0


def test_a_dead_processes_file_is_replayed_in_order_and_its_torn_last_line_skipped(
    spool_app: Flask, driver: FlaskClient
) -> None:
    spool_some_events(spool_app, driver, ["/devices", "/routes"])
    event_spool.get_spool(spool_app).sync()
    (own,) = spool_files(spool_app)
    lines = own.read_bytes().splitlines(keepends=True)
    event_spool.get_spool(spool_app).close()  # the process "dies": its lock goes, the file stays
    torn = lines[1][: len(lines[1]) // 2]
    own.write_bytes(lines[0] + lines[1] + torn)
    result = event_spool.replay_pending(spool_app)
    assert (result["replayed"], result["torn"], result["files_replayed"]) == (2, 1, 1)
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/devices", "/routes"]
    assert spool_files(spool_app) == []
    assert spool_health(spool_app)["torn_lines"] == 1


def test_the_file_of_a_live_process_is_left_to_it(spool_app: Flask, driver: FlaskClient) -> None:
    import fcntl

    folder = Path(event_spool.get_spool(spool_app).folder)
    folder.mkdir(parents=True)
    entry = {"key": "other:1", "kind": "event", "row": dict(events(spool_app)[0], page_url="/other")}
    entry["row"].pop("id")
    entry["row"].pop("spool_key")
    live = folder / f"{socket.gethostname()}-2-live.jsonl"
    live.write_text(json.dumps(entry) + "\n")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as its living owner holds it
        result = event_spool.replay_pending(spool_app)
        assert (result["replayed"], result["files_of_live_processes"]) == (0, 1)
        health = spool_health(spool_app)
        assert health["files"] == 1 and health["status"] == "degraded"
    result = event_spool.replay_pending(spool_app)  # its owner is gone now
    assert (result["replayed"], result["files_replayed"]) == (1, 1)
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/other"]


def test_rows_wait_in_memory_when_the_spool_cannot_be_written_and_past_its_bound_are_dropped(
    make_app, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    app = make_app(ACTIVITY_SPOOL_FOLDER=str(not_a_folder / "spool"), ACTIVITY_SPOOL_MEMORY_LIMIT=2)
    client = app.test_client()
    AuthActions(app, client).login("driver")
    spool_some_events(app, client, ["/devices", "/routes", "/api/devices"])
    health = spool_health(app)
    assert (health["spooled"], health["in_memory"], health["pending"], health["dropped"]) == (3, 2, 2, 1)
    assert health["status"] == "degraded" and "1 rows were lost" in health["detail"]
    assert "this event row is lost" in caplog.text and "/api/devices" in caplog.text
    assert event_spool.replay_pending(app)["replayed"] == 2
    assert [e["page_url"] for e in events(app)] == ["/api/auth/login", "/devices", "/routes"]
    health = spool_health(app)
    assert (health["pending"], health["dropped"], health["status"]) == (0, 1, "degraded")


def test_rows_held_in_memory_go_to_the_file_once_it_can_be_written(make_app, tmp_path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("")  # a file where the folder must be: the spool cannot be written
    app = make_app(ACTIVITY_SPOOL_FOLDER=str(blocker))
    client = app.test_client()
    AuthActions(app, client).login("driver")
    with database_refusing_writes(app):
        client.get("/devices")
        blocker.unlink()  # the disk has room again, the database still refuses
        client.get("/routes")
    spool = event_spool.get_spool(app)
    assert spool_health(app)["in_memory"] == 0
    lines = [json.loads(line) for line in Path(spool.path).read_text().splitlines()]
    assert [line["row"]["page_url"] for line in lines] == ["/devices", "/routes"]
    assert event_spool.replay_pending(app)["replayed"] == 2
    assert [e["page_url"] for e in events(app)] == ["/api/auth/login", "/devices", "/routes"]


def test_an_idle_spool_writes_no_file_and_its_health_is_ok(spool_app: Flask, driver: FlaskClient) -> None:
    driver.get("/devices")
    assert not Path(event_spool.get_spool(spool_app).folder).exists()
    health = spool_health(spool_app)
    assert health["status"] == "ok" and health["spooled"] == health["pending"] == health["files"] == 0


def test_spooled_lines_are_fsynced_by_the_spools_thread(spool_app: Flask, driver: FlaskClient) -> None:
    spool_some_events(spool_app, driver, ["/devices"])
    spool = event_spool.get_spool(spool_app)
    deadline = time.monotonic() + 5
    while spool.unsynced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool.unsynced == 0


def test_two_replays_at_once_write_each_row_once(spool_app: Flask, driver: FlaskClient) -> None:
    spool_some_events(spool_app, driver, [f"/devices?n={n}" for n in range(20)])
    results: list[dict] = []
    def replay() -> None:
        results.append(event_spool.replay_pending(spool_app))

    threads = [threading.Thread(target=replay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result["replayed"] for result in results) == 20
    assert len(events(spool_app)) == 21


def test_a_forked_child_starts_a_spool_of_its_own(spool_app: Flask, driver: FlaskClient) -> None:
    spool_some_events(spool_app, driver, ["/devices"])
    spool = event_spool.get_spool(spool_app)
    parent_file = spool.path
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what the parent spooled is not its own
        try:
            spool.check_process()
            os.write(write, json.dumps([spool.pending, spool.path]).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_pending, child_path = json.loads(os.read(read, 1000))
    os.close(read)
    assert (child_pending, child_path) == (0, None)
    assert spool.path == parent_file and spool.pending == 1


def test_a_token_request_is_not_held_by_a_held_write_lock(spool_app: Flask) -> None:
    token = AuthActions(spool_app, spool_app.test_client()).token("admin")
    client = spool_app.test_client()
    with write_lock_held(spool_app):
        started = time.monotonic()
        response = client.get(f"{PREFIX}/cache/stats", headers={"Authorization": f"Bearer {token}"})
        took = time.monotonic() - started
    assert response.status_code == 200
    assert took < 2  # its last_used_at and its event wait at most 100 ms each, not 10 s
    assert spool_health(spool_app)["pending"] == 1


def test_a_row_the_database_can_never_take_is_logged_and_skipped_not_holding_back_the_rest(
    spool_app: Flask, driver: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    spool_some_events(spool_app, driver, ["/devices"])
    spool = event_spool.get_spool(spool_app)
    spool.sync()
    path = Path(spool.path)
    good = path.read_text()
    spool.close()  # the process "dies"; the leader replays its file
    broken = json.loads(good)
    broken["key"] += "-broken"
    broken["row"]["action_type"] = "not_an_action"  # the table's CHECK refuses it
    path.write_text(json.dumps(broken) + "\n" + good)
    result = event_spool.replay_pending(spool_app)
    assert (result["replayed"], result["rejected"]) == (1, 1)
    assert "not_an_action" in caplog.text
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/devices"]
    health = spool_health(spool_app)
    assert health["status"] == "degraded" and "rejected" in health["detail"]


# --- dead files of any host, health after recovery, a new file's name ----------------------------------


def write_dead_file(folder: Path, name: str, pages: list[str]) -> Path:
    """Leave a spool file as a process that died would: one event line per page, unlocked."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = []
    for n, page in enumerate(pages, start=1):
        row = {
            "session_id": "",
            "user_id": 1,
            "role": "driver",
            "timestamp": f"2026-05-20 11:00:0{n}.000000",
            "page_url": page,
            "action_type": "page_view",
            "status_code": 200,
            "duration_ms": 1.0,
            "ip_address": "127.0.0.1",
            "user_agent": "old container",
        }
        lines.append(json.dumps({"key": f"{path.stem}:{n}", "kind": "event", "row": row}) + "\n")
    path.write_text("".join(lines))
    return path


def wait_until(done) -> None:
    """Wait (at most 10 s) for the spool's thread to make ``done()`` true."""
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_dead_file_of_another_host_is_replayed_by_the_next_write_of_a_process_that_is_not_leader(
    spool_app: Flask, driver: FlaskClient
) -> None:
    spool_some_events(spool_app, driver, ["/devices"])
    # A container's worker died; the container came back under another host name.
    dead = write_dead_file(
        Path(event_spool.get_spool(spool_app).folder), "old-container-7-0a0b0c0d.jsonl", ["/gone"]
    )
    assert driver.get("/routes").status_code == 200  # a write that succeeds wakes the replay
    wait_until(lambda: not dead.exists())
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/routes", "/devices", "/gone"]
    assert spool_files(spool_app) != [] and not dead.exists()


def test_dead_files_waiting_at_start_up_are_replayed_by_the_first_write(make_app, spool_app: Flask) -> None:
    folder = Path(event_spool.get_spool(spool_app).folder)
    dead = write_dead_file(folder, "old-container-7-0a0b0c0d.jsonl", ["/gone", "/gone-too"])
    app = make_app()  # a process starting after the other one died (its database: the same folder)
    assert event_spool.get_spool(app).folder == str(folder)
    client = app.test_client()
    # Nothing failed in this process: its first successful write replays what waits.
    assert AuthActions(app, client).login("driver").status_code == 200
    wait_until(lambda: not dead.exists())
    assert [e["page_url"] for e in events(app)] == ["/api/auth/login", "/gone", "/gone-too"]
    assert spool_health(app)["replayed"] == 2


def test_health_recovers_with_the_database_not_only_with_the_next_tracked_write(
    spool_app: Flask, admin: FlaskClient
) -> None:
    with database_refusing_writes(spool_app):
        assert admin.get("/devices").status_code == 200  # spooled
        assert admin.get(f"{PREFIX}/health").status_code == 503
    # The database takes writes again; /health is not tracked and no replay has run yet.
    assert spool_health(spool_app)["pending"] == 1
    response = admin.get(f"{PREFIX}/health")
    database = response.get_json()["checks"]["database"]
    assert database["writable"] is True and database["status"] != "unhealthy", database
    assert response.status_code == 200
    # The check wrote the first waiting row itself, once.
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/devices"]
    assert event_spool.replay_pending(spool_app)["replayed"] == 0
    health = spool_health(spool_app)
    assert (health["replayed"], health["duplicates_skipped"], health["pending"]) == (1, 0, 0)


class FlockAfterAReplay:
    """Stands in for the spool module's fcntl: just before the first flock the spool makes, another
    process's replay of dead files runs, deterministically inside the window between creating the
    new file and locking it."""

    LOCK_EX, LOCK_NB = fcntl_module.LOCK_EX, fcntl_module.LOCK_NB

    def __init__(self, replay) -> None:
        self.replay = replay
        self.armed = True
        self.results: list[dict] = []

    def flock(self, fd: int, operation: int) -> None:
        if self.armed:
            self.armed = False
            self.results.append(self.replay())
        fcntl_module.flock(fd, operation)


def test_a_new_spool_file_is_never_taken_for_a_dead_one_between_its_creation_and_its_lock(
    make_app, spool_app: Flask, driver: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_process = make_app()  # the same database and folder: another worker replaying dead files
    cutting_in = FlockAfterAReplay(lambda: event_spool.replay_pending(other_process))
    monkeypatch.setattr(event_spool, "fcntl", cutting_in)
    spool_some_events(spool_app, driver, ["/devices"])
    monkeypatch.undo()
    (cut_in,) = cutting_in.results
    assert (cut_in["files_replayed"], cut_in["error"]) == (0, None)
    spool = event_spool.get_spool(spool_app)
    spool.sync()
    # The file has its name and holds the line (not appended to an unlinked file).
    assert spool_files(spool_app) == [Path(spool.path)]
    assert [json.loads(line)["row"]["page_url"] for line in Path(spool.path).read_text().splitlines()] == [
        "/devices"
    ]
    assert not [p for p in Path(spool.folder).iterdir() if p.name.startswith(".")]
    assert event_spool.replay_pending(spool_app)["replayed"] == 1
    assert [e["page_url"] for e in events(spool_app)] == ["/api/auth/login", "/devices"]
