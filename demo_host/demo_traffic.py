"""What the demo fleet's traffic looks like, and the generator that draws it.

Users across the four roles; a weekday cycle, slow growth and holiday dips;
drivers early in the morning and office roles in office hours; sessions of
several requests with think times; the host app's real paths, classified the way
:mod:`activity_monitor`'s tracker classifies them. Everything comes from one NumPy
generator, drawn batch after batch of days, so a seed always gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import numpy as np

DEMO_PREFIX = "demo_"
# Not a werkzeug hash, so check_password_hash() is False for every password.
UNUSABLE_PASSWORD_HASH = "!demo-unusable"
ROLES = ("admin", "manager", "driver", "viewer")
# Share of users per role; viewers are the rest.
ROLE_SHARES = {"admin": 0.03, "manager": 0.10, "driver": 0.55}

# (path, action type as the tracker records it, median duration in ms, admins only)
PAGES = (
    ("/", "page_view", 18.0, False),
    ("/devices", "page_view", 22.0, False),
    ("/devices.csv", "file_download", 30.0, False),
    ("/routes", "page_view", 20.0, False),
    ("/service-orders", "page_view", 21.0, False),
    ("/api/devices", "api_call", 12.0, False),
    ("/users", "page_view", 35.0, True),
    ("/admin/activity", "page_view", 45.0, True),
    ("/api/admin/activity/trends", "api_call", 140.0, True),
    ("/api/admin/activity/export", "file_download", 600.0, True),
)
PAGE_INDEX = {page[0]: i for i, page in enumerate(PAGES)}


@dataclass(frozen=True)
class RoleProfile:
    """How one role uses the app: how often, when, and which pages."""

    sessions_per_day: float  # mean sessions of an average user on an ordinary weekday
    requests_per_session: float  # mean requests per session (at least one)
    start_hours: tuple[tuple[float, float, float], ...]  # (weight, mean local hour, sd) of session starts
    landing: str  # first page of every session
    page_weights: dict[str, float]  # relative frequency of the later requests


PROFILES = {
    "admin": RoleProfile(
        1.6, 11.0, ((0.6, 9.5, 1.5), (0.4, 14.5, 2.0)), "/",
        {"/": 12, "/devices": 10, "/routes": 5, "/service-orders": 8, "/api/devices": 4, "/devices.csv": 3,
         "/users": 15, "/admin/activity": 25, "/api/admin/activity/trends": 14,
         "/api/admin/activity/export": 4},
    ),
    "manager": RoleProfile(
        2.0, 10.0, ((0.55, 9.0, 1.3), (0.45, 14.0, 1.8)), "/",
        {"/": 15, "/devices": 22, "/routes": 14, "/service-orders": 22, "/api/devices": 10,
         "/devices.csv": 8, "/users": 1.5, "/admin/activity": 2, "/api/admin/activity/trends": 0.5},
    ),
    "driver": RoleProfile(
        3.0, 9.0, ((0.6, 6.5, 1.1), (0.4, 13.0, 2.5)), "/routes",
        {"/routes": 30, "/devices": 20, "/service-orders": 25, "/api/devices": 15, "/": 8,
         "/devices.csv": 2},
    ),
    "viewer": RoleProfile(
        0.8, 5.0, ((1.0, 11.5, 2.8),), "/",
        {"/": 35, "/devices": 35, "/routes": 12, "/service-orders": 13, "/devices.csv": 5},
    ),
}

# Documentation address ranges (RFC 5737): offices behind one NAT each, drivers on mobile networks.
OFFICE_IPS = tuple(f"203.0.113.{n}" for n in range(10, 250))
MOBILE_IPS = tuple(f"198.51.100.{n}" for n in range(1, 255)) + tuple(f"192.0.2.{n}" for n in range(1, 255))
DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
)
MOBILE_AGENTS = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; TC58) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.6312.118 Mobile Safari/537.36",
)
# Column order of the users DemoGenerator draws. Events are drawn in the columns of the
# monitor's bulk import, activity_monitor.EVENT_COLUMNS; a session is the 64 hex digits of
# its session_id (the key the host gives the monitor), and has no table of its own.
USER_COLUMNS = ("username", "email", "password_hash", "role", "created_at")
# Relative traffic by weekday, Monday first.
WEEKDAY_FACTORS = (1.0, 1.03, 1.0, 0.97, 0.86, 0.15, 0.07)
PUBLIC_HOLIDAYS = {(1, 1), (5, 1), (12, 25), (12, 26)}
YEAR_END_LULL = {(12, 24), (12, 27), (12, 28), (12, 29), (12, 30), (12, 31)}


def role_counts(users: int) -> dict[str, int]:
    """Split a number of users (at least 4) into roles, with at least one of each."""
    if users < len(ROLES):
        raise ValueError(f"Seed at least {len(ROLES)} users, one per role (got {users}).")
    admins = max(1, round(users * ROLE_SHARES["admin"]))
    managers = max(1, round(users * ROLE_SHARES["manager"]))
    drivers = min(max(1, round(users * ROLE_SHARES["driver"])), users - admins - managers - 1)
    return {"admin": admins, "manager": managers, "driver": drivers,
            "viewer": users - admins - managers - drivers}


def day_factor(day: dt.date) -> float:
    """Return the relative traffic of a calendar day: weekday cycle and holidays."""
    key = (day.month, day.day)
    if key in PUBLIC_HOLIDAYS:
        return 0.03
    factor = WEEKDAY_FACTORS[day.weekday()]
    return factor * 0.3 if key in YEAR_END_LULL else factor


def local_day_bounds(day: dt.date, tz_name: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the UTC instants [start, end) of a local day (23 or 25 hours on DST days)."""
    tz = zoneinfo.ZoneInfo(tz_name)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def format_timestamps(micros: np.ndarray) -> list[str]:
    """Format UTC microseconds since the epoch as database text, vectorised."""
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    # Turn ISO 'YYYY-MM-DDTHH…' into 'YYYY-MM-DD HH…' in place: column 10 of the UCS-4 code units.
    text.view(np.uint32).reshape(-1, text.dtype.itemsize // 4)[:, 10] = ord(" ")
    return text.tolist()


class DemoGenerator:
    """Draws users, sessions and events from one generator, batch after batch of days."""

    def __init__(self, rng: np.random.Generator, days: list[dt.date], users: int, tz_name: str):
        self.rng = rng
        counts = role_counts(users)
        self.roles = np.repeat(np.arange(len(ROLES)), [counts[r] for r in ROLES])
        self.usernames = [f"{DEMO_PREFIX}{r}_{n:03d}" for r in ROLES for n in range(1, counts[r] + 1)]
        n = len(self.usernames)
        self.propensity = rng.lognormal(0.0, 0.45, n)
        # About a quarter of the users join during the period: the fleet grows.
        joins = rng.random(n) < 0.25
        joins[self.roles == 0] = False
        self.join_day = np.where(joins, rng.integers(0, len(days), n), 0)
        self.created_days_before = rng.integers(30, 400, n)
        self.office_ip = rng.integers(0, len(OFFICE_IPS), n)
        self.agents = np.array(DESKTOP_AGENTS + MOBILE_AGENTS, dtype=object)
        self.ip_table = np.array(OFFICE_IPS + MOBILE_IPS, dtype=object)
        mobile = (self.roles == 2) | (rng.random(n) < 0.1)
        self.agent = np.where(mobile, len(DESKTOP_AGENTS) + rng.integers(0, len(MOBILE_AGENTS), n),
                              rng.integers(0, len(DESKTOP_AGENTS), n))
        bounds = [local_day_bounds(day, tz_name) for day in days]
        self.day_start = np.array([int(s.timestamp()) * 1_000_000 for s, _ in bounds], dtype=np.int64)
        self.day_end = np.array([int(e.timestamp()) * 1_000_000 for _, e in bounds], dtype=np.int64)
        growth = np.linspace(0.85, 1.15, len(days))
        noise = rng.lognormal(0.0, 0.08, len(days))
        self.day_rate = np.array([day_factor(d) for d in days]) * growth * noise
        profiles = [PROFILES[r] for r in ROLES]
        self.sessions_per_day = np.array([p.sessions_per_day for p in profiles])
        self.extra_requests = np.array([p.requests_per_session - 1 for p in profiles])
        self.landing = np.array([PAGE_INDEX[p.landing] for p in profiles])
        weights = np.array([[p.page_weights.get(page[0], 0.0) for page in PAGES] for p in profiles])
        self.page_cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        self.admin_only = np.array([page[3] for page in PAGES])
        self.median_ms = np.array([page[2] for page in PAGES])
        self.page_paths = np.array([page[0] for page in PAGES], dtype=object)
        self.page_actions = np.array([page[1] for page in PAGES], dtype=object)
        self.role_names = np.array(ROLES, dtype=object)

    def user_columns(self) -> list[list]:
        """Return the users' columns (USER_COLUMNS): created long ago, or the afternoon before they join."""
        created = self.day_start[self.join_day] - 8 * 3_600_000_000
        created -= np.where(self.join_day == 0, self.created_days_before * 86_400_000_000, 0)
        return [
            self.usernames, [f"{name}@demo.invalid" for name in self.usernames],
            [UNUSABLE_PASSWORD_HASH] * len(self.usernames), [ROLES[r] for r in self.roles.tolist()],
            format_timestamps(created),
        ]

    def session_starts(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw the sessions of days [first, last): user, day index and start in UTC microseconds."""
        n_users, n_days = len(self.roles), last - first
        active = np.arange(first, last)[None, :] >= self.join_day[:, None]
        user_rate = self.sessions_per_day[self.roles] * self.propensity
        rate = user_rate[:, None] * self.day_rate[None, first:last]
        counts = self.rng.poisson(rate * active).ravel()
        cell = np.repeat(np.arange(n_users * n_days), counts)
        user, day = cell // n_days, first + cell % n_days
        hours = np.empty(len(cell))
        for r, role in enumerate(ROLES):
            mask = self.roles[user] == r
            modes = np.array(PROFILES[role].start_hours)
            pick = self.rng.choice(len(modes), size=int(mask.sum()), p=modes[:, 0] / modes[:, 0].sum())
            hours[mask] = self.rng.normal(modes[pick, 1], modes[pick, 2])
        start = self.day_start[day] + (np.mod(hours, 24.0) * 3_600_000_000).astype(np.int64)
        return user, day, start

    def batch(self, first: int, last: int, user_ids: np.ndarray) -> tuple[int, list[list]]:
        """Return the number of sessions and the columns (EVENT_COLUMNS) of the events of days
        [first, last), in time order; ``user_ids`` maps user indexes to database ids.
        """
        rng = self.rng
        user, day, start = self.session_starts(first, last)
        role = self.roles[user]
        n_requests = 1 + rng.poisson(self.extra_requests[role])
        ev_session = np.repeat(np.arange(len(user)), n_requests)
        first_event = np.cumsum(n_requests) - n_requests
        # Think times between requests: seconds to minutes, heavy-tailed, capped at 20 minutes.
        gaps = np.minimum(rng.lognormal(np.log(40.0), 1.1, len(ev_session)), 1200.0)
        gaps[first_event] = 0.0
        offsets = np.cumsum(gaps)
        offsets -= np.repeat(offsets[first_event], n_requests)
        ev_time = start[ev_session] + (offsets * 1_000_000).astype(np.int64)

        ev_role = role[ev_session]
        page = (rng.random(len(ev_session))[:, None] > self.page_cdf[ev_role]).sum(axis=1)
        page[first_event] = self.landing[role]
        luck = rng.random(len(ev_session))
        status = np.where(luck < 0.004, 404, np.where(luck < 0.006, 500, 200))
        status[self.admin_only[page] & (ev_role != 0)] = 403
        duration = rng.lognormal(np.log(self.median_ms[page]), 0.5) * np.where(status == 500, 4.0, 1.0)
        session_ip = np.where(role == 2, rng.integers(0, len(MOBILE_IPS), len(user)), -1)

        # A session that runs past midnight is cut there: every event lies inside its local day.
        keep = ev_time < self.day_end[day[ev_session]]
        kept_per_session = np.bincount(ev_session[keep], minlength=len(user))
        order = np.argsort(ev_time[keep], kind="stable")
        ev_session, ev_time = ev_session[keep][order], ev_time[keep][order]
        page, status, duration = page[keep][order], status[keep][order], duration[keep][order]

        live = kept_per_session > 0
        session_ids = np.full(len(user), None, dtype=object)
        raw = rng.bytes(32 * int(live.sum())).hex()
        session_ids[live] = [raw[i : i + 64] for i in range(0, len(raw), 64)]
        ips = self.ip_table[np.where(session_ip >= 0, len(OFFICE_IPS) + session_ip, self.office_ip[user])]
        agents = self.agents[self.agent[user]]

        events = [
            session_ids[ev_session].tolist(), user_ids[user[ev_session]].tolist(),
            self.role_names[role[ev_session]].tolist(), format_timestamps(ev_time),
            self.page_paths[page].tolist(), self.page_actions[page].tolist(), status.tolist(),
            np.round(duration, 3).tolist(), ips[ev_session].tolist(), agents[ev_session].tolist(),
        ]
        return int(live.sum()), events
