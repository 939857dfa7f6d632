"""Trends over any range of days: reading summaries, analysing them, caching the answer.

The service never touches Flask's request objects: the API layer validates
parameters and hands it dates and metric names; background jobs use it too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from activity_monitor import hours
from activity_monitor.daily_summaries import (
    METRIC_COLUMNS,
    first_event_day,
    first_summary_day,
    read_data_version,
)
from activity_monitor.data_completion import CompletedDays, complete_days
from activity_monitor.storage import Connection
from activity_monitor.timeutil import date_range, utc_now
from activity_monitor.trend_analysis import TrendAnalyzer

# Column names from requests are only ever these (the SQL whitelist).
METRICS = METRIC_COLUMNS
# The 30-day moving average of the first day in range reaches 29 days back.
LOOKBACK_DAYS = 29
TOP_PAGES_LIMIT = 10
# Days of history up to the range's end the forecast and the anomaly fit learn from: three years,
# so a yearly pattern is seen at least twice whatever the range.
FORECAST_HISTORY_DAYS = 3 * 365 + 1
# What a range is compared with: the previous period shifted by whole weeks, or the same weekdays
# a year (52 weeks) earlier.
COMPARISONS = ("previous", "year")
YEAR_SHIFT_DAYS = 364
# The figures of a summary that describe the tracked days (null when the range has none).
STATISTICS = (
    "average",
    "median",
    "std_dev",
    "min",
    "max",
    "total",
    "peak_date",
    "change_first_to_last_week_percent",
    "percentage_change",
    "trend_slope",
    "trend_confidence",
    "p_value",
)


class InvalidQuery(ValueError):
    """Raised for a range or metric list the service cannot answer; the message says why."""


@dataclass(frozen=True)
class TrendsPayload:
    """A serialized trends ``data`` object and how it was obtained."""

    key: str
    body: bytes
    cached: bool
    data_version: int

    @property
    def etag(self) -> str:
        """A validator that changes whenever the data behind the payload can change."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]


def canonical_metrics(metrics: Sequence[str] | None) -> tuple[str, ...]:
    """Return the metrics de-duplicated in the canonical order; all six when none are given."""
    if not metrics:
        return METRICS
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InvalidQuery(f"Unknown metric {unknown[0]!r}; valid metrics are {', '.join(METRICS)}.")
    wanted = set(metrics)
    return tuple(m for m in METRICS if m in wanted)


def dumps(data: Any) -> bytes:
    """Serialize compactly with orjson (several times faster than json on 2,000 points).

    orjson would write NaN as null; the analysis never produces one, and the
    JSON-safety tests check the output with a strict parser.
    """
    return orjson.dumps(data)


def check_compare(compare: str) -> None:
    """Refuse a comparison other than previous or year."""
    if compare not in COMPARISONS:
        raise InvalidQuery(f"compare must be previous or year, not {compare!r}.")


