"""Statistics over consecutive daily series: summaries, linear trend, 7-day forecasts and anomalies.

Pure numpy (scipy.stats only for the slope's p-value); no Flask, no SQL. Every dict returned is
JSON-safe: plain floats, ints, strings or None, never NaN or Infinity.

Forecasts: each series picks, by rolling-origin backtest (up to 8 weekly origins, 7 days ahead each),
the lowest-MASE of seasonal naive, naive, a weekday-adjusted damped Holt ("seasonal_holt") and the
mean of seasonal naive and seasonal_holt; 95 % intervals come from its backtest errors per horizon.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from scipy import stats

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
Z_95 = 1.959963984540054
SIGNIFICANCE = 0.05  # p-value below which a slope counts
MIN_RELATIVE_CHANGE = 0.05  # fitted change over the range, as a fraction of the mean, to call a trend
FULL_STRENGTH_CHANGE = 0.5  # relative fitted change at which strength stops growing
ANOMALY_THRESHOLD = 3.5  # robust z-score above which a day is an anomaly
MIN_ANOMALY_SD = 0.01  # floor of the robust sd, as a fraction of the mean absolute value
MAD_TO_SD = 1.4826

_GRID_ALPHA = np.repeat(ALPHAS, len(TRENDS))
_GRID_BETA = np.tile([beta for beta, _ in TRENDS], len(ALPHAS))
_GRID_PHI = np.tile([phi for _, phi in TRENDS], len(ALPHAS))
# Cumulative damping sum phi + phi^2 + ... + phi^h for h = 1..HORIZON, per grid point.
_GRID_DAMPING = np.cumsum(_GRID_PHI[:, None] ** np.arange(1, HORIZON + 1), axis=1)


def _num(value: float, digits: int) -> float | None:
    """Return value rounded to digits as a plain float, or None when it is not finite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _scale_of(values: np.ndarray) -> float:
    """Return the largest absolute value (1 for an empty or all-zero series), used to keep sums finite."""
    peak = float(np.max(np.abs(values))) if len(values) else 0.0
    return peak if peak > 0 and math.isfinite(peak) else 1.0


