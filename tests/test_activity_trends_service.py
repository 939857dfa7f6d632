"""ActivityTrendsService: points, moving averages, summaries, comparison, cache, export, breakdown."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

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


def test_previous_period_compares_equally_long_period_before_start(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [10] * 10 + [15] * 10)
    summary = service.get_trends(D(2026, 1, 11), D(2026, 1, 20), ["unique_users"])["summary"]["unique_users"]
    assert summary["previous_period"] == {
        "start": "2026-01-01",
        "end": "2026-01-10",
        "average": 10.0,
        "total": 100,
        "percentage_change": 50.0,
    }


def test_previous_period_before_history_has_no_average(service, db_conn):
    insert_series(db_conn, D(2026, 1, 1), [10] * 5)
    previous = service.get_trends(D(2026, 1, 1), D(2026, 1, 5), ["unique_users"])["summary"]["unique_users"][
        "previous_period"
    ]
    assert previous["average"] is None and previous["percentage_change"] is None and previous["total"] == 0


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
    assert data["users_by_role"]["driver"] == {"average_daily": 5.0, "max_daily": 6}
    assert data["summarized_days"] == 2


def test_breakdown_lists_the_roles_seen_in_the_range_by_name_a_missing_day_counting_zero(service, db_conn):
    insert_summary(db_conn, D(2026, 1, 1), roles={"viewer": 2, "unknown": 1})
    insert_summary(db_conn, D(2026, 1, 2), roles={"fleet-owner": 3})
    insert_summary(db_conn, D(2026, 1, 5), roles={"auditor": 9})  # outside the range
    data = service.breakdown(D(2026, 1, 1), D(2026, 1, 4))
    assert data["users_by_role"] == {
        "fleet-owner": {"average_daily": 0.75, "max_daily": 3},
        "unknown": {"average_daily": 0.25, "max_daily": 1},
        "viewer": {"average_daily": 0.5, "max_daily": 2},
    }
    assert list(data["users_by_role"]) == ["fleet-owner", "unknown", "viewer"]
