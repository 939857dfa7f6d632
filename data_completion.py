"""One point for every calendar day of a range: days without data are filled with zeros.

Trends and exports draw series over calendar days; a day without a summary row
is still a day, and a chart or CSV that skipped it would shift every later point.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from timeutil import date_range


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
