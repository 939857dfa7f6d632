"""The two storage backends hold one schema and give identical summaries from the same events.

These tests open SQLite and PostgreSQL side by side, so they run once, in the SQLite run, and
need PostgreSQL (skipped without it; failed under REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from activity_events import LATER, add_event, dirty_days, processor
from activity_monitor import db
from activity_monitor.daily_summaries import WRITTEN_COLUMNS
from activity_monitor.late_data import late_data_triggers_suspended
from activity_monitor.leader_lock import PostgresLeaderLock
from activity_monitor.storage import open_storage
from test_db import tables

pytestmark = pytest.mark.sqlite_only

# Local days with everything a day can have: a DST start and end in Berlin, month ends, and
# a plain mid-week day; events fall on both sides of each midnight in both zones.
DAYS = (
    dt.date(2026, 3, 28),
    dt.date(2026, 3, 29),  # Europe/Berlin springs forward: 23 hours
    dt.date(2026, 3, 31),
    dt.date(2026, 5, 20),
    dt.date(2026, 10, 25),  # Europe/Berlin falls back: 25 hours
    dt.date(2026, 10, 31),
)
ROLES = ("admin", "manager", "driver", "viewer", "")
PAGES = ("/routes", "/devices", "/machines/7", "/", "/reports?x=1")


@pytest.fixture
def both(tmp_path, postgres_url) -> Any:
    """A migrated SQLite file and a migrated PostgreSQL schema; yields their connections."""
    sqlite = db.connect(str(tmp_path / "side.sqlite3"))
    postgres = db.connect(postgres_url)
    for conn in (sqlite, postgres):
        db.apply_migrations(conn)
    yield sqlite, postgres
    sqlite.close()
    postgres.close()


def random_events(seed: int, count: int = 1500) -> list[tuple[Any, ...]]:
    """Events around the test days, from int and string user ids, with and without session keys."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        day = rng.choice(DAYS)
        moment = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(
            seconds=rng.randrange(-4 * 3600, 28 * 3600), microseconds=rng.randrange(1_000_000)
        )
        user = rng.choice([rng.randrange(1, 40), f"u-{rng.randrange(1, 15)}"])
        session = rng.choice(["", f"s{rng.randrange(60)}"])
        action = rng.choice(["page_view", "page_view", "api_call", "file_download"])
        events.append((moment, user, session, rng.choice(PAGES), action, rng.choice(ROLES)))
    return events


def summary_rows(conn) -> list[dict[str, Any]]:
    """Every summary row, each column as stored (but when it was computed)."""
    columns = [c for c in WRITTEN_COLUMNS if c != "computed_at"]
    sql = f"SELECT {', '.join(columns)} FROM activity_summary_daily ORDER BY date"
    return [dict(row) for row in conn.execute(sql)]


def columns_of(conn) -> dict[str, list[str]]:
    """Each monitor table's columns, in order."""
    result = {}
    for table in sorted(tables(conn)):
        cursor = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        description = cursor.description
        result[table] = [column[0] if isinstance(column, tuple) else column.name for column in description]
    return result


def test_both_backends_have_the_same_migrations_tables_and_columns(both) -> None:
    sqlite, postgres = both
    names = [path.name for _, path in db.migration_files(sqlite.storage.migrations_dir)]
    assert names == [path.name for _, path in db.migration_files(postgres.storage.migrations_dir)]
    assert db.schema_version(sqlite) == db.schema_version(postgres) == len(names)
    assert columns_of(sqlite) == columns_of(postgres)


@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_same_events_give_identical_summary_rows_column_by_column(both, tz_name, seed) -> None:
    events = random_events(seed)
    results = []
    for conn in both:
        for moment, user, session, page, action, role in events:
            add_event(conn, moment, user, session=session, page=page, action=action, role=role)
        processor(conn, tz_name).process_days(list(DAYS))
        results.append(summary_rows(conn))
    sqlite_rows, postgres_rows = results
    assert len(sqlite_rows) == len(DAYS)
    assert sqlite_rows[0]["unique_users"] > 0
    for on_sqlite, on_postgres in zip(sqlite_rows, postgres_rows, strict=True):
        for column in on_sqlite:
            assert on_sqlite[column] == on_postgres[column], (on_sqlite["date"], column)


def test_late_events_mark_the_same_days_dirty_on_both(both) -> None:
    day = dt.date(2026, 5, 20)
    for conn in both:
        add_event(conn, "2026-05-20 10:00:00.000000", 1)
        processor(conn, "Europe/Berlin").summarize_day(day)
        assert dirty_days(conn) == []
        # Just inside the Berlin day (22:30 UTC is 00:30 on the 21st), and a late one for the 20th.
        add_event(conn, "2026-05-20 21:59:59.000000", 2)
        add_event(conn, "2026-05-20 22:30:00.000000", 3)
    assert dirty_days(both[0]) == dirty_days(both[1]) == ["2026-05-20"]


def test_a_bulk_load_marks_its_days_dirty_once_at_the_end_on_both(both) -> None:
    for conn in both:
        add_event(conn, "2026-05-20 10:00:00.000000", 1)
        processor(conn, "UTC").summarize_day(dt.date(2026, 5, 20))
        with conn.transaction(), late_data_triggers_suspended(conn) as span:
            add_event(conn, "2026-05-20 11:00:00.000000", 2)
            # The triggers are quiet inside the load.
            assert dirty_days(conn) == []
            span.include("2026-05-20 11:00:00.000000", "2026-05-20 11:00:00.000000")
    assert dirty_days(both[0]) == dirty_days(both[1]) == ["2026-05-20"]


def test_deleting_an_event_of_a_summarized_day_marks_it_dirty_on_both(both) -> None:
    for conn in both:
        add_event(conn, "2026-05-20 10:00:00.000000", 1)
        add_event(conn, "2026-05-20 11:00:00.000000", 2)
        processor(conn, "UTC", now=LATER).summarize_day(dt.date(2026, 5, 20))
        conn.execute("DELETE FROM user_activity_log WHERE timestamp > ?", ("2026-05-20 10:30",))
    assert dirty_days(both[0]) == dirty_days(both[1]) == ["2026-05-20"]


def test_a_postgresql_url_opens_the_postgresql_backend_and_hides_its_password() -> None:
    storage = open_storage("postgresql://monitor:s3cret@db.internal:5432/fleet")
    assert storage.dialect == "postgresql"
    assert storage.target == "postgresql://monitor:***@db.internal:5432/fleet"
    assert open_storage("sqlite:///var/lib/monitor.sqlite3").target == "var/lib/monitor.sqlite3"


def test_the_postgresql_leader_lock_has_one_holder_and_is_freed_when_its_session_dies(postgres_url) -> None:
    first, second = (PostgresLeaderLock(postgres_url, "test:leader") for _ in range(2))
    try:
        assert first.acquire() and first.renew()
        assert not second.acquire()
        # The holder's process dies: the server ends its session, and the lock with it.
        pid = first.conn.info.backend_pid
        killer = db.connect(postgres_url)
        killer.execute("SELECT pg_terminate_backend(?)", (pid,))
        killer.close()
        assert not first.renew()
        assert second.acquire()
        assert not first.acquire()
        second.release()
        assert first.acquire()
    finally:
        first.release()
        second.release()
