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


def plain_holt(values: np.ndarray, weights: np.ndarray, level: float, alpha: float, beta: float,
               phi: float) -> tuple[list[float], float, float]:
    """Damped Holt, one day at a time: one-step forecasts, final level and slope."""
    slope, forecasts = 0.0, []
    for value, weight in zip(values, weights, strict=True):
        forecast = level + phi * slope
        forecasts.append(forecast)
        step = alpha * weight * (value - forecast)
        level, slope = forecast + step, phi * slope + beta * step
    return forecasts, level, slope


def test_the_holt_pass_matches_a_plain_loop_for_every_grid_point():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, (3, 60))
    weights = (rng.random((3, 60)) > 0.2) * 1.0
    start = values[:, 0].copy()
    stops = np.array([20, 41, 60])
    one_step, levels, slopes = fc._holt_pass(values, weights, start, stops)
    for point, (alpha, beta, phi) in enumerate(zip(fc._GRID_ALPHA, fc._GRID_BETA, fc._GRID_PHI, strict=True)):
        for row in range(3):
            forecasts, level, slope = plain_holt(values[row], weights[row], start[row], alpha, beta, phi)
            np.testing.assert_allclose(one_step[:, point, row], forecasts, rtol=1e-12, atol=1e-15)
            assert levels[-1, point, row] == pytest.approx(level, rel=1e-12, abs=1e-15)
            assert slopes[-1, point, row] == pytest.approx(slope, rel=1e-12, abs=1e-15)
            # The state at a stop is the one before that day's update.
            assert levels[0, point, row] == pytest.approx(forecasts[20] - phi * (
                plain_holt(values[row, :20], weights[row, :20], start[row], alpha, beta, phi)[2]), rel=1e-12)


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
