"""The upgrade of a SQLite database made before the monitor became an extension (that monitor
ran on SQLite only, so there is nothing of the kind on PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from activity_monitor import db
from activity_monitor.storage.sqlite import MIGRATIONS_DIR
from test_db import migrate_at_once, rows, tables, user_version

pytestmark = pytest.mark.sqlite_only

LEGACY_SCHEMA = Path(__file__).with_name("legacy_schema")
STATS = "/api/admin/activity/cache/stats"


# --- a database of the monitor before it became an extension --------------------------------------


def build_legacy_schema(path: str, through: int | None = None) -> sqlite3.Connection:
    """Create the old monitor's schema the way its runner did: each file of tests/legacy_schema in
    order, in its own transaction that also sets PRAGMA user_version to the file's number."""
    conn = db.connect(path)
    for script in sorted(LEGACY_SCHEMA.glob("*.sql")):
        version = int(script.name.partition("_")[0])
        if through is not None and version > through:
            break
        with db.transaction(conn):
            conn.storage.run_script(conn, script)
            conn.execute(f"PRAGMA user_version={version}")
    return conn


@dataclass
class LegacyDatabase:
    """A file made by the old monitor, with what it held before any upgrade."""

    path: str
    admin_token: str
    viewer_token: str
    revoked_token: str
    before: dict[str, list[dict[str, Any]]]


LEGACY_QUERIES = {
    "users": "SELECT * FROM users ORDER BY id",
    "sessions": "SELECT * FROM sessions ORDER BY id",
    "api_tokens": "SELECT * FROM api_tokens ORDER BY id",
    "audit_log": "SELECT * FROM audit_log ORDER BY id",
    "events": "SELECT * FROM user_activity_log ORDER BY id",
    "summaries": "SELECT * FROM activity_summary_daily ORDER BY date",
    "dirty_days": "SELECT * FROM activity_dirty_days ORDER BY date",
    "data_version": "SELECT * FROM activity_data_version",
    "schema_users_sessions": (
        "SELECT type, name, tbl_name, sql FROM sqlite_master"
        " WHERE tbl_name IN ('users', 'sessions') ORDER BY name"
    ),
}
# The legacy audit_log's columns, as activity_audit_log keeps them (spool_key came with migration 007).
LEGACY_AUDIT_COLUMNS = (
    "SELECT id, user_id, action, details, ip_address, created_at FROM activity_audit_log ORDER BY id"
)


def add_legacy_token(conn: sqlite3.Connection, user_id: int, name: str, revoked: bool = False) -> str:
    """Insert a token as the old monitor made them (amt_…, its SHA-256 stored) and return its text."""
    token = "amt_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at, last_used_at, revoked_at)"
        " VALUES (?, ?, ?, '2026-04-01 09:00:00.000000', '2026-04-02 10:00:00.000000', ?)",
        (
            user_id,
            name,
            hashlib.sha256(token.encode()).hexdigest(),
            "2026-04-03 00:00:00.000000" if revoked else None,
        ),
    )
    return token


@pytest.fixture
def legacy(tmp_path) -> LegacyDatabase:
    """A legacy file at user_version 5 with users, sessions, tokens, audit rows, events and summaries."""
    path = str(tmp_path / "activity.sqlite3")
    conn = build_legacy_schema(path)
    assert user_version(conn) == 5
    conn.executemany(
        "INSERT INTO users (id, username, password_hash, role, is_active, last_login)"
        " VALUES (?, ?, 'x', ?, 1, ?)",
        [
            (1, "alice", "admin", "2026-05-18 08:00:00.000000"),
            (2, "victor", "viewer", None),
            (3, "dora", "driver", "2026-05-17 07:00:00.000000"),
        ],
    )
    conn.execute(
        "INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity, ip_address, user_agent)"
        " VALUES (?, 1, '2026-05-18 08:00:00', '2026-05-18 16:00:00', '2026-05-18 09:00:00',"
        " '10.0.0.1', 'ua')",
        (hashlib.sha256(b"cookie").hexdigest(),),
    )
    admin_token = add_legacy_token(conn, 1, "ops")
    viewer_token = add_legacy_token(conn, 2, "report")
    revoked_token = add_legacy_token(conn, 1, "old", revoked=True)
    conn.executemany(
        "INSERT INTO audit_log (user_id, action, details, ip_address, created_at) VALUES (?, ?, ?, ?, ?)",
        [
            (
                1,
                "VIEW_ACTIVITY_TRENDS",
                json.dumps({"start": "2026-04-01"}),
                "10.0.0.1",
                "2026-05-18 08:01:00",
            ),
            (
                2,
                "UNAUTHORIZED_ACCESS_ATTEMPT",
                json.dumps({"endpoint": "/x"}),
                "10.0.0.2",
                "2026-05-18 08:02:00",
            ),
            (None, "EXPORT_ACTIVITY_DATA", "{}", None, "2026-05-18 08:03:00"),
        ],
    )
    conn.executemany(
        "INSERT INTO user_activity_log (session_id, user_id, timestamp, page_url, action_type, status_code,"
        " duration_ms, ip_address, user_agent) VALUES (?, ?, ?, ?, ?, 200, 1.5, '10.0.0.1', 'ua')",
        [
            ("s-alice", 1, "2026-05-18 08:00:00.000000", "/", "page_view"),
            ("s-victor", 2, "2026-05-18 09:00:00.000000", "/devices", "page_view"),
            ("s-dora", 3, "2026-05-18 10:00:00.000000", "/api/devices", "api_call"),
            ("s-gone", 99, "2026-05-18 11:00:00.000000", "/routes", "page_view"),
        ],
    )
    conn.execute(
        """
        INSERT INTO activity_summary_daily (
            date, unique_users, total_sessions, total_page_views, total_api_calls,
            avg_session_duration_seconds, peak_concurrent_users, peak_hour, top_pages, user_distribution,
            computed_at, total_events, is_partial, time_zone, idle_minutes,
            window_start_utc, utc_start, utc_end
        ) VALUES (
            '2026-05-18', 4, 4, 3, 1, 0, 1, 8, '[{"page": "/", "count": 1}]',
            '{"admin": 1, "manager": 0, "driver": 1, "viewer": 1}', '2026-05-19 02:00:00.000000', 4, 0,
            'UTC', 5, '2026-05-17 23:55:00', '2026-05-18 00:00:00', '2026-05-19 00:00:00'
        )
        """
    )
    before = {name: rows(conn, sql) for name, sql in LEGACY_QUERIES.items()}
    conn.close()
    return LegacyDatabase(path, admin_token, viewer_token, revoked_token, before)