def trailing_means(values: np.ndarray, window: int) -> np.ndarray:
    """Return the mean of the non-NaN values in each trailing window (NaN where the window has none)."""
    values = np.asarray(values, dtype=float)
    present = ~np.isnan(values)
    kernel = np.ones(window)
    # Direct window sums (not a cumsum difference) so a window of zeros averages to exactly 0.
    sums = np.convolve(np.where(present, values, 0.0), kernel)[: len(values)]
    counts = np.convolve(present.astype(float), kernel)[: len(values)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def summarize(values: np.ndarray, dates: list[dt.date]) -> dict:
    """Return average, median, population std, min, max, total, peak_date and percentage_change."""
    y = np.asarray(values, dtype=float)
    if len(y) == 0:
        return {"average": 0.0, "median": 0.0, "std_dev": 0.0, "min": 0.0, "max": 0.0, "total": 0.0,
                "peak_date": None, "percentage_change": None}
    scale = _scale_of(y)
    unit = y / scale
    edge = min(SEASON, len(y))
    first, last = unit[:edge].mean(), unit[-edge:].mean()
    with np.errstate(all="ignore"):  # overflow past float max becomes None, not a warning
        change = (last - first) / first * 100 if first != 0 else math.nan
        return {
            "average": _num(unit.mean() * scale, 2),
            "median": _num(np.median(y), 2),
            "std_dev": _num(unit.std() * scale, 2),
            "min": _num(y.min(), 2),
            "max": _num(y.max(), 2),
            "total": _num(unit.sum() * scale, 2),
            "peak_date": dates[int(np.argmax(y))].isoformat(),
            "percentage_change": _num(change, 2),
        }


def _ols_line(y: np.ndarray) -> tuple[float, float, float, float]:
    """Return slope, intercept, R² and the slope's two-sided p-value of y on day index."""
    n = len(y)
    if n == 0:
        return 0.0, 0.0, 0.0, 1.0
    x = np.arange(n) - (n - 1) / 2
    mean = y.mean()
    sxx = float(x @ x)
    slope = float(x @ (y - mean)) / sxx if sxx > 0 else 0.0
    intercept = mean - slope * (n - 1) / 2
    ss_tot = float(((y - mean) ** 2).sum())
    ss_res = float(((y - mean - slope * x) ** 2).sum())
    if ss_tot <= 0:
        return 0.0, float(intercept), 0.0, 1.0
    r_squared = min(max(1 - ss_res / ss_tot, 0.0), 1.0)
    if n < 3:
        return slope, float(intercept), r_squared, 1.0
    if ss_res <= 0:
        return slope, float(intercept), r_squared, 0.0
    t_stat = slope / math.sqrt(ss_res / (n - 2) / sxx)
    return slope, float(intercept), r_squared, float(2 * stats.t.sf(abs(t_stat), n - 2))


def linear_trend(values: np.ndarray) -> dict:
    """Return the OLS line of value on day index: slope per day, intercept, r_squared, p_value."""
    y = np.asarray(values, dtype=float)
    scale = _scale_of(y)
    slope, intercept, r_squared, p_value = _ols_line(y / scale)
    return {"slope": _num(slope * scale, 4), "intercept": _num(intercept * scale, 4),
            "r_squared": _num(r_squared, 4), "p_value": _num(p_value, 4)}


def _weekday_medians(blocks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return per-row, per-weekday medians of blocks (rows, weeks, 7) whose first weeks may be NaN padding."""
    ordered = np.sort(blocks, axis=1)  # NaN padding sorts last
    low = np.take_along_axis(ordered, ((counts - 1) // 2)[:, None, None], axis=1)
    high = np.take_along_axis(ordered, (counts // 2)[:, None, None], axis=1)
    return (low + high)[:, 0, :] / 2


def _weekday_profiles(y: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-cut weekday factors (multipliers, offsets, use-multiplicative flags) from data before it.

    Factors are medians, per weekday, of each day's ratio to (or difference from) its centred 7-day
    mean over the last weeks whose centred mean is known; the form that fits those weeks better wins
    (multiplicative needs a positive centred mean throughout). Columns are indexed by day index % 7.
    """
    weeks = np.minimum(PROFILE_WEEKS, (cuts - SEASON + 1) // SEASON)
    most = int(weeks.max())
    centred = np.convolve(y, np.ones(SEASON) / SEASON, mode="valid")  # centred[j] is centred on day j + 3
    days = cuts[:, None] - 3 - SEASON * most + np.arange(SEASON * most)  # the last has a known centred mean
    used = np.arange(SEASON * most) >= SEASON * (most - weeks[:, None])
    days = np.where(used, days, 3)
    level = centred[days - 3]
    observed = y[days]
    blocks = (len(cuts), most, SEASON)
    with np.errstate(all="ignore"):
        ratio = np.where(used, observed / level, np.nan)
    ratios = _weekday_medians(ratio.reshape(blocks), weeks)
    offsets = _weekday_medians(np.where(used, observed - level, np.nan).reshape(blocks), weeks)
    ratio_mean = ratios.mean(axis=1, keepdims=True)
    ratios = np.where(ratio_mean > 0, ratios / np.where(ratio_mean > 0, ratio_mean, 1.0), 1.0)
    offsets = offsets - offsets.mean(axis=1, keepdims=True)
    position = np.arange(SEASON * most) % SEASON
    misfit_ratio = (np.abs(observed - level * ratios[:, position]) * used).sum(axis=1)
    misfit_offset = (np.abs(observed - level - offsets[:, position]) * used).sum(axis=1)
    positive = ((level > 0) | ~used).all(axis=1) & (ratio_mean[:, 0] > 0)
    multiplicative = positive & (misfit_ratio <= misfit_offset)
    # Rotate columns from "position in the window" to "day index % 7".
    order = (np.arange(SEASON)[None, :] - (cuts[:, None] - 3 - SEASON * most)) % SEASON
    return (np.take_along_axis(ratios, order, axis=1), np.take_along_axis(offsets, order, axis=1),
            multiplicative)


def _holt_grid(target: np.ndarray, factor: np.ndarray, adjusted: np.ndarray, weights: np.ndarray,
               start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run damped Holt for every cut (row) and grid point; return final level, slope and one-step SSE.

    Inputs are (cuts, span): target = observed − additive factor, factor = multiplicative factor,
    adjusted = weekday-adjusted data, weights = 1 where a day updates the level. Row r starts at
    column start[r]: level = its first week's mean, slope = its second week's mean minus that, / 7.
    """
    cuts, span = target.shape
    grid = len(_GRID_ALPHA)
    columns = np.arange(span)

    def week_mean(offset: int) -> np.ndarray:
        week = start[:, None] + offset + np.arange(SEASON)
        total = np.take_along_axis(adjusted * weights, week, axis=1).sum(axis=1)
        return total / np.maximum(np.take_along_axis(weights, week, axis=1).sum(axis=1), 1)

    first = week_mean(0)
    trend_start = (columns == start[:, None] + SEASON) * ((week_mean(SEASON) - first) / SEASON)[:, None]
    has_trend = _GRID_PHI > 0
    # Until its own history begins a row's state sits still: weights are 0 and the slope is injected late.
    level = (first[:, None] + 3 * trend_start.sum(axis=1)[:, None] * has_trend).ravel()  # week's middle day
    slope = np.zeros_like(level)
    scored = columns >= start[:, None] + np.where(span - start >= 3 * SEASON, 2 * SEASON, SEASON)[:, None]

    def per_config(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.repeat(values.T, grid, axis=1))  # (span, cuts × grid)

    # Flat, pre-broadcast, in-place arrays: the loop is bound by per-call overhead, not arithmetic.
    target_t, factor_t, adjusted_t = per_config(target), per_config(factor), per_config(adjusted)
    gain = per_config(weights) * np.tile(_GRID_ALPHA, cuts)
    trend_kick = per_config(trend_start) * np.tile(has_trend, cuts)
    phi, beta = np.tile(_GRID_PHI, cuts), np.tile(_GRID_BETA, cuts)
    trend_steps = set((start + SEASON).tolist())
    errors = np.zeros((span, len(level)))
    forecast, damped, step = np.empty_like(level), np.empty_like(level), np.empty_like(level)
    for t in range(SEASON, span):
        if t in trend_steps:
            slope += trend_kick[t]
        np.multiply(phi, slope, out=damped)
        np.add(level, damped, out=forecast)
        np.multiply(forecast, factor_t[t], out=errors[t])
        np.subtract(target_t[t], errors[t], out=errors[t])
        np.subtract(adjusted_t[t], forecast, out=step)
        step *= gain[t]
        np.add(forecast, step, out=level)
        np.multiply(beta, step, out=slope)
        slope += damped
    sse = (errors.reshape(span, cuts, grid) ** 2 * scored.T[:, :, None]).sum(axis=0)
    return level.reshape(cuts, grid), slope.reshape(cuts, grid), sse


def _smoothing_forecasts(y: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Return the seasonally adjusted damped-Holt forecast of the HORIZON days after each cut.

    The level (and damped trend) is smoothed on weekday-adjusted data over the last FIT_WINDOW_DAYS
    before each cut; smoothing parameters are picked per cut from the grid by in-sample one-step squared
    error. All cuts and grid points run in one vectorised pass, shorter histories left-padded.
    """
    ratios, offsets, multiplicative = _weekday_profiles(y, cuts)
    span = min(FIT_WINDOW_DAYS, int(cuts.max()))
    start = span - np.minimum(span, cuts)  # first real column of each row
    rows = np.arange(len(cuts))[:, None]
    columns = np.arange(span)
    days = np.maximum(cuts[:, None] - span + columns, 0)
    factor = np.where(multiplicative[:, None], ratios[rows, days % SEASON], 1.0)
    shift = np.where(multiplicative[:, None], 0.0, offsets[rows, days % SEASON])
    informative = (factor >= CLOSED_DAY_FACTOR) & (columns >= start[:, None])
    observed = y[days]
    adjusted = np.where(informative, (observed - shift) / np.where(informative, factor, 1.0), 0.0)
    level, slope, sse = _holt_grid(observed - shift, factor, adjusted, informative.astype(float), start)
    best = np.argmin(sse, axis=1)
    path = level[rows[:, 0], best][:, None] + slope[rows[:, 0], best][:, None] * _GRID_DAMPING[best]
    ahead = cuts[:, None] + np.arange(HORIZON)
    ahead_factor = np.where(multiplicative[:, None], ratios[rows, ahead % SEASON], 1.0)
    ahead_shift = np.where(multiplicative[:, None], 0.0, offsets[rows, ahead % SEASON])
    return np.maximum(path * ahead_factor + ahead_shift, 0.0)


def _candidate_forecasts(y: np.ndarray, cuts: np.ndarray) -> dict[str, np.ndarray]:
    """Return each candidate method's HORIZON-day forecasts after every cut, shape (cuts, HORIZON)."""
    seasonal_naive = y[cuts[:, None] - SEASON + np.arange(HORIZON) % SEASON]
    smoothing = _smoothing_forecasts(y, cuts)
    return {
        "seasonal_naive": seasonal_naive,
        "naive": np.repeat(y[cuts - 1][:, None], HORIZON, axis=1),
        "seasonal_holt": smoothing,
        "combination": (seasonal_naive + smoothing) / 2,
    }


def _in_sample_scales(y: np.ndarray, cuts: np.ndarray, lag: int) -> np.ndarray:
    """Return the mean absolute lag-`lag` difference of y[:cut] for every cut (the MASE denominator)."""
    running = np.concatenate([[0.0], np.cumsum(np.abs(y[lag:] - y[:-lag]))])
    return running[cuts - lag] / (cuts - lag)


def _short_history_forecast(y: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Return method, forecast and per-horizon sd for a history too short to backtest."""
    n = len(y)
    if n >= SEASON:
        method, values = "seasonal_naive", y[n - SEASON + np.arange(HORIZON) % SEASON]
    else:
        method, values = "naive", np.full(HORIZON, y[-1] if n else 0.0)
    step_sd = float(np.sqrt(np.mean(np.diff(y) ** 2))) if n >= 2 else 0.0
    # Random-walk widths: lag-1 differences include the weekday swing, so this errs on the wide side.
    return method, values, step_sd * np.sqrt(np.arange(1, HORIZON + 1))


def _select_forecast(y: np.ndarray) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """Return the method with the lowest rolling-origin MASE, its forecast, per-horizon sd and backtest."""
    n = len(y)
    origins = n - SEASON * np.arange(MAX_ORIGINS, 0, -1)
    origins = origins[origins >= MIN_TRAINING_DAYS]
    no_backtest = {"mase": None, "seasonal_naive_mase": None, "origins": 0}
    if len(origins) == 0:
        return (*_short_history_forecast(y), no_backtest)
    cuts = np.append(origins, n)
    candidates = _candidate_forecasts(y, cuts)
    actual = y[origins[:, None] + np.arange(HORIZON)]
    scales = _in_sample_scales(y, origins, SEASON)
    scales = np.where(scales > 0, scales, _in_sample_scales(y, origins, 1))
    scored = scales > 0
    if not scored.any():
        method, values, sd = _short_history_forecast(y)
        return method, values, sd, {**no_backtest, "origins": len(origins)}
    errors = {name: actual - fc[:-1] for name, fc in candidates.items()}
    mase = {name: float(np.mean(np.abs(error[scored]).mean(axis=1) / scales[scored]))
            for name, error in errors.items()}
    method = min(mase, key=mase.__getitem__)  # ties keep the simpler, earlier candidate
    if len(origins) >= MIN_ORIGINS_FOR_INTERVALS:
        sd = np.maximum.accumulate(np.sqrt(np.mean(errors[method] ** 2, axis=0)))
    else:
        sd = _short_history_forecast(y)[2]
    backtest = {"mase": _num(mase[method], 4), "seasonal_naive_mase": _num(mase["seasonal_naive"], 4),
                "origins": len(origins)}
    return method, candidates[method][-1], sd, backtest


def _forecast_points(forecast: np.ndarray, sd: np.ndarray, scale: float, last_day: dt.date) -> list[dict]:
    """Return the forecast (in units of scale) as dated dicts with 95 % bounds, all clipped at 0."""
    points = []
    for h in range(HORIZON):
        # Python floats: past float max they become inf (then None) without numpy overflow warnings.
        centre, width = max(float(forecast[h]), 0.0), Z_95 * float(sd[h])
        value = _num(centre * scale, 2) or 0.0
        upper = _num((centre + width) * scale, 2)
        points.append({
            "date": (last_day + dt.timedelta(days=h + 1)).isoformat(),
            "value": value,
            "lower": min(_num(max(centre - width, 0.0) * scale, 2) or 0.0, value),
            "upper": value if upper is None else max(upper, value),
        })
    return points


def trend_analysis(values: np.ndarray, dates: list[dt.date]) -> dict:
    """Return direction, confidence (R²), slope, strength, a 7-day forecast with 95 % intervals,
    the forecast method and its backtest.

    direction is "increasing"/"decreasing" when the OLS slope has p < 0.05 and its fitted change over
    the range is at least 5 % of the mean, else "stable". strength = R² × min(1, |fitted change| /
    (0.5 × |mean|)): a perfect line that moves the level by half its mean or more has strength 1.
    backtest: the chosen method's and seasonal naive's MASE, averaged over the origins (each scaled by
    the in-sample seasonal-naive MAE of its own training data); None when there is nothing to score.
    """
    y = np.asarray(values, dtype=float)
    if len(y) != len(dates):
        raise ValueError(f"{len(y)} values but {len(dates)} dates")
    scale = _scale_of(y)
    unit = y / scale
    slope, _, r_squared, p_value = _ols_line(unit)
    mean = float(unit.mean()) if len(unit) else 0.0
    change = abs(slope) * max(len(y) - 1, 0)
    relative = change / abs(mean) if mean != 0 else (1.0 if change > 0 else 0.0)
    direction = "stable"
    if p_value < SIGNIFICANCE and slope != 0 and relative >= MIN_RELATIVE_CHANGE:
        direction = "increasing" if slope > 0 else "decreasing"
    with np.errstate(all="ignore"):
        method, forecast, sd, backtest = _select_forecast(unit)
    points = _forecast_points(forecast, sd, scale, dates[-1]) if dates else []
    return {
        "direction": direction,
        "confidence": _num(r_squared, 4),
        "slope": _num(slope * scale, 4),
        "strength": _num(r_squared * min(1.0, relative / FULL_STRENGTH_CHANGE), 4),
        "forecast": points,
        "method": method,
        "backtest": backtest,
    }


def _weekday_design(n: int) -> np.ndarray:
    """Return the OLS design matrix: intercept, day index and six weekday dummies."""
    index = np.arange(n)
    dummies = (index[:, None] % SEASON == np.arange(1, SEASON)[None, :]).astype(float)
    return np.column_stack([np.ones(n), index / n, dummies])


def anomalies(values: np.ndarray, dates: list[dt.date]) -> list[dict]:
    """Return the days whose residual from a trend-plus-weekday fit exceeds 3.5 robust sds.

    The fit is refitted once without the first pass's outliers so one spike cannot bend it. The robust
    sd is 1.4826 × MAD of the residuals, floored at 1 % of the mean absolute value: a flat series flags
    nothing, a flat series with one spike flags the spike. Needs at least 14 days, else [].
    """
    y = np.asarray(values, dtype=float)
    if len(y) < MIN_TRAINING_DAYS:
        return []
    scale = _scale_of(y)
    unit = y / scale
    design = _weekday_design(len(y))
    floor = max(MIN_ANOMALY_SD * float(np.mean(np.abs(unit))), np.finfo(float).tiny)

    def residuals(rows: np.ndarray) -> tuple[np.ndarray, float]:
        coefficients = np.linalg.lstsq(design[rows], unit[rows], rcond=None)[0]
        residual = unit - design @ coefficients
        return residual, max(MAD_TO_SD * float(np.median(np.abs(residual - np.median(residual)))), floor)

    residual, sd = residuals(np.ones(len(y), dtype=bool))
    inliers = np.abs(residual) <= ANOMALY_THRESHOLD * sd
    if inliers.sum() >= design.shape[1] + 1 and not inliers.all():
        residual, sd = residuals(inliers)
    found = []
    for i in np.flatnonzero(np.abs(residual) > ANOMALY_THRESHOLD * sd):
        found.append({"date": dates[i].isoformat(), "value": _num(y[i], 2),
                      "expected": _num((unit[i] - residual[i]) * scale, 2),
                      "score": _num(residual[i] / sd, 2)})
    return found


def analyze(values: np.ndarray, dates: list[dt.date]) -> dict:
    """Return one metric's summary: statistics, the linear trend's slope/R²/p-value, the trend
    analysis with its forecast, and the anomalies."""
    line = linear_trend(values)
    return {
        **summarize(values, dates),
        "trend_slope": line["slope"],
        "trend_confidence": line["r_squared"],
        "p_value": line["p_value"],
        "trend_analysis": trend_analysis(values, dates),
        "anomalies": anomalies(values, dates),
    }


def analyze_many(series: np.ndarray, dates: list[dt.date]) -> list[dict]:
    """Return :func:`analyze` for each row of a (metrics × days) array sharing the same dates."""
    return [analyze(row, dates) for row in np.asarray(series, dtype=float)]


class TrendAnalyzer:
    """The module's analyses under one name, for callers that inject an analyzer."""

    trailing_means = staticmethod(trailing_means)
    summarize = staticmethod(summarize)
    linear_trend = staticmethod(linear_trend)
    trend_analysis = staticmethod(trend_analysis)
    anomalies = staticmethod(anomalies)
    analyze = staticmethod(analyze)
    analyze_many = staticmethod(analyze_many)
