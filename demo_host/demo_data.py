"""Seed the demo host with deterministic demo users and activity, fast.

:func:`seed_demo` writes what :mod:`demo_traffic` draws: demo users (``demo_driver_017``,
with a password hash nobody can log in with) into the host's users table, then one
event per request through the monitor's public bulk import
(:func:`activity_monitor.bulk_import_events`). ``flask seed-demo`` seeds the days
ending yesterday.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import click
import numpy as np
from flask import Flask, current_app
from flask.cli import with_appcontext

from activity_monitor import bulk_import_events, today
from demo_host.db import connect
from demo_host.demo_traffic import DEMO_PREFIX, USER_COLUMNS, DemoGenerator

DEMO_LIKE = DEMO_PREFIX.replace("_", "\\_") + "%"  # demo usernames as a LIKE pattern, ESCAPE '\\'
# Days drawn and inserted per batch: bounds memory, and lets drawing overlap inserting.
DAYS_PER_BATCH = 16


class DemoDataExists(Exception):
    """Raised when the database already holds demo users, so seeding would duplicate them."""


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_demo` inserted and how fast."""

    users: int
    sessions: int
    events: int
    first_day: dt.date
    last_day: dt.date
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Return the insert rate over the whole run (generation included)."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def existing_demo_users(conn: sqlite3.Connection) -> int:
    """Return how many demo users the database holds."""
    return conn.execute(
        "SELECT count(*) FROM users WHERE username LIKE ? ESCAPE '\\'", (DEMO_LIKE,)
    ).fetchone()[0]


def seed_demo(
    app: Flask,
    *,
    days: int = 365,
    users: int = 150,
    seed: int = 0,
    end_day: dt.date | None = None,
    tz_name: str | None = None,
) -> SeedReport:
    """Insert demo users and activity for the ``days`` local days (in ``tz_name``, by default
    ACTIVITY_TIMEZONE) ending on ``end_day`` (by default yesterday by the app's clock).

    The users go in first, in one transaction of the host's; the events then in one
    bulk-load transaction of the monitor's. When the events fail, the users are
    deleted again, so a failed seed leaves nothing behind. Raises :class:`DemoDataExists`
    when demo users are already there, ValueError for fewer than 4 users or 1 day.
    """
    if days < 1:
        raise ValueError(f"Seed at least one day (got {days}).")
    started = time.perf_counter()
    tz_name = tz_name or app.config["ACTIVITY_TIMEZONE"]
    end_day = end_day or today(app) - dt.timedelta(days=1)
    day_list = [end_day - dt.timedelta(days=days - 1 - i) for i in range(days)]
    gen = DemoGenerator(np.random.default_rng(seed), day_list, users, tz_name)
    user_ids = insert_demo_users(app, gen)
    n_sessions = n_events = 0
    try:
        # The next batch is drawn in a thread while this one is inserted (sqlite3 releases
        # the GIL while it works); batches are still drawn in order, so rows stay deterministic.
        with bulk_import_events(app) as load, ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(gen.batch, 0, min(DAYS_PER_BATCH, days), user_ids)
            for first in range(DAYS_PER_BATCH, days + DAYS_PER_BATCH, DAYS_PER_BATCH):
                sessions, events = pending.result()
                if first < days:
                    pending = pool.submit(gen.batch, first, min(first + DAYS_PER_BATCH, days), user_ids)
                n_sessions += sessions
                n_events += load.add_columns(events)
    except BaseException:
        delete_demo_users(app, user_ids)
        raise
    return SeedReport(
        len(user_ids), n_sessions, n_events, day_list[0], day_list[-1], time.perf_counter() - started
    )


def insert_demo_users(app: Flask, gen: DemoGenerator) -> np.ndarray:
    """Insert the generator's users in one transaction; return their ids in the generator's order."""
    conn = connect(app.config["DATABASE"])
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = existing_demo_users(conn)
            if found:
                raise DemoDataExists(f"The database already holds {found} demo users ({DEMO_PREFIX}…).")
            names, columns = USER_COLUMNS, gen.user_columns()
            conn.executemany(
                f"INSERT INTO users ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                list(zip(*columns, strict=True)),
            )
            ids = dict(
                conn.execute("SELECT username, id FROM users WHERE username LIKE ? ESCAPE '\\'", (DEMO_LIKE,))
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
    return np.array([ids[name] for name in gen.usernames], dtype=np.int64)


def delete_demo_users(app: Flask, user_ids: np.ndarray) -> None:
    """Delete the demo users a failed seed inserted."""
    conn = connect(app.config["DATABASE"])
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("DELETE FROM users WHERE id = ?", [(int(i),) for i in user_ids])
        conn.execute("COMMIT")
    finally:
        conn.close()


@click.command("seed-demo")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=365,
    show_default=True,
    help="Complete local days to seed, ending yesterday.",
)
@click.option(
    "--users",
    type=click.IntRange(min=4),
    default=150,
    show_default=True,
    help="Demo users across the four roles.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same rows.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already holds demo users.")
@with_appcontext
def seed_demo_command(days: int, users: int, seed: int, if_empty: bool) -> None:
    """Fill the database with realistic demo users, sessions and activity."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    tz_name = app.config["ACTIVITY_TIMEZONE"]
    skipped = "The database already holds demo data; no demo data seeded."
    if if_empty:
        conn = connect(app.config["DATABASE"])
        try:
            found = existing_demo_users(conn)
        finally:
            conn.close()
        if found:
            click.echo(skipped)
            return
    try:
        report = seed_demo(app, days=days, users=users, seed=seed, tz_name=tz_name)
    except DemoDataExists as exc:
        if if_empty:  # another process seeded between the check and the insert
            click.echo(skipped)
            return
        raise click.ClickException(
            f"{exc} Seed a fresh database instead, e.g. "
            "FLASK_DATABASE=instance/demo.sqlite3 flask --app app seed-demo."
        ) from exc
    click.echo(
        f"Seeded {report.users} demo users and {report.events:,} events in {report.sessions:,} sessions "
        f"for {report.first_day} to {report.last_day} ({tz_name}) in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s)."
    )


def init_app(app: Flask) -> None:
    """Register the ``seed-demo`` command."""
    app.cli.add_command(seed_demo_command)
