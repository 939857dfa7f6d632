"""Statistics over consecutive daily series: summaries, linear trend, 7-day forecasts and anomalies.

Pure numpy (scipy.special only for the slope's p-value); no Flask, no SQL. Every dict returned is
JSON-safe: plain floats, ints, strings or None, never NaN or Infinity. The work is done for a batch of
series (metrics × days) at once, and a row's numbers never depend on the other rows: the single-series
functions run a batch of one, so ``analyze_many(series, dates, history=h)[i] == analyze(series[i],
dates, history=h[i])``. Summaries and the linear trend describe the range (``series``); the forecast
and the anomaly fit read ``history``, every tracked day up to the range's last day (default: the range
itself), and anomalies are reported for the range's days only. Forecasting lives in :mod:`forecasting`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
from scipy import special

from activity_monitor.forecasting import HORIZON, MIN_TRAINING_DAYS, SEASON, select_forecasts

Z_95 = 1.959963984540054
SIGNIFICANCE = 0.05  # p-value below which a slope counts
MIN_RELATIVE_CHANGE = 0.05  # fitted change over the range, as a fraction of the mean, to call a trend
FULL_STRENGTH_CHANGE = 0.5  # relative fitted change at which strength stops growing
ANOMALY_THRESHOLD = 3.5  # robust z-score above which a day is an anomaly
MIN_ANOMALY_SD = 0.01  # floor of the robust sd, as a fraction of the mean absolute value
MAD_TO_SD = 1.4826
ANOMALY_FIT_DAYS = 365  # history days (at least the range) the anomaly fit runs over
P_VALUE_FIGURES = 3  # significant figures of p-values: a tiny p-value is not rounded to 0
SLOPE_FIGURES = 3  # significant figures kept for slopes smaller than 4 decimals can show
ANOMALY_FIT_PARAMETERS = 2 + (SEASON - 1)  # intercept, day index and six weekday dummies


class _Batch(NamedTuple):
    """A batch of series, each divided by its largest absolute value so sums stay finite."""

    values: np.ndarray  # (rows, days), as given
    scales: np.ndarray  # (rows,): largest absolute value, 1 for an empty, all-zero or non-finite row
    units: np.ndarray  # values / scales
    sums: np.ndarray  # of units, per row
    means: np.ndarray  # of units, per row (0 for an empty row)
    squares: np.ndarray  # sum of (units − means)², per row


def _prepare(values: np.ndarray) -> _Batch:
    """Return the batch (rows × days) with its scales and first two moments."""
    rows, n = values.shape
    peaks = np.abs(values).max(axis=1) if n else np.zeros(rows)
    scales = np.where((peaks > 0) & np.isfinite(peaks), peaks, 1.0)
    units = values / scales[:, None]
    sums = units.sum(axis=1)
    means = sums / n if n else np.zeros(rows)
    return _Batch(values, scales, units, sums, means, ((units - means[:, None]) ** 2).sum(axis=1))


def _validated(series: np.ndarray, dates: list[dt.date]) -> np.ndarray:
    """Return series as a float (metrics × days) array, checking its days against dates."""
    values = np.asarray(series, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"expected a (metrics × days) array, got shape {values.shape}")
    if values.shape[1] != len(dates):
        raise ValueError(f"{values.shape[1]} values but {len(dates)} dates")
    return values


def _num(value: float, digits: int) -> float | None:
    """Return value rounded to digits as a plain float, or None when it is not finite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _rounded(values: np.ndarray, digits: int) -> list[float | None]:
    """Return :func:`_num` of every value of a 1-D array, vectorised; call under np.errstate(all="ignore").

    rint(value × 10^digits) / 10^digits is the double nearest the decimal that round() picks, unless
    the exact product may lie across a half from its floating-point value (which includes huge and
    non-finite values): those few go through round() itself.
    """
    scale = 10.0 ** digits
    scaled = values * scale
    nearest = np.rint(scaled)
    clear = np.abs(np.abs(scaled - nearest) - 0.5) > np.abs(scaled) * 2.0 ** -50
    rounded = (nearest / scale).tolist()
    if not clear.all():
        for index in np.flatnonzero(~clear).tolist():
            rounded[index] = _num(values[index], digits)
    return rounded


def _figures(values: np.ndarray, figures: int, decimals: int | None = None) -> list[float | None]:
    """Return each value rounded to `figures` significant figures (to at least `decimals` decimals when
    given), None when not finite; 0.0 only for an exact 0."""
    out: list[float | None] = []
    for value in np.asarray(values, dtype=float).tolist():
        if not math.isfinite(value):
            out.append(None)
        elif value == 0.0:
            out.append(0.0)
        else:
            digits = figures - 1 - math.floor(math.log10(abs(value)))
            out.append(round(value, digits if decimals is None else max(digits, decimals)) + 0.0)
    return out


