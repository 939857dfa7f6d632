"""DataCompletionService: one point per calendar day, missing days filled with zeros."""

from __future__ import annotations

import datetime as dt

import pytest

from activity_monitor.data_completion import DataCompletionService

D = dt.date


def test_every_day_of_the_range_gets_one_point_in_order():
    points = [{"date": "2026-03-04", "value": 8}, {"date": D(2026, 3, 1), "value": 5}]
    filled = DataCompletionService().fill_missing_dates(points, D(2026, 3, 1), D(2026, 3, 5))
    assert filled == [
        {"date": "2026-03-01", "value": 5, "filled": False},
        {"date": "2026-03-02", "value": 0, "filled": True},
        {"date": "2026-03-03", "value": 0, "filled": True},
        {"date": "2026-03-04", "value": 8, "filled": False},
        {"date": "2026-03-05", "value": 0, "filled": True},
    ]


def test_an_empty_series_becomes_all_zeros():
    filled = DataCompletionService().fill_missing_dates([], "2026-02-27", "2026-03-01")
    assert [(p["date"], p["value"], p["filled"]) for p in filled] == [
        ("2026-02-27", 0, True),
        ("2026-02-28", 0, True),
        ("2026-03-01", 0, True),
    ]


def test_a_range_over_a_daylight_saving_change_still_has_one_point_per_calendar_day():
    filled = DataCompletionService().fill_missing_dates([], D(2026, 3, 28), D(2026, 3, 30))
    assert [p["date"] for p in filled] == ["2026-03-28", "2026-03-29", "2026-03-30"]


def test_points_outside_the_range_are_dropped_and_extra_fields_kept():
    points = [
        {"date": "2026-03-01", "value": 1, "partial": True},
        {"date": "2026-02-28", "value": 9},
        {"date": "2026-03-03", "value": 9},
    ]
    filled = DataCompletionService().fill_missing_dates(points, "2026-03-01", "2026-03-02")
    assert filled == [
        {"date": "2026-03-01", "value": 1, "partial": True, "filled": False},
        {"date": "2026-03-02", "value": 0, "filled": True},
    ]


def test_several_value_keys_are_all_zero_on_a_filled_day():
    service = DataCompletionService(value_keys=("unique_users", "total_sessions"))
    filled = service.fill_missing_dates([], "2026-03-01", "2026-03-01")
    assert filled == [{"date": "2026-03-01", "unique_users": 0, "total_sessions": 0, "filled": True}]


def test_filling_twice_changes_nothing_and_leaves_the_input_alone():
    points = [{"date": "2026-03-02", "value": 4}]
    service = DataCompletionService()
    once = service.fill_missing_dates(points, "2026-03-01", "2026-03-03")
    assert service.fill_missing_dates(once, "2026-03-01", "2026-03-03") == once
    assert points == [{"date": "2026-03-02", "value": 4}]


def test_two_points_on_one_day_are_refused():
    with pytest.raises(ValueError, match="2026-03-01"):
        DataCompletionService().fill_missing_dates(
            [{"date": "2026-03-01", "value": 1}, {"date": D(2026, 3, 1), "value": 2}],
            "2026-03-01",
            "2026-03-02",
        )


def test_a_range_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="after it ends"):
        DataCompletionService().fill_missing_dates([], "2026-03-02", "2026-03-01")


def test_complete_days_scatters_rows_and_marks_gaps():
    from activity_monitor.data_completion import complete_days

    done = complete_days(["2026-03-04", D(2026, 3, 1)], [[8, 80], [5, 50]], D(2026, 3, 1), D(2026, 3, 5))
    assert done.dates() == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    assert done.values.tolist() == [[5, 0, 0, 8, 0], [50, 0, 0, 80, 0]]
    assert done.present.tolist() == [True, False, False, True, False]
    assert done.dates(3) == ["2026-03-04", "2026-03-05"]


def test_complete_days_agrees_with_fill_missing_dates():
    from activity_monitor.data_completion import complete_days

    points = [{"date": "2026-01-02", "value": 3}, {"date": "2026-01-05", "value": 9}]
    slow = DataCompletionService().fill_missing_dates(points, D(2026, 1, 1), D(2026, 1, 6))
    days, rows = [p["date"] for p in points], [[p["value"]] for p in points]
    fast = complete_days(days, rows, D(2026, 1, 1), D(2026, 1, 6))
    assert [p["value"] for p in slow] == fast.values[0].tolist()
    assert [p["filled"] for p in slow] == (~fast.present).tolist()


def test_complete_days_refuses_two_rows_on_one_day():
    from activity_monitor.data_completion import complete_days

    with pytest.raises(ValueError, match="share a day"):
        complete_days(["2026-01-02", "2026-01-02"], [[1], [2]], D(2026, 1, 1), D(2026, 1, 3))
