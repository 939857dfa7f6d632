"""7-day forecasts for a batch of daily series from all their history, combined by rolling-origin backtest.

Each series (row) is forecast by the mean of the 1, 2 or 3 (COMBINED) candidates with the lowest
backtest MASE over up to 52 weekly origins (7 days ahead each, every origin scaled by its own in-sample
seasonal-naive MAE; with two years of history, only origins with two years of training behind them);
how many are averaged is itself picked by that backtest:
- seasonal naive and naive;
- "seasonal_holt": damped Holt on the data divided by (or less) a robust weekday profile (per-weekday
  medians over the 26 weeks before each week); "seasonal_holt_log" is the same on log(1 + value / (5 %
  of the mean)), whose back-transformed forecast is a median: it is not dragged up by spikes;
- "holt_winters" (and its log twin): Holt-Winters without trend and with an additive weekday state,
  smoothed from the additive profile on (the no-trend ETS forms statsforecast's AutoETS picks on the
  benchmark's series, the log twin standing in for a multiplicative season): it follows a weekly
  shape that drifts, where the medians lag;
- smoothing parameters of both picked by one-step squared error over the FIT_WINDOW_DAYS before each
  origin, the forecast being the mean of the GRID_AVERAGED best grid points;
- with two years or more: "yearly_regression" (and its log twin), least squares on a linear trend, six
  yearly harmonics and weekday dummies over up to three years, plus the exponentially weighted mean of
  its last residuals so it follows the current level;
- and the means seasonal naive + seasonal_holt, seasonal_holt + yearly_regression (and log twins).
95 % intervals come from the backtest errors of the combined forecast per horizon.

Why hand-written: no well-kept numpy-only library fits and selects ETS-style models for a batch of series
within the trends request's budget (statsforecast needs pandas and compiles; statsmodels fits one model
at a time in tens of ms). So every row, origin and smoothing parameter runs in one vectorised pass: the
smoothing runs once over the history and its state is read at every origin, and the regression's normal
equations for every origin come from running sums. A row's result never depends on the other rows.
Pure numpy, no JSON: callers round and date the arrays returned.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SEASON = 7  # days in the weekly cycle
HORIZON = 7  # days forecast
YEAR = 364  # days in a weekday-aligned year
MIN_TRAINING_DAYS = 14  # shortest history a backtest origin may train on
MAX_ORIGINS = 52  # weekly rolling origins scored by the backtest
MIN_ORIGINS_FOR_INTERVALS = 2  # fewer backtest origins: intervals from the random-walk fallback
FIT_WINDOW_DAYS = 364  # days of one-step errors the smoothing parameters are picked on
PROFILE_WEEKS = 26  # weeks the weekday profile is estimated from
CLOSED_DAY_FACTOR = 0.1  # weekday multiplier below which a day carries no level information
LOG_OFFSET = 0.05  # log candidates model log(1 + value / (LOG_OFFSET × the row's mean))
YEARLY_MIN_DAYS = 2 * YEAR  # training days a yearly regression needs
YEARLY_WINDOW_DAYS = 3 * YEAR  # most recent training days the yearly regression is fitted on
YEARLY_HARMONICS = 6  # sine/cosine pairs of the yearly shape
YEARLY_MIN_ORIGINS = 8  # origins with two years of training needed to score the yearly candidates
RESIDUAL_ALPHA = 0.05  # weight of the newest residual in the regression's level correction
RESIDUAL_DAYS = 120  # residuals the level correction reads
COMBINED = (1, 2, 3)  # sizes of the combination of best-scoring candidates; the backtest picks one
GRID_AVERAGED = 2  # grid points with the least one-step error averaged into a smoothing forecast
ALPHAS = (0.05, 0.15, 0.3, 0.5, 0.8)  # level smoothing grid
TRENDS = ((0.0, 0.0), (0.05, 0.98), (0.2, 0.98), (0.2, 0.9))  # (beta, phi) grid; (0, 0) is no trend
GAMMAS = (0.01, 0.03, 0.1)  # Holt-Winters weekday-state smoothing grid
BASE_METHODS = ("seasonal_naive", "naive", "seasonal_holt", "seasonal_holt_log",
                "seasonal_naive+seasonal_holt", "seasonal_holt+seasonal_holt_log",
                "holt_winters", "holt_winters_log")
YEARLY_METHODS = ("yearly_regression", "yearly_regression_log", "seasonal_holt+yearly_regression",
                  "seasonal_holt_log+yearly_regression_log")

# (alpha, beta, phi, gamma) per grid point: damped Holt on profile-adjusted days (no weekday state),
# and Holt-Winters (no trend, a smoothed weekday state) on the days as they are.
_HOLT_GRID = np.array([(alpha, beta, phi, 0.0) for alpha in ALPHAS for beta, phi in TRENDS]).T
_WINTERS_GRID = np.array([(alpha, 0.0, 0.0, gamma) for gamma in GAMMAS for alpha in ALPHAS]).T
# Weight of the residual k days before the origin in the regression's level correction (SES from 0).
_RESIDUAL_WEIGHTS = RESIDUAL_ALPHA * (1 - RESIDUAL_ALPHA) ** np.arange(RESIDUAL_DAYS)


class ForecastSelection(NamedTuple):
    """Per row: the method, its HORIZON-day forecast and per-horizon sd, and its backtest.

    method is the best-scoring candidate's name, or "combination" when several are averaged (their
    names in combined); mase and seasonal_naive_mase are NaN where nothing was scored; origins is
    shared by all rows.
    """

    methods: list[str]
    combined: list[list[str]]
    forecasts: np.ndarray  # (rows, HORIZON)
    sds: np.ndarray  # (rows, HORIZON)
    mase: np.ndarray  # (rows,)
    seasonal_naive_mase: np.ndarray  # (rows,)
    origins: int


def _weekday_profiles(ys: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return weekday factors per row and cut: multipliers, offsets (rows, cuts, 7), use-multiplicative flags.

    cuts are consecutive week ends (cuts[0] ≥ 13, then every 7 days). Factors are medians, per weekday,
    of each day's ratio to (or difference from) its centred 7-day mean over the last PROFILE_WEEKS
    weeks before the cut whose centred mean is known; the form with the smaller squared misfit over
    those weeks wins (multiplicative needs a positive centred mean throughout). Columns are day index % 7.
    """
    rows = len(ys)
    kernel = np.ones(SEASON) / SEASON
    # centred[:, j] is centred on day j + 3; one convolve per row (a handful) keeps np.convolve's sums.
    centred = np.array([np.convolve(y, kernel, mode="valid") for y in ys])
    # Week blocks end 3 days before each cut (the last day with a known centred mean); the first
    # block starts on the earliest such day, 3 to 9. Deviations are computed once per block.
    first = 3 + (int(cuts[0]) - 6) % SEASON
    blocks = (int(cuts[-1]) - 3 - first) // SEASON
    days = first + np.arange(blocks * SEASON)
    observed = ys[:, days].reshape(rows, blocks, SEASON)
    level = centred[:, days - 3].reshape(rows, blocks, SEASON)
    # PROFILE_WEEKS blocks of NaN in front give every cut a full window; NaN sorts last.
    padded = np.full((2, rows, PROFILE_WEEKS + blocks, SEASON), np.nan)
    with np.errstate(all="ignore"):
        padded[0, :, PROFILE_WEEKS:] = observed / level
    padded[1, :, PROFILE_WEEKS:] = observed - level
    ends = (cuts - 3 - first) // SEASON  # blocks before each cut
    counts = np.minimum(ends, PROFILE_WEEKS)
    starts = ends  # window of cut j: padded blocks [ends[j], ends[j] + PROFILE_WEEKS)
    windows = np.lib.stride_tricks.sliding_window_view(padded, PROFILE_WEEKS, axis=2)[:, :, starts]
    ordered = np.sort(windows, axis=-1)  # (2, rows, cuts, 7, PROFILE_WEEKS)
    low = ((counts - 1) // 2)[None, None, :, None, None]  # sorted, the padding's NaN come last
    high = (counts // 2)[None, None, :, None, None]
    middle = (np.take_along_axis(ordered, low, axis=-1) + np.take_along_axis(ordered, high, axis=-1)) / 2
    ratios, offsets = middle[..., 0]  # each (rows, cuts, 7)
    ratio_mean = ratios.mean(axis=-1, keepdims=True)
    ratios = np.where(ratio_mean > 0, ratios / np.where(ratio_mean > 0, ratio_mean, 1.0), 1.0)
    offsets = offsets - offsets.mean(axis=-1, keepdims=True)
    # Squared misfits of each form over each cut's window, from running sums per weekday:
    # sum (o - l r)^2 = sum o^2 - 2 r sum o l + r^2 sum l^2, and likewise for o - l - offset.
    difference = observed - level
    sums = np.zeros((5, rows, blocks + 1, SEASON))
    np.cumsum(np.stack([observed * observed, observed * level, level * level, difference * difference,
                        difference]), axis=2, out=sums[:, :, 1:])
    oo, ol, ll, dd, d1 = sums[:, :, ends] - sums[:, :, ends - counts]
    misfit_ratio = (oo - 2 * ratios * ol + ratios * ratios * ll).sum(axis=-1)
    misfit_offset = (dd - 2 * offsets * d1 + counts[:, None] * offsets * offsets).sum(axis=-1)
    nonpositive = np.concatenate([np.zeros((rows, 1)), np.cumsum((level <= 0).any(axis=2), axis=1)], axis=1)
    positive = (nonpositive[:, ends] - nonpositive[:, ends - counts] == 0) & (ratio_mean[..., 0] > 0)
    multiplicative = positive & (misfit_ratio <= misfit_offset)
    # Rotate columns from "position in the week block" to "day index % 7".
    order = (np.arange(SEASON) - first) % SEASON
    return ratios[..., order], offsets[..., order], multiplicative


def _holt_pass(values: np.ndarray, weights: np.ndarray, start_level: np.ndarray,
               start_states: np.ndarray, parameters: np.ndarray,
               stops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run damped Holt with a smoothed weekday state on every row of values (rows × days), in one pass.

    Row r has its own parameters[:, r] = (alpha, beta, phi, gamma) and starts from start_level[r] and
    the weekday states start_states[r] (7, for days 0, 1, ... of the pass modulo 7). Day t's one-step
    forecast is level + phi × slope + state[t % 7]; its error moves the level by alpha ×, the slope by
    beta × alpha × and the state by gamma × itself. weights are 1 where a day updates, 0 where it carries
    no information. Returns the one-step forecasts (days, rows) and the level, slope (stops, rows) and
    states (stops, 7, rows) in force at the start of each day index in stops (days: after the last day).
    """
    rows, days = values.shape
    alpha, beta, phi, gamma = (np.ascontiguousarray(column) for column in parameters)
    level, slope = start_level.astype(float), np.zeros(rows)
    states = np.ascontiguousarray(start_states.T, dtype=float)  # (7, rows)
    columns = np.ascontiguousarray(values.T)
    everyone_updates = weights.all(axis=0).tolist()  # per day: the gains are alpha, gamma for every row
    if not all(everyone_updates):
        level_gains, state_gains = weights.T * alpha, weights.T * gamma
    forecasts = np.empty((days, rows))
    levels, slopes = np.empty((len(stops), rows)), np.empty((len(stops), rows))
    stop_states = np.empty((len(stops), SEASON, rows))
    stop_at = {int(day): index for index, day in enumerate(stops)}
    damped, base, error, step = (np.empty(rows) for _ in range(4))
    multiply, add, subtract = np.multiply, np.add, np.subtract
    for t in range(days):
        if t in stop_at:
            index = stop_at[t]
            levels[index], slopes[index], stop_states[index] = level, slope, states
        forecast, state = forecasts[t], states[t % SEASON]
        # Positional outputs: at this size a ufunc call costs more than its arithmetic.
        multiply(phi, slope, damped)
        add(level, damped, base)
        add(base, state, forecast)
        subtract(columns[t], forecast, error)
        updates = everyone_updates[t]
        multiply(error, alpha if updates else level_gains[t], step)
        add(base, step, level)
        multiply(beta, step, slope)
        add(slope, damped, slope)
        multiply(error, gamma if updates else state_gains[t], error)
        add(state, error, state)  # state is a view: this updates states in place
    if days in stop_at:
        index = stop_at[days]
        levels[index], slopes[index], stop_states[index] = level, slope, states
    return forecasts, levels, slopes, stop_states


def _smoothing_forecasts(ys: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the weekday-adjusted damped-Holt and the Holt-Winters forecasts of the HORIZON days after
    each cut, per row: two arrays (rows, cuts, HORIZON).

    Weekday profiles are estimated at every week boundary (cuts lie on them) from the weeks before it.
    Damped Holt runs on the days adjusted by the profile of their week; Holt-Winters on the days as they
    are, its weekday state starting from the additive profile. One pass runs both grids from
    FIT_WINDOW_DAYS before the first cut; at each cut the GRID_AVERAGED grid points of each with the
    least one-step squared error over the FIT_WINDOW_DAYS before it give the forecast (their mean:
    averaging neighbours steadies a choice that the noise of one year of errors makes).
    """
    rows, n = ys.shape
    first = max(MIN_TRAINING_DAYS, int(cuts[0]) - FIT_WINDOW_DAYS)
    first += (n - first) % SEASON  # on a week boundary, as the cuts are
    bounds = np.arange(first, n + 1, SEASON)
    ratios, offsets, multiplicative = _weekday_profiles(ys, bounds)
    multiplicative = multiplicative[..., None]
    factors = np.where(multiplicative, ratios, 1.0)  # (rows, bounds, 7)
    shifts = np.where(multiplicative, 0.0, offsets)
    # Day first - 7 + i takes the profile of boundary max(0, i // 7 - 1): the week before the pass
    # (its level starts the pass) and the pass's first week share the first boundary's profile.
    days = np.arange(first - SEASON, n)
    week = np.maximum((days - first) // SEASON, 0)
    factor, shift = factors[:, week, days % SEASON], shifts[:, week, days % SEASON]
    observed = ys[:, days]
    informative = factor >= CLOSED_DAY_FACTOR
    adjusted = np.where(informative, (observed - shift) / np.where(informative, factor, 1.0), 0.0)
    weights = informative * 1.0
    start_level = (adjusted[:, :SEASON] * weights[:, :SEASON]).sum(axis=1) / np.maximum(
        weights[:, :SEASON].sum(axis=1), 1)
    start_states = offsets[:, 0, (first + np.arange(SEASON)) % SEASON]  # pass day i is weekday first + i
    winters_level = (observed[:, :SEASON] - start_states).mean(axis=1)
    # Configuration rows: every grid point of each method for every data row, grid point major.
    holt_points, winters_points = _HOLT_GRID.shape[1], _WINTERS_GRID.shape[1]
    one_step, levels, slopes, states = _holt_pass(
        np.concatenate([np.tile(adjusted[:, SEASON:], (holt_points, 1)),
                        np.tile(observed[:, SEASON:], (winters_points, 1))]),
        np.concatenate([np.tile(weights[:, SEASON:], (holt_points, 1)),
                        np.ones((winters_points * rows, n - first))]),
        np.concatenate([np.tile(start_level, holt_points), np.tile(winters_level, winters_points)]),
        np.concatenate([np.zeros((holt_points * rows, SEASON)), np.tile(start_states, (winters_points, 1))]),
        np.concatenate([np.repeat(_HOLT_GRID, rows, axis=1), np.repeat(_WINTERS_GRID, rows, axis=1)], axis=1),
        cuts - first)
    damping = np.cumsum(np.concatenate([_HOLT_GRID[2], _WINTERS_GRID[2]])[:, None] ** np.arange(
        1, HORIZON + 1), axis=1)  # phi + ... + phi^h per grid point
    at = (cuts - first) // SEASON
    ahead = (cuts[:, None] + np.arange(HORIZON)) % SEASON
    ahead_factor = factors[:, at[:, None], ahead].transpose(1, 0, 2)  # (cuts, rows, HORIZON)
    ahead_shift = shifts[:, at[:, None], ahead].transpose(1, 0, 2)
    cut = np.arange(len(cuts))[:, None, None]
    results = []
    for adjusting, start, points in ((True, 0, holt_points), (False, holt_points, winters_points)):
        block = slice(start * rows, (start + points) * rows)  # the method's configuration rows
        fitted = one_step[:, block].reshape(-1, points, rows)  # (days, points, rows)
        if adjusting:  # errors in the data's units
            errors = (observed - shift)[:, SEASON:].T[:, None, :] - factor[:, SEASON:].T[:, None, :] * fitted
        else:
            errors = observed[:, SEASON:].T[:, None, :] - fitted
        running = np.concatenate([np.zeros((1, points, rows)), np.cumsum(errors * errors, axis=0)])
        # (cuts, points, rows): the squared one-step errors of the FIT_WINDOW_DAYS before each cut.
        sse = running[cuts - first] - running[np.maximum(cuts - FIT_WINDOW_DAYS, first) - first]
        best = np.argsort(sse, axis=1, kind="stable")[:, :GRID_AVERAGED]  # (cuts, k, rows)
        configuration = start * rows + best * rows + np.arange(rows)
        path = (levels[cut, configuration][..., None]
                + slopes[cut, configuration][..., None] * damping[start + best])  # (cuts, k, rows, HORIZON)
        path += states[cut[..., None], np.arange(HORIZON) % SEASON, configuration[..., None]]
        path = path.mean(axis=1)  # (cuts, rows, HORIZON)
        if adjusting:
            path = path * ahead_factor + ahead_shift
        results.append(np.maximum(path.transpose(1, 0, 2), 0.0))
    return results[0], results[1]


def _yearly_design(days: np.ndarray) -> np.ndarray:
    """Return the regression's columns for day indices: intercept, trend (years), harmonics, weekdays."""
    angle = 2 * np.pi * days[:, None] * np.arange(1, YEARLY_HARMONICS + 1) / 365.25
    weekdays = (days[:, None] % SEASON == np.arange(1, SEASON)) * 1.0
    return np.column_stack([np.ones(len(days)), days / 365.25, np.sin(angle), np.cos(angle), weekdays])


def _yearly_regression_forecasts(ys: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Return the yearly regression's forecast of the HORIZON days after each cut (every cut ≥
    YEARLY_MIN_DAYS and a whole number of weeks before n), per row: (rows, cuts, HORIZON).

    Least squares over the last YEARLY_WINDOW_DAYS before the cut, from running sums of the normal
    equations; plus the exponentially weighted mean of the last RESIDUAL_DAYS residuals.
    """
    rows, n = ys.shape
    design = _yearly_design(np.arange(n + HORIZON, dtype=float))
    columns = design.shape[1]
    # Sums over whole weeks ending on the cuts (zero days pad the front): cuts and window starts all
    # fall on week ends, so running sums per week give every cut's normal equations.
    pad = -n % SEASON
    weeks = (n + pad) // SEASON
    blocks = np.zeros((weeks * SEASON, columns))
    blocks[pad:] = design[:n]
    blocks = blocks.reshape(weeks, SEASON, columns)
    values = np.zeros((rows, weeks * SEASON))
    values[:, pad:] = ys
    values = values.reshape(rows, weeks, SEASON)
    gram = np.zeros((weeks + 1, columns, columns))
    np.cumsum(np.einsum("wdi,wdj->wij", blocks, blocks), axis=0, out=gram[1:])
    moments = np.zeros((weeks + 1, columns, rows))
    np.cumsum(np.einsum("wdc,rwd->wcr", blocks, values), axis=0, out=moments[1:])
    ends = (cuts + pad) // SEASON
    starts = np.where(cuts > YEARLY_WINDOW_DAYS, ends - YEARLY_WINDOW_DAYS // SEASON, 0)
    normal = gram[ends] - gram[starts]  # (cuts, columns, columns)
    # A whisker of ridge keeps the solve defined whatever the data; it is far below every eigenvalue.
    normal += np.eye(columns) * 1e-9 * np.trace(normal, axis1=1, axis2=2)[:, None, None]
    coefficients = np.linalg.solve(normal, moments[ends] - moments[starts])  # (cuts, columns, rows)
    recent = cuts[:, None] - 1 - np.arange(RESIDUAL_DAYS)  # (cuts, RESIDUAL_DAYS), newest first
    fitted = np.einsum("ckj,cjr->rck", design[recent], coefficients)
    correction = ((ys[:, recent] - fitted) * _RESIDUAL_WEIGHTS).sum(axis=2)  # (rows, cuts)
    ahead = np.einsum("chj,cjr->rch", design[cuts[:, None] + np.arange(HORIZON)], coefficients)
    return np.maximum(ahead + correction[..., None], 0.0)


def _log_units(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return log(1 + ys / offset) per row and the offsets (LOG_OFFSET × each row's mean, > 0)."""
    offsets = LOG_OFFSET * ys.mean(axis=1)
    offsets = np.where(offsets > 0, offsets, 1.0)
    return np.log1p(ys / offsets[:, None]), offsets


def _candidate_forecasts(ys: np.ndarray, cuts: np.ndarray,
                         yearly: bool) -> tuple[tuple[str, ...], np.ndarray]:
    """Return the candidates' names and forecasts after every cut: (methods, rows, cuts, HORIZON)."""
    rows = len(ys)
    logs, offsets = _log_units(ys)
    # Raw and log rows share one smoothing pass: rows never mix.
    smoothing, winters = _smoothing_forecasts(np.concatenate([ys, logs]), cuts)
    back = offsets[:, None, None]
    holt, holt_log = smoothing[:rows], np.minimum(back * np.expm1(smoothing[rows:]), np.finfo(float).max)
    winters, winters_log = winters[:rows], np.minimum(back * np.expm1(winters[rows:]), np.finfo(float).max)
    seasonal_naive = ys[:, cuts[:, None] - SEASON + np.arange(HORIZON) % SEASON]
    naive = np.repeat(ys[:, cuts - 1][:, :, None], HORIZON, axis=2)
    candidates = [seasonal_naive, naive, holt, holt_log, (seasonal_naive + holt) / 2, (holt + holt_log) / 2,
                  winters, winters_log]
    if not yearly:
        return BASE_METHODS, np.stack(candidates)
    regression = _yearly_regression_forecasts(np.concatenate([ys, logs]), cuts)
    trend, trend_log = regression[:rows], np.minimum(back * np.expm1(regression[rows:]), np.finfo(float).max)
    candidates += [trend, trend_log, (holt + trend) / 2, (holt_log + trend_log) / 2]
    return BASE_METHODS + YEARLY_METHODS, np.stack(candidates)


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


def backtest_origins(n: int) -> tuple[np.ndarray, bool]:
    """Return the backtest origins (earliest first) for a history of n days and whether the yearly
    candidates take part (then every origin has YEARLY_MIN_DAYS of training)."""
    origins = n - SEASON * np.arange(MAX_ORIGINS, 0, -1)
    origins = origins[origins >= MIN_TRAINING_DAYS]
    yearly = int((origins >= YEARLY_MIN_DAYS).sum()) >= YEARLY_MIN_ORIGINS
    return (origins[origins >= YEARLY_MIN_DAYS] if yearly else origins), yearly


def select_forecasts(ys: np.ndarray) -> ForecastSelection:
    """Return, per row of ys (rows × days of history, values of order 1), the combined forecast.

    Candidates are ranked by MASE averaged over the backtest origins, each scaled by the in-sample
    seasonal-naive MAE of its own training data (lag-1 MAE where that is 0); origins with neither are
    not scored. The COMBINED best are averaged; the simplest method wins ties. Rows with no origin or
    none scored fall back to seasonal naive (naive under 7 days) with random-walk intervals.
    """
    rows, n = ys.shape
    origins, yearly = backtest_origins(n)
    if len(origins) == 0 or rows == 0:
        method, values, sds = _short_history_forecasts(ys)
        return ForecastSelection([method] * rows, [[method] for _ in range(rows)], values, sds,
                                 np.full(rows, np.nan), np.full(rows, np.nan), len(origins))
    cuts = np.append(origins, n)
    names, candidates = _candidate_forecasts(ys, cuts, yearly)
    scales = _in_sample_scales(ys, origins, SEASON)
    if not (scales > 0).all():
        scales = np.where(scales > 0, scales, _in_sample_scales(ys, origins, 1))
    scored = scales > 0
    actual = ys[:, origins[:, None] + np.arange(HORIZON)]
    scale = np.where(scored, scales, 1.0)[..., None]
    mase = _mean_scaled_errors(np.abs(actual - candidates[:, :, :-1]).mean(axis=3) / scale[..., 0], scored)
    # A stable sort keeps the simpler method first among equal scores; NaN (unscored) sorts last.
    ranking = np.argsort(mase, axis=0, kind="stable")[:max(COMBINED)]  # (max(COMBINED), rows)
    row = np.arange(rows)
    # Running means of the best 1, 2, ... candidates: (sizes, rows, cuts, HORIZON).
    ranked = candidates[ranking, row[None, :]]
    means = np.cumsum(ranked, axis=0) / np.arange(1, len(ranked) + 1)[:, None, None, None]
    sizes = np.array(COMBINED) - 1
    means = means[sizes]
    size_mase = _mean_scaled_errors(np.abs(actual - means[:, :, :-1]).mean(axis=3) / scale[..., 0], scored)
    chosen_size = np.argmin(np.where(np.isnan(size_mase), np.inf, size_mase), axis=0)  # (rows,)
    combination = means[chosen_size, row]
    errors = actual - combination[:, :-1]
    best = size_mase[chosen_size, row]
    forecasts = combination[:, -1]
    counts = (sizes[chosen_size] + 1).tolist()
    combined = [[names[index] for index in ranking[:counts[r], r].tolist()] for r in range(rows)]
    methods = ["combination" if len(set(chosen)) > 1 else chosen[0] for chosen in combined]
    sds = None
    if len(origins) >= MIN_ORIGINS_FOR_INTERVALS:
        sds = np.maximum.accumulate(np.sqrt(np.mean(errors ** 2, axis=1)), axis=1)
    backtested = scored.any(axis=1)  # else mase is NaN already
    if sds is None or not backtested.all():
        fallback_method, fallback_values, fallback_sds = _short_history_forecasts(ys)
        sds = fallback_sds if sds is None else sds
        for r in np.flatnonzero(~backtested).tolist():
            methods[r], combined[r] = fallback_method, [fallback_method]
        forecasts = np.where(backtested[:, None], forecasts, fallback_values)
        sds = np.where(backtested[:, None], sds, fallback_sds)
    return ForecastSelection(methods, combined, forecasts, sds, best, mase[0], len(origins))
