"""One point for every calendar day of a range: days without data are filled with zeros.

Trends and exports draw series over calendar days; a day without a summary row
is still a day, and a chart or CSV that skipped it would shift every later point.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from activity_monitor.timeutil import date_range


def as_date(value: dt.date | str) -> dt.date:
    """Return a date given as a date or as ISO text 'YYYY-MM-DD'."""
    if isinstance(value, dt.datetime):
        raise TypeError(f"Expected a calendar day, got the instant {value!r}.")
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


class DataCompletionService:
    """Complete day series: every day of a range, missing ones with zero values and ``"filled": true``."""

    def __init__(self, value_keys: Sequence[str] = ("value",), date_key: str = "date"):
        self.value_keys = tuple(value_keys)
        self.date_key = date_key

    def fill_missing_dates(
        self, points: Iterable[Mapping[str, Any]], start: dt.date | str, end: dt.date | str
    ) -> list[dict[str, Any]]:
        """Return one point per day from start to end inclusive, in date order.

        Given points are copied with their date as ISO text and ``"filled": False``
        unless they carry a ``"filled"`` already (so filling twice changes nothing);
        points outside the range are dropped; a missing day gets 0 for every value
        key and ``"filled": True``. Raises ValueError for two points on one day.
        """
        first, last = as_date(start), as_date(end)
        if first > last:
            raise ValueError(f"The range starts ({first}) after it ends ({last}).")
        by_day: dict[dt.date, Mapping[str, Any]] = {}
        for point in points:
            day = as_date(point[self.date_key])
            if day in by_day:
                raise ValueError(f"Two points share the day {day}.")
            by_day[day] = point
        completed = []
        for day in date_range(first, last):
            point = by_day.get(day)
            if point is None:
                filled: dict[str, Any] = {self.date_key: day.isoformat(), "filled": True}
                filled.update(dict.fromkeys(self.value_keys, 0))
            else:
                filled = {"filled": False, **point, self.date_key: day.isoformat()}
            completed.append(filled)
        return completed


@dataclass(frozen=True)
class CompletedDays:
    """Values of several series over every day from ``first`` on (a column per day)."""

    first: dt.date
    values: np.ndarray  # (series × days), gaps as 0
    present: np.ndarray  # (days,) True where a row existed

    def dates(self, start: int = 0) -> list[str]:
        """Return the ISO dates of the columns from ``start`` on."""
        first = self.first.toordinal()
        return [dt.date.fromordinal(first + i).isoformat() for i in range(start, self.values.shape[1])]


def complete_days(
    days: Sequence[dt.date | str],
    rows: Sequence[Sequence[float]],
    first: dt.date,
    last: dt.date,
    series: int | None = None,
) -> CompletedDays:
    """Scatter rows (one per day, a value per series) onto every day from first to last.

    The vectorised form of :meth:`DataCompletionService.fill_missing_dates`, for
    series read together: days without a row hold 0 and ``present`` is False there.
    """
    n = (last - first).days + 1
    if n <= 0:
        raise ValueError(f"The range starts ({first}) after it ends ({last}).")
    width = series if series is not None else (len(rows[0]) if rows else 0)
    parse = dt.date.fromisoformat
    ordinals = [parse(day).toordinal() if isinstance(day, str) else as_date(day).toordinal() for day in days]
    offsets = np.array(ordinals, dtype=np.int64) - first.toordinal()
    inside = (offsets >= 0) & (offsets < n)
    if len(np.unique(offsets)) != len(offsets):
        raise ValueError("Two rows share a day.")
    values = np.zeros((width, n))
    present = np.zeros(n, dtype=bool)
    if len(rows):
        values[:, offsets[inside]] = np.asarray(rows, dtype=float)[inside].T
        present[offsets[inside]] = True
    return CompletedDays(first, values, present)
