"""The vectorised forecasting pieces held against plain reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from activity_monitor import forecasting as fc

WEEKDAYS = np.array([1.25, 1.3, 1.25, 1.2, 1.0, 0.25, 0.15])


def weekly_counts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return rng.poisson(level * WEEKDAYS[np.arange(n) % 7]).astype(float) / 100


def plain_holt(values: np.ndarray, weights: np.ndarray, level: float, states: np.ndarray, alpha: float,
               beta: float, phi: float, gamma: float) -> tuple[list[float], float, float, list[float]]:
    """Damped Holt with a weekday state, one day at a time: one-step forecasts, final level, slope, states."""
    slope, states, forecasts = 0.0, list(states), []
    for t, (value, weight) in enumerate(zip(values, weights, strict=True)):
        forecast = level + phi * slope + states[t % 7]
        forecasts.append(forecast)
        error = weight * (value - forecast)
        level, slope = level + phi * slope + alpha * error, phi * slope + beta * alpha * error
        states[t % 7] += gamma * error
    return forecasts, level, slope, states


def test_the_holt_pass_matches_a_plain_loop_for_every_grid_point():
    rng = np.random.default_rng(1)
    grid = np.concatenate([fc._HOLT_GRID, fc._WINTERS_GRID], axis=1)
    rows = grid.shape[1]
    values = rng.uniform(0, 1, (rows, 60))
    weights = (rng.random((rows, 60)) > 0.2) * 1.0
    start, states = values[:, 0].copy(), rng.normal(0, 0.2, (rows, 7))
    stops = np.array([20, 41, 60])
    one_step, levels, slopes, stop_states = fc._holt_pass(values, weights, start, states, grid, stops)
    for row in range(rows):
        expected = plain_holt(values[row], weights[row], start[row], states[row], *grid[:, row])
        forecasts, level, slope, final_states = expected
        np.testing.assert_allclose(one_step[:, row], forecasts, rtol=1e-12, atol=1e-15)
        assert levels[-1, row] == pytest.approx(level, rel=1e-12, abs=1e-15)
        assert slopes[-1, row] == pytest.approx(slope, rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(stop_states[-1, :, row], final_states, rtol=1e-12, atol=1e-15)
        # The states at a stop are the ones before that day's update.
        _, level_20, slope_20, states_20 = plain_holt(values[row, :20], weights[row, :20], start[row],
                                                      states[row], *grid[:, row])
        assert levels[0, row] == pytest.approx(level_20, rel=1e-12, abs=1e-15)
        assert slopes[0, row] == pytest.approx(slope_20, rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(stop_states[0, :, row], states_20, rtol=1e-12, atol=1e-15)


def test_weekday_profiles_are_the_medians_of_the_weeks_before_each_cut():
    ys = weekly_counts(400, seed=2)[None, :]
    cuts = np.arange(200, 401, 7)
    ratios, offsets, _ = fc._weekday_profiles(ys, cuts)
    centred = np.convolve(ys[0], np.ones(7) / 7, mode="valid")  # centred[j] is centred on day j + 3
    for index, cut in enumerate(cuts):
        days = np.arange(cut - 3 - 7 * fc.PROFILE_WEEKS, cut - 3)
        ratio = np.array([np.median(ys[0, days[days % 7 == d]] / centred[days[days % 7 == d] - 3])
                          for d in range(7)])
        offset = np.array([np.median(ys[0, days[days % 7 == d]] - centred[days[days % 7 == d] - 3])
                           for d in range(7)])
        np.testing.assert_allclose(ratios[0, index], ratio / ratio.mean(), rtol=1e-10)
        np.testing.assert_allclose(offsets[0, index], offset - offset.mean(), rtol=1e-10, atol=1e-12)


def test_the_yearly_regression_matches_least_squares_plus_the_residual_level():
    rng = np.random.default_rng(3)
    n = 900
    t = np.arange(n)
    ys = (1 + 0.4 * np.sin(2 * np.pi * t / 365.25) + rng.normal(0, 0.05, (2, n))) * WEEKDAYS[t % 7]
    cuts = np.array([802, 893, 900])  # week ends counted back from the last day, as the backtest has them
    forecasts = fc._yearly_regression_forecasts(ys, cuts)
    for index, cut in enumerate(cuts):
        start = max(0, cut - fc.YEARLY_WINDOW_DAYS)
        design = fc._yearly_design(np.arange(start, cut + fc.HORIZON, dtype=float))
        for row in range(2):
            coefficients = np.linalg.lstsq(design[:cut - start], ys[row, start:cut], rcond=None)[0]
            residuals = ys[row, start:cut] - design[:cut - start] @ coefficients
            level = 0.0
            for residual in residuals[-fc.RESIDUAL_DAYS:]:
                level += fc.RESIDUAL_ALPHA * (residual - level)
            expected = np.maximum(design[cut - start:] @ coefficients + level, 0.0)
            np.testing.assert_allclose(forecasts[row, index], expected, rtol=1e-6, atol=1e-9)


def test_yearly_candidates_need_eight_origins_with_two_years_of_training():
    assert not fc.backtest_origins(fc.YEARLY_MIN_DAYS + 7 * 7)[1]
    origins, yearly = fc.backtest_origins(fc.YEARLY_MIN_DAYS + 7 * 8)
    assert yearly and len(origins) == 8 and origins.min() >= fc.YEARLY_MIN_DAYS


def test_a_row_is_forecast_alike_alone_and_among_others():
    ys = np.stack([weekly_counts(800, seed) for seed in range(4)])
    together = fc.select_forecasts(ys)
    for row in range(4):
        alone = fc.select_forecasts(ys[row:row + 1])
        assert alone.combined[0] == together.combined[row]
        np.testing.assert_allclose(alone.forecasts[0], together.forecasts[row], rtol=1e-12)
        np.testing.assert_allclose(alone.sds[0], together.sds[row], rtol=1e-12)


def plain_mase(y: np.ndarray, origins: np.ndarray, forecasts: np.ndarray) -> float:
    """Mean over origins of the 7-day MAE of forecasts[k] after origin k, scaled by the in-sample SN MAE."""
    return float(np.mean([np.mean(np.abs(y[o:o + 7] - forecasts[k])) / np.mean(np.abs(y[7:o] - y[:o - 7]))
                          for k, o in enumerate(origins)]))


def test_the_combination_averages_as_many_of_the_best_as_score_best_in_the_backtest():
    ys = np.stack([weekly_counts(800, seed) for seed in range(6)])  # these pick 1, 2 and 3 candidates
    selection = fc.select_forecasts(ys)
    assert {len(chosen) for chosen in selection.combined} == set(fc.COMBINED)
    origins, yearly = fc.backtest_origins(ys.shape[1])
    names, candidates = fc._candidate_forecasts(ys, np.append(origins, ys.shape[1]), yearly)
    for row in range(len(ys)):
        scores = [plain_mase(ys[row], origins, candidates[m, row]) for m in range(len(names))]
        ranked = sorted(range(len(names)), key=lambda m: scores[m])  # sorted() is stable too
        sizes = {size: plain_mase(ys[row], origins, candidates[ranked[:size], row].mean(axis=0))
                 for size in fc.COMBINED}
        size = min(sizes, key=sizes.get)
        assert selection.combined[row] == [names[m] for m in ranked[:size]]
        assert selection.mase[row] == pytest.approx(sizes[size], rel=1e-9)
        np.testing.assert_allclose(selection.forecasts[row],
                                   candidates[ranked[:size], row, -1].mean(axis=0), rtol=1e-12)


def test_holt_winters_averages_the_grid_points_with_the_least_one_step_error():
    ys = weekly_counts(800, seed=4)[None, :]
    n = ys.shape[1]
    origins, _ = fc.backtest_origins(n)
    cuts = np.append(origins, n)
    _, winters = fc._smoothing_forecasts(ys, cuts)
    first = max(fc.MIN_TRAINING_DAYS, int(cuts[0]) - fc.FIT_WINDOW_DAYS)
    first += (n - first) % 7
    _, offsets, _ = fc._weekday_profiles(ys, np.arange(first, n + 1, 7))
    states = offsets[0, 0, (first + np.arange(7)) % 7]
    level = np.mean(ys[0, first - 7:first] - states)
    for index in (0, len(cuts) - 1):
        cut = int(cuts[index])
        fits = []
        for alpha, beta, phi, gamma in fc._WINTERS_GRID.T:
            forecasts, end_level, _, end_states = plain_holt(ys[0, first:cut], np.ones(cut - first), level,
                                                             states, alpha, beta, phi, gamma)
            window = min(fc.FIT_WINDOW_DAYS, cut - first)
            sse = np.sum((ys[0, cut - window:cut] - np.array(forecasts[-window:])) ** 2)
            fits.append((sse, [end_level + end_states[(cut - first + h) % 7] for h in range(7)]))
        best = sorted(fits, key=lambda fit: fit[0])[:fc.GRID_AVERAGED]
        expected = np.maximum(np.mean([path for _, path in best], axis=0), 0.0)
        np.testing.assert_allclose(winters[0, index], expected, rtol=1e-9)
