"""Seed a database with deterministic demo users, sessions and activity, fast.

:func:`seed_demo` writes what :mod:`demo_traffic` draws: demo users (``demo_driver_017``,
with a password hash nobody can log in with), their sessions and one
``user_activity_log`` row per request, through ordinary multi-row INSERTs in one
transaction. ``flask --app app seed-demo`` seeds the days ending yesterday.
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

from db import bulk_load_journal, connect, transaction
from demo_traffic import DEMO_PREFIX, EVENT_COLUMNS, SESSION_COLUMNS, USER_COLUMNS, DemoGenerator
from late_data import late_data_triggers_suspended
from timeutil import local_day_bounds_text, local_today

DEMO_LIKE = DEMO_PREFIX.replace("_", "\\_") + "%"  # demo usernames as a LIKE pattern, ESCAPE '\\'
# Days drawn and inserted per batch: bounds memory, and lets drawing overlap inserting.
DAYS_PER_BATCH = 16
# Rows per multi-row INSERT: one statement step per many rows is ~1.5x faster than executemany per row.
ROWS_PER_STATEMENT = 100
# Page cache (KiB) of the seeding connection while it seeds.
SEED_CACHE_KIB = 64 * 1024


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


@dataclass(frozen=True)
class PreparedRows:
    """Rows of one table flattened into the parameters of multi-row INSERTs."""

    table: str
    names: tuple[str, ...]
    count: int
    chunks: list[list]  # parameters of the statements of ROWS_PER_STATEMENT rows
    rest: list  # parameters of one shorter last statement (may be empty)

    @classmethod
    def from_columns(cls, table: str, names: tuple[str, ...], columns: list[list]) -> PreparedRows:
        """Flatten rows given column by column."""
        width, count = len(names), len(columns[0])
        flat: list = [None] * (width * count)
        for i, column in enumerate(columns):
            flat[i::width] = column
        step = width * ROWS_PER_STATEMENT
        full = count // ROWS_PER_STATEMENT * step
        return cls(table, names, count, [flat[i : i + step] for i in range(0, full, step)], flat[full:])


def insert_rows(conn: sqlite3.Connection, rows: PreparedRows) -> int:
    """Run the INSERTs of prepared rows; return the number of rows."""
    head = f"INSERT INTO {rows.table} ({', '.join(rows.names)}) VALUES "
    row = "(" + ", ".join("?" * len(rows.names)) + ")"
    conn.executemany(head + ", ".join([row] * ROWS_PER_STATEMENT), rows.chunks)
    if rows.rest:
        conn.execute(head + ", ".join([row] * (len(rows.rest) // len(rows.names))), rows.rest)
    return rows.count


def seed_demo(
    conn: sqlite3.Connection,
    *,
    days: int = 365,
    users: int = 150,
    seed: int = 0,
    end_day: dt.date,
    tz_name: str = "UTC",
    session_hours: int = 8,
) -> SeedReport:
    """Insert demo users, sessions and activity for the ``days`` local days ending on ``end_day``.

    One transaction: all or nothing, and other writers wait for it (a few seconds for
    the default size). It loads in bulk: through a rollback journal when no other
    connection is open, and without the per-row late-data triggers (days it touches
    that already had final summaries are marked dirty at the end instead). Raises
    :class:`DemoDataExists` when demo users are already there, ValueError for fewer
    than 4 users or 1 day.
    """
    if days < 1:
        raise ValueError(f"Seed at least one day (got {days}).")
    started = time.perf_counter()
    day_list = [end_day - dt.timedelta(days=days - 1 - i) for i in range(days)]
    gen = DemoGenerator(np.random.default_rng(seed), day_list, users, tz_name, session_hours)
    n_sessions = n_events = 0

    def prepare(first: int) -> tuple[PreparedRows, PreparedRows]:
        sessions, events = gen.batch(first, min(first + DAYS_PER_BATCH, days), user_ids)
        return (PreparedRows.from_columns("sessions", SESSION_COLUMNS, sessions),
                PreparedRows.from_columns("user_activity_log", EVENT_COLUMNS, events))

    first_utc, _ = local_day_bounds_text(day_list[0], tz_name)
    _, end_utc = local_day_bounds_text(day_list[-1], tz_name)
    with bulk_load_journal(conn), transaction(conn), late_data_triggers_suspended(conn, first_utc, end_utc):
        found = existing_demo_users(conn)
        if found:
            raise DemoDataExists(f"The database already holds {found} demo users ({DEMO_PREFIX}…).")
        insert_rows(conn, PreparedRows.from_columns("users", USER_COLUMNS, gen.user_columns()))
        ids = dict(conn.execute("SELECT username, id FROM users WHERE username LIKE ? ESCAPE '\\'",
                                (DEMO_LIKE,)))
        user_ids = np.array([ids[name] for name in gen.usernames], dtype=np.int64)
        cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
        # Session ids are random, so their index is written all over: keep it in memory.
        conn.execute(f"PRAGMA cache_size=-{SEED_CACHE_KIB}")
        try:
            # The next batch is drawn in a thread while this one is inserted (sqlite3 releases
            # the GIL while it works); batches are still drawn in order, so rows stay deterministic.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(prepare, 0)
                for first in range(DAYS_PER_BATCH, days + DAYS_PER_BATCH, DAYS_PER_BATCH):
                    sessions, events = pending.result()
                    if first < days:
                        pending = pool.submit(prepare, first)
                    n_sessions += insert_rows(conn, sessions)
                    n_events += insert_rows(conn, events)
        finally:
            conn.execute(f"PRAGMA cache_size={int(cache_size)}")
        conn.execute(
            """
            UPDATE users
            SET last_login = (SELECT max(created_at) FROM sessions WHERE sessions.user_id = users.id)
            WHERE username LIKE ? ESCAPE '\\'
            """,
            (DEMO_LIKE,),
        )
    return SeedReport(len(user_ids), n_sessions, n_events, day_list[0], day_list[-1],
                      time.perf_counter() - started)


@click.command("seed-demo")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True,
              help="Complete local days to seed, ending yesterday.")
@click.option("--users", type=click.IntRange(min=4), default=150, show_default=True,
              help="Demo users across the four roles.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same rows.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already holds activity.")
@with_appcontext
def seed_demo_command(days: int, users: int, seed: int, if_empty: bool) -> None:
    """Fill the database with realistic demo users, sessions and activity."""
    config = current_app.config
    tz_name = config["ACTIVITY_TIMEZONE"]
    end_day = local_today(tz_name) - dt.timedelta(days=1)
    conn = connect(config["DATABASE"])
    try:
        if if_empty and conn.execute("SELECT 1 FROM user_activity_log LIMIT 1").fetchone():
            click.echo("The database already holds activity; no demo data seeded.")
            return
        report = seed_demo(conn, days=days, users=users, seed=seed, end_day=end_day, tz_name=tz_name,
                           session_hours=config["SESSION_LIFETIME_HOURS"])
    except DemoDataExists as exc:
        raise click.ClickException(
            f"{exc} Seed a fresh database instead, e.g. "
            "FLASK_DATABASE=instance/demo.sqlite3 flask --app app seed-demo."
        ) from exc
    finally:
        conn.close()
    click.echo(
        f"Seeded {report.users} demo users, {report.sessions:,} sessions and {report.events:,} events "
        f"for {report.first_day} to {report.last_day} ({tz_name}) in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s)."
    )


def init_app(app: Flask) -> None:
    """Register the ``seed-demo`` command."""
    app.cli.add_command(seed_demo_command)
