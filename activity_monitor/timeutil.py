"""UTC timestamps as stored in the database, and local days in ACTIVITY_TIMEZONE."""

from __future__ import annotations

import datetime as dt
import zoneinfo

BOUND_FORMAT = "%Y-%m-%d %H:%M:%S"


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def to_db_timestamp(moment: dt.datetime) -> str:
    """Format an aware datetime as the UTC text stored in the database (always with microseconds)."""
    # isoformat is several times faster than strftime, and this runs on every request.
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_now_text() -> str:
    """Return the current UTC time as database text."""
    return to_db_timestamp(utc_now())


def parse_db_timestamp(text: str) -> dt.datetime:
    """Parse database text (with or without fractional seconds) as aware UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def zone(name: str) -> zoneinfo.ZoneInfo:
    """Return the time zone for an IANA name."""
    return zoneinfo.ZoneInfo(name)


def local_today(tz_name: str, now: dt.datetime | None = None) -> dt.date:
    """Return the current calendar day in the given zone."""
    return (now or utc_now()).astimezone(zone(tz_name)).date()


def local_day_bounds(day: dt.date, tz_name: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the UTC instants [start, end) of a local day (23 or 25 hours on DST days)."""
    tz = zone(tz_name)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def local_day_bounds_text(day: dt.date, tz_name: str) -> tuple[str, str]:
    """Return :func:`local_day_bounds` as database text, for index range scans.

    The bounds carry no fraction: '… 23:00:00' sorts before both '… 23:00:00'
    and '… 23:00:00.000000', so stored values of either form compare right.
    """
    start, end = local_day_bounds(day, tz_name)
    return start.strftime(BOUND_FORMAT), end.strftime(BOUND_FORMAT)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Return every calendar day from start to end inclusive."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
