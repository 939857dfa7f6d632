"""Connections and the migration runner."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from activity_monitor import db


def test_connection_uses_wal_foreign_keys_and_busy_timeout(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_migrations_apply_in_order_and_are_idempotent(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    applied = db.apply_migrations(conn)
    versions = [v for v, _ in db.migration_files()]
    assert applied == versions
    assert db.schema_version(conn) == versions[-1]
    assert db.apply_migrations(conn) == []
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions", "user_activity_log", "audit_log", "api_tokens"} <= tables


def test_activity_log_has_a_timestamp_index(tmp_path):
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    db.apply_migrations(conn)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM user_activity_log WHERE timestamp >= ? AND timestamp < ?",
        ("2026-01-01", "2026-01-02"),
    ).fetchall()
    assert any("idx_user_activity_log_timestamp" in row[3] for row in plan)


def test_a_failing_migration_leaves_the_previous_version(tmp_path, monkeypatch):
    bad_dir = tmp_path / "migrations"
    bad_dir.mkdir()
    (bad_dir / "001_ok.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (bad_dir / "002_bad.sql").write_text("CREATE TABLE b (x INTEGER);\nTHIS IS NOT SQL;\n")
    monkeypatch.setattr(db, "MIGRATIONS_DIR", bad_dir)
    conn = db.connect(str(tmp_path / "x.sqlite3"))
    with pytest.raises(sqlite3.Error):
        db.apply_migrations(conn)
    assert db.schema_version(conn) == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"a"}


def _migrate(path: str, barrier, results) -> None:
    barrier.wait()
    conn = db.connect(path)
    results.put(db.apply_migrations(conn))


def test_two_processes_migrating_at_once_apply_each_file_once(tmp_path):
    path = str(tmp_path / "race.sqlite3")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_migrate, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    applied = sorted(v for outcome in outcomes for v in outcome)
    assert applied == [v for v, _ in db.migration_files()]
    assert db.schema_version(db.connect(path)) == applied[-1]


def test_migrate_command_reports_the_schema_version(runner):
    result = runner.invoke(args=["migrate"])
    assert result.exit_code == 0
    assert "Nothing to apply" in result.output


def test_split_statements_keeps_trigger_bodies_whole():
    sql = (
        "CREATE TABLE t (x);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO t VALUES (1);\n  SELECT 1;\nEND;\n"
    )
    statements = db.split_statements(sql)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
