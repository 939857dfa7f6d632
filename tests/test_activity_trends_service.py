"""ActivityTrendsService: points, moving averages, summaries, comparison, cache, export, breakdown."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from activity_events import add_event, processor, utc
from activity_monitor.activity_trends_service import (
    METRICS,
    ActivityTrendsService,
    InvalidQuery,
    preset_ranges,
)
from activity_monitor.cache_warmer import CacheWarmer
from activity_monitor.daily_summaries import bump_data_version
from activity_monitor.trends_cache import TrendsCache
from summary_rows import insert_series, insert_summary

D = dt.date


@pytest.fixture
def service(db_conn, clock):
    return ActivityTrendsService(db_conn, "UTC", cache=TrendsCache(default_ttl=60), cache_ttl=60, clock=clock)


def values(data, metric="unique_users", key="value"):
    return [p[key] for p in data["metrics"][metric]]


def test_one_point_per_calendar_day_with_gaps_filled(service, db_conn):
    insert_summary(db_conn, D(2026, 3, 1), value=5)
    insert_summary(db_conn, D(2026, 3, 4), value=8)
    data = service.get_trends(D(2026, 3, 1), D(2026, 3, 5), ["unique_users"])
    points = data["metrics"]["unique_users"]
    assert [p["date"] for p in points] == [f"2026-03-0{d}" for d in range(1, 6)]
    assert [p["value"] for p in points] == [5, 0, 0, 8, 0]
    assert [p.get("filled", False) for p in points] == [False, True, True, False, True]
    assert data["period"] == {"start": "2026-03-01", "end": "2026-03-05", "days": 5}


def test_moving_averages_reach_back_before_the_range(service, db_conn):
    series = list(range(1, 41))  # 40 days from 2026-01-01
    insert_series(db_conn, D(2026, 1, 1), series, "total_sessions")
    data = service.get_trends(D(2026, 2, 5), D(2026, 2, 9), ["total_sessions"])
    index = {D(2026, 1, 1) + dt.timedelta(days=i): v for i, v in enumerate(series)}
    for point in data["metrics"]["total_sessions"]:
        day = D.fromisoformat(point["date"])
        week = [index[day - dt.timedelta(days=k)] for k in range(7)]
        month = [index[day - dt.timedelta(days=k)] for k in range(30)]
        assert point["7day_avg"] == round(np.mean(week), 2)
        assert point["30day_avg"] == round(np.mean(month), 2)


def test_moving_averages_at_the_start_of_history_use_only_existing_days(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [10, 20, 30])
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 3), ["unique_users"])
    assert values(data, key="7day_avg") == [10.0, 15.0, 20.0]
    assert values(data, key="30day_avg") == [10.0, 15.0, 20.0]


def test_gaps_after_history_began_count_as_zero_in_averages(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 1), value=14)
    insert_summary(db_conn, D(2026, 1, 8), value=0)
    data = service.get_trends(D(2026, 1, 7), D(2026, 1, 8), ["unique_users"])
    assert values(data, key="7day_avg") == [2.0, 0.0]


def test_summary_statistics_match_numpy(service, db_conn):
    rng = np.random.default_rng(3)
    series = rng.integers(0, 100, 60).tolist()
    insert_series(db_conn, D(2026, 1, 1), series, "total_page_views")
    summary = service.get_trends(D(2026, 1, 1), D(2026, 3, 1), ["total_page_views"])["summary"][
        "total_page_views"
    ]
    assert summary["average"] == pytest.approx(np.mean(series), abs=0.01)
    assert summary["median"] == pytest.approx(np.median(series), abs=0.01)
    assert summary["std_dev"] == pytest.approx(np.std(series), abs=0.01)
    assert summary["total"] == sum(series)
    assert summary["max"] == max(series)
    assert summary["peak_date"] == (D(2026, 1, 1) + dt.timedelta(days=series.index(max(series)))).isoformat()
    first, last = np.mean(series[:7]), np.mean(series[-7:])
    assert summary["percentage_change"] == pytest.approx((last - first) / first * 100, abs=0.01)
    for key in (
        "trend_slope",
        "trend_confidence",
        "p_value",
        "trend_analysis",
        "anomalies",
        "previous_period",
    ):
        assert key in summary


def test_previous_period_is_as_long_as_the_range_and_shifted_by_whole_weeks(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [10] * 14 + [15] * 10)
    summary = service.get_trends(D(2026, 1, 15), D(2026, 1, 24), ["unique_users"])["summary"]["unique_users"]
    # 10 days round up to 2 weeks: the previous period is 2026-01-01 … 2026-01-10, same weekdays.
    assert summary["previous_period"] == {
        "start": "2026-01-01",
        "end": "2026-01-10",
        "shift_days": 14,
        "days_with_data": 10,
        "average": 10.0,
        "total": 100,
        "change_vs_previous_percent": 50.0,
    }


@pytest.mark.parametrize("days", [1, 6, 7, 8, 30, 31, 90, 365])
def test_previous_period_lines_up_weekdays_for_any_range_length(service, db_conn, days):
    end = D(2026, 4, 30)
    start = end - dt.timedelta(days=days - 1)
    previous = service.get_trends(start, end, ["unique_users"])["summary"]["unique_users"]["previous_period"]
    prev_start, prev_end = D.fromisoformat(previous["start"]), D.fromisoformat(previous["end"])
    assert (prev_end - prev_start).days + 1 == days
    assert prev_start.weekday() == start.weekday() and prev_end < start
    assert previous["shift_days"] % 7 == 0 and previous["shift_days"] - 7 < days <= previous["shift_days"]


def test_weekly_pattern_compares_as_unchanged_with_the_previous_period(service, db_conn):
    # Weekends dip; a 30-day range against a position-aligned previous period would put the dips
    # 2 days off and report a change. Shifted by 35 days, the same weekdays meet: no change.
    weekly = [100, 100, 100, 100, 100, 20, 20]
    first = D(2026, 1, 5)  # a Monday
    insert_series(db_conn, first, [weekly[i % 7] for i in range(120)])
    previous = service.get_trends(D(2026, 3, 4), D(2026, 4, 2), ["unique_users"])["summary"]["unique_users"][
        "previous_period"
    ]
    assert previous["change_vs_previous_percent"] == 0.0


def test_compare_year_shifts_52_weeks(service, db_conn):
    insert_series(db_conn, D(2025, 1, 1), [10] * 365 + [12] * 120)
    data = service.get_trends(D(2026, 3, 1), D(2026, 3, 30), ["unique_users"], compare="year")
    assert data["compare"] == "year"
    year = data["summary"]["unique_users"]["previous_year"]
    assert "previous_period" not in data["summary"]["unique_users"]
    assert year["start"] == "2025-03-02" and year["end"] == "2025-03-31" and year["shift_days"] == 364
    assert D.fromisoformat(year["start"]).weekday() == D(2026, 3, 1).weekday()
    assert year["average"] == 10.0 and year["change_vs_previous_year_percent"] == 20.0


def test_compare_other_than_previous_or_year_is_refused(service):
    with pytest.raises(InvalidQuery, match="compare must be previous or year"):
        service.get_trends(D(2026, 1, 1), D(2026, 1, 2), compare="month")


def test_compare_has_its_own_cache_entry(service, db_conn):
    insert_series(db_conn, D(2025, 1, 1), [10] * 400)
    previous = service.trends_payload(D(2026, 1, 1), D(2026, 1, 30))
    year = service.trends_payload(D(2026, 1, 1), D(2026, 1, 30), compare="year")
    assert not year.cached and previous.key != year.key and previous.etag != year.etag
    assert b"previous_year" in year.body and b"previous_year" not in previous.body


def test_previous_period_before_history_has_no_average(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [10] * 5)
    previous = service.get_trends(D(2026, 1, 1), D(2026, 1, 5), ["unique_users"])["summary"]["unique_users"][
        "previous_period"
    ]
    assert previous["average"] is None and previous["change_vs_previous_percent"] is None
    assert previous["total"] == 0 and previous["days_with_data"] == 0


def test_days_before_tracking_began_are_no_data_not_zero(service, db_conn):
    insert_series(db_conn, D(2026, 1, 10), [4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24])
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 20), ["unique_users"])
    assert data["tracking_began"] == "2026-01-10"
    points = data["metrics"]["unique_users"]
    for point in points[:9]:
        assert point == {
            "date": point["date"], "value": None, "7day_avg": None, "30day_avg": None, "no_data": True,
        }
    assert [p["value"] for p in points[9:]] == [4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    assert not any("filled" in p for p in points)
    summary = data["summary"]["unique_users"]
    assert summary["tracked_days"] == 11
    assert summary["average"] == 14.0 and summary["median"] == 14.0 and summary["total"] == 154
    assert summary["min"] == 4 and summary["trend_slope"] == pytest.approx(2.0)
    assert summary["trend_analysis"]["direction"] == "increasing"


def test_a_year_of_history_in_a_two_year_range_is_not_averaged_with_zeros(service, db_conn):
    # The install: one year of data, a 730-day range. The year before counted as zeros
    # halved the average and made a flat series "increasing".
    rng = np.random.default_rng(11)
    series = (82 + rng.normal(0, 8, 365)).round().astype(int).tolist()
    insert_series(db_conn, D(2025, 5, 20), series)
    summary = service.get_trends(D(2024, 5, 21), D(2026, 5, 19), ["unique_users"])["summary"]["unique_users"]
    assert summary["tracked_days"] == 365
    assert summary["average"] == pytest.approx(np.mean(series), abs=0.01)
    assert summary["median"] == pytest.approx(np.median(series), abs=0.01)
    assert summary["trend_analysis"]["direction"] == "stable"


def test_tracking_began_with_the_first_raw_event_when_it_precedes_the_summaries(service, db_conn):
    add_event(db_conn, utc("2026-01-05 09:00"), 1)
    insert_series(db_conn, D(2026, 1, 8), [5, 5, 5])
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 10), ["unique_users"])
    assert data["tracking_began"] == "2026-01-05"
    points = data["metrics"]["unique_users"]
    assert [p.get("no_data", False) for p in points] == [True] * 4 + [False] * 6
    assert [p.get("filled", False) for p in points[4:]] == [True, True, True, False, False, False]
    assert data["summary"]["unique_users"]["tracked_days"] == 6


def test_tracking_began_is_the_first_raw_events_local_day(db_conn, clock):
    add_event(db_conn, utc("2026-01-04 23:30"), 1)  # 00:30 on 5 January in Berlin
    assert ActivityTrendsService(db_conn, "UTC").tracking_began() == D(2026, 1, 4)
    assert ActivityTrendsService(db_conn, "Europe/Berlin").tracking_began() == D(2026, 1, 5)


def test_a_range_wholly_before_tracking_began_has_no_statistics(service, db_conn):
    insert_series(db_conn, D(2026, 2, 1), [5] * 10)
    payload = service.trends_payload(D(2026, 1, 1), D(2026, 1, 20))
    data = json.loads(payload.body)
    summary = data["summary"]["unique_users"]
    assert summary["tracked_days"] == 0 and summary["anomalies"] == []
    assert all(p["no_data"] for p in data["metrics"]["unique_users"])
    # Not zeros: no average, no trend, no forecast.
    for key in ("average", "median", "std_dev", "min", "max", "total", "trend_slope", "p_value"):
        assert summary[key] is None, key
    analysis = summary["trend_analysis"]
    assert analysis["direction"] is None and analysis["forecast"] == [] and analysis["method"] is None


def test_todays_running_row_is_drawn_but_left_out_of_the_statistics(service, db_conn, clock):
    today = clock.today()
    first = today - dt.timedelta(days=59)
    insert_series(db_conn, first, [100] * 59)
    insert_summary(db_conn, today, value=8, partial=True)  # 08:00 into the day
    data = service.get_trends(first, today, ["unique_users"])
    points = data["metrics"]["unique_users"]
    assert points[-1] == {**points[-1], "value": 8, "partial": True}
    summary = data["summary"]["unique_users"]
    assert summary["tracked_days"] == 59 and summary["average"] == 100.0 and summary["min"] == 100
    assert summary["anomalies"] == []
    forecast = summary["trend_analysis"]["forecast"]
    assert forecast[0]["date"] == today.isoformat()  # the forecast starts with today's full value
    assert all(point["value"] == 100.0 for point in forecast)


def test_an_install_without_any_data_has_only_no_data_days(service):
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 3), ["unique_users"])
    assert data["tracking_began"] is None
    assert [p["no_data"] for p in data["metrics"]["unique_users"]] == [True, True, True]


def test_forecast_of_a_short_range_learns_from_the_history_before_it(service, db_conn):
    rng = np.random.default_rng(5)
    weekly = np.array([120, 130, 125, 128, 110, 40, 30])
    series = (np.tile(weekly, 60)[:400] + rng.normal(0, 5, 400)).round().clip(0).astype(int).tolist()
    insert_series(db_conn, D(2025, 4, 15), series)
    end = D(2025, 4, 15) + dt.timedelta(days=399)
    data = service.get_trends(end - dt.timedelta(days=6), end, ["unique_users"])
    analysis = data["summary"]["unique_users"]["trend_analysis"]
    assert analysis["backtest"]["origins"] > 0
    assert max(point["upper"] for point in analysis["forecast"]) <= 1.5 * max(series)


def test_each_day_of_the_range_gives_its_peak_hour(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 2), value=3)
    db_conn.execute("UPDATE activity_summary_daily SET peak_hour = 14 WHERE date = '2026-01-02'")
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 3), ["unique_users"])
    assert data["days"] == [
        {"date": "2026-01-01", "peak_hour": None},
        {"date": "2026-01-02", "peak_hour": 14},
        {"date": "2026-01-03", "peak_hour": None},
    ]


@pytest.mark.parametrize(
    "series",
    [[], [0] * 30, [7] * 30, [5], [0, 9]],
    ids=["no-data", "all-zero", "flat", "one-point", "two-points"],
)
def test_degenerate_series_never_produce_nan(service, db_conn, series):
    insert_series(db_conn, D(2026, 1, 1), series)
    end = D(2026, 1, 1) + dt.timedelta(days=max(len(series), 1) - 1)
    payload = service.trends_payload(D(2026, 1, 1), end)
    text = payload.body.decode()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


def test_metrics_are_deduplicated_and_validated(service, db_conn):
    data = service.get_trends(
        D(2026, 1, 1), D(2026, 1, 2), ["total_api_calls", "unique_users", "unique_users"]
    )
    assert list(data["metrics"]) == ["unique_users", "total_api_calls"]
    with pytest.raises(InvalidQuery, match="valid metrics are"):
        service.get_trends(D(2026, 1, 1), D(2026, 1, 2), ["visits"])


def test_default_metrics_are_all_six(service):
    assert list(service.get_trends(D(2026, 1, 1), D(2026, 1, 1))["metrics"]) == list(METRICS)


def test_range_ending_before_it_starts_is_refused(service):
    with pytest.raises(InvalidQuery, match="before it starts"):
        service.get_trends(D(2026, 1, 2), D(2026, 1, 1))


def test_second_request_is_served_from_the_cache_byte_for_byte(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [3, 4, 5])
    first = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3))
    second = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3))
    assert (first.cached, second.cached) == (False, True)
    assert first.body == second.body and first.etag == second.etag


def test_metric_order_does_not_split_the_cache(service):
    first = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3), ["total_sessions", "unique_users"])
    second = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3), ["unique_users", "total_sessions"])
    assert second.cached and first.body == second.body


def test_a_new_data_version_never_returns_the_old_payload(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [3, 4, 5])
    old = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3))
    insert_summary(db_conn, D(2026, 1, 2), value=40)
    bump_data_version(db_conn)
    new = service.trends_payload(D(2026, 1, 1), D(2026, 1, 3))
    assert not new.cached and new.etag != old.etag
    assert json.loads(new.body)["metrics"]["unique_users"][1]["value"] == 40


def test_cache_bypass_recomputes(service):
    service.trends_payload(D(2026, 1, 1), D(2026, 1, 3))
    assert not service.trends_payload(D(2026, 1, 1), D(2026, 1, 3), bypass_cache=True).cached


def test_keys_differ_by_time_zone(db_conn):
    utc = ActivityTrendsService(db_conn, "UTC").cache_key(1, D(2026, 1, 1), D(2026, 1, 2), ("unique_users",))
    berlin = ActivityTrendsService(db_conn, "Europe/Berlin").cache_key(
        1, D(2026, 1, 1), D(2026, 1, 2), ("unique_users",)
    )
    assert utc != berlin


def test_export_rows_equal_trend_values(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 2), values={"unique_users": 4, "total_api_calls": 9})
    rows = list(service.iter_daily_values(D(2026, 1, 1), D(2026, 1, 4), ["unique_users", "total_api_calls"]))
    data = service.get_trends(D(2026, 1, 1), D(2026, 1, 4), ["unique_users", "total_api_calls"])
    assert [r["date"] for r in rows] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    for metric in ("unique_users", "total_api_calls"):
        assert [r[metric] for r in rows] == values(data, metric)
    assert [r.get("no_data", False) for r in rows] == [True, False, False, False]
    assert [r["peak_hour"] for r in rows] == [p["peak_hour"] for p in data["days"]]


def test_export_gives_no_values_before_tracking_and_zeros_for_gaps(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 2), values={"unique_users": 4})
    insert_summary(db_conn, D(2026, 1, 4), values={"unique_users": 6})
    db_conn.execute("UPDATE activity_summary_daily SET peak_hour = 9 WHERE date = '2026-01-04'")
    rows = list(service.iter_daily_values(D(2026, 1, 1), D(2026, 1, 4), ["unique_users"]))
    assert rows == [
        {"date": "2026-01-01", "unique_users": None, "peak_hour": None, "no_data": True},
        {"date": "2026-01-02", "unique_users": 4, "peak_hour": None},
        {"date": "2026-01-03", "unique_users": 0, "peak_hour": None},
        {"date": "2026-01-04", "unique_users": 6, "peak_hour": 9},
    ]


def test_warmer_payload_equals_request_payload(db_conn):
    cache = TrendsCache(default_ttl=60)
    today = D(2026, 3, 15)
    insert_series(db_conn, D(2025, 3, 1), [(i * 7) % 23 for i in range(380)])

    def service_factory():
        return ActivityTrendsService(
            db_conn,
            "UTC",
            cache=cache,
            cache_ttl=60,
            clock=lambda: dt.datetime(2026, 3, 15, tzinfo=dt.UTC),
        )

    report = CacheWarmer(service_factory, lambda: today).warm()
    assert sorted(report["computed"]) == sorted(preset_ranges(today))
    for start, end in preset_ranges(today).values():
        cached = service_factory().trends_payload(start, end)
        assert cached.cached
        fresh = service_factory().trends_payload(start, end, bypass_cache=True)
        assert fresh.body == cached.body


def test_preset_ranges_end_yesterday():
    ranges = preset_ranges(D(2026, 3, 15))
    assert ranges["last_7_days"] == (D(2026, 3, 8), D(2026, 3, 14))
    assert ranges["last_30_days"][1] == D(2026, 3, 14)
    assert ranges["month_to_date"] == (D(2026, 3, 1), D(2026, 3, 14))
    assert ranges["last_month"] == (D(2026, 2, 1), D(2026, 2, 28))
    assert preset_ranges(D(2026, 3, 1))["month_to_date"] == (D(2026, 2, 1), D(2026, 2, 28))


def test_breakdown_adds_up_top_pages_and_roles(service, db_conn):
    insert_summary(
        db_conn,
        D(2026, 1, 1),
        top_pages=[{"page": "/a", "count": 3}, {"page": "/b", "count": 2}],
        roles={"admin": 1, "driver": 4, "manager": 2},
    )
    insert_summary(
        db_conn,
        D(2026, 1, 2),
        top_pages=[{"page": "/b", "count": 5}],
        roles={"admin": 1, "driver": 6, "viewer": 1},
    )
    data = service.breakdown(D(2026, 1, 1), D(2026, 1, 2))
    assert data["top_pages"] == [{"page": "/b", "count": 7}, {"page": "/a", "count": 3}]
    # Summaries without their raw events (imported): the daily top lists, flagged as such.
    assert data["top_pages_exact"] is False and data["top_pages_source"] == "daily_top_lists"
    assert data["users_by_role"]["driver"] == {"average_daily": 5.0, "max_daily": 6}
    assert data["summarized_days"] == 2


def test_breakdown_counts_top_pages_and_peak_hour_exactly_while_raw_events_are_kept(service, db_conn):
    # Day 1: /a 3 views, /b 2, /c 1; day 2: /c 3, /b 1. Each day's top-1 list alone would say /a 3, /c 3.
    events = {"2026-01-01": {"/a": 3, "/b": 2, "/c": 1}, "2026-01-02": {"/c": 3, "/b": 1}}
    for day, pages in events.items():
        for page, count in pages.items():
            for i in range(count):
                add_event(db_conn, utc(f"{day} 1{i}:15"), 1, page=page)
    add_event(db_conn, utc("2026-01-02 10:20"), 1, page="/api/x", action="api_call")
    processor(db_conn).process_range(D(2026, 1, 1), D(2026, 1, 2))
    data = service.breakdown(D(2026, 1, 1), D(2026, 1, 2))
    assert data["top_pages"] == [
        {"page": "/c", "count": 4},
        {"page": "/a", "count": 3},
        {"page": "/b", "count": 3},
    ]
    assert data["top_pages_exact"] is True and data["top_pages_source"] == "raw_events"
    assert data["peak_hour"] == 10 and data["peak_hour_source"] == "raw_events"


def test_breakdown_falls_back_to_daily_lists_once_raw_events_are_purged(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 1), top_pages=[{"page": "/a", "count": 3}])
    insert_summary(db_conn, D(2026, 1, 2), top_pages=[{"page": "/a", "count": 1}])
    db_conn.execute("UPDATE activity_summary_daily SET peak_hour = 8")
    db_conn.execute(
        "UPDATE activity_raw_retention"
        " SET kept_from_date = '2026-01-02', kept_from_utc = '2026-01-02 00:00:00'"
    )
    data = service.breakdown(D(2026, 1, 1), D(2026, 1, 2))
    assert data["top_pages"] == [{"page": "/a", "count": 4}] and data["top_pages_exact"] is False
    assert data["peak_hour"] == 8 and data["peak_hour_source"] == "daily_peaks"


def test_breakdown_lists_the_roles_seen_in_the_range_by_name_a_missing_day_counting_zero(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 1), roles={"viewer": 2, "unknown": 1})
    insert_summary(db_conn, D(2026, 1, 2), roles={"fleet-owner": 3})
    insert_summary(db_conn, D(2026, 1, 5), roles={"auditor": 9})  # outside the range
    insert_summary(db_conn, D(2025, 12, 31))  # tracking began before the range: all 4 days count
    data = service.breakdown(D(2026, 1, 1), D(2026, 1, 4))
    assert data["users_by_role"] == {
        "fleet-owner": {"average_daily": 0.75, "max_daily": 3},
        "unknown": {"average_daily": 0.25, "max_daily": 1},
        "viewer": {"average_daily": 0.5, "max_daily": 2},
    }
    assert list(data["users_by_role"]) == ["fleet-owner", "unknown", "viewer"]