def comparison_shift(compare: str, days: int) -> int:
    """Return how many days back the comparison period lies: the range's length rounded up to whole
    weeks (so weekdays line up), or 364 days (52 weeks) for the year before."""
    return YEAR_SHIFT_DAYS if compare == "year" else -(-days // 7) * 7


def earliest(*days: dt.date | None) -> dt.date | None:
    """Return the earliest of the days given, None among them ignored (None when all are)."""
    known = [day for day in days if day is not None]
    return min(known) if known else None


def without_data(summary: dict[str, Any]) -> dict[str, Any]:
    """Return the summary of a range without a tracked day: no statistic at all (null), no trend,
    no forecast, rather than the zeros an empty series would give."""
    analysis = summary["trend_analysis"]
    return {
        **summary,
        **dict.fromkeys(STATISTICS),
        "trend_analysis": {
            **analysis,
            **dict.fromkeys(("direction", "confidence", "slope", "strength", "method")),
            "forecast": [],
            "backtest": {**dict.fromkeys(analysis["backtest"]), "origins": 0},
        },
        "anomalies": [],
    }


def preset_ranges(today: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """Return the dashboard's named ranges: last 7/30/90/365 completed days, month to date, last month.

    Month to date ends yesterday; on the first of a month it is the day before's month.
    """
    yesterday = today - dt.timedelta(days=1)
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - dt.timedelta(days=1)
    ranges = {f"last_{n}_days": (yesterday - dt.timedelta(days=n - 1), yesterday) for n in (7, 30, 90, 365)}
    ranges["month_to_date"] = (yesterday.replace(day=1), yesterday)
    ranges["last_month"] = (last_month_end.replace(day=1), last_month_end)
    return ranges


class ActivityTrendsService:
    """Answers trends, exports and breakdowns from ``activity_summary_daily``."""

    def __init__(
        self,
        conn: Connection,
        tz_name: str,
        *,
        cache: Any = None,
        cache_ttl: int | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        analyzer: type[TrendAnalyzer] = TrendAnalyzer,
    ):
        self.conn = conn
        self.tz_name = tz_name
        self.cache = cache
        self.cache_ttl = cache_ttl
        self.clock = clock
        self.analyzer = analyzer

    # --- cache -------------------------------------------------------------

    def cache_key(
        self,
        data_version: int,
        start: dt.date,
        end: dt.date,
        metrics: tuple[str, ...],
        compare: str = "previous",
    ) -> str:
        """Key of a trends answer: the data version, zone, range, sorted metrics and comparison."""
        key = f"trends:v{data_version}:{self.tz_name}:{start}:{end}:{','.join(sorted(metrics))}"
        # The default keeps its old key, so entries warmed before an upgrade stay valid.
        return key if compare == "previous" else f"{key}:{compare}"

    def trends_payload(
        self,
        start: dt.date,
        end: dt.date,
        metrics: Sequence[str] | None = None,
        *,
        bypass_cache: bool = False,
        compare: str = "previous",
    ) -> TrendsPayload:
        """Return the serialized trends data, from the cache when it holds this exact answer."""
        wanted = canonical_metrics(metrics)
        check_compare(compare)
        version = read_data_version(self.conn)
        key = self.cache_key(version, start, end, wanted, compare)
        if self.cache is not None and not bypass_cache:
            body = self.cache.get(key)
            if body is not None:
                return TrendsPayload(key, body, True, version)
        body = dumps(self.get_trends(start, end, wanted, data_version=version, compare=compare))
        if self.cache is not None:
            self.cache.set(key, body, self.cache_ttl)
        return TrendsPayload(key, body, False, version)

    def cached_answer(self, name: str, parts: Sequence[object], compute: Callable[[], Any]) -> bytes:
        """Return the serialized answer of ``compute`` for a named endpoint and its parameters,
        from the cache while the data version is unchanged.

        Breakdowns and hours read raw events, which the data version does not follow event by
        event; it moves whenever a refresh or a summary run changes a day, so an answer is at most
        one refresh behind, like the trends' today.
        """
        version = read_data_version(self.conn)
        key = f"{name}:v{version}:{self.tz_name}:" + ":".join(str(part) for part in parts)
        if self.cache is not None:
            body = self.cache.get(key)
            if body is not None:
                return body
        body = dumps(compute())
        if self.cache is not None:
            self.cache.set(key, body, self.cache_ttl)
        return body

    # --- trends ------------------------------------------------------------

    def check_range(self, start: dt.date, end: dt.date) -> None:
        """Refuse a range that ends before it starts."""
        if end < start:
            raise InvalidQuery(f"The range ends ({end}) before it starts ({start}).")

    def get_trends(
        self,
        start: dt.date,
        end: dt.date,
        metrics: Sequence[str] | None = None,
        *,
        data_version: int | None = None,
        compare: str = "previous",
    ) -> dict[str, Any]:
        """Return the trends ``data`` object: points with moving averages and a summary per metric.

        Days before tracking began are ``no_data`` points and take part in no statistic; the
        forecast and the anomaly fit learn from up to FORECAST_HISTORY_DAYS of history before the end.
        """
        self.check_range(start, end)
        check_compare(compare)
        wanted = canonical_metrics(metrics)
        if data_version is None:
            data_version = read_data_version(self.conn)
        days = (end - start).days + 1
        shift = comparison_shift(compare, days)
        first = min(
            start - dt.timedelta(days=max(LOOKBACK_DAYS, shift)),
            end - dt.timedelta(days=FORECAST_HISTORY_DAYS - 1),
        )
        began = self.tracking_began()
        history = self.load_history(first, end, wanted, began)
        tracked_from = history.tracked_from(start)
        # Today's running row is drawn but is no day's final figure: the statistics, the forecast
        # (which then starts with today) and the comparison stop the day before.
        analysed_end = end
        while analysed_end >= tracked_from and analysed_end.isoformat() in history.partial:
            analysed_end -= dt.timedelta(days=1)
        tracked_dates = date_range(tracked_from, analysed_end) if tracked_from <= analysed_end else []
        # The forecast's history: the last FORECAST_HISTORY_DAYS tracked days, or the whole range if longer.
        horizon_start = analysed_end - dt.timedelta(days=FORECAST_HISTORY_DAYS - 1)
        learn_from = max(history.known_from, min(tracked_from, horizon_start))
        analyses = self.analyzer.analyze_many(
            history.tracked_values(tracked_from, analysed_end),
            tracked_dates,
            history=history.tracked_values(learn_from, analysed_end),
        )
        dates = history.completed.dates(history.offset(start))
        metrics_out: dict[str, list[dict[str, Any]]] = {}
        summary_out: dict[str, dict[str, Any]] = {}
        for row, metric in enumerate(wanted):
            metrics_out[metric] = self.points(history, row, start, dates)
            summary = analyses[row] if tracked_dates else without_data(analyses[row])
            summary["tracked_days"] = len(tracked_dates)
            key = "previous_year" if compare == "year" else "previous_period"
            average = summary["average"]
            summary[key] = self.comparison(history, row, start, analysed_end, shift, compare, average)
            summary_out[metric] = summary
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
            "tracking_began": began.isoformat() if began else None,
            "compare": compare,
            "metrics": metrics_out,
            "summary": summary_out,
            "days": [
                {"date": day, "peak_hour": hour}
                for day, hour in zip(dates, history.peak_hours[history.offset(start) :], strict=True)
            ],
            "generated_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data_version": data_version,
        }

    def first_event_day(self) -> dt.date | None:
        """Return the local day of the oldest raw event, or None when there is none."""
        return first_event_day(self.conn, self.tz_name)

    def tracking_began(self) -> dt.date | None:
        """Return the local day tracking began: the earlier of the first raw event's day and the first
        summary row (summaries may be imported, or outlive their purged events); None before either."""
        return earliest(self.first_event_day(), first_summary_day(self.conn))

    def load_history(
        self, first: dt.date, end: dt.date, metrics: tuple[str, ...], began: dt.date | None
    ) -> History:
        """Read the summaries from ``first`` to ``end`` in one query."""
        columns = ", ".join(metrics)  # every name passed canonical_metrics' whitelist
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper, and sliced below
        rows = cursor.execute(
            f"""
            SELECT date, is_partial, peak_hour, {columns}
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            ORDER BY date
            """,
            (first.isoformat(), end.isoformat()),
        ).fetchall()
        completed = complete_days([r[0] for r in rows], [r[3:] for r in rows], first, end, len(metrics))
        partial = {r[0] for r in rows if r[1]}
        peak_hours: list[int | None] = [None] * completed.values.shape[1]
        for r in rows:
            peak_hours[(dt.date.fromisoformat(r[0]) - first).days] = r[2]
        return History(completed, partial, began, peak_hours)

    def points(self, history: History, row: int, start: dt.date, dates: list[str]) -> list[dict[str, Any]]:
        """Return one point per day of the range for one metric, gaps filled, with moving averages.

        A day before tracking began has no value (null) and ``"no_data": true``.
        """
        split = history.offset(start)
        series = history.values[row, split - LOOKBACK_DAYS :]
        values = series[LOOKBACK_DAYS:]
        week = np.round(self.analyzer.trailing_means(series, 7)[LOOKBACK_DAYS:], 2)
        month = np.round(self.analyzer.trailing_means(series, 30)[LOOKBACK_DAYS:], 2)
        known = ~np.isnan(values)
        as_list = np.where(known, values, 0).astype(np.int64).tolist()
        week_list, month_list = week.tolist(), month.tolist()
        points = [
            {"date": day, "value": value, "7day_avg": w, "30day_avg": m}
            for day, value, w, m in zip(dates, as_list, week_list, month_list, strict=True)
        ]
        # Only gap days carry "filled", days before tracking "no_data", and today's running row
        # "partial": a flag on every point would add a sixth of the payload and say nothing.
        for index in np.flatnonzero(~known).tolist():
            points[index].update({"value": None, "7day_avg": None, "30day_avg": None, "no_data": True})
        filled = known & ~history.completed.present[split:]
        for index in np.flatnonzero(filled).tolist():
            points[index]["filled"] = True
        partial = history.partial_dates(start)
        if partial:
            for point in points:
                if point["date"] in partial:
                    point["partial"] = True
        return points

    def comparison(
        self,
        history: History,
        row: int,
        start: dt.date,
        end: dt.date,
        shift: int,
        compare: str,
        average: float | None,
    ) -> dict[str, Any]:
        """Compare the range's average with the same-length period ``shift`` days earlier.

        Days before tracking began are not data and are left out; gaps after it count as 0.
        """
        offset = dt.timedelta(days=shift)
        values = history.series(row, start - offset, end - offset)
        known = values[~np.isnan(values)]
        prev_average = round(float(known.mean()), 2) if known.size else None
        change = None
        if prev_average and average is not None:
            change = round((average - prev_average) / prev_average * 100, 2)
        name = "change_vs_previous_year_percent" if compare == "year" else "change_vs_previous_percent"
        return {
            "start": (start - offset).isoformat(),
            "end": (end - offset).isoformat(),
            "shift_days": shift,
            "days_with_data": int(known.size),
            "average": prev_average,
            "total": int(known.sum()) if known.size else 0,
            name: change,
        }

    # --- export ------------------------------------------------------------

    def iter_daily_values(
        self, start: dt.date, end: dt.date, metrics: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield ``{"date", metric: value, …, "peak_hour"}`` for every day of the range, streaming.

        Gap days give 0 (and no peak hour); days before tracking began give None for every value
        and ``"no_data": True``.
        """
        self.check_range(start, end)
        wanted = canonical_metrics(metrics)
        began = self.tracking_began()
        cursor = self.conn.execute(
            f"""
            SELECT date, peak_hour, {", ".join(wanted)}
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            ORDER BY date
            """,
            (start.isoformat(), end.isoformat()),
        )

        def empty(day: dt.date) -> dict[str, Any]:
            if began is None or day < began:
                return {"date": day.isoformat(), **dict.fromkeys(wanted), "peak_hour": None, "no_data": True}
            return {"date": day.isoformat(), **dict.fromkeys(wanted, 0), "peak_hour": None}

        day = start
        for row in cursor:
            row_day = dt.date.fromisoformat(row["date"])
            while day < row_day:
                yield empty(day)
                day += dt.timedelta(days=1)
            yield {"date": row["date"], **{m: row[m] for m in wanted}, "peak_hour": row["peak_hour"]}
            day = row_day + dt.timedelta(days=1)
        while day <= end:
            yield empty(day)
            day += dt.timedelta(days=1)

    # --- breakdown -----------------------------------------------------------

    def breakdown(self, start: dt.date, end: dt.date) -> dict[str, Any]:
        """Return top pages, the peak hour and users by role over the range.

        While the raw events of the whole range are kept, top pages and the peak hour are counted
        exactly from them. Afterwards they come from the summaries: page counts add up each day's
        top pages (a page outside a day's top 10 is not counted that day), and the peak hour is the
        hour most often the day's peak. Each role seen on a day of the range, by name, gives the
        average over the tracked days (a tracked day without it counts 0) and the highest number of
        daily active users.
        """
        self.check_range(start, end)
        pages: dict[str, int] = {}
        daily_peaks: dict[int, int] = {}
        role_totals: dict[str, int] = {}
        role_max: dict[str, int] = {}
        summarized = 0
        first_summarized: str | None = None
        cursor = self.conn.execute(
            """
            SELECT date, top_pages, user_distribution, peak_hour
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            """,
            (start.isoformat(), end.isoformat()),
        )
        for day, top_pages, distribution, peak_hour in cursor:
            summarized += 1
            first_summarized = day if first_summarized is None else min(first_summarized, day)
            for entry in json.loads(top_pages):
                pages[entry["page"]] = pages.get(entry["page"], 0) + int(entry["count"])
            for role, count in json.loads(distribution).items():
                role_totals[role] = role_totals.get(role, 0) + int(count)
                role_max[role] = max(role_max.get(role, 0), int(count))
            if peak_hour is not None:
                daily_peaks[peak_hour] = daily_peaks.get(peak_hour, 0) + 1
        days = (end - start).days + 1
        first_event = self.first_event_day()
        began = earliest(first_event, first_summary_day(self.conn))
        tracked_days = 0 if began is None or began > end else (end - max(start, began)).days + 1
        # The raw events answer exactly when none of the range was purged and no summary of the
        # range predates them (summaries may be imported without their events).
        exact = hours.raw_events_cover(self.conn, start) and (
            first_summarized is None
            or (first_event is not None and first_event.isoformat() <= first_summarized)
        )
        if exact:
            top = [
                (entry["page"], entry["count"])
                for entry in hours.top_pages(self.conn, self.tz_name, start, end, TOP_PAGES_LIMIT)
            ]
            peak_hour = hours.peak_hour(self.conn, self.tz_name, start, end)
            peak_source = "raw_events" if peak_hour is not None else None
        else:
            top = sorted(pages.items(), key=lambda item: (-item[1], item[0]))[:TOP_PAGES_LIMIT]
            # The most frequent daily peak; ties go to the earlier hour.
            peak_hour = min(daily_peaks, key=lambda hour: (-daily_peaks[hour], hour)) if daily_peaks else None
            peak_source = "daily_peaks" if peak_hour is not None else None
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
            "tracking_began": began.isoformat() if began else None,
            "tracked_days": tracked_days,
            "summarized_days": summarized,
            "top_pages": [{"page": page, "count": count} for page, count in top],
            "top_pages_exact": exact,
            "top_pages_source": "raw_events" if exact else "daily_top_lists",
            "peak_hour": peak_hour,
            "peak_hour_source": peak_source,
            "users_by_role": {
                role: {
                    "average_daily": round(role_totals[role] / max(tracked_days, 1), 2),
                    "max_daily": role_max[role],
                }
                for role in sorted(role_totals)
            },
        }


class History:
    """Summary values per metric over consecutive days, NaN before tracking began, gaps after it 0."""

    def __init__(
        self,
        completed: CompletedDays,
        partial: set[str],
        began: dt.date | None,
        peak_hours: list[int | None],
    ):
        self.completed = completed
        self.first = completed.first
        self.partial = partial
        self.values = np.full(completed.values.shape, np.nan)
        days = completed.values.shape[1]
        begin = days if began is None else min(max((began - self.first).days, 0), days)
        # The first day with data in this window (the day after its end when none has).
        self.known_from = self.first + dt.timedelta(days=begin)
        self.values[:, begin:] = completed.values[:, begin:]
        self.peak_hours = [hour if i >= begin else None for i, hour in enumerate(peak_hours)]

    def offset(self, day: dt.date) -> int:
        """Return the column of a day."""
        return (day - self.first).days

    def tracked_from(self, start: dt.date) -> dt.date:
        """Return the first day from start on that has data (after the window's end when none has)."""
        return max(start, self.known_from)

    def series(self, row: int, start: dt.date, end: dt.date) -> np.ndarray:
        """Return one metric's values from start to end (NaN before tracking began)."""
        return self.values[row, self.offset(start) : self.offset(end) + 1]

    def tracked_values(self, start: dt.date, end: dt.date) -> np.ndarray:
        """Return every metric's values from start to end (start on or after tracking began)."""
        if start > end:
            return np.zeros((len(self.values), 0))
        return self.values[:, self.offset(start) : self.offset(end) + 1]

    def partial_dates(self, start: dt.date) -> set[str]:
        """Return the ISO dates of partial rows from start on."""
        first = start.isoformat()
        return {day for day in self.partial if day >= first}
