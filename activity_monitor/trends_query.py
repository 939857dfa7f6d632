"""What a trends, export or breakdown query may ask for: checked the same way for HTTP and the CLI."""

from __future__ import annotations

import datetime as dt
import re

from activity_monitor.activity_trends_service import COMPARISONS, METRICS, InvalidQuery, canonical_metrics
from activity_monitor.hours import MEASURES

DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EARLIEST_DATE = dt.date(1970, 1, 1)
DEFAULT_RANGE_DAYS = 30
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class QueryError(ValueError):
    """A value the query cannot accept; the message says what is accepted, ``parameter`` names it."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


def parse_day(name: str, raw: str | None) -> dt.date | None:
    """Parse a strict YYYY-MM-DD value, or None when absent."""
    if raw is None:
        return None
    try:
        if not DATE_PATTERN.match(raw):
            raise ValueError
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"{name} must be a date written YYYY-MM-DD, such as 2026-01-31.", name) from None
    if value < EARLIEST_DATE:
        raise QueryError(f"{name} must be {EARLIEST_DATE} or later.", name)
    return value


def resolve_range(
    start: dt.date | None,
    end: dt.date | None,
    today: dt.date,
    max_days: int,
    names: tuple[str, str] = ("start_date", "end_date"),
) -> tuple[dt.date, dt.date]:
    """Fill in defaults (the last 30 completed days) and check the range: not after today,
    not ending before it starts, not longer than ``max_days``."""
    start_name, end_name = names
    if end is None:
        end = today - dt.timedelta(days=1)
        if start is not None and start > end:
            end = start
    if start is None:
        start = end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if end > today:
        raise QueryError(
            f"{end_name} {end} is in the future; the latest accepted day is today, {today}.", end_name
        )
    if end < start:
        raise QueryError(f"{end_name} {end} is before {start_name} {start}.", end_name)
    days = (end - start).days + 1
    if days > max_days:
        raise QueryError(f"The range has {days} days; the longest accepted is {max_days}.", start_name)
    return start, end


def parse_metric_list(raw: str | None, name: str = "metrics") -> tuple[str, ...]:
    """Return the metrics of a comma list (all when absent or empty), duplicates dropped."""
    if raw is None or raw.strip() == "":
        return METRICS
    names = [metric.strip() for metric in raw.split(",")]
    if any(not metric for metric in names):
        raise QueryError(f"{name} has an empty name; give a comma list of {', '.join(METRICS)}.", name)
    try:
        return canonical_metrics(names)
    except InvalidQuery as exc:
        raise QueryError(str(exc), name) from None


def parse_flag(name: str, raw: str | None) -> bool:
    """Parse true/false/1/0 (false when absent)."""
    if raw is None:
        return False
    if raw.lower() not in BOOLEANS:
        raise QueryError(f"{name} must be one of true, false, 1 or 0.", name)
    return BOOLEANS[raw.lower()]


def parse_choice(name: str, raw: str | None, accepted: tuple[str, ...]) -> str:
    """Return one of the accepted values exactly as written (the first when absent)."""
    if raw is None:
        return accepted[0]
    if raw not in accepted:
        listed = ", ".join(accepted[:-1]) + " or " + accepted[-1] if len(accepted) > 1 else accepted[0]
        raise QueryError(f"{name} must be {listed}, not {raw!r}.", name)
    return raw


def parse_compare(raw: str | None) -> str:
    """Return what trends compare the range with: previous (default) or year."""
    return parse_choice("compare", raw, COMPARISONS)


def parse_measure(raw: str | None) -> str:
    """Return what /hours counts: events (default) or users."""
    return parse_choice("measure", raw, MEASURES)
