"""The demo seeder: deterministic, realistic in shape, consistent with the tracker, safe to re-run.

The seeder writes two stores: the host's users into its own SQLite file (DATABASE), the events
into the monitor's database (ACTIVITY_DATABASE, the same file on SQLite, another database on
PostgreSQL). Each is read through its own connection, and the two are joined here in Python.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask

from activity_monitor.daily_summaries import DailySummaryProcessor
from activity_monitor.db import connect
from activity_monitor.storage import Connection
from activity_monitor.timeutil import local_day_bounds_text
from demo_host import db as host_db
from demo_host import demo_traffic
from demo_host.demo_data import DemoDataExists, seed_demo
from demo_host.demo_traffic import DemoGenerator

END_DAY = dt.date(2026, 3, 29)  # a Sunday
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
DOWNLOADS = {"/devices.csv", "/api/admin/activity/export"}


@dataclass(frozen=True)
class Stores:
    """Connections to the two stores of one app: the host's users and the monitor's tables."""

    host: sqlite3.Connection
    monitor: Connection


@pytest.fixture
def connections() -> Iterator[list[sqlite3.Connection | Connection]]:
    """Connections a test opens, closed at its end."""
    opened: list[sqlite3.Connection | Connection] = []
    yield opened
    for conn in opened:
        conn.close()


@pytest.fixture
def open_stores(connections) -> Callable[[Flask], Stores]:
    """Return a function opening connections to an app's two stores, closed at the test's end."""

    def open_(app: Flask) -> Stores:
        stores = Stores(host_db.connect(app.config["DATABASE"]), connect(app.config["ACTIVITY_DATABASE"]))
        connections.extend((stores.host, stores.monitor))
        return stores

    return open_


@pytest.fixture
def app_named(make_app, tmp_path, new_database) -> Callable[[str], Flask]:
    """Return a function building the demo on a database file of its own name (and a monitor
    database of that name: the same file on SQLite, a schema of its own on PostgreSQL)."""

    def build(name: str) -> Flask:
        return make_app(DATABASE=str(tmp_path / f"{name}.sqlite3"), ACTIVITY_DATABASE=new_database(name))

    return build


@pytest.fixture
def seeded(app_named, open_stores) -> Callable[..., Stores]:
    """Return a function that seeds a fresh database and returns connections to its stores."""

    def seed(name: str = "demo", **options) -> Stores:
        app = app_named(name)
        seed_demo(app, **{"days": 14, "users": 12, "seed": 0, "end_day": END_DAY, **options})
        return open_stores(app)

    return seed


def dump(stores: Stores) -> dict[str, list[tuple]]:
    """Return every row of the tables the seeder writes, each from its own store, in id order."""
    return {
        "users": [tuple(row) for row in stores.host.execute("SELECT * FROM users ORDER BY id")],
        "user_activity_log": [
            tuple(row) for row in stores.monitor.execute("SELECT * FROM user_activity_log ORDER BY id")
        ],
    }


def late_data_triggers(conn: Connection) -> list[tuple]:
    """Return every trigger of the monitor's database: name and definition (on PostgreSQL also
    whether it is enabled, since a bulk load there could disable a trigger rather than drop it)."""
    if conn.dialect == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = """
            SELECT tg.tgname, pg_get_triggerdef(tg.oid), tg.tgenabled
            FROM pg_trigger AS tg
            JOIN pg_class AS rel ON rel.oid = tg.tgrelid
            WHERE rel.relnamespace = current_schema()::regnamespace
              AND NOT tg.tgisinternal
            ORDER BY tg.tgname
        """
    return [tuple(row) for row in conn.execute(sql)]


def test_same_seed_gives_identical_rows(seeded):
    first = dump(seeded("a", seed=7))
    second = dump(seeded("b", seed=7))
    assert first["user_activity_log"]
    assert first == second


def test_different_seeds_give_different_rows(seeded):
    first = dump(seeded("a", seed=1))
    second = dump(seeded("b", seed=2))
    assert first["user_activity_log"] != second["user_activity_log"]


def test_report_counts_what_was_inserted(app, open_stores):
    report = seed_demo(app, days=10, users=9, end_day=END_DAY)
    stores = open_stores(app)
    monitor = stores.monitor
    assert report.users == stores.host.execute("SELECT count(*) FROM users").fetchone()[0] == 9
    sessions = monitor.execute("SELECT count(DISTINCT session_id) FROM user_activity_log").fetchone()[0]
    assert report.sessions == sessions
    assert report.events == monitor.execute("SELECT count(*) FROM user_activity_log").fetchone()[0]
    assert (report.first_day, report.last_day) == (END_DAY - dt.timedelta(days=9), END_DAY)
    assert report.events_per_second > 0


def test_defaults_to_the_days_before_today_in_the_apps_time_zone(make_app, clock, open_stores):
    app = make_app(ACTIVITY_TIMEZONE="Pacific/Auckland")
    clock.set(dt.datetime(2026, 5, 20, 13, 0, tzinfo=dt.UTC))  # already 21 May in Auckland
    report = seed_demo(app, days=2, users=6)
    assert (report.first_day, report.last_day) == (dt.date(2026, 5, 19), dt.date(2026, 5, 20))
    span = "SELECT min(timestamp), max(timestamp) FROM user_activity_log"
    low, high = open_stores(app).monitor.execute(span).fetchone()
    assert low >= local_day_bounds_text(dt.date(2026, 5, 19), "Pacific/Auckland")[0]
    assert high < local_day_bounds_text(dt.date(2026, 5, 20), "Pacific/Auckland")[1]


@pytest.mark.parametrize("users", [4, 12, 150])
def test_all_four_roles_are_present(users):
    counts = demo_traffic.role_counts(users)
    assert sum(counts.values()) == users
    assert all(counts[role] >= 1 for role in ("admin", "manager", "driver", "viewer"))


def test_roles_and_usernames_of_seeded_users(seeded):
    host = seeded(users=100, days=2).host
    rows = host.execute("SELECT username, role, password_hash FROM users").fetchall()
    assert Counter(row["role"] for row in rows) == Counter(demo_traffic.role_counts(100))
    assert all(row["username"].startswith(f"demo_{row['role']}_") for row in rows)
    assert {row["password_hash"] for row in rows} == {demo_traffic.UNUSABLE_PASSWORD_HASH}


def test_every_event_carries_the_role_of_its_user(seeded):
    stores = seeded(users=40)
    user_role = {str(user_id): role for user_id, role in stores.host.execute("SELECT id, role FROM users")}
    events = stores.monitor.execute("SELECT DISTINCT user_id, role FROM user_activity_log")
    pairs = {(event_role, user_role[str(user_id)]) for user_id, event_role in events}
    assert {event_role for event_role, _ in pairs} == {"admin", "manager", "driver", "viewer"}
    assert all(event_role == user_role for event_role, user_role in pairs)


def test_weekends_are_much_quieter_than_weekdays(seeded):
    conn = seeded(days=28, users=40).monitor
    per_day = Counter(
        dt.date.fromisoformat(row[0]).weekday()
        for row in conn.execute("SELECT substr(timestamp, 1, 10) FROM user_activity_log")
    )
    weekday = sum(per_day[d] for d in range(5)) / 5
    weekend = (per_day[5] + per_day[6]) / 2
    assert weekend < 0.3 * weekday


def test_christmas_is_near_zero(seeded):
    conn = seeded(days=21, users=40, end_day=dt.date(2025, 12, 28)).monitor
    days = conn.execute("SELECT substr(timestamp, 1, 10) FROM user_activity_log")
    per_day = Counter(row[0] for row in days)
    ordinary_weekdays = [per_day[f"2025-12-{d:02d}"] for d in (8, 9, 10, 11, 12)]
    assert per_day["2025-12-25"] < 0.1 * min(ordinary_weekdays)


def test_default_size_is_about_a_million_events_a_year(app):
    report = seed_demo(app, days=28, users=150, end_day=END_DAY)
    per_year = report.events * 365 / 28
    assert 500_000 <= per_year <= 2_000_000


def test_action_types_match_paths_as_the_tracker_classifies_them(seeded):
    conn = seeded(users=40).monitor
    pairs = conn.execute("SELECT DISTINCT page_url, action_type FROM user_activity_log").fetchall()
    common = {"/", "/devices", "/routes", "/service-orders", "/api/devices"}
    assert {row["page_url"] for row in pairs} >= common
    for path, action in pairs:
        if path in DOWNLOADS:
            assert action == "file_download", path
        else:
            assert action == ("api_call" if path.startswith("/api/") else "page_view"), path


def test_admin_only_pages_answer_403_to_other_roles(seeded):
    conn = seeded(users=60, days=28).monitor
    rows = conn.execute(
        """
        SELECT role, status_code
        FROM user_activity_log
        WHERE page_url IN ('/users', '/admin/activity', '/api/admin/activity/trends')
        """
    ).fetchall()
    assert rows
    assert all(row["status_code"] == 403 for row in rows if row["role"] != "admin")
    assert {row["role"] for row in rows} <= {"admin", "manager"}


def test_status_codes_are_mostly_200(seeded):
    conn = seeded(users=40).monitor
    codes = Counter(row[0] for row in conn.execute("SELECT status_code FROM user_activity_log"))
    assert set(codes) <= {200, 403, 404, 500}
    assert codes[200] / sum(codes.values()) > 0.95


def test_every_session_belongs_to_one_user_on_one_local_day(seeded):
    conn = seeded(users=30, tz_name="Europe/Berlin").monitor
    sessions = conn.execute(
        """
        SELECT session_id, count(DISTINCT user_id), min(timestamp), max(timestamp)
        FROM user_activity_log
        GROUP BY session_id
        """
    ).fetchall()
    assert sessions
    for session_id, users, first, last in sessions:
        assert re.fullmatch("[0-9a-f]{64}", session_id) and users == 1
        first_day = dt.datetime.fromisoformat(first + "+00:00").astimezone(BERLIN).date()
        assert last < local_day_bounds_text(first_day, "Europe/Berlin")[1]


def test_the_monitor_counts_the_seeded_sessions(app, runner, open_stores):
    report = seed_demo(app, days=5, users=12, end_day=END_DAY)
    result = runner.invoke(args=["activity", "backfill", "--from", "2026-03-25", "--to", "2026-03-29"])
    assert result.exit_code == 0, result.output
    monitor = open_stores(app).monitor
    summary = monitor.execute("SELECT sum(total_sessions) FROM activity_summary_daily").fetchone()[0]
    assert summary == report.sessions


def test_events_lie_within_the_seeded_local_days(seeded):
    conn = seeded(tz_name="Europe/Berlin", days=7, end_day=dt.date(2026, 3, 29)).monitor
    low, high = conn.execute("SELECT min(timestamp), max(timestamp) FROM user_activity_log").fetchone()
    assert low >= local_day_bounds_text(dt.date(2026, 3, 23), "Europe/Berlin")[0]
    assert high < local_day_bounds_text(dt.date(2026, 3, 29), "Europe/Berlin")[1]


def test_users_exist_before_their_first_request(seeded):
    stores = seeded(users=40, days=60)
    created = {str(user_id): at for user_id, at in stores.host.execute("SELECT id, created_at FROM users")}
    first_requests = stores.monitor.execute(
        "SELECT user_id, min(timestamp) FROM user_activity_log GROUP BY user_id"
    )
    early = [(user_id, first) for user_id, first in first_requests if first < created[str(user_id)]]
    assert early == []


def test_seeding_twice_is_refused(app, open_stores):
    seed_demo(app, days=3, users=5, end_day=END_DAY)
    stores = open_stores(app)
    before = dump(stores)
    with pytest.raises(DemoDataExists):
        seed_demo(app, days=3, users=5, end_day=END_DAY)
    assert dump(stores) == before


def test_a_failed_seed_leaves_no_demo_data(app, open_stores, monkeypatch):
    batches = []
    draw = DemoGenerator.batch

    def failing_batch(self, first, last, user_ids):
        # The third batch fails, after two have been inserted in the load's transaction.
        batches.append(first)
        if len(batches) > 2:
            raise OSError("the disk is full")
        return draw(self, first, last, user_ids)

    monkeypatch.setattr(DemoGenerator, "batch", failing_batch)
    with pytest.raises(OSError):
        seed_demo(app, days=40, users=8, end_day=END_DAY)
    assert len(batches) == 3
    stores = open_stores(app)
    for conn, table in ((stores.host, "users"), (stores.monitor, "user_activity_log")):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    monkeypatch.undo()
    assert seed_demo(app, days=3, users=5, end_day=END_DAY).events > 0


def test_demo_users_cannot_log_in(app, client):
    seed_demo(app, days=1, users=4, end_day=END_DAY)
    response = client.post("/api/auth/login", json={"username": "demo_admin_001", "password": ""})
    assert response.status_code == 401
    unusable = demo_traffic.UNUSABLE_PASSWORD_HASH
    response = client.post("/api/auth/login", json={"username": "demo_admin_001", "password": unusable})
    assert response.status_code == 401


def test_cli_prints_a_summary_and_refuses_a_second_run(runner, db_conn):
    result = runner.invoke(args=["seed-demo", "--days", "5", "--users", "8", "--seed", "3"])
    assert result.exit_code == 0, result.output
    events = db_conn.execute("SELECT count(*) FROM user_activity_log").fetchone()[0]
    assert "Seeded 8 demo users" in result.output
    assert f"{events:,} events" in result.output
    assert "events/s" in result.output

    again = runner.invoke(args=["seed-demo", "--days", "5", "--users", "8"])
    assert again.exit_code != 0
    assert "already holds 8 demo users" in again.output
    assert "fresh database" in again.output
    assert db_conn.execute("SELECT count(*) FROM user_activity_log").fetchone()[0] == events


def test_cli_seeds_complete_days_ending_yesterday(make_app, clock, open_stores):
    tz_name = "America/New_York"
    app = make_app(ACTIVITY_TIMEZONE=tz_name)
    result = app.test_cli_runner().invoke(args=["seed-demo", "--days", "3", "--users", "6"])
    assert result.exit_code == 0, result.output
    yesterday = clock.today(tz_name) - dt.timedelta(days=1)
    conn = open_stores(app).monitor
    low, high = conn.execute("SELECT min(timestamp), max(timestamp) FROM user_activity_log").fetchone()
    assert low >= local_day_bounds_text(yesterday - dt.timedelta(days=2), tz_name)[0]
    assert high < local_day_bounds_text(yesterday, tz_name)[1]
    assert f"to {yesterday} ({tz_name})" in result.output


def test_if_empty_seeds_an_empty_database_and_then_leaves_it_alone(runner, db_conn):
    first = runner.invoke(args=["seed-demo", "--days", "3", "--users", "6", "--if-empty"])
    assert first.exit_code == 0 and "Seeded" in first.output
    events = db_conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0]
    second = runner.invoke(args=["seed-demo", "--days", "3", "--users", "6", "--if-empty"])
    assert second.exit_code == 0 and "already holds demo data" in second.output
    assert db_conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0] == events


def test_seeding_keeps_the_late_data_triggers(app, db_conn):
    end_day = dt.date(2026, 3, 10)
    triggers = late_data_triggers(db_conn)
    assert triggers
    # A final summary that the seeded days will overlap: it must come out dirty.
    DailySummaryProcessor(db_conn, "UTC", 5).summarize_day(end_day)
    seed_demo(app, days=3, users=6, seed=1, end_day=end_day)
    assert late_data_triggers(db_conn) == triggers
    assert [r[0] for r in db_conn.execute("SELECT date FROM activity_dirty_days")] == [end_day.isoformat()]


@pytest.mark.sqlite_only
def test_seeding_keeps_the_file_in_wal_mode(app, db_conn):
    # The bulk load may leave WAL for a rollback journal; it must come back to WAL after it.
    db_conn.execute("SELECT COUNT(*) FROM users").fetchone()
    seed_demo(app, days=3, users=6, seed=1, end_day=dt.date(2026, 3, 10))
    assert db_conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_seeding_works_while_other_connections_are_open(app, open_stores):
    stores = open_stores(app)
    stores.host.execute("SELECT COUNT(*) FROM users").fetchone()
    stores.monitor.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()
    report = seed_demo(app, days=2, users=5, seed=2, end_day=dt.date(2026, 3, 10))
    assert stores.monitor.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0] == report.events > 0
