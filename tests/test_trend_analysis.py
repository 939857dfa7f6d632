"""Behaviour of trend_analysis: summaries, linear trend, forecasts and anomalies over daily series."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from activity_monitor import trend_analysis as ta

START = dt.date(2024, 1, 1)
WEEKDAY_MULTIPLIERS = np.array([1.2, 1.3, 1.25, 1.1, 0.9, 0.5, 0.75])
WEEKDAY_HEAVY = np.array([1.25, 1.3, 1.25, 1.2, 1.0, 0.25, 0.15])


def days(n: int, start: dt.date = START) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def forecast_values(result: dict, key: str = "value") -> np.ndarray:
    return np.array([point[key] for point in result["forecast"]])


def weekday_heavy_series(seed: int, n: int = 365) -> np.ndarray:
    """Weekday-heavy traffic with a drifting level, two level shifts, six holidays and noise."""
    rng = np.random.default_rng(seed)
    level = 200 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    for _ in range(2):
        level[rng.integers(30, n):] *= rng.uniform(0.6, 1.5)
    values = level * WEEKDAY_HEAVY[np.arange(n) % 7] * rng.lognormal(0, 0.12, n)
    values[rng.choice(n, 6, replace=False)] *= 0.02
    return rng.poisson(values).astype(float)


def assert_json_safe(result: object) -> None:
    json.dumps(result, allow_nan=False)


# trailing_means


@pytest.mark.parametrize("window", [1, 7, 30])
def test_trailing_means_match_a_brute_force_loop_with_nan_look_back(window):
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 100, 120)
    values[:20] = np.nan  # days before history began
    values[50:60] = 0.0
    expected = []
    for i in range(len(values)):
        window_values = values[max(0, i - window + 1): i + 1]
        present = window_values[~np.isnan(window_values)]
        expected.append(present.mean() if len(present) else np.nan)
    np.testing.assert_allclose(ta.trailing_means(values, window), expected, rtol=1e-12, equal_nan=True)


def test_trailing_means_of_a_window_of_zeros_are_exactly_zero():
    values = np.concatenate([np.full(40, 1e6 / 3), np.zeros(10)])
    assert (ta.trailing_means(values, 7)[-3:] == 0.0).all()


# summarize


def test_summarize_matches_numpy():
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 50, 45)
    result = ta.summarize(values, days(45))
    assert result["average"] == pytest.approx(values.mean(), abs=0.005)
    assert result["median"] == pytest.approx(np.median(values), abs=0.005)
    assert result["std_dev"] == pytest.approx(values.std(ddof=0), abs=0.005)
    assert result["min"] == pytest.approx(values.min(), abs=0.005)
    assert result["max"] == pytest.approx(values.max(), abs=0.005)
    assert result["total"] == pytest.approx(values.sum(), abs=0.005)
    change = (values[-7:].mean() - values[:7].mean()) / values[:7].mean() * 100
    assert result["percentage_change"] == pytest.approx(change, abs=0.005)


def test_summarize_percentage_change_uses_all_days_when_fewer_than_seven():
    assert ta.summarize(np.array([2.0, 4.0, 6.0]), days(3))["percentage_change"] == 0.0


def test_summarize_percentage_change_is_none_when_the_first_week_averages_zero():
    values = np.concatenate([np.zeros(7), np.full(10, 5.0)])
    assert ta.summarize(values, days(17))["percentage_change"] is None


def test_summarize_peak_date_is_the_first_day_holding_the_max():
    values = np.array([1.0, 9.0, 3.0, 9.0, 2.0])
    assert ta.summarize(values, days(5))["peak_date"] == (START + dt.timedelta(days=1)).isoformat()


def test_summarize_of_an_empty_series_is_zeros_and_none():
    result = ta.summarize(np.array([]), [])
    assert result["average"] == result["total"] == result["std_dev"] == 0.0
    assert result["peak_date"] is None and result["percentage_change"] is None


# linear_trend


@pytest.mark.parametrize("seed", range(5))
def test_linear_trend_matches_scipy_linregress(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    values = rng.uniform(0, 100, n) + rng.normal(0, 0.5) * np.arange(n)
    reference = stats.linregress(np.arange(n), values)
    result = ta.linear_trend(values)
    assert result["slope"] == pytest.approx(reference.slope, abs=5e-5)
    assert result["intercept"] == pytest.approx(reference.intercept, abs=5e-5)
    assert result["r_squared"] == pytest.approx(reference.rvalue ** 2, abs=5e-5)
    assert result["p_value"] == pytest.approx(reference.pvalue, rel=5e-3)  # 3 significant figures


def test_linear_trend_of_a_flat_series_has_zero_r_squared_and_p_value_one():
    assert ta.linear_trend(np.full(30, 4.0)) == {"slope": 0.0, "intercept": 4.0, "r_squared": 0.0,
                                                 "p_value": 1.0}


def test_linear_trend_of_a_perfect_line_has_p_value_zero():
    result = ta.linear_trend(3.0 + 2.0 * np.arange(20))
    assert result == {"slope": 2.0, "intercept": 3.0, "r_squared": 1.0, "p_value": 0.0}


def test_linear_trend_p_value_is_one_with_fewer_than_three_points():
    assert ta.linear_trend(np.array([1.0, 5.0]))["p_value"] == 1.0


# trend_analysis: direction


def test_direction_is_increasing_for_a_clear_upward_trend():
    rng = np.random.default_rng(3)
    values = 100 + 2.0 * np.arange(90) + rng.normal(0, 10, 90)
    result = ta.trend_analysis(values, days(90))
    assert result["direction"] == "increasing"
    assert result["slope"] == pytest.approx(2.0, abs=0.2)
    assert 0 < result["strength"] <= 1


def test_direction_is_decreasing_for_a_clear_downward_trend():
    values = 500 - 3.0 * np.arange(60) + np.random.default_rng(4).normal(0, 5, 60)
    assert ta.trend_analysis(values, days(60))["direction"] == "decreasing"


def test_direction_is_stable_for_noise():
    values = np.random.default_rng(5).normal(100, 10, 90)
    assert ta.trend_analysis(values, days(90))["direction"] == "stable"


def test_direction_is_stable_for_a_significant_slope_below_five_percent_of_the_mean():
    values = 1000 + 0.01 * np.arange(100) + np.random.default_rng(6).normal(0, 0.05, 100)
    assert ta.linear_trend(values)["p_value"] < 0.05
    assert ta.trend_analysis(values, days(100))["direction"] == "stable"


def test_confidence_is_r_squared():
    values = 100 + 2.0 * np.arange(90) + np.random.default_rng(3).normal(0, 10, 90)
    assert ta.trend_analysis(values, days(90))["confidence"] == ta.linear_trend(values)["r_squared"]


# trend_analysis: forecast


@pytest.mark.parametrize("weekly", ["multiplicative", "additive"])
def test_forecast_is_within_two_percent_of_a_noiseless_trend_plus_weekly_series(weekly):
    t = np.arange(147)
    trend = 100 + 0.5 * t
    if weekly == "multiplicative":
        series = trend * WEEKDAY_MULTIPLIERS[t % 7]
    else:
        series = trend + np.array([30, 40, 35, 20, 0, -50, -60])[t % 7]
    result = ta.trend_analysis(series[:140], days(140))
    np.testing.assert_allclose(forecast_values(result), series[140:], rtol=0.02)


def test_forecast_covers_the_seven_days_after_the_last_date_with_ordered_non_negative_bounds():
    values = weekday_heavy_series(0, 100)
    result = ta.trend_analysis(values, days(100))
    last = START + dt.timedelta(days=99)
    assert [point["date"] for point in result["forecast"]] == [
        (last + dt.timedelta(days=h)).isoformat() for h in range(1, 8)]
    lower, value, upper = (forecast_values(result, key) for key in ("lower", "value", "upper"))
    assert (lower >= 0).all() and (lower <= value).all() and (value <= upper).all()
    assert (upper - lower > 0).all()


def test_chosen_method_beats_seasonal_naive_on_held_out_weekday_heavy_series():
    chosen, seasonal_naive = [], []
    for seed in range(10):
        series = weekday_heavy_series(seed)
        for held_out in (28, 21, 14, 7):
            cut = len(series) - held_out
            truth = series[cut:cut + 7]
            scale = np.mean(np.abs(series[7:cut] - series[:cut - 7]))
            result = ta.trend_analysis(series[:cut], days(cut))
            chosen.append(np.mean(np.abs(truth - forecast_values(result))) / scale)
            seasonal_naive.append(np.mean(np.abs(truth - series[cut - 7:cut])) / scale)
    assert np.mean(chosen) < 0.95 * np.mean(seasonal_naive)


def test_backtest_reports_both_mases_over_weekly_origins():
    result = ta.trend_analysis(weekday_heavy_series(1), days(365))
    backtest = result["backtest"]
    assert backtest["origins"] == 50  # every week end leaving 14 training days, up to 52
    assert 0 < backtest["mase"] <= backtest["seasonal_naive_mase"]
    combined = backtest["combined_methods"]
    assert 1 <= len(combined) <= 3  # the backtest picks how many of the best are averaged
    assert result["method"] == ("combination" if len(combined) > 1 else combined[0])
    assert backtest["history_days"] == 365


def test_backtest_uses_only_origins_leaving_fourteen_training_days():
    values = np.random.default_rng(2).poisson(50 * WEEKDAY_HEAVY[np.arange(30) % 7]).astype(float)
    assert ta.trend_analysis(values, days(30))["backtest"]["origins"] == 2


@pytest.mark.parametrize(("n", "method"), [(0, "naive"), (1, "naive"), (6, "naive"), (7, "seasonal_naive"),
                                           (13, "seasonal_naive")])
def test_short_history_falls_back_to_seasonal_naive_or_naive(n, method):
    values = np.arange(1.0, n + 1)
    result = ta.trend_analysis(values, days(n))
    assert result["method"] == method
    assert result["backtest"] == {"mase": None, "seasonal_naive_mase": None, "origins": 0, "history_days": n,
                                  "combined_methods": [method]}
    if n >= 7:
        np.testing.assert_allclose(forecast_values(result), values[-7:])
    elif n:
        assert (forecast_values(result) == values[-1]).all()


def test_empty_series_has_no_forecast_points():
    assert ta.trend_analysis(np.array([]), [])["forecast"] == []


def test_trend_analysis_rejects_values_and_dates_of_different_lengths():
    with pytest.raises(ValueError):
        ta.trend_analysis(np.ones(5), days(4))


# anomalies


def test_anomalies_flag_an_injected_spike_on_its_date():
    t = np.arange(120)
    values = (100 + 0.2 * t) * WEEKDAY_MULTIPLIERS[t % 7] * np.random.default_rng(0).lognormal(0, 0.03, 120)
    values[77] *= 1.8
    found = ta.anomalies(values, days(120))
    assert [anomaly["date"] for anomaly in found] == [(START + dt.timedelta(days=77)).isoformat()]
    assert found[0]["score"] > 3.5 and found[0]["value"] == round(values[77], 2)


def test_anomalies_flag_nothing_on_a_clean_series():
    rng = np.random.default_rng(8)
    t = np.arange(120)
    values = 100 + 0.2 * t + np.array([30, 40, 35, 20, 0, -50, -60])[t % 7] + rng.normal(0, 2, 120)
    assert ta.anomalies(values, days(120)) == []


def test_anomalies_flag_only_the_spike_on_a_flat_series():
    values = np.full(60, 10.0)
    values[30] = 100.0
    found = ta.anomalies(values, days(60))
    spike_day = (START + dt.timedelta(days=30)).isoformat()
    assert [(anomaly["date"], anomaly["expected"]) for anomaly in found] == [(spike_day, 10.0)]


def test_anomalies_flag_nothing_on_a_perfectly_flat_series():
    assert ta.anomalies(np.full(60, 10.0), days(60)) == []


def test_anomalies_flag_every_day_of_a_weekday_that_is_all_outliers():
    values = np.full(28, 10.0)
    values[0::7] = [1000.0, 5000.0, 1000.0, 5000.0]  # the refit has no Monday left to fit
    found = ta.anomalies(values, days(28))
    assert [anomaly["date"] for anomaly in found] == [(START + dt.timedelta(days=d)).isoformat()
                                                      for d in (0, 7, 14, 21)]
    assert found[0]["expected"] == 8.57  # the minimum-norm least-squares fit's Monday


def test_anomalies_need_fourteen_days():
    values = np.full(13, 1.0)
    values[5] = 1000.0
    assert ta.anomalies(values, days(13)) == []


# JSON safety


DEGENERATE = {
    "empty": np.array([]),
    "one point": np.array([5.0]),
    "two points": np.array([1.0, 3.0]),
    "six points": np.array([0.0, 1, 0, 2, 0, 3]),
    "thirteen points": np.arange(13.0),
    "all zeros": np.zeros(60),
    "flat constant": np.full(60, 7.0),
    "zeros then one day": np.concatenate([np.zeros(40), [5.0]]),
    "huge values": np.random.default_rng(9).uniform(1e12, 1e13, 60),
    "near float max": np.full(30, 1e307),
    "tiny values": np.full(30, 5e-324),
}


@pytest.mark.parametrize("values", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_series_give_json_safe_results(values):
    dates = days(len(values))
    for result in (ta.summarize(values, dates), ta.linear_trend(values), ta.trend_analysis(values, dates),
                   ta.anomalies(values, dates)):
        assert_json_safe(result)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e300), max_size=120))
def test_any_non_negative_series_gives_json_safe_results(raw):
    values = np.array(raw, dtype=float)
    dates = days(len(values))
    assert_json_safe(ta.summarize(values, dates))
    assert_json_safe(ta.linear_trend(values))
    assert_json_safe(ta.trend_analysis(values, dates))
    assert_json_safe(ta.anomalies(values, dates))


def test_trend_analyzer_exposes_the_module_functions():
    assert ta.TrendAnalyzer.summarize(np.array([1.0]), days(1))["total"] == 1.0
    assert ta.TrendAnalyzer().linear_trend(np.array([1.0, 2.0, 3.0]))["slope"] == 1.0


# analyze_many: a batch of metrics sharing their dates


def batch_rows(n: int, seed: int) -> np.ndarray:
    """Nine series of n days mixing ordinary, weekday-heavy and degenerate rows."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    spiky = rng.poisson(50, n).astype(float)
    spiky[rng.random(n) < 0.05] *= 20
    late_start = np.zeros(n)
    late_start[n // 2:] = rng.poisson(30, n - n // 2)
    wild_mondays = np.full(n, 10.0)
    wild_mondays[::7] = np.resize([1000.0, 5000.0], len(wild_mondays[::7]))
    return np.array([
        rng.poisson(200 * WEEKDAY_HEAVY[t % 7]).astype(float),
        wild_mondays,
        np.round(rng.lognormal(3, 1, n), 2),
        spiky,
        late_start,
        np.zeros(n),
        np.full(n, 7.0),
        rng.uniform(1e12, 1e13, n),
        rng.uniform(0, 1e300, n),
    ])


@pytest.mark.parametrize("n", [0, 1, 2, 6, 7, 13, 14, 15, 21, 29, 60, 91, 120, 365])
def test_analyze_many_gives_each_row_what_analyze_gives_it_alone(n):
    series, dates = batch_rows(n, seed=n), days(n)
    results = ta.analyze_many(series, dates)
    assert len(results) == len(series)
    for values, result in zip(series, results, strict=True):
        assert result == ta.analyze(values, dates)
    assert_json_safe(results)


def test_analyze_many_rows_do_not_depend_on_their_neighbours():
    series, dates = batch_rows(120, seed=3), days(120)
    alone = [ta.analyze_many(row[None, :], dates)[0] for row in series]
    order = np.random.default_rng(4).permutation(len(series))
    shuffled = ta.analyze_many(series[order], dates)
    assert [shuffled[list(order).index(i)] for i in range(len(series))] == alone


def test_analyze_many_agrees_with_the_single_series_functions():
    series, dates = batch_rows(60, seed=5), days(60)
    for values, result in zip(series, ta.analyze_many(series, dates), strict=True):
        line = ta.linear_trend(values)
        assert ta.summarize(values, dates).items() <= result.items()
        assert (result["trend_slope"], result["trend_confidence"], result["p_value"]) == (
            line["slope"], line["r_squared"], line["p_value"])
        assert result["trend_analysis"] == ta.trend_analysis(values, dates)
        assert result["anomalies"] == ta.anomalies(values, dates)


def test_analyze_many_returns_separate_dicts_per_row():
    results = ta.analyze_many(np.ones((2, 30)), days(30))
    results[0]["previous_period"] = None  # the service adds keys to each summary
    results[0]["trend_analysis"]["backtest"]["origins"] = -1
    assert "previous_period" not in results[1] and results[1]["trend_analysis"]["backtest"]["origins"] == 2


def test_analyze_many_of_no_metrics_is_empty():
    assert ta.analyze_many(np.empty((0, 30)), days(30)) == []


def test_analyze_many_rejects_a_shape_that_does_not_match_the_dates():
    with pytest.raises(ValueError):
        ta.analyze_many(np.ones((3, 5)), days(4))
    with pytest.raises(ValueError):
        ta.analyze_many(np.ones(5), days(5))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=90).flatmap(lambda n: st.lists(
    st.lists(st.floats(min_value=0, max_value=1e300), min_size=n, max_size=n), min_size=1, max_size=6)))
