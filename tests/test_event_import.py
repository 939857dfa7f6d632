"""bulk_import_events: all rows in one transaction, and the final days they touch marked dirty."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from activity_events import add_event, dirty_days, processor, summary, utc
from activity_monitor import EVENT_COLUMNS, bulk_import_events
from activity_monitor.storage import IntegrityError

D = dt.date


def columns(*events: dict) -> list[list]:
    """Return events (dicts of some EVENT_COLUMNS) as columns in EVENT_COLUMNS order, None where absent."""
    defaults = {"session_id": "", "role": "", "page_url": "/home", "action_type": "page_view"}
    return [[{**defaults, **event}.get(name) for event in events] for name in EVENT_COLUMNS]


def event(timestamp: str, user_id: int | str, **fields: object) -> dict:
    """One imported event at a UTC timestamp (database text) of a user."""
    return {"timestamp": timestamp, "user_id": user_id, **fields}


def event_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM user_activity_log").fetchone()[0]


def test_imported_events_are_stored_with_their_roles_and_string_ids(app, db_conn):
    with bulk_import_events(app) as load:
        added = load.add_columns(
            columns(
                event("2026-05-10 10:00:00.000000", "0b5e7c9a-3f1d-4e2b", role="driver", session_id="k1"),
                event("2026-05-10 10:05:00.000000", 42, role="admin", action_type="api_call"),
            )
        )
    assert added == 2
    rows = db_conn.execute("SELECT user_id, role, session_id, action_type FROM user_activity_log ORDER BY id")
    assert [tuple(row) for row in rows] == [
        ("0b5e7c9a-3f1d-4e2b", "driver", "k1", "page_view"),
        (42, "admin", "", "api_call"),
    ]


def test_an_import_marks_the_final_days_it_touches_dirty(app, db_conn):
    add_event(db_conn, utc("2026-05-08 10:00"), 7)
    processor(db_conn).process_range(D(2026, 5, 8), D(2026, 5, 13))
    with bulk_import_events(app) as load:
        load.add_columns(
            columns(event("2026-05-10 09:00:00.000000", 7), event("2026-05-11 18:00:00.000000", 8))
        )
    assert dirty_days(db_conn) == ["2026-05-10", "2026-05-11"]


def test_the_next_run_summarizes_the_imported_events(app, db_conn):
    processor(db_conn).process_range(D(2026, 5, 9), D(2026, 5, 11))
    with bulk_import_events(app) as load:
        load.add_columns(columns(event("2026-05-10 09:00:00.000000", 7, role="viewer")))
        load.add_columns(columns(event("2026-05-10 09:10:00.000000", 8, role="driver")))
    report = processor(db_conn).process_missing_days()
    assert report.dirty_dates == [D(2026, 5, 10)]
    row = summary(db_conn, "2026-05-10")
    assert row["unique_users"] == 2
    assert json.loads(row["user_distribution"]) == {"driver": 1, "viewer": 1}


def test_the_late_data_triggers_work_again_after_an_import(app, db_conn):
    processor(db_conn).process_range(D(2026, 5, 9), D(2026, 5, 11))
    with bulk_import_events(app) as load:
        load.add_columns(columns(event("2026-05-09 12:00:00.000000", 7)))
    db_conn.execute("DELETE FROM activity_dirty_days")
    add_event(db_conn, utc("2026-05-11 12:00"), 7)
    assert dirty_days(db_conn) == ["2026-05-11"]


def test_other_connections_see_no_imported_row_until_the_import_ends(app, db_conn):
    with bulk_import_events(app) as load:
        load.add_columns(columns(event("2026-05-10 09:00:00.000000", 7)))
        load.add_columns(columns(event("2026-05-10 09:01:00.000000", 7)))
        assert event_count(db_conn) == 0
    assert event_count(db_conn) == 2


def test_a_failure_in_a_later_batch_inserts_nothing_and_marks_nothing_dirty(app, db_conn):
    processor(db_conn).process_range(D(2026, 5, 9), D(2026, 5, 11))
    with pytest.raises(IntegrityError), bulk_import_events(app) as load:
        load.add_columns(columns(*(event(f"2026-05-10 09:{m:02}:00.000000", 7) for m in range(50))))
        load.add_columns(columns(event("2026-05-10 10:00:00.000000", 7, action_type="not-an-action")))
    assert event_count(db_conn) == 0
    assert dirty_days(db_conn) == []
    add_event(db_conn, utc("2026-05-10 12:00"), 7)  # and the triggers were not lost
    assert dirty_days(db_conn) == ["2026-05-10"]


def test_an_error_of_the_caller_during_an_import_inserts_nothing(app, db_conn):
    with pytest.raises(RuntimeError, match="source file ended"), bulk_import_events(app) as load:
        load.add_columns(columns(event("2026-05-10 09:00:00.000000", 7)))
        raise RuntimeError("source file ended early")
    assert event_count(db_conn) == 0


def test_an_import_with_a_missing_column_is_refused_naming_the_columns(app):
    with pytest.raises(ValueError, match="session_id, user_id, role"), bulk_import_events(app) as load:
        load.add_columns(columns(event("2026-05-10 09:00:00.000000", 7))[:-1])


def test_an_import_whose_columns_differ_in_length_is_refused_naming_the_column(app):
    ragged = columns(event("2026-05-10 09:00:00.000000", 7), event("2026-05-10 09:01:00.000000", 7))
    ragged[EVENT_COLUMNS.index("role")] = ["driver"]
    with pytest.raises(ValueError, match="Column role has 1 values, not 2"), bulk_import_events(app) as load:
        load.add_columns(ragged)


def test_an_import_of_many_rows_keeps_every_one(app, db_conn):
    start = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
    stamps = [(start + dt.timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S.%f") for s in range(1_234)]
    with bulk_import_events(app) as load:
        load.add_columns(columns(*(event(stamp, n % 17) for n, stamp in enumerate(stamps))))
    assert event_count(db_conn) == 1_234
    assert db_conn.execute("SELECT COUNT(DISTINCT user_id) FROM user_activity_log").fetchone()[0] == 17
