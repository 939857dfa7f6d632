"""The demo seeder: deterministic, realistic in shape, consistent with the tracker, safe to re-run."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter

import pytest

from activity_monitor.db import apply_migrations, connect
from activity_monitor.timeutil import local_day_bounds_text, local_today
from demo_host import demo_data, demo_traffic
from demo_host.demo_data import DemoDataExists, seed_demo

END_DAY = dt.date(2026, 3, 29)  # a Sunday
DOWNLOADS = {"/devices.csv", "/api/admin/activity/export"}


def seeded(tmp_path, name: str = "demo", **options) -> sqlite3.Connection:
    """Seed a fresh database file and return a connection to it."""
    conn = connect(str(tmp_path / f"{name}.sqlite3"))
    apply_migrations(conn)
    options = {"days": 14, "users": 12, "seed": 0, "end_day": END_DAY, **options}
    seed_demo(conn, **options)
    return conn


def connect_migrated(tmp_path) -> sqlite3.Connection:
    """Open a fresh, migrated database."""
    conn = connect(str(tmp_path / "fresh.sqlite3"))
    apply_migrations(conn)
    return conn


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Return every row of the tables the seeder writes, in id order."""
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in (("users", "id"), ("sessions", "id"), ("user_activity_log", "id"))
    }


def test_same_seed_gives_identical_rows(tmp_path):
    first = dump(seeded(tmp_path, "a", seed=7))
    second = dump(seeded(tmp_path, "b", seed=7))
    assert first["user_activity_log"]
    assert first == second


def test_different_seeds_give_different_rows(tmp_path):
    first = dump(seeded(tmp_path, "a", seed=1))
    second = dump(seeded(tmp_path, "b", seed=2))
    assert first["user_activity_log"] != second["user_activity_log"]
    assert first["sessions"] != second["sessions"]


def test_report_counts_what_was_inserted(tmp_path):
    conn = connect_migrated(tmp_path)
    report = seed_demo(conn, days=10, users=9, end_day=END_DAY)
    assert report.users == conn.execute("SELECT count(*) FROM users").fetchone()[0] == 9
    assert report.sessions == conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert report.events == conn.execute("SELECT count(*) FROM user_activity_log").fetchone()[0]
    assert (report.first_day, report.last_day) == (END_DAY - dt.timedelta(days=9), END_DAY)
    assert report.events_per_second > 0


@pytest.mark.parametrize("users", [4, 12, 150])
def test_all_four_roles_are_present(users):
    counts = demo_traffic.role_counts(users)
    assert sum(counts.values()) == users
    assert all(counts[role] >= 1 for role in ("admin", "manager", "driver", "viewer"))


def test_roles_and_usernames_of_seeded_users(tmp_path):
    conn = seeded(tmp_path, users=100, days=2)
    rows = conn.execute("SELECT username, role, password_hash FROM users").fetchall()
    assert Counter(row["role"] for row in rows) == Counter(demo_traffic.role_counts(100))
    assert all(row["username"].startswith(f"demo_{row['role']}_") for row in rows)
    assert {row["password_hash"] for row in rows} == {demo_traffic.UNUSABLE_PASSWORD_HASH}


def test_weekends_are_much_quieter_than_weekdays(tmp_path):
    conn = seeded(tmp_path, days=28, users=40)
    per_day = Counter(
        dt.date.fromisoformat(row[0]).weekday()
        for row in conn.execute("SELECT substr(timestamp, 1, 10) FROM user_activity_log")
    )
    weekday = sum(per_day[d] for d in range(5)) / 5
    weekend = (per_day[5] + per_day[6]) / 2
    assert weekend < 0.3 * weekday


def test_christmas_is_near_zero(tmp_path):
    conn = seeded(tmp_path, days=21, users=40, end_day=dt.date(2025, 12, 28))
    days = conn.execute("SELECT substr(timestamp, 1, 10) FROM user_activity_log")
    per_day = Counter(row[0] for row in days)
    ordinary_weekdays = [per_day[f"2025-12-{d:02d}"] for d in (8, 9, 10, 11, 12)]
    assert per_day["2025-12-25"] < 0.1 * min(ordinary_weekdays)


def test_default_size_is_about_a_million_events_a_year(tmp_path):
    report = seed_demo(connect_migrated(tmp_path), days=28, users=150, end_day=END_DAY)
    per_year = report.events * 365 / 28
    assert 500_000 <= per_year <= 2_000_000


def test_action_types_match_paths_as_the_tracker_classifies_them(tmp_path):
    conn = seeded(tmp_path, users=40)
    pairs = conn.execute("SELECT DISTINCT page_url, action_type FROM user_activity_log").fetchall()
    common = {"/", "/devices", "/routes", "/service-orders", "/api/devices"}
    assert {row["page_url"] for row in pairs} >= common
    for path, action in pairs:
        if path in DOWNLOADS:
            assert action == "file_download", path
        else:
            assert action == ("api_call" if path.startswith("/api/") else "page_view"), path


def test_admin_only_pages_answer_403_to_other_roles(tmp_path):
    conn = seeded(tmp_path, users=60, days=28)
    rows = conn.execute(
        """
        SELECT users.role, log.status_code
        FROM user_activity_log AS log
        JOIN users ON users.id = log.user_id
        WHERE log.page_url IN ('/users', '/admin/activity', '/api/admin/activity/trends')
        """
    ).fetchall()
    assert rows
    assert all(row["status_code"] == 403 for row in rows if row["role"] != "admin")
    assert {row["role"] for row in rows} <= {"admin", "manager"}