def test_any_non_negative_batch_gives_json_safe_rows_equal_to_analyze(raw):
    series = np.array(raw, dtype=float).reshape(len(raw), -1)
    dates = days(series.shape[1])
    results = ta.analyze_many(series, dates)
    json.dumps(results, allow_nan=False)
    assert_same_rows(results, [ta.analyze(values, dates) for values in series])


def assert_same_rows(fast: object, plain: object, path: str = "") -> None:
    """Assert two analysis results are equal, floats to the last couple of bits: numpy's batch
    reductions may add in another order than its row-by-row ones (numpy 1.26 does, at 1e296)."""
    if isinstance(fast, dict) and isinstance(plain, dict):
        assert fast.keys() == plain.keys(), path
        for key in fast:
            assert_same_rows(fast[key], plain[key], f"{path}.{key}")
    elif isinstance(fast, list) and isinstance(plain, list):
        assert len(fast) == len(plain), path
        for index, (a, b) in enumerate(zip(fast, plain, strict=True)):
            assert_same_rows(a, b, f"{path}[{index}]")
    elif isinstance(fast, float) and isinstance(plain, float):
        assert math.isclose(fast, plain, rel_tol=1e-12, abs_tol=0.0), (path, fast, plain)
    else:
        assert fast == plain, (path, fast, plain)


