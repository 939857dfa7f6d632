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

from activity_monitor.daily_summaries import METRIC_COLUMNS, read_data_version
from activity_monitor.data_completion import CompletedDays, complete_days
from activity_monitor.storage import Connection
from activity_monitor.timeutil import date_range, utc_now
from activity_monitor.trend_analysis import TrendAnalyzer

# Column names from requests are only ever these (the SQL whitelist).
METRICS = METRIC_COLUMNS
# The 30-day moving average of the first day in range reaches 29 days back.
LOOKBACK_DAYS = 29
TOP_PAGES_LIMIT = 10


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

    def cache_key(self, data_version: int, start: dt.date, end: dt.date, metrics: tuple[str, ...]) -> str:
        """Key of a trends answer: the data version, zone, range and sorted metrics."""
        return f"trends:v{data_version}:{self.tz_name}:{start}:{end}:{','.join(sorted(metrics))}"

    def trends_payload(
        self,
        start: dt.date,
        end: dt.date,
        metrics: Sequence[str] | None = None,
        *,
        bypass_cache: bool = False,
    ) -> TrendsPayload:
        """Return the serialized trends data, from the cache when it holds this exact answer."""
        wanted = canonical_metrics(metrics)
        version = read_data_version(self.conn)
        key = self.cache_key(version, start, end, wanted)
        if self.cache is not None and not bypass_cache:
            body = self.cache.get(key)
            if body is not None:
                return TrendsPayload(key, body, True, version)
        body = dumps(self.get_trends(start, end, wanted, data_version=version))
        if self.cache is not None:
            self.cache.set(key, body, self.cache_ttl)
        return TrendsPayload(key, body, False, version)

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
    ) -> dict[str, Any]:
        """Return the trends ``data`` object: points with moving averages and a summary per metric."""
        self.check_range(start, end)
        wanted = canonical_metrics(metrics)
        if data_version is None:
            data_version = read_data_version(self.conn)
        days = (end - start).days + 1
        history = self.load_history(start - dt.timedelta(days=max(LOOKBACK_DAYS, days)), end, wanted)
        range_values = history.range_values(start)
        analyses = self.analyzer.analyze_many(range_values, date_range(start, end))
        dates = history.completed.dates(history.offset(start))
        filled = ~history.completed.present[history.offset(start) :]
        partial = history.partial_dates(start)
        metrics_out: dict[str, list[dict[str, Any]]] = {}
        summary_out: dict[str, dict[str, Any]] = {}
        for row, metric in enumerate(wanted):
            metrics_out[metric] = self.points(history, row, start, dates, filled, partial)
            summary = analyses[row]
            summary["previous_period"] = self.previous_period(history, row, start, days, summary["average"])
            summary_out[metric] = summary
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
            "metrics": metrics_out,
            "summary": summary_out,
            "generated_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data_version": data_version,
        }

    def load_history(self, first: dt.date, end: dt.date, metrics: tuple[str, ...]) -> History:
        """Read the summaries from ``first`` to ``end`` in one query."""
        columns = ", ".join(metrics)  # every name passed canonical_metrics' whitelist
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper, and sliced below
        rows = cursor.execute(
            f"""
            SELECT date, is_partial, {columns}
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            ORDER BY date
            """,
            (first.isoformat(), end.isoformat()),
        ).fetchall()
        first_row = self.conn.execute("SELECT MIN(date) FROM activity_summary_daily").fetchone()[0]
        history_start = dt.date.fromisoformat(first_row) if first_row else None
        completed = complete_days([r[0] for r in rows], [r[2:] for r in rows], first, end, len(metrics))
        partial = {r[0] for r in rows if r[1]}
        return History(completed, partial, history_start)

    def points(
        self,
        history: History,
        row: int,
        start: dt.date,
        dates: list[str],
        filled: np.ndarray,
        partial: set[str],
    ) -> list[dict[str, Any]]:
        """Return one point per day of the range for one metric, gaps filled, with moving averages."""
        series = history.window_series(row, start)
        values = series[LOOKBACK_DAYS:].astype(np.int64).tolist()
        week = np.round(self.analyzer.trailing_means(series, 7)[LOOKBACK_DAYS:], 2).tolist()
        month = np.round(self.analyzer.trailing_means(series, 30)[LOOKBACK_DAYS:], 2).tolist()
        points = [
            {"date": day, "value": value, "7day_avg": w, "30day_avg": m}
            for day, value, w, m in zip(dates, values, week, month, strict=True)
        ]
        # Only gap days carry "filled" (and only today's running row "partial"): a flag on
        # every point would add a sixth of the payload and say nothing.
        for index in np.flatnonzero(filled).tolist():
            points[index]["filled"] = True
        if partial:
            for point in points:
                if point["date"] in partial:
                    point["partial"] = True
        return points

    def previous_period(
        self, history: History, row: int, start: dt.date, days: int, average: float | None
    ) -> dict[str, Any]:
        """Compare the range's average with the equally long period just before it.

        Days before the first summarized day are not data and are left out; gaps after it count as 0.
        """
        prev_start = start - dt.timedelta(days=days)
        prev_end = start - dt.timedelta(days=1)
        values = history.series(row, prev_start, prev_end)
        known = values[~np.isnan(values)]
        prev_average = round(float(known.mean()), 2) if known.size else None
        change = None
        if prev_average and average is not None:
            change = round((average - prev_average) / prev_average * 100, 2)
        return {
            "start": prev_start.isoformat(),
            "end": prev_end.isoformat(),
            "average": prev_average,
            "total": int(known.sum()) if known.size else 0,
            "percentage_change": change,
        }

    # --- export ------------------------------------------------------------

    def iter_daily_values(
        self, start: dt.date, end: dt.date, metrics: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield ``{"date", metric: value, …}`` for every day of the range, gaps as 0, streaming."""
        self.check_range(start, end)
        wanted = canonical_metrics(metrics)
        cursor = self.conn.execute(
            f"""
            SELECT date, {", ".join(wanted)}
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            ORDER BY date
            """,
            (start.isoformat(), end.isoformat()),
        )
        day = start
        for row in cursor:
            row_day = dt.date.fromisoformat(row["date"])
            while day < row_day:
                yield {"date": day.isoformat(), **{m: 0 for m in wanted}}
                day += dt.timedelta(days=1)
            yield {"date": row["date"], **{m: row[m] for m in wanted}}
            day = row_day + dt.timedelta(days=1)
        while day <= end:
            yield {"date": day.isoformat(), **{m: 0 for m in wanted}}
            day += dt.timedelta(days=1)

    # --- breakdown -----------------------------------------------------------

    def breakdown(self, start: dt.date, end: dt.date) -> dict[str, Any]:
        """Return top pages and users by role over the range, from the summaries' JSON columns.

        Page counts add up each day's top pages (a page outside a day's top 10 is not counted
        that day); each role seen on a day of the range, by name, gives the average (a day
        without it counts 0) and the highest number of daily active users.
        """
        self.check_range(start, end)
        pages: dict[str, int] = {}
        role_totals: dict[str, int] = {}
        role_max: dict[str, int] = {}
        summarized = 0
        cursor = self.conn.execute(
            """
            SELECT top_pages, user_distribution
            FROM activity_summary_daily
            WHERE date >= ?
              AND date <= ?
            """,
            (start.isoformat(), end.isoformat()),
        )
        for top_pages, distribution in cursor:
            summarized += 1
            for entry in json.loads(top_pages):
                pages[entry["page"]] = pages.get(entry["page"], 0) + int(entry["count"])
            for role, count in json.loads(distribution).items():
                role_totals[role] = role_totals.get(role, 0) + int(count)
                role_max[role] = max(role_max.get(role, 0), int(count))
        days = (end - start).days + 1
        top = sorted(pages.items(), key=lambda item: (-item[1], item[0]))[:TOP_PAGES_LIMIT]
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
            "summarized_days": summarized,
            "top_pages": [{"page": page, "count": count} for page, count in top],
            "users_by_role": {
                role: {"average_daily": round(role_totals[role] / days, 2), "max_daily": role_max[role]}
                for role in sorted(role_totals)
            },
        }


class History:
    """Summary values per metric over consecutive days, NaN before the first summarized day."""

    def __init__(self, completed: CompletedDays, partial: set[str], history_start: dt.date | None):
        self.completed = completed
        self.first = completed.first
        self.partial = partial
        self.values = np.full(completed.values.shape, np.nan)
        if history_start is not None:
            begin = max((history_start - self.first).days, 0)
            self.values[:, begin:] = completed.values[:, begin:]

    def offset(self, day: dt.date) -> int:
        """Return the column of a day."""
        return (day - self.first).days

    def series(self, row: int, start: dt.date, end: dt.date) -> np.ndarray:
        """Return one metric's values from start to end (NaN before history began)."""
        return self.values[row, self.offset(start) : self.offset(end) + 1]

    def range_values(self, start: dt.date) -> np.ndarray:
        """Return every metric's values from start on, days without data as 0."""
        return np.nan_to_num(self.values[:, self.offset(start) :], nan=0.0)

    def window_series(self, row: int, start: dt.date) -> np.ndarray:
        """Return the look-back days (NaN before history) followed by the range (gaps as 0)."""
        split = self.offset(start)
        lookback = self.values[row, split - LOOKBACK_DAYS : split]
        return np.concatenate([lookback, np.nan_to_num(self.values[row, split:], nan=0.0)])

    def partial_dates(self, start: dt.date) -> set[str]:
        """Return the ISO dates of partial rows from start on."""
        first = start.isoformat()
        return {day for day in self.partial if day >= first}
