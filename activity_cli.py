"""The ``flask --app app activity …`` command group (never starts background jobs)."""

from __future__ import annotations

from flask import Flask
from flask.cli import AppGroup

activity_cli = AppGroup("activity", help="Summaries, backfill, retention and trends of the activity monitor.")


def init_app(app: Flask) -> None:
    """Register the ``activity`` command group."""
    app.cli.add_command(activity_cli)