@pytest.fixture
def upgraded(legacy: LegacyDatabase, make_app):
    """The demo host started on the legacy file (which upgrades it); yields a connection to it."""
    app = make_app(DATABASE=legacy.path, ACTIVITY_DATABASE=legacy.path)
    conn = db.connect(legacy.path)
    yield app, conn
    conn.close()


def test_a_legacy_database_gets_every_version_recorded_and_keeps_its_user_version(legacy, upgraded):
    _, conn = upgraded
    assert db.applied_versions(conn) == {v for v, _ in db.migration_files(MIGRATIONS_DIR)}
    assert user_version(conn) == 5


def test_legacy_tokens_still_authenticate_with_the_same_text(legacy, upgraded):
    app, _ = upgraded
    client = app.test_client()
    assert client.get(STATS, headers={"Authorization": f"Bearer {legacy.admin_token}"}).status_code == 200


def test_a_legacy_token_of_a_viewer_is_still_refused(legacy, upgraded):
    app, _ = upgraded
    response = app.test_client().get(STATS, headers={"Authorization": f"Bearer {legacy.viewer_token}"})
    assert response.status_code == 403


def test_a_revoked_legacy_token_stays_revoked(legacy, upgraded):
    app, _ = upgraded
    response = app.test_client().get(STATS, headers={"Authorization": f"Bearer {legacy.revoked_token}"})
    assert response.status_code == 401


def test_legacy_token_rows_move_to_activity_api_tokens_unchanged(legacy, upgraded):
    _, conn = upgraded
    assert rows(conn, "SELECT * FROM activity_api_tokens ORDER BY id") == legacy.before["api_tokens"]
    assert "api_tokens" not in tables(conn)


def test_legacy_audit_rows_move_to_activity_audit_log_unchanged(legacy, upgraded):
    _, conn = upgraded
    assert rows(conn, LEGACY_AUDIT_COLUMNS) == legacy.before["audit_log"]
    assert "audit_log" not in tables(conn)


def test_legacy_events_carry_the_role_from_the_old_users_table(legacy, upgraded):
    _, conn = upgraded
    events = rows(conn, "SELECT * FROM user_activity_log ORDER BY id")
    assert [(e["user_id"], e["role"]) for e in events] == [
        (1, "admin"),
        (2, "viewer"),
        (3, "driver"),
        (99, ""),
    ]
    # role came with migration 005, spool_key with 007.
    added = ("role", "spool_key")
    assert [{k: v for k, v in e.items() if k not in added} for e in events] == legacy.before["events"]


def test_legacy_summary_rows_are_unchanged_and_nothing_is_marked_dirty(legacy, upgraded):
    _, conn = upgraded
    summaries = rows(conn, "SELECT * FROM activity_summary_daily ORDER BY date")
    old_columns = set(legacy.before["summaries"][0])
    assert [{k: v for k, v in s.items() if k in old_columns} for s in summaries] == legacy.before["summaries"]
    assert rows(conn, LEGACY_QUERIES["dirty_days"]) == legacy.before["dirty_days"] == []
    assert rows(conn, LEGACY_QUERIES["data_version"]) == legacy.before["data_version"]


def test_the_hosts_users_and_sessions_tables_are_left_as_they_were(legacy, upgraded):
    _, conn = upgraded
    for name in ("users", "sessions", "schema_users_sessions"):
        assert rows(conn, LEGACY_QUERIES[name]) == legacy.before[name], name


def test_a_second_upgrade_run_changes_nothing(legacy, upgraded, make_app):
    _, conn = upgraded
    dump = list(conn.iterdump())
    assert db.apply_migrations(conn) == []
    make_app(DATABASE=legacy.path, ACTIVITY_DATABASE=legacy.path)
    assert list(conn.iterdump()) == dump


def test_several_processes_upgrading_a_legacy_database_at_once_import_it_once(legacy):
    applied = sorted(v for outcome in migrate_at_once(legacy.path) for v in outcome)
    assert applied == [v for v, _ in db.migration_files(MIGRATIONS_DIR)]
    conn = db.connect(legacy.path)
    assert rows(conn, "SELECT * FROM activity_api_tokens ORDER BY id") == legacy.before["api_tokens"]
    assert rows(conn, LEGACY_AUDIT_COLUMNS) == legacy.before["audit_log"]


def test_a_legacy_database_below_its_last_version_is_refused_with_a_clear_message(tmp_path):
    conn = build_legacy_schema(str(tmp_path / "old.sqlite3"), through=4)
    with pytest.raises(RuntimeError, match=r"not at its last schema version \(5\)"):
        db.apply_migrations(conn)
    assert "activity_schema_migrations" not in tables(conn)


