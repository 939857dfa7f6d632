"""The metric definitions of one local day's summary, computed from its events.

Pure functions over numpy arrays of UTC microseconds since the epoch;
:mod:`daily_summaries` reads the events and stores the result. Times are whole
microseconds, so every comparison and every duration is exact.
"""

from __future__ import annotations

import datetime as dt
import heapq
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from operator import itemgetter
from typing import Any

import numpy as np

from activity_monitor.timeutil import local_day_bounds

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
TOP_PAGES_LIMIT = 10
# Ids below this are ranked by counting (O(n)) instead of sorting.
COUNTING_LIMIT = 1 << 22
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# UTC offsets never change twice within this long, so probing at this step finds every change.
OFFSET_PROBE_STEP = dt.timedelta(minutes=15)

# The columns of the rows that daily_summaries reads. COUNTED says what an event of the day itself
# adds to the day's counts: the page of a page view, COUNTED_API_CALL for an API call (never a
# page, whose path starts with /; text like the pages, as PostgreSQL wants one type per column),
# None for anything else. One column for both is one value fewer per row
# to fetch, a tenth of a day's read.
USER_ID, TIMESTAMP, SESSION_ID, ROLE, COUNTED = (itemgetter(column) for column in range(5))
COUNTED_API_CALL = ""
# The session id of events whose host gave no session key: their sessions are derived from gaps.
NO_SESSION = ""
# How user_distribution names users whose events carry no role.
UNKNOWN_ROLE = "unknown"


def to_us(moment: dt.datetime) -> int:
    """Return an aware datetime as whole microseconds since the Unix epoch."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def from_us(micros: int) -> dt.datetime:
    """Return microseconds since the Unix epoch as an aware UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=micros)


