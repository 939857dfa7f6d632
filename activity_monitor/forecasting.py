"""Weekly-seasonal 7-day forecasts for a batch of daily series, each chosen by rolling-origin backtest.

Each series (row) picks, by rolling-origin backtest (up to 8 weekly origins, 7 days ahead each), the
lowest-MASE of seasonal naive, naive, a weekday-adjusted damped Holt ("seasonal_holt") and the mean of
seasonal naive and seasonal_holt; 95 % intervals come from its backtest errors per horizon. All rows,
origins and smoothing parameters run in one vectorised pass; a row's result never depends on the others.
Pure numpy, no JSON: callers round and date the arrays returned.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SEASON = 7  # days in the weekly cycle
HORIZON = 7  # days forecast
MIN_TRAINING_DAYS = 14  # shortest history a backtest origin may train on
MAX_ORIGINS = 8  # weekly rolling origins scored by the backtest
MIN_ORIGINS_FOR_INTERVALS = 2  # fewer backtest origins: intervals from the random-walk fallback
FIT_WINDOW_DAYS = 84  # days of history the smoothing model is run over
PROFILE_WEEKS = 8  # recent weeks the weekday profile is estimated from
CLOSED_DAY_FACTOR = 0.1  # weekday multiplier below which a day carries no level information
ALPHAS = np.array([0.05, 0.15, 0.3, 0.5, 0.8])  # level smoothing grid
TRENDS = ((0.0, 0.0), (0.05, 0.98), (0.2, 0.98), (0.2, 0.9))  # (beta, phi) grid; (0, 0) is no trend
METHODS = ("seasonal_naive", "naive", "seasonal_holt", "combination")  # simplest first: ties keep it

_GRID_ALPHA = np.repeat(ALPHAS, len(TRENDS))
_GRID_BETA = np.tile([beta for beta, _ in TRENDS], len(ALPHAS))
_GRID_PHI = np.tile([phi for _, phi in TRENDS], len(ALPHAS))
# Cumulative damping sum phi + phi^2 + ... + phi^h for h = 1..HORIZON, per grid point.
_GRID_DAMPING = np.cumsum(_GRID_PHI[:, None] ** np.arange(1, HORIZON + 1), axis=1)
# Values per array the smoothing loop materialises per block of days: an array much past 128 KB is
# mapped afresh by malloc on every call, and its page faults cost more than the arithmetic on it.
_BLOCK_VALUES = 16_384


class ForecastSelection(NamedTuple):
    """Per row: the chosen method, its HORIZON-day forecast and per-horizon sd, and its backtest.

    mase and seasonal_naive_mase are NaN where nothing was scored; origins is shared by all rows.
    """

    methods: list[str]
    forecasts: np.ndarray  # (rows, HORIZON)
    sds: np.ndarray  # (rows, HORIZON)
    mase: np.ndarray  # (rows,)
    seasonal_naive_mase: np.ndarray  # (rows,)
    origins: int


def _weekday_medians(blocks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return per-weekday medians of blocks (..., cuts, weeks, 7) whose first weeks may be NaN padding.

    counts (cuts,) is the number of real weeks in each cut's block.
    """
    ordered = np.sort(blocks, axis=-2)  # NaN padding sorts last
    cut = np.arange(len(counts))
    return (ordered[..., cut, (counts - 1) // 2, :] + ordered[..., cut, counts // 2, :]) / 2


def _weekday_profiles(ys: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return weekday factors per row and cut: multipliers, offsets (rows, cuts, 7), use-multiplicative flags.

    Factors are medians, per weekday, of each day's ratio to (or difference from) its centred 7-day
    mean over the last weeks before the cut whose centred mean is known; the form that fits those weeks
    better wins (multiplicative needs a positive centred mean throughout). Columns are day index % 7.
    """
    rows = len(ys)
    weeks = np.minimum(PROFILE_WEEKS, (cuts - SEASON + 1) // SEASON)
    most = int(weeks.max())
    window = SEASON * most
    kernel = np.ones(SEASON) / SEASON
    # centred[:, j] is centred on day j + 3; one convolve per row (a handful) keeps np.convolve's sums.
    centred = np.array([np.convolve(y, kernel, mode="valid") for y in ys])
    days = cuts[:, None] - 3 - window + np.arange(window)  # the last has a known centred mean
    used = np.arange(window) >= SEASON * (most - weeks[:, None])
    days = np.where(used, days, 3)
    level, observed = centred[:, days - 3], ys[:, days]  # (rows, cuts, window)
    everywhere = bool(used.all())  # every cut has PROFILE_WEEKS weeks: nothing to mask
    with np.errstate(all="ignore"):
        deviations = np.stack([observed / level, observed - level])
    if not everywhere:
        deviations[:, :, ~used] = np.nan
    shape = (rows, len(cuts), most, SEASON)
    ratios, offsets = _weekday_medians(deviations.reshape(2, *shape), weeks)
    ratio_mean = ratios.mean(axis=-1, keepdims=True)
    ratios = np.where(ratio_mean > 0, ratios / np.where(ratio_mean > 0, ratio_mean, 1.0), 1.0)
    offsets = offsets - offsets.mean(axis=-1, keepdims=True)
    by_week = observed.reshape(shape), level.reshape(shape)
    misfit_ratio = np.abs(by_week[0] - by_week[1] * ratios[..., None, :]).reshape(level.shape)
    misfit_offset = np.abs(by_week[0] - by_week[1] - offsets[..., None, :]).reshape(level.shape)
    positive = level > 0
    if not everywhere:
        misfit_ratio, misfit_offset, positive = misfit_ratio * used, misfit_offset * used, positive | ~used
    positive = positive.all(axis=-1) & (ratio_mean[..., 0] > 0)
    multiplicative = positive & (misfit_ratio.sum(axis=-1) <= misfit_offset.sum(axis=-1))
    # Rotate columns from "position in the window" to "day index % 7".
    cut = np.arange(len(cuts))[:, None]
    order = (np.arange(SEASON)[None, :] - (cuts[:, None] - 3 - window)) % SEASON
    return ratios[:, cut, order], offsets[:, cut, order], multiplicative


def _holt_grid(target: np.ndarray, factor: np.ndarray, adjusted: np.ndarray, weights: np.ndarray,
               start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run damped Holt for every (series, cut) pair and grid point; return final level, slope and
    one-step SSE, each (pairs, grid points).

    Inputs are (pairs, span): target = observed − additive factor, factor = multiplicative factor,
    adjusted = weekday-adjusted data, weights = 1 where a day updates the level. Pair p starts at
    column start[p]: level = its first week's mean, slope = its second week's mean minus that, / 7.
    """
    pairs, span = target.shape
    grid = len(_GRID_ALPHA)
    columns = np.arange(span)
    pair, weighted = np.arange(pairs)[:, None], adjusted * weights

    def week_mean(offset: int) -> np.ndarray:
        week = start[:, None] + offset + np.arange(SEASON)
        return weighted[pair, week].sum(axis=1) / np.maximum(weights[pair, week].sum(axis=1), 1)

    first = week_mean(0)
    trend_start = (columns == start[:, None] + SEASON) * ((week_mean(SEASON) - first) / SEASON)[:, None]
    has_trend = _GRID_PHI > 0
    # State is grid-major (grid point, pair), flattened: a pair's inputs broadcast along the outer axis.
    # Until its own history begins a pair's state sits still: weights are 0 and the slope is injected late.
    level = (first + 3 * trend_start.sum(axis=1) * has_trend[:, None]).ravel()  # the week's middle day
    configs = len(level)
    slope = np.zeros(configs)
    scored = columns >= start[:, None] + np.where(span - start >= 3 * SEASON, 2 * SEASON, SEASON)[:, None]
    alpha, phi, beta = (np.repeat(values, pairs) for values in (_GRID_ALPHA, _GRID_PHI, _GRID_BETA))
    kicks = {t: (trend_start[:, t] * has_trend[:, None]).ravel()
             for t in set((start + SEASON).tolist()) if t < span}
    adjusted_t, weights_t = adjusted.T[:, None, :], weights.T[:, None, :]
    everyone_updates = weights.all(axis=0).tolist()  # per day: the gain is alpha for every config
    # Unscored days get factor and target 0, hence error 0: cheaper than masking every error.
    factor_t, target_t = (factor * scored).T[:, None, :], (target * scored).T[:, None, :]
    sse = np.zeros(configs)
    damped, step, partial_gain = np.empty(configs), np.empty(configs), np.empty((grid, pairs))
    multiply, add, subtract = np.multiply, np.add, np.subtract

    def partial_gains(t: int) -> np.ndarray:
        return multiply(weights_t[t], _GRID_ALPHA[:, None], partial_gain).ravel()

    # Blocks of days keep every array small: large ones would come as fresh pages on each call.
    block_days = max(1, _BLOCK_VALUES // configs)
    block = np.empty((block_days, grid, pairs))  # the block's adjusted values, per config
    forecasts = np.empty((1 + block_days, configs))  # the SSE so far, then the block's one-step forecasts
    for begin in range(SEASON, span, block_days):
        days = slice(begin, min(begin + block_days, span))
        size = days.stop - begin
        np.copyto(block[:size], adjusted_t[days])
        values = block.reshape(block_days, configs)[:size]
        for t, forecast, value in zip(range(begin, days.stop), forecasts[1:1 + size], values, strict=True):
            if t in kicks:
                add(slope, kicks[t], slope)
            # Positional outputs: at this size a ufunc call costs more than its arithmetic.
            multiply(phi, slope, damped)
            add(level, damped, forecast)
            subtract(value, forecast, step)
            multiply(step, alpha if everyone_updates[t] else partial_gains(t), step)
            add(forecast, step, level)
            multiply(beta, step, slope)
            add(slope, damped, slope)
        errors = forecasts[1:1 + size].reshape(size, grid, pairs)
        errors *= factor_t[days]
        subtract(target_t[days], errors, out=errors)
        errors *= errors
        forecasts[0] = sse
        sse = forecasts[:1 + size].sum(axis=0)  # adds day by day, in order
    return level.reshape(grid, pairs).T, slope.reshape(grid, pairs).T, sse.reshape(grid, pairs).T


def _smoothing_forecasts(ys: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Return the seasonally adjusted damped-Holt forecast of the HORIZON days after each cut, per row.

    The level (and damped trend) is smoothed on weekday-adjusted data over the last FIT_WINDOW_DAYS
    before each cut; smoothing parameters are picked per (row, cut) from the grid by in-sample one-step
    squared error. Shorter histories are left-padded. Returns shape (rows, cuts, HORIZON).
    """
    rows, pairs = len(ys), len(ys) * len(cuts)
    ratios, offsets, multiplicative = _weekday_profiles(ys, cuts)
    multiplicative = multiplicative[..., None]
    span = min(FIT_WINDOW_DAYS, int(cuts.max()))
    start = span - np.minimum(span, cuts)  # first real column of each cut
    columns = np.arange(span)
    days = np.maximum(cuts[:, None] - span + columns, 0)
    cut = np.arange(len(cuts))[:, None]
    # Per row, cut and weekday: the multiplier and the offset to use (1 and 0 where the other form won).
    profiles = np.stack([np.where(multiplicative, ratios, 1.0), np.where(multiplicative, 0.0, offsets)])
    factor, shift = profiles[:, :, cut, days % SEASON]  # (rows, cuts, span)
    informative = (factor >= CLOSED_DAY_FACTOR) & (columns >= start[:, None])
    observed = ys[:, days]
    adjusted = np.where(informative, (observed - shift) / np.where(informative, factor, 1.0), 0.0)
    level, slope, sse = _holt_grid(*(values.reshape(pairs, span) for values in (
        observed - shift, factor, adjusted, informative.astype(float))), np.tile(start, rows))
    best = np.argmin(sse, axis=1)
    pair = np.arange(pairs)
    path = (level[pair, best][:, None] + slope[pair, best][:, None] * _GRID_DAMPING[best]).reshape(
        rows, len(cuts), HORIZON)
    ahead_factor, ahead_shift = profiles[:, :, cut, (cuts[:, None] + np.arange(HORIZON)) % SEASON]
    return np.maximum(path * ahead_factor + ahead_shift, 0.0)


def _candidate_forecasts(ys: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Return each METHODS candidate's HORIZON-day forecasts after every cut: (4, rows, cuts, HORIZON)."""
    seasonal_naive = ys[:, cuts[:, None] - SEASON + np.arange(HORIZON) % SEASON]
    smoothing = _smoothing_forecasts(ys, cuts)
    naive = np.repeat(ys[:, cuts - 1][:, :, None], HORIZON, axis=2)
    return np.stack([seasonal_naive, naive, smoothing, (seasonal_naive + smoothing) / 2])


def _in_sample_scales(ys: np.ndarray, cuts: np.ndarray, lag: int) -> np.ndarray:
    """Return the mean absolute lag-`lag` difference of each row's days before every cut (MASE scale)."""
    running = np.cumsum(np.abs(ys[:, lag:] - ys[:, :-lag]), axis=1)
    return running[:, cuts - lag - 1] / (cuts - lag)


def _short_history_forecasts(ys: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Return method, forecasts and per-horizon sds for histories too short to backtest."""
    rows, n = ys.shape
    if n >= SEASON:
        method, values = "seasonal_naive", ys[:, n - SEASON + np.arange(HORIZON) % SEASON]
    else:
        method, values = "naive", np.repeat(ys[:, -1:] if n else np.zeros((rows, 1)), HORIZON, axis=1)
    step_sd = np.sqrt(np.mean(np.diff(ys, axis=1) ** 2, axis=1)) if n >= 2 else np.zeros(rows)
    # Random-walk widths: lag-1 differences include the weekday swing, so this errs on the wide side.
    return method, values, step_sd[:, None] * np.sqrt(np.arange(1, HORIZON + 1))


def _mean_scaled_errors(per_origin: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Return the mean over scored origins of per_origin (methods, rows, origins), per method and row."""
    mase = per_origin.mean(axis=2)
    # Rows with some unscored origins average only the scored ones (NaN when none is scored).
    for row in np.flatnonzero(~scored.all(axis=1)):
        mase[:, row] = per_origin[:, row, scored[row]].mean(axis=1) if scored[row].any() else np.nan
    return mase


def select_forecasts(ys: np.ndarray) -> ForecastSelection:
    """Return, per row of ys (rows × days, values of order 1), the lowest-MASE method and its forecast.

    MASE is averaged over the backtest origins, each scaled by the in-sample seasonal-naive MAE of its
    own training data (lag-1 MAE where that is 0); origins with neither are not scored. Rows with no
    origin or none scored fall back to seasonal naive (naive under 7 days) with random-walk intervals.
    """
    rows, n = ys.shape
    origins = n - SEASON * np.arange(MAX_ORIGINS, 0, -1)
    origins = origins[origins >= MIN_TRAINING_DAYS]
    if len(origins) == 0 or rows == 0:
        method, values, sds = _short_history_forecasts(ys)
        return ForecastSelection([method] * rows, values, sds, np.full(rows, np.nan), np.full(rows, np.nan),
                                 len(origins))
    cuts = np.append(origins, n)
    candidates = _candidate_forecasts(ys, cuts)
    scales = _in_sample_scales(ys, origins, SEASON)
    if not (scales > 0).all():
        scales = np.where(scales > 0, scales, _in_sample_scales(ys, origins, 1))
    scored = scales > 0
    errors = ys[:, origins[:, None] + np.arange(HORIZON)] - candidates[:, :, :-1]
    mase = _mean_scaled_errors(np.abs(errors).mean(axis=3) / np.where(scored, scales, 1.0), scored)
    # The first strictly smaller MASE wins, as min() would pick: ties (and NaN) keep the simpler method.
    choice, best = np.zeros(rows, dtype=int), mase[0]
    for index in range(1, len(METHODS)):
        better = mase[index] < best
        choice, best = np.where(better, index, choice), np.where(better, mase[index], best)
    row = np.arange(rows)
    methods = [METHODS[index] for index in choice.tolist()]
    forecasts = candidates[choice, row, -1]
    sds = None
    if len(origins) >= MIN_ORIGINS_FOR_INTERVALS:
        sds = np.maximum.accumulate(np.sqrt(np.mean(errors[choice, row] ** 2, axis=1)), axis=1)
    backtested = scored.any(axis=1)  # else mase is NaN already
    if sds is None or not backtested.all():
        fallback_method, fallback_values, fallback_sds = _short_history_forecasts(ys)
        sds = fallback_sds if sds is None else sds
        methods = [method if ok else fallback_method for method, ok in zip(methods, backtested, strict=True)]
        forecasts = np.where(backtested[:, None], forecasts, fallback_values)
        sds = np.where(backtested[:, None], sds, fallback_sds)
    return ForecastSelection(methods, forecasts, sds, best, mase[0], len(origins))