def test_status_codes_are_mostly_200(tmp_path):
    conn = seeded(tmp_path, users=40)
    codes = Counter(row[0] for row in conn.execute("SELECT status_code FROM user_activity_log"))
    assert set(codes) <= {200, 403, 404, 500}
    assert codes[200] / sum(codes.values()) > 0.95


def test_every_logged_session_exists_and_spans_its_events(tmp_path):
    conn = seeded(tmp_path, users=30)
    mismatched = conn.execute(
        """
        SELECT count(*)
        FROM user_activity_log AS log
        LEFT JOIN sessions ON sessions.id = log.session_id
        WHERE sessions.id IS NULL
           OR sessions.user_id != log.user_id
           OR log.timestamp < sessions.created_at
           OR log.timestamp > sessions.last_activity
        """
    ).fetchone()[0]
    assert mismatched == 0
    empty = conn.execute(
        "SELECT count(*) FROM sessions WHERE id NOT IN (SELECT session_id FROM user_activity_log)"
    ).fetchone()[0]
    assert empty == 0
    ids = [row[0] for row in conn.execute("SELECT id FROM sessions")]
    assert all(len(i) == 64 and int(i, 16) >= 0 for i in ids)


def test_events_lie_within_the_seeded_local_days(tmp_path):
    conn = seeded(tmp_path, tz_name="Europe/Berlin", days=7, end_day=dt.date(2026, 3, 29))
    low, high = conn.execute("SELECT min(timestamp), max(timestamp) FROM user_activity_log").fetchone()
    assert low >= local_day_bounds_text(dt.date(2026, 3, 23), "Europe/Berlin")[0]
    assert high < local_day_bounds_text(dt.date(2026, 3, 29), "Europe/Berlin")[1]


def test_users_exist_before_their_first_request(tmp_path):
    conn = seeded(tmp_path, users=40, days=60)
    early = conn.execute(
        """
        SELECT count(*)
        FROM user_activity_log AS log
        JOIN users ON users.id = log.user_id
        WHERE log.timestamp < users.created_at
        """
    ).fetchone()[0]
    assert early == 0


def test_seeding_twice_is_refused(tmp_path):
    conn = seeded(tmp_path)
    before = dump(conn)
    with pytest.raises(DemoDataExists):
        seed_demo(conn, days=3, users=5, end_day=END_DAY)
    assert dump(conn) == before


def test_a_failed_seed_leaves_no_demo_data(tmp_path, monkeypatch):
    conn = connect_migrated(tmp_path)
    calls = []

    def failing_insert(conn, rows):
        calls.append(rows.table)
        if len(calls) > 2:
            raise sqlite3.OperationalError("disk full")
        return original(conn, rows)

    original = demo_data.insert_rows
    monkeypatch.setattr(demo_data, "insert_rows", failing_insert)
    with pytest.raises(sqlite3.OperationalError):
        seed_demo(conn, days=40, users=8, end_day=END_DAY)
    for table in ("users", "sessions", "user_activity_log"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_demo_users_cannot_log_in(app, client):
    conn = connect(app.config["DATABASE"])
    seed_demo(conn, days=1, users=4, end_day=END_DAY)
    conn.close()
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


def test_cli_seeds_complete_days_ending_yesterday(runner, db_conn, app):
    runner.invoke(args=["seed-demo", "--days", "3", "--users", "6"])
    tz_name = app.config["ACTIVITY_TIMEZONE"]
    yesterday = local_today(tz_name) - dt.timedelta(days=1)
    low = db_conn.execute("SELECT min(timestamp) FROM user_activity_log").fetchone()[0]
    assert low >= local_day_bounds_text(yesterday - dt.timedelta(days=2), tz_name)[0]
    high = db_conn.execute("SELECT max(timestamp) FROM user_activity_log").fetchone()[0]
    assert high < local_day_bounds_text(yesterday, tz_name)[1]


def test_if_empty_seeds_an_empty_database_and_then_leaves_it_alone(runner, db_conn):
    first = runner.invoke(args=["seed-demo", "--days", "3", "--users", "6", "--if-empty"])
    assert first.exit_code == 0 and "Seeded" in first.output
    events = db_conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0]
    second = runner.invoke(args=["seed-demo", "--days", "3", "--users", "6", "--if-empty"])
    assert second.exit_code == 0 and "already holds activity" in second.output
    assert db_conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0] == events


def test_seeding_keeps_wal_and_the_late_data_triggers(app):
    from activity_monitor.daily_summaries import DailySummaryProcessor
    from activity_monitor.db import connect
    from demo_host.demo_data import seed_demo

    end_day = dt.date(2026, 3, 10)
    conn = connect(app.config["DATABASE"])
    try:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        # A final summary that the seeded days will overlap: it must come out dirty.
        DailySummaryProcessor(conn, "UTC", 5).summarize_day(end_day)
        seed_demo(conn, days=3, users=6, seed=1, end_day=end_day)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        after = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        assert after == triggers
        assert [r[0] for r in conn.execute("SELECT date FROM activity_dirty_days")] == [end_day.isoformat()]
    finally:
        conn.close()


def test_seeding_works_while_other_connections_are_open(app, db_conn):
    from activity_monitor.db import connect
    from demo_host.demo_data import seed_demo

    other = connect(app.config["DATABASE"])
    try:
        other.execute("SELECT COUNT(*) FROM users").fetchone()
        report = seed_demo(db_conn, days=2, users=5, seed=2, end_day=dt.date(2026, 3, 10))
        assert other.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0] == report.events > 0
        assert db_conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
