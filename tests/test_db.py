"""Connections and the migration runner, on the backend of the run (test_db_legacy.py has the
upgrade of a pre-extension SQLite file)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from activity_monitor import db, get_state
from activity_monitor.storage import DatabaseError
from activity_monitor.storage.sqlite import split_statements


def tables(conn) -> set[str]:
    """Return the names of the tables of the connection's database (its schema, on PostgreSQL)."""
    if conn.dialect == "sqlite":
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {r[0] for r in conn.execute(sql)}


def migrations(conn) -> list[tuple[int, Path]]:
    """Return the migration files of the connection's backend."""
    return db.migration_files(conn.storage.migrations_dir)


def user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def rows(conn: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(sql)]


@pytest.mark.sqlite_only
def test_connection_uses_wal_foreign_keys_and_busy_timeout(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_migrations_apply_in_order_and_are_idempotent(monitor_database):
    conn = db.connect(monitor_database)
    applied = db.apply_migrations(conn)
    versions = [v for v, _ in migrations(conn)]
    assert applied == versions
    assert db.schema_version(conn) == versions[-1]
    assert db.apply_migrations(conn) == []
    assert {
        "user_activity_log",
        "activity_summary_daily",
        "activity_api_tokens",
        "activity_audit_log",
        "activity_install",
        "activity_job_runs",
    } <= tables(conn)


def test_the_monitor_creates_no_table_outside_its_own_names(monitor_database):
    conn = db.connect(monitor_database)
    db.apply_migrations(conn)
    assert {name for name in tables(conn) if not name.startswith("activity_")} == {"user_activity_log"}


def test_versions_live_in_activity_schema_migrations(monitor_database):
    conn = db.connect(monitor_database)
    db.apply_migrations(conn)
    recorded = [
        (r["version"], r["name"])
        for r in conn.execute("SELECT version, name FROM activity_schema_migrations ORDER BY version")
    ]
    assert recorded == [(version, path.name) for version, path in migrations(conn)]


@pytest.mark.sqlite_only
def test_the_hosts_pragma_user_version_is_left_alone(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    conn.execute("PRAGMA user_version = 42")
    db.apply_migrations(conn)
    assert user_version(conn) == 42
    assert db.apply_migrations(conn) == []


@pytest.mark.sqlite_only
def test_a_fresh_database_keeps_user_version_zero(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    db.apply_migrations(conn)
    assert user_version(conn) == 0


def test_each_install_gets_a_random_install_id_that_stays(monitor_database, another_database):
    first = db.connect(monitor_database)
    second = db.connect(another_database)
    db.apply_migrations(first)
    db.apply_migrations(second)
    install_id = db.read_install_id(first)
    assert len(install_id) == 32 and install_id != db.read_install_id(second)
    db.apply_migrations(first)
    assert db.read_install_id(first) == install_id


@pytest.mark.sqlite_only
def test_activity_log_has_a_timestamp_index(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    db.apply_migrations(conn)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM user_activity_log WHERE timestamp >= ? AND timestamp < ?",
        ("2026-01-01", "2026-01-02"),
    ).fetchall()
    assert any("idx_user_activity_log_timestamp" in row[3] for row in plan)


def test_a_failing_migration_leaves_the_previous_version(tmp_path, monitor_database):
    bad_dir = tmp_path / "migrations"
    bad_dir.mkdir()
    (bad_dir / "001_ok.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (bad_dir / "002_bad.sql").write_text("CREATE TABLE b (x INTEGER);\nTHIS IS NOT SQL;\n")
    conn = db.connect(monitor_database)
    conn.storage.migrations_dir = bad_dir
    with pytest.raises(DatabaseError):
        db.apply_migrations(conn)
    assert db.schema_version(conn) == 1
    assert tables(conn) == {"a", "activity_schema_migrations"}


def _migrate(path: str, barrier, results) -> None:
    barrier.wait()
    conn = db.connect(path)
    results.put(db.apply_migrations(conn))


def migrate_at_once(path: str, processes: int = 4) -> list[list[int]]:
    """Start several processes that migrate the same file at the same instant; return what each applied."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=_migrate, args=(path, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return outcomes


def test_several_processes_migrating_at_once_apply_each_file_once(monitor_database):
    applied = sorted(v for outcome in migrate_at_once(monitor_database) for v in outcome)
    conn = db.connect(monitor_database)
    assert applied == [v for v, _ in migrations(conn)]
    assert db.schema_version(conn) == applied[-1]
    assert conn.execute("SELECT COUNT(*) FROM activity_install").fetchone()[0] == 1


def test_migrate_command_reports_the_schema_version(runner):
    result = runner.invoke(args=["activity", "migrate"])
    assert result.exit_code == 0, result.output
    last = db.migration_files(get_state(runner.app).storage.migrations_dir)[-1][0]
    assert result.output == f"Nothing to apply; schema is at version {last}.\n"


@pytest.mark.sqlite_only
def test_split_statements_keeps_trigger_bodies_whole():
    sql = (
        "CREATE TABLE t (x);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO t VALUES (1);\n  SELECT 1;\nEND;\n"
    )
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_a_transaction_a_request_leaves_open_is_rolled_back_at_teardown(app):
    from activity_monitor.db import get_db

    @app.get("/leaves-a-transaction-open")
    def leaves_open() -> str:
        conn = get_db()
        conn.execute("BEGIN")
        conn.execute("UPDATE activity_data_version SET version = version + 100 WHERE id = 1")
        return "left open"

    before = read_version(app)
    assert app.test_client().get("/leaves-a-transaction-open").data == b"left open"
    assert read_version(app) == before
    with app.test_request_context():
        assert not get_db().in_transaction


def read_version(app) -> int:
    """Return the data version from a connection of its own."""
    from activity_monitor.db import open_db

    conn = open_db(app)
    try:
        return conn.execute("SELECT version FROM activity_data_version WHERE id = 1").fetchone()[0]
    finally:
        conn.close()


# --- spool keys, the health probe, and a file that must not be created anew -------------------------


def test_spooled_rows_are_written_once_per_key_while_ordinary_rows_need_none(monitor_database) -> None:
    conn = db.connect(monitor_database)
    db.apply_migrations(conn)
    insert = (
        "INSERT INTO activity_audit_log (action, created_at, spool_key) VALUES ('A', '2026-05-20', ?)"
        " ON CONFLICT DO NOTHING"
    )
    for key in (None, None, "f:1", "f:1", "f:2"):
        conn.execute(insert, (key,))
    assert [r["spool_key"] for r in rows(conn, "SELECT spool_key FROM activity_audit_log ORDER BY id")] == [
        None,
        None,
        "f:1",
        "f:2",
    ]
    assert rows(conn, "SELECT id, writes FROM activity_health_probe") == [{"id": 1, "writes": 0}]


@pytest.mark.sqlite_only
def test_a_storage_never_creates_its_file_anew_once_it_has_opened_it(tmp_path) -> None:
    from activity_monitor.storage import open_storage

    path = tmp_path / "activity.sqlite3"
    storage = open_storage(str(path))
    storage.prepare()
    storage.connect().close()  # the first connection creates the file
    path.unlink()
    with pytest.raises(sqlite3.OperationalError, match=f"The database file {path} was deleted or replaced"):
        storage.connect()
    assert not path.exists()


@pytest.mark.sqlite_only
def test_a_serving_threads_connection_notices_its_file_is_gone(tmp_path) -> None:
    from activity_monitor.storage import open_storage

    path = tmp_path / "activity.sqlite3"
    storage = open_storage(str(path))
    db.apply_migrations(storage.connect())
    storage.request_connection().execute("SELECT 1")
    path.unlink()
    gone = storage.request_connection()
    with pytest.raises(DatabaseError, match="was deleted or replaced while the app was running"):
        gone.execute("INSERT INTO activity_health_probe (id) VALUES (2)")
    assert not path.exists()


def test_bounded_write_restores_the_connections_own_timeouts(monitor_database) -> None:
    conn = db.connect(monitor_database)
    db.apply_migrations(conn)

    def timeouts() -> tuple:
        if conn.dialect == "sqlite":
            return (conn.execute("PRAGMA busy_timeout").fetchone()[0],)
        names = ("lock_timeout", "statement_timeout")
        return tuple(conn.execute(f"SHOW {name}").fetchone()[0] for name in names)

    before = timeouts()
    with conn.storage.bounded_write(conn, 100):
        inside = timeouts()
        conn.execute("UPDATE activity_health_probe SET writes = writes + 1")
    assert timeouts() == before != inside
    assert inside == ((100,) if conn.dialect == "sqlite" else ("100ms", "100ms"))
    assert conn.execute("SELECT writes FROM activity_health_probe").fetchone()[0] == 1
    conn.storage.insert_bounded(
        conn, "INSERT INTO activity_audit_log (action, created_at) VALUES (?, ?)", ("A", "100% sure"), 100
    )
    assert timeouts() == before
    assert conn.execute("SELECT created_at FROM activity_audit_log").fetchone()[0] == "100% sure"
    assert not conn.in_transaction
