"""summary_metrics: the array paths that small hand-made days never take."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from activity_monitor.summary_metrics import (
    COUNTED_API_CALL,
    COUNTING_LIMIT,
    NO_SESSION,
    UNKNOWN_ROLE,
    DayEvents,
    DayWindow,
    compute_day_metrics,
    dense_ranks,
    distinct,
    peak_concurrent_users,
    utc_offset_segments,
)
from activity_monitor.timeutil import zone

MINUTE_US = 60 * 10**6


def reference_peak(user_ids, times_us, window) -> int:
    """Most users online at once, from each user's merged intervals, with plain Python."""
    by_user: dict[int, list[int]] = {}
    for user, moment in sorted(zip(user_ids.tolist(), times_us.tolist(), strict=True)):
        by_user.setdefault(user, []).append(moment)
    changes = []
    for moments in by_user.values():
        start = end = None
        for moment in moments:
            if start is not None and moment <= end:
                end = moment + window.idle_us
                continue
            if start is not None:
                changes.append((start, end))
            start, end = moment, moment + window.idle_us
        changes.append((start, end))
    marks = []
    for start, end in changes:
        start, end = max(start, window.start_us), min(end, window.end_us)
        if start < end:
            marks += [(start, 1), (end, -1)]
    online = best = 0
    for _, step in sorted(marks):
        online += step
        best = max(best, online)
    return best


@pytest.fixture
def window() -> DayWindow:
    return DayWindow.for_day(dt.date(2026, 5, 10), "UTC", 5)


@pytest.mark.parametrize(
    ("users", "offset"),
    [(300, 0), (70_000, 0), (300, COUNTING_LIMIT), (300, -(10**12))],
    ids=["few users", "more than 16-bit ranks", "ids too large to count", "negative ids"],
)
def test_peak_concurrency_agrees_with_a_plain_reading_on_every_path(window, users, offset):
    rng = np.random.default_rng(users)
    # Every user at least once, then 5000 more events of random users, in random order.
    ids = rng.permutation(np.concatenate((np.arange(users), rng.integers(0, users, 5000)))) + offset
    times = np.sort(rng.integers(window.window_start_us, window.start_us + 3 * 3600 * 10**6, len(ids)))
    assert peak_concurrent_users(ids, times, window) == reference_peak(ids, times, window)


def test_distinct_and_dense_ranks_agree_with_unique_for_small_and_large_ids():
    for values in (np.array([5, 3, 5, 9, 3]), np.array([COUNTING_LIMIT + 5, 3, COUNTING_LIMIT + 5, -2])):
        uniques, inverse = np.unique(values, return_inverse=True)
        assert distinct(values).tolist() == uniques.tolist()
        ranks, count = dense_ranks(values)
        assert (ranks.tolist(), count) == (inverse.tolist(), len(uniques))


def test_events_out_of_time_order_give_the_same_metrics(window):
    rows = [
        (1, "2026-05-10 10:00:00", "a", "driver", "/x"),
        (2, "2026-05-10 10:01:00", "b", "admin", COUNTED_API_CALL),
        (1, "2026-05-10 10:02:00.5", "a", "driver", "/y"),
        (3, "2026-05-10 10:09:00", "c", "", "/x"),
        (1, "2026-05-10 10:07:30", "a", "manager", None),  # user 1's last event, a download
        ("u-4", "2026-05-10 10:30:00", NO_SESSION, "viewer", "/z"),
        ("u-4", "2026-05-10 10:20:00", NO_SESSION, "viewer", "/z"),
    ]
    in_order = compute_day_metrics(DayEvents.from_chunks([sorted(rows, key=lambda r: r[1])]), window)
    backwards = rows[::-1]
    shuffled = compute_day_metrics(DayEvents.from_chunks([backwards[:3], backwards[3:]]), window)
    assert shuffled == in_order
    assert (in_order.peak_concurrent_users, in_order.total_sessions) == (2, 4)
    assert in_order.avg_session_duration_seconds == 263  # (450 + 0 + 0 + 600) / 4, half up
    assert in_order.user_distribution == {"admin": 1, "manager": 1, "unknown": 1, "viewer": 1}
    assert (in_order.total_page_views, in_order.total_api_calls, in_order.total_events) == (5, 1, 7)


def reference_sessions_and_roles(rows, session_idle_us: int) -> tuple[int, dict[str, int]]:
    """Sessions (named ones, plus per-user runs of keyless events) and users by last role, in plain Python."""
    named = {session for _, _, session, _ in rows if session != NO_SESSION}
    derived = 0
    last_role: dict[object, str] = {}
    previous: dict[object, int] = {}
    for user, moment, session, role in sorted(rows, key=lambda r: r[1]):
        last_role[user] = role or UNKNOWN_ROLE
        if session == NO_SESSION:
            if user not in previous or moment - previous[user] > session_idle_us:
                derived += 1
            previous[user] = moment
    roles: dict[str, int] = {}
    for role in last_role.values():
        roles[role] = roles.get(role, 0) + 1
    return len(named) + derived, dict(sorted(roles.items()))


def test_derived_sessions_and_roles_agree_with_a_plain_reading_on_a_busy_day(window):
    rng = np.random.default_rng(7)
    users, per_user = 1_000, 10
    idle = window.session_idle_us
    # Each user's gaps are a minute, exactly the session idle time, a microsecond more, or 45 minutes.
    gaps = rng.choice([60 * 10**6, idle, idle + 1, 45 * MINUTE_US], (users, per_user - 1))
    starts = window.start_us + rng.integers(0, 10 * 60 * MINUTE_US, (users, 1))
    times = np.hstack([starts, starts + np.cumsum(gaps, axis=1)]).ravel()
    user_ids = np.repeat(np.arange(users), per_user)
    named = rng.random(len(times)) < 0.3
    sessions = np.where(named, np.char.add("s", (user_ids // 3).astype(str)), NO_SESSION)
    roles = np.array(["admin", "driver", "viewer", ""])[rng.integers(0, 4, len(times))]
    rows = list(zip(user_ids.tolist(), times.tolist(), sessions.tolist(), roles.tolist(), strict=True))
    texts = [str(moment).replace("T", " ") for moment in times.astype("datetime64[us]")]
    chunk = [
        (user, text, session, role, None)
        for (user, _, session, role), text in zip(rows, texts, strict=True)
    ]
    metrics = compute_day_metrics(DayEvents.from_chunks([chunk[:4_000], chunk[4_000:]]), window)
    assert (metrics.total_sessions, metrics.user_distribution) == reference_sessions_and_roles(rows, idle)


def test_offset_segments_find_each_change_to_the_microsecond():
    start = dt.datetime(2026, 10, 24, 22, tzinfo=dt.UTC)
    end = dt.datetime(2026, 10, 25, 23, tzinfo=dt.UTC)
    segments = utc_offset_segments(start, end, zone("Europe/Berlin"))
    assert segments == [
        (start, dt.timedelta(hours=2)),
        (dt.datetime(2026, 10, 25, 1, tzinfo=dt.UTC), dt.timedelta(hours=1)),
    ]


def test_a_window_starts_the_idle_time_before_the_local_day():
    window = DayWindow.for_day(dt.date(2026, 3, 29), "Europe/Berlin", 5)
    assert window.end_us - window.start_us == 23 * 60 * MINUTE_US
    assert window.start_us - window.window_start_us == 5 * MINUTE_US
