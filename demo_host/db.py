"""The demo host's own SQLite connection and schema (its users and login throttle).

The host keeps its tables in the same file as the monitor (``DATABASE``, passed to
the monitor as ACTIVITY_DATABASE), but owns them: the monitor never reads them, and
this module never touches the monitor's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask, current_app, g

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "migrations"
BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    """Open a connection in autocommit mode, rows as sqlite3.Row."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def get_db() -> sqlite3.Connection:
    """Return this request's connection to the host's database."""
    if "fleet_db" not in g:
        # When the last connection to a file closes, SQLite checkpoints the WAL and deletes it,
        # and the next commit must create it again: one idle connection, opened by the first
        # request (not by CLI commands, whose bulk loads want to be the only connection), avoids
        # that cost on every request.
        if "fleet_db_keeper" not in current_app.extensions:
            current_app.extensions["fleet_db_keeper"] = connect(current_app.config["DATABASE"])
        g.fleet_db = connect(current_app.config["DATABASE"])
    return g.fleet_db


def close_db(_exc: BaseException | None = None) -> None:
    """Close this request's connection, if one was opened."""
    conn = g.pop("fleet_db", None)
    if conn is not None:
        conn.close()


def apply_schema(path: str) -> None:
    """Create the host's tables in one transaction (every statement is IF NOT EXISTS, so
    reruns change nothing; a failure leaves the transaction open and closing rolls it back)."""
    scripts = "\n".join(script.read_text() for script in sorted(SCHEMA_DIR.glob("*.sql")))
    conn = connect(path)
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{scripts}\nCOMMIT;")
    finally:
        conn.close()


def init_app(app: Flask) -> None:
    """Create the schema and close the request's connection at teardown."""
    apply_schema(app.config["DATABASE"])
    app.teardown_appcontext(close_db)