@dataclass(frozen=True)
class DayWindow:
    """One local day [start, end) in UTC, the earlier start of the events that touch it,
    and the stretches of the day that share one UTC offset (for local hours)."""

    date: dt.date
    start_us: int
    end_us: int
    window_start_us: int
    idle_us: int
    offset_starts_us: tuple[int, ...]
    offsets_us: tuple[int, ...]
    session_idle_us: int = 30 * 60 * US_PER_SECOND

    @classmethod
    def for_day(
        cls, day: dt.date, tz_name: str, idle_minutes: int, session_idle_minutes: int = 30
    ) -> DayWindow:
        """Build the window of a local day in a zone, for an idle time (online) and a session
        idle time (derived sessions), both in minutes."""
        start, end = local_day_bounds(day, tz_name)
        idle_us = idle_minutes * 60 * US_PER_SECOND
        segments = utc_offset_segments(start, end, zoneinfo.ZoneInfo(tz_name))
        return cls(
            date=day,
            start_us=to_us(start),
            end_us=to_us(end),
            window_start_us=to_us(start) - idle_us,
            idle_us=idle_us,
            offset_starts_us=tuple(to_us(moment) for moment, _ in segments),
            offsets_us=tuple(offset // dt.timedelta(microseconds=1) for _, offset in segments),
            session_idle_us=session_idle_minutes * 60 * US_PER_SECOND,
        )


def utc_offset_segments(
    start: dt.datetime, end: dt.datetime, tz: zoneinfo.ZoneInfo
) -> list[tuple[dt.datetime, dt.timedelta]]:
    """Return (UTC start, UTC offset) of each stretch of [start, end) that has one offset."""

    def offset(moment: dt.datetime) -> dt.timedelta:
        return moment.astimezone(tz).utcoffset() or dt.timedelta(0)

    last_instant = end - dt.timedelta(microseconds=1)
    probes = []
    probe = start
    while probe < last_instant:
        probes.append(probe)
        probe += OFFSET_PROBE_STEP
    probes.append(last_instant)
    segments = [(start, offset(start))]
    for before, after in zip(probes, probes[1:], strict=False):
        if offset(before) == offset(after):
            continue
        # Bisect to the first microsecond with the new offset.
        low, high = to_us(before), to_us(after)
        while high - low > 1:
            middle = (low + high) // 2
            if offset(from_us(middle)) == offset(after):
                high = middle
            else:
                low = middle
        segments.append((from_us(high), offset(after)))
    return segments


@dataclass
class DayEvents:
    """The events of a day's window as arrays; what the day's own events count, as counts.

    Users, sessions and roles are integer codes, equal exactly when the values are
    (host user ids may be ints or strings); ``roles`` and ``derived_session_code``
    turn role codes back into names and say which session code means "no session key".
    """

    user_ids: np.ndarray
    times_us: np.ndarray
    session_codes: np.ndarray
    role_codes: np.ndarray
    roles: dict[int, str] = field(default_factory=dict)
    derived_session_code: int | None = None
    page_view_counts: Counter = field(default_factory=Counter)
    api_calls: int = 0

    @classmethod
    def from_chunks(cls, chunks: Iterable[Sequence[tuple[Any, ...]]]) -> DayEvents:
        """Build from row chunks of (user_id, timestamp text, session_id, role, counted); see COUNTED."""
        users, times, sessions, roles = [], [], [], []
        counted: Counter = Counter()
        user_code: dict[Any, int] = {}
        session_code: dict[str, int] = {}
        role_code: dict[str, int] = {}
        next_user, next_session, next_role = count(), count(), count()
        for rows in chunks:
            if not rows:
                continue
            n = len(rows)
            # Column by column with itemgetter: several times faster than zip(*rows).
            users.append(coded(map(USER_ID, rows), user_code, next_user, n))
            times.append(np.array(list(map(TIMESTAMP, rows)), dtype="datetime64[us]").astype(np.int64))
            sessions.append(coded(map(SESSION_ID, rows), session_code, next_session, n))
            roles.append(coded(map(ROLE, rows), role_code, next_role, n))
            counted.update(map(COUNTED, rows))
        counted.pop(None, None)
        api_calls = counted.pop(COUNTED_API_CALL, 0)

        def joined(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

        return cls(
            user_ids=joined(users),
            times_us=joined(times),
            session_codes=joined(sessions),
            role_codes=joined(roles),
            roles={code: name for name, code in role_code.items()},
            derived_session_code=session_code.get(NO_SESSION),
            page_view_counts=counted,
            api_calls=api_calls,
        )

    def in_time_order(self) -> DayEvents:
        """Return the events sorted by time (themselves when they already are, as read from SQL)."""
        if np.all(self.times_us[1:] >= self.times_us[:-1]):
            return self
        order = np.argsort(self.times_us, kind="stable")
        return replace(
            self,
            user_ids=self.user_ids[order],
            times_us=self.times_us[order],
            session_codes=self.session_codes[order],
            role_codes=self.role_codes[order],
        )


def coded(values: Iterable[Any], codes: dict[Any, int], next_code: Iterator[int], n: int) -> np.ndarray:
    """Return the integer codes of n values: a new value gets the next number, a known one keeps its own.

    setdefault draws a number for every value, so the codes are sparse (below the number of values).
    """
    return np.fromiter(map(codes.setdefault, values, next_code), np.int64, n)


@dataclass(frozen=True)
class DayMetrics:
    """The pinned metrics of one local day (see the issue for each definition)."""

    unique_users: int
    total_sessions: int
    total_page_views: int
    total_api_calls: int
    total_events: int
    avg_session_duration_seconds: int
    peak_concurrent_users: int
    peak_hour: int | None
    top_pages: list[dict[str, Any]]
    user_distribution: dict[str, int]


def compute_day_metrics(events: DayEvents, window: DayWindow) -> DayMetrics:
    """Compute every metric of the day from the events of its window."""
    events = events.in_time_order()
    in_day = (events.times_us >= window.start_us) & (events.times_us < window.end_us)
    times = events.times_us[in_day]
    user_codes = events.user_ids[in_day]
    users = distinct(user_codes)
    hours = local_hour_counts(times, window)
    session_codes = events.session_codes[in_day]
    if events.derived_session_code is not None:
        session_codes = with_derived_sessions(
            session_codes, user_codes, times, events.derived_session_code, window
        )
    sessions, duration_seconds = session_count_and_mean_duration(session_codes, times)
    return DayMetrics(
        unique_users=len(users),
        total_sessions=sessions,
        total_page_views=sum(events.page_view_counts.values()),
        total_api_calls=events.api_calls,
        total_events=len(times),
        avg_session_duration_seconds=duration_seconds,
        peak_concurrent_users=peak_concurrent_users(events.user_ids, events.times_us, window),
        peak_hour=int(np.argmax(hours)) if len(times) else None,
        top_pages=top_pages(events.page_view_counts),
        user_distribution=role_distribution(user_codes, events.role_codes[in_day], events.roles),
    )


def with_derived_sessions(
    session_codes: np.ndarray,
    user_codes: np.ndarray,
    times_us: np.ndarray,
    derived_code: int,
    window: DayWindow,
) -> np.ndarray:
    """Return the session codes with the events that have no session key given sessions of their
    own: per user, a new session starts after a gap longer than the session idle time (as web
    analytics count visits). Times are in ascending order; new codes follow the existing ones."""
    derived = session_codes == derived_code
    if not derived.any():
        return session_codes
    indices = np.flatnonzero(derived)
    # A stable sort by user keeps each user's events in time order.
    order = indices[np.argsort(user_codes[indices], kind="stable")]
    users, times = user_codes[order], times_us[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (users[1:] != users[:-1]) | (times[1:] - times[:-1] > window.session_idle_us)
    codes = session_codes.copy()
    first_new = int(session_codes.max()) + 1
    codes[order] = first_new + np.cumsum(starts) - 1
    return codes


def role_distribution(
    user_codes: np.ndarray, role_codes: np.ndarray, roles: dict[int, str]
) -> dict[str, int]:
    """Return the number of the day's users in each role, each user once, under the role of their
    last event of the day (events in time order), by role name ascending."""
    if len(user_codes) == 0:
        return {}
    last_event = np.full(int(user_codes.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(last_event, user_codes, np.arange(len(user_codes)))
    last_roles = role_codes[last_event[last_event >= 0]]
    counts = np.bincount(last_roles)
    named: Counter = Counter()
    for code in np.flatnonzero(counts):
        named[roles[code] or UNKNOWN_ROLE] += int(counts[code])
    return dict(sorted(named.items()))


def distinct(values: np.ndarray) -> np.ndarray:
    """Return the distinct values, ascending (by counting when they are small ids)."""
    if len(values) and values.min() >= 0 and values.max() < COUNTING_LIMIT:
        return np.flatnonzero(np.bincount(values))
    return np.unique(values)


def dense_ranks(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Return each value's rank among the distinct values (0 for the smallest), and their number."""
    if len(values) and values.min() >= 0 and values.max() < COUNTING_LIMIT:
        present = np.bincount(values) > 0
        return np.cumsum(present)[values] - 1, int(np.count_nonzero(present))
    uniques, inverse = np.unique(values, return_inverse=True)
    return inverse, len(uniques)


def local_hour_counts(times_us: np.ndarray, window: DayWindow) -> np.ndarray:
    """Return the number of events in each local hour 0–23 (an hour repeated by DST counts twice)."""
    segment = np.searchsorted(np.array(window.offset_starts_us), times_us, side="right") - 1
    local_us = times_us + np.array(window.offsets_us, dtype=np.int64)[segment]
    return np.bincount((local_us // US_PER_HOUR) % 24, minlength=24)


def session_count_and_mean_duration(session_codes: np.ndarray, times_us: np.ndarray) -> tuple[int, int]:
    """Return the number of sessions and the mean over them of last minus first event time,
    rounded half up to a whole second (0 without sessions)."""
    if len(times_us) == 0:
        return 0, 0
    ranks, sessions = dense_ranks(session_codes)
    first = np.full(sessions, np.iinfo(np.int64).max)
    last = np.full(sessions, np.iinfo(np.int64).min)
    np.minimum.at(first, ranks, times_us)
    np.maximum.at(last, ranks, times_us)
    total_us = int((last - first).sum())
    denominator = sessions * US_PER_SECOND
    return sessions, (2 * total_us + denominator) // (2 * denominator)


def peak_concurrent_users(user_ids: np.ndarray, times_us: np.ndarray, window: DayWindow) -> int:
    """Return the most distinct users online at one instant of the day (times in ascending order).

    Each event keeps its user online over [t, t + idle); a user's intervals are
    merged first, so a user counts once however many events overlap.
    """
    if len(times_us) == 0:
        return 0
    ranks, count_users = dense_ranks(user_ids)
    # Grouping by user keeps each user's events in time order: a stable sort, by
    # counting when there are few enough users for 16-bit ranks.
    if count_users <= 1 << 16:
        order = np.argsort(ranks.astype(np.uint16), kind="stable")
    else:
        order = np.lexsort((times_us, ranks))
    users, times = ranks[order], times_us[order]
    starts_group = np.ones(len(times), dtype=bool)
    starts_group[1:] = (users[1:] != users[:-1]) | (times[1:] - times[:-1] > window.idle_us)
    first = np.flatnonzero(starts_group)
    last = np.append(first[1:] - 1, len(times) - 1)
    starts = np.maximum(times[first], window.start_us)
    ends = np.minimum(times[last] + window.idle_us, window.end_us)
    inside = starts < ends
    if not inside.any():
        return 0
    instants = np.concatenate((starts[inside], ends[inside]))
    steps = np.concatenate((np.ones(inside.sum(), np.int64), -np.ones(inside.sum(), np.int64)))
    # At equal instants the ends go first: [a, b) and [b, c) never overlap.
    sweep = np.lexsort((steps, instants))
    return int(np.cumsum(steps[sweep]).max())


def top_pages(page_view_counts: Counter) -> list[dict[str, Any]]:
    """Return the most viewed pages, by count descending then page ascending."""
    best = heapq.nsmallest(TOP_PAGES_LIMIT, page_view_counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"page": page, "count": views} for page, views in best]