NEAR_HALF_CENTS = st.integers(-10**6, 10**6).map(lambda k: k / 100 + 0.005)  # where rounding is delicate


@given(st.floats(allow_nan=True, allow_infinity=True) | NEAR_HALF_CENTS)
def test_rounding_matches_python_round_for_any_float(value):
    for digits in (2, 4):
        expected = round(value, digits) if np.isfinite(value) else None
        with np.errstate(all="ignore"):
            (rounded,) = ta._rounded(np.array([value]), digits)
        assert rounded == expected and (expected is None or str(rounded) == str(expected))


# history: the forecast and the anomaly fit read every tracked day up to the range's end


def issue_like_history(n: int = 365, seed: int = 12) -> np.ndarray:
    """A year of weekday-heavy daily counts peaking near 134, as in the issue's report."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 80 * np.exp(np.cumsum(rng.normal(0, 0.005, n)))
    return rng.poisson(level * WEEKDAY_HEAVY[t % 7] * rng.lognormal(0, 0.08, n)).astype(float)


def test_a_seven_day_range_with_a_year_of_history_is_backtested():
    history = issue_like_history()
    result = ta.trend_analysis(history[-7:], days(7, START + dt.timedelta(days=358)), history=history)
    assert result["backtest"]["origins"] > 0 and result["backtest"]["history_days"] == 365
    assert result["method"] != "seasonal_naive" and result["backtest"]["mase"] is not None


def test_the_band_stays_within_what_the_history_supports():
    history = issue_like_history()
    alone = ta.trend_analysis(history[-7:], days(7))
    result = ta.trend_analysis(history[-7:], days(7), history=history)
    upper = forecast_values(result, "upper")
    assert forecast_values(alone, "upper").max() > 2 * history.max()  # the issue's 0–406 for a peak of 134
    assert upper.max() <= 1.5 * history.max()
    assert (forecast_values(result, "lower")[:4] > 0).all()  # the next four weekdays: no longer down to 0


def test_a_seven_day_view_forecasts_as_a_year_long_view_does():
    history = issue_like_history()
    week = ta.trend_analysis(history[-7:], days(365)[-7:], history=history)
    year = ta.trend_analysis(history, days(365), history=history)
    assert week["forecast"] == year["forecast"] and week["backtest"] == year["backtest"]


def yearly_series(n: int, seed: int = 3) -> np.ndarray:
    """Daily counts with a strong yearly shape (peak in summer), a weekly shape and noise."""
    t = np.arange(n)
    yearly = 1 + 0.6 * np.sin(2 * np.pi * (t - 100) / 365.25)
    rng = np.random.default_rng(seed)
    return 200 * yearly * WEEKDAY_MULTIPLIERS[t % 7] * rng.lognormal(0, 0.05, n)


def test_two_years_of_history_bring_in_the_yearly_shape():
    series = yearly_series(3 * 365)
    errors = {"with": [], "without": []}
    for cut in range(2 * 365 + 60, 3 * 365 - 7, 28):  # from 8 origins with two years of training
        truth = series[cut:cut + 7]
        with_years = ta.trend_analysis(series[cut - 7:cut], days(7), history=series[:cut])
        assert any(name.startswith("yearly") or "+yearly" in name
                   for name in with_years["backtest"]["combined_methods"])
        one_year = ta.trend_analysis(series[cut - 7:cut], days(7), history=series[cut - 365:cut])
        assert not any("yearly" in name for name in one_year["backtest"]["combined_methods"])
        errors["with"].append(np.abs(forecast_values(with_years) - truth).mean())
        errors["without"].append(np.abs(forecast_values(one_year) - truth).mean())
    assert np.mean(errors["with"]) < 0.92 * np.mean(errors["without"])


def test_history_none_is_the_range_as_its_own_history():
    series, dates = batch_rows(120, seed=7), days(120)
    assert ta.analyze_many(series, dates) == ta.analyze_many(series, dates, history=series)


def test_summaries_and_the_line_describe_the_range_not_the_history():
    history = issue_like_history()
    result = ta.analyze(history[-30:], days(30), history=history)
    alone = ta.analyze(history[-30:], days(30))
    for key in ("average", "median", "total", "trend_slope", "p_value", "change_first_to_last_week_percent"):
        assert result[key] == alone[key]


@pytest.mark.parametrize("n", [7, 30, 91])
def test_analyze_many_with_history_gives_each_row_what_analyze_gives_it_alone(n):
    history = batch_rows(800, seed=n)
    series, dates = history[:, -n:], days(n)
    results = ta.analyze_many(series, dates, history=history)
    for values, past, result in zip(series, history, results, strict=True):
        assert result == ta.analyze(values, dates, history=past)
    assert_json_safe(results)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.lists(st.floats(min_value=0, max_value=1e300), min_size=n + 60, max_size=n + 60),
                         min_size=1, max_size=3))))
def test_any_non_negative_history_gives_json_safe_rows(drawn):
    n, raw = drawn
    history = np.array(raw, dtype=float)
    results = ta.analyze_many(history[:, -n:], days(n), history=history)
    json.dumps(results, allow_nan=False)


def test_history_must_cover_the_range():
    with pytest.raises(ValueError):
        ta.analyze_many(np.ones((2, 30)), days(30), history=np.ones((2, 29)))
    with pytest.raises(ValueError):
        ta.analyze_many(np.ones((2, 30)), days(30), history=np.ones((3, 60)))


def test_anomalies_are_fitted_on_history_and_reported_for_the_range_only():
    t = np.arange(400)
    values = (100 + 0.05 * t) * WEEKDAY_MULTIPLIERS[t % 7] * np.random.default_rng(1).lognormal(0, 0.03, 400)
    values[200] *= 2.0  # before the range
    values[395] *= 2.0  # in the range
    range_dates = days(10, START + dt.timedelta(days=390))
    found = ta.anomalies(values[-10:], range_dates, history=values)
    assert [anomaly["date"] for anomaly in found] == [(START + dt.timedelta(days=395)).isoformat()]
    assert ta.anomalies(values[-10:], range_dates) == []  # ten days alone are too few to fit


def test_a_tiny_p_value_keeps_three_significant_figures():
    values = 100 + 2.0 * np.arange(200) + np.random.default_rng(2).normal(0, 5, 200)
    p_value = ta.linear_trend(values)["p_value"]
    reference = stats.linregress(np.arange(200), values).pvalue
    assert 0.0 < p_value < 1e-100
    assert p_value == pytest.approx(reference, rel=5e-3) and float(f"{p_value:.2e}") == p_value


def test_a_tiny_slope_is_not_rounded_away():
    values = 5.0 + 2e-6 * np.arange(100) + np.random.default_rng(3).normal(0, 1e-6, 100)
    assert ta.linear_trend(values)["slope"] == pytest.approx(2e-6, rel=0.05)


def test_the_change_over_the_range_has_an_unambiguous_name_and_keeps_its_old_one():
    values = np.concatenate([np.full(7, 10.0), np.full(10, 12.0), np.full(7, 15.0)])
    result = ta.summarize(values, days(24))
    assert result["change_first_to_last_week_percent"] == result["percentage_change"] == 50.0