def _columns(digits: int, *columns: np.ndarray) -> list[list[float | None]]:
    """Return each (rows,) column as a list of :func:`_num` values, rounding all in one pass."""
    flat, size = _rounded(np.concatenate(columns), digits), len(columns[0])
    return [flat[start:start + size] for start in range(0, len(flat), size)] if size else [[]] * len(columns)


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


def _row_medians(values: np.ndarray) -> np.ndarray:
    """Return the median of each row of a (rows × n) array, n > 0, as np.median would (NaN if any)."""
    n = values.shape[1]
    ordered = np.partition(values, sorted({(n - 1) // 2, n // 2, n - 1}), axis=1)  # NaN sorts last
    middle = ordered[:, n // 2] if n % 2 else (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / 2
    return np.where(np.isnan(ordered[:, -1]), np.nan, middle)


def _summaries(batch: _Batch, dates: list[dt.date]) -> list[dict]:
    """Return :func:`summarize` of every row."""
    values, scales, units = batch.values, batch.scales, batch.units
    rows, n = values.shape
    if n == 0:
        return [{"average": 0.0, "median": 0.0, "std_dev": 0.0, "min": 0.0, "max": 0.0, "total": 0.0,
                 "peak_date": None, "change_first_to_last_week_percent": None, "percentage_change": None}
                for _ in range(rows)]
    edge = min(SEASON, n)
    first, last = units[:, :edge].mean(axis=1), units[:, -edge:].mean(axis=1)
    change = np.where(first != 0, (last - first) / first * 100, np.nan)
    average, median, std_dev, low, high, total, change = _columns(
        2, batch.means * scales, _row_medians(values), np.sqrt(batch.squares / n) * scales,
        values.min(axis=1), values.max(axis=1), batch.sums * scales, change)
    peaks = np.argmax(values, axis=1).tolist()
    return [{"average": average[r], "median": median[r], "std_dev": std_dev[r], "min": low[r], "max": high[r],
             "total": total[r], "peak_date": dates[peaks[r]].isoformat(),
             "change_first_to_last_week_percent": change[r], "percentage_change": change[r]}
            for r in range(rows)]


def summarize(values: np.ndarray, dates: list[dt.date]) -> dict:
    """Return average, median, population std, min, max, total, peak_date and
    change_first_to_last_week_percent: the mean of the last 7 days against the first 7 (all days when
    fewer), in percent; None when the first week averages 0. percentage_change is the same number
    under its older name."""
    with np.errstate(all="ignore"):  # overflow past float max becomes None, not a warning
        return _summaries(_prepare(np.asarray(values, dtype=float)[None, :]), dates)[0]


class _Lines(NamedTuple):
    """Per row, the OLS line of value / scale on day index."""

    slope: np.ndarray  # 0 for a flat row
    intercept: np.ndarray
    r_squared: np.ndarray
    p_value: np.ndarray  # two-sided, of the slope; 1 for a flat row or fewer than 3 days


def _ols_lines(batch: _Batch) -> _Lines:
    """Return each row's OLS line of value / scale on day index."""
    rows, n = batch.units.shape
    if n == 0:
        return _Lines(np.zeros(rows), np.zeros(rows), np.zeros(rows), np.ones(rows))
    x = np.arange(n) - (n - 1) / 2
    centred = batch.units - batch.means[:, None]
    sxx = float(x @ x)
    # One dot per row (a handful): a BLAS matrix product may round a row differently next to other rows.
    slope = np.array([x @ row for row in centred]) / sxx if sxx > 0 else np.zeros(rows)
    intercept = batch.means - slope * (n - 1) / 2
    ss_res = ((centred - slope[:, None] * x) ** 2).sum(axis=1)
    flat = batch.squares <= 0
    r_squared = 1 - ss_res / np.where(flat, 1.0, batch.squares)
    r_squared = np.where(r_squared > 1.0, 1.0, np.where(r_squared < 0.0, 0.0, r_squared))
    if n < 3:
        p_value = np.ones(rows)
    else:
        t_stat = slope / np.sqrt(ss_res / (n - 2) / sxx)
        # Residuals within rounding noise of the total (a perfect line) are an exact fit: p is 0.
        exact = ss_res <= (n * np.finfo(float).eps) ** 2 * batch.squares
        p_value = np.where(exact, 0.0, 2 * special.stdtr(n - 2, -np.abs(t_stat)))
    return _Lines(np.where(flat, 0.0, slope), intercept, np.where(flat, 0.0, r_squared),
                  np.where(flat, 1.0, p_value))


def linear_trend(values: np.ndarray) -> dict:
    """Return the OLS line of value on day index: slope per day, intercept, r_squared, p_value."""
    with np.errstate(all="ignore"):
        batch = _prepare(np.asarray(values, dtype=float)[None, :])
        line = _ols_lines(batch)
        (intercept,), (r_squared,) = _columns(4, line.intercept * batch.scales, line.r_squared)
        (slope,), (p_value,) = _slopes(line.slope * batch.scales), _figures(line.p_value, P_VALUE_FIGURES)
    return {"slope": slope, "intercept": intercept, "r_squared": r_squared, "p_value": p_value}


def _slopes(values: np.ndarray) -> list[float | None]:
    """Return slopes to 4 decimals, or to SLOPE_FIGURES significant figures where 4 decimals lose them."""
    return _figures(values, SLOPE_FIGURES, decimals=4)


def _forecast_points(forecasts: np.ndarray, sds: np.ndarray, scales: np.ndarray,
                     last_day: dt.date) -> list[list[dict]]:
    """Return each row's forecast (in units of its scale) as dated dicts with 95 % bounds, all clipped at 0.

    Rounding is monotonic, so bounds are ordered before rounding. A value past float max becomes 0, a
    lower bound past it 0 and an upper bound past it the value.
    """
    rows = len(forecasts)
    centre = np.where(forecasts < 0.0, 0.0, forecasts)  # max(forecast, 0.0), NaN kept
    width = Z_95 * sds
    scale = scales[:, None]
    value = centre * scale
    value = np.where(np.isfinite(value), value, 0.0)
    lower = np.where(centre - width < 0.0, 0.0, centre - width) * scale
    lower = np.minimum(np.where(np.isfinite(lower), lower, 0.0), value)
    upper = (centre + width) * scale
    upper = np.where(np.isfinite(upper), np.maximum(upper, value), value)
    # + 0.0 turns -0.0 into 0.0.
    values, lowers, uppers = _columns(2, value.ravel() + 0.0, lower.ravel() + 0.0, upper.ravel() + 0.0)
    dates = [(last_day + dt.timedelta(days=h + 1)).isoformat() for h in range(HORIZON)]
    return [[{"date": date, "value": v, "lower": lo, "upper": up} for date, v, lo, up in zip(
        dates, values[start:start + HORIZON], lowers[start:start + HORIZON], uppers[start:start + HORIZON],
        strict=True)] for start in range(0, rows * HORIZON, HORIZON)]


def _trend_analyses(batch: _Batch, lines: _Lines, dates: list[dt.date], history: _Batch) -> list[dict]:
    """Return :func:`trend_analysis` of every row, given its OLS line and its history."""
    rows, n = batch.units.shape
    slope, r_squared = lines.slope, lines.r_squared
    mean = batch.means
    change = np.abs(slope) * max(n - 1, 0)
    relative = np.where(mean != 0, change / np.where(mean != 0, np.abs(mean), 1.0), (change > 0) * 1.0)
    moving = (lines.p_value < SIGNIFICANCE) & (slope != 0) & (relative >= MIN_RELATIVE_CHANGE)
    direction = np.where(moving, np.where(slope > 0, "increasing", "decreasing"), "stable").tolist()
    share = relative / FULL_STRENGTH_CHANGE
    strength = r_squared * np.where(share < 1.0, share, 1.0)  # min(1.0, share)
    selection = select_forecasts(history.units)
    points = (_forecast_points(selection.forecasts, selection.sds, history.scales, dates[-1]) if n
              else [[] for _ in range(rows)])
    confidence, strength, mase, seasonal_naive_mase = _columns(
        4, r_squared, strength, selection.mase, selection.seasonal_naive_mase)
    slope_per_day = _slopes(slope * batch.scales)
    history_days = history.values.shape[1]
    return [{
        "direction": direction[r],
        "confidence": confidence[r],
        "slope": slope_per_day[r],
        "strength": strength[r],
        "forecast": points[r],
        "method": selection.methods[r],
        "backtest": {"mase": mase[r], "seasonal_naive_mase": seasonal_naive_mase[r],
                     "origins": selection.origins, "history_days": history_days,
                     "combined_methods": selection.combined[r]},
    } for r in range(rows)]


def trend_analysis(values: np.ndarray, dates: list[dt.date], *, history: np.ndarray | None = None) -> dict:
    """Return direction, confidence (R²), slope, strength, a 7-day forecast with 95 % intervals,
    the forecast method and its backtest.

    direction is "increasing"/"decreasing" when the OLS slope has p < 0.05 and its fitted change over
    the range is at least 5 % of the mean, else "stable". strength = R² × min(1, |fitted change| /
    (0.5 × |mean|)): a perfect line that moves the level by half its mean or more has strength 1.
    The forecast reads history (every tracked day up to the range's last day; default: values).
    backtest: the forecast's and seasonal naive's MASE, averaged over the origins (each scaled by the
    in-sample seasonal-naive MAE of its own training data), None when there is nothing to score; the
    number of origins, of history days, and the methods averaged into the forecast.
    """
    values = _validated(np.asarray(values, dtype=float)[None, :], dates)
    past = _validated_history(values, None if history is None else np.asarray(history, dtype=float)[None, :])
    with np.errstate(all="ignore"):
        batch = _prepare(values)
        return _trend_analyses(batch, _ols_lines(batch), dates, _prepare(past))[0]


def _validated_history(values: np.ndarray, history: np.ndarray | None) -> np.ndarray:
    """Return history as a float (metrics × days) array at least as long as values (values when None)."""
    if history is None:
        return values
    past = np.asarray(history, dtype=float)
    if past.ndim != 2 or past.shape[0] != values.shape[0] or past.shape[1] < values.shape[1]:
        raise ValueError(f"history of shape {past.shape} does not cover series of shape {values.shape}")
    return past


def _weekday_trend_residuals(units: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's residuals from a trend-plus-weekday fit to its weighted days (None: all days
    weigh 1), and which fits held.

    The fit (one intercept per weekday plus a common slope: the same lines as intercept + day index +
    six dummies) is solved in closed form. It fails where a weekday has no weighted day.
    """
    rows, n = units.shape
    weeks = -(-n // SEASON)
    x = np.arange(weeks * SEASON, dtype=float).reshape(weeks, SEASON)
    y = np.zeros((rows, weeks * SEASON))  # whole weeks; padding days weigh nothing
    y[:, :n] = units
    y = y.reshape(rows, weeks, SEASON)
    if weights is None:
        w = (x < n) * 1.0  # shared by all rows
    else:
        w = np.zeros((rows, weeks * SEASON))
        w[:, :n] = weights
        w = w.reshape(rows, weeks, SEASON)
    count = w.sum(axis=-2)
    held = (count > 0).all(axis=-1)
    count = np.where(count > 0, count, 1.0)[..., None, :]
    dx = x - (w * x).sum(axis=-2)[..., None, :] / count
    dy = y - (w * y).sum(axis=-2)[..., None, :] / count
    w_dx = w * dx
    spread = np.broadcast_to((w_dx * dx).sum(axis=(-2, -1)), (rows,))
    slope = (w_dx * dy).sum(axis=(-2, -1)) / np.where(spread > 0, spread, 1.0)
    return (dy - slope[:, None, None] * dx).reshape(rows, -1)[:, :n], held & (spread > 0)


def _lstsq_residuals(unit: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Return one row's residuals from the least-squares (minimum-norm) fit to its weighted days."""
    n = len(unit)
    index = np.arange(n)
    dummies = (index[:, None] % SEASON == np.arange(1, SEASON)[None, :]).astype(float)
    design = np.column_stack([np.ones(n), index / n, dummies])
    fit = slice(None) if weights is None else weights > 0
    return unit - design @ np.linalg.lstsq(design[fit], unit[fit], rcond=None)[0]


def _robust_fit(units: np.ndarray, weights: np.ndarray | None,
                floors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's residuals from its fit to its weighted days, and their robust sd (≥ floors)."""
    residuals, held = _weekday_trend_residuals(units, weights)
    for row in np.flatnonzero(~held):  # a weekday left without days: keep lstsq's minimum-norm answer
        residuals[row] = _lstsq_residuals(units[row], None if weights is None else weights[row])
    sds = MAD_TO_SD * _row_medians(np.abs(residuals - _row_medians(residuals)[:, None]))
    return residuals, np.where(floors > sds, floors, sds)  # max(sds, floors)


def _anomaly_lists(batch: _Batch, dates: list[dt.date]) -> list[list[dict]]:
    """Return :func:`anomalies` of every row of batch (the fit window), reported for its last
    len(dates) days, which dates label."""
    values, scales, units = batch.values, batch.scales, batch.units
    rows, n = values.shape
    before = n - len(dates)  # fit days before the range
    if n < MIN_TRAINING_DAYS or not dates:
        return [[] for _ in range(rows)]
    floors = MIN_ANOMALY_SD * np.abs(units).mean(axis=1)
    tiny = np.finfo(float).tiny
    floors = np.where(tiny > floors, tiny, floors)  # max(floors, tiny)
    residuals, sds = _robust_fit(units, None, floors)
    inliers = np.abs(residuals) <= ANOMALY_THRESHOLD * sds[:, None]
    refit = np.flatnonzero((inliers.sum(axis=1) > ANOMALY_FIT_PARAMETERS) & ~inliers.all(axis=1))
    if len(refit):
        residuals[refit], sds[refit] = _robust_fit(units[refit], inliers[refit] * 1.0, floors[refit])
    found = [[] for _ in range(rows)]
    row, day = np.nonzero(np.abs(residuals[:, before:]) > ANOMALY_THRESHOLD * sds[:, None])
    day = day + before
    residual = residuals[row, day]
    value, expected, score = _columns(2, values[row, day], (units[row, day] - residual) * scales[row],
                                      residual / sds[row])
    for r, i, number, fitted, z in zip(row.tolist(), day.tolist(), value, expected, score, strict=True):
        found[r].append({"date": dates[i - before].isoformat(), "value": number, "expected": fitted,
                         "score": z})
    return found


def anomalies(values: np.ndarray, dates: list[dt.date], *, history: np.ndarray | None = None) -> list[dict]:
    """Return the range's days whose residual from a trend-plus-weekday fit exceeds 3.5 robust sds.

    The fit runs over the last max(range, 365) days of history (default: values). It is refitted once
    without the first pass's outliers so one spike cannot bend it. The robust sd is 1.4826 × MAD of the
    residuals, floored at 1 % of the mean absolute value: a flat series flags nothing, a flat series
    with one spike flags the spike. Needs at least 14 fit days, else [].
    """
    values = _validated(np.asarray(values, dtype=float)[None, :], dates)
    past = _validated_history(values, None if history is None else np.asarray(history, dtype=float)[None, :])
    with np.errstate(all="ignore"):
        return _anomaly_lists(_prepare(_anomaly_window(past, len(dates))), dates)[0]


def _anomaly_window(history: np.ndarray, n: int) -> np.ndarray:
    """Return the history days the anomaly fit runs over: the last max(n, ANOMALY_FIT_DAYS)."""
    return history[:, -max(n, ANOMALY_FIT_DAYS):] if history.shape[1] else history


def analyze(values: np.ndarray, dates: list[dt.date], *, history: np.ndarray | None = None) -> dict:
    """Return one metric's summary: statistics, the linear trend's slope/R²/p-value, the trend
    analysis with its forecast, and the anomalies (see :func:`analyze_many` for history)."""
    past = None if history is None else np.asarray(history, dtype=float)[None, :]
    return analyze_many(np.asarray(values, dtype=float)[None, :], dates, history=past)[0]


def analyze_many(series: np.ndarray, dates: list[dt.date], *,
                 history: np.ndarray | None = None) -> list[dict]:
    """Return :func:`analyze` for each row of a (metrics × days) array sharing the same dates.

    history (metrics × H, H ≥ days; its last days are the range's) holds every tracked day up to the
    range's last day: the forecast and the anomaly fit read it. None reads series alone.
    """
    values = _validated(series, dates)
    past = _validated_history(values, history)
    if len(values) == 0:
        return []
    with np.errstate(all="ignore"):  # overflow past float max becomes None, not a warning
        batch = _prepare(values)
        lines = _ols_lines(batch)
        summaries = _summaries(batch, dates)
        analyses = _trend_analyses(batch, lines, dates, batch if history is None else _prepare(past))
        found = _anomaly_lists(_prepare(_anomaly_window(past, len(dates))), dates)
        (r_squareds,) = _columns(4, lines.r_squared)
        slopes, p_values = _slopes(lines.slope * batch.scales), _figures(lines.p_value, P_VALUE_FIGURES)
    return [{
        **summaries[r],
        "trend_slope": slopes[r],
        "trend_confidence": r_squareds[r],
        "p_value": p_values[r],
        "trend_analysis": analyses[r],
        "anomalies": found[r],
    } for r in range(len(values))]


class TrendAnalyzer:
    """The module's analyses under one name, for callers that inject an analyzer."""

    trailing_means = staticmethod(trailing_means)
    summarize = staticmethod(summarize)
    linear_trend = staticmethod(linear_trend)
    trend_analysis = staticmethod(trend_analysis)
    anomalies = staticmethod(anomalies)
    analyze = staticmethod(analyze)
    analyze_many = staticmethod(analyze_many)
