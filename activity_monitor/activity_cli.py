"""The ``flask activity …`` command group (never starts background jobs)."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from activity_monitor import api_tokens, db, event_spool
from activity_monitor.activity_trends_service import ActivityTrendsService
from activity_monitor.daily_summaries import DailySummaryProcessor, ProcessingReport, RawDataPurgedError
from activity_monitor.db import open_db
from activity_monitor.extension import now, today
from activity_monitor.retention import RetentionPolicy, RetentionPurge
from activity_monitor.timeutil import date_range
from activity_monitor.trends_cache import get_cache
from activity_monitor.trends_query import QueryError, parse_day, parse_metric_list, resolve_range

activity_cli = AppGroup("activity", help="Summaries, backfill, retention and trends of the activity monitor.")

DAY = click.DateTime(formats=["%Y-%m-%d"])


def format_days(days: list[dt.date]) -> str:
    """Return days as a short comma-separated list ('none' when empty)."""
    if not days:
        return "none"
    shown = ", ".join(day.isoformat() for day in days[:10])
    return shown if len(days) <= 10 else f"{shown} and {len(days) - 10} more"


@activity_cli.command("summarize")
@click.option("--date", "day", type=DAY, help="Local day YYYY-MM-DD (default: yesterday).")
def summarize_command(day: dt.datetime | None) -> None:
    """Compute one day's summary (today's is stored as partial)."""
    with DailySummaryProcessor.from_app(current_app, clock=now) as processor:
        target = day.date() if day else processor.today() - dt.timedelta(days=1)
        try:
            result = processor.summarize_day(target)
        except RawDataPurgedError as exc:
            raise click.ClickException(str(exc)) from exc
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--date") from exc
    metrics = result.metrics
    state = "partial" if result.is_partial else "final"
    click.echo(
        f"Summarized {target} ({state}{', was dirty' if result.was_dirty else ''}"
        f"{'' if result.changed else ', unchanged'}) in {result.seconds:.2f} s: "
        f"{metrics.total_events} events, {metrics.unique_users} users, {metrics.total_sessions} sessions, "
        f"{metrics.total_page_views} page views, {metrics.total_api_calls} API calls, "
        f"peak {metrics.peak_concurrent_users} concurrent users."
    )


@activity_cli.command("backfill")
@click.option(
    "--from", "start", type=DAY, help="First local day YYYY-MM-DD (default: first day with activity)."
)
@click.option("--to", "end", type=DAY, help="Last local day YYYY-MM-DD (default: yesterday).")
def backfill_command(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """Summarize every missing or dirty day, or exactly the days from --from to --to."""
    with DailySummaryProcessor.from_app(current_app, clock=now) as processor:
        if start is None and end is None:
            days = processor.missing_days()
        else:
            last = end.date() if end else processor.today() - dt.timedelta(days=1)
            first = start.date() if start else processor.first_activity_day() or last
            if first > last:
                raise click.BadParameter(f"--from {first} is after --to {last}.")
            if last > processor.today():
                raise click.BadParameter(f"{last} has not begun yet.", param_hint="--to")
            days = date_range(first, last)
        with click.progressbar(days, label="Summarizing days", show_pos=True) as bar:
            report = processor.process_days(days, progress=lambda _day: bar.update(1))
    echo_report(report)


def echo_report(report: ProcessingReport) -> None:
    """Print what a processing run did."""
    click.echo(
        f"Summarized {len(report.days)} day(s) in {report.seconds:.2f} s: {format_days(report.dates)}."
    )
    if report.dirty_dates:
        click.echo(f"Recomputed after late data: {format_days(report.dirty_dates)}.")
    if report.partial_dates:
        click.echo(f"Stored as partial (not over yet): {format_days(report.partial_dates)}.")
    if report.skipped_purged:
        click.echo(f"Skipped, raw events already purged: {format_days(report.skipped_purged)}.")


@activity_cli.command("purge")
def purge_command() -> None:
    """Delete raw events, summaries and audit rows past retention."""
    conn = open_db()
    try:
        report = RetentionPurge(conn, RetentionPolicy.from_config(current_app.config), clock=now).purge()
    finally:
        conn.close()
    kept = report.raw_kept_from.isoformat() if report.raw_kept_from else "the first event"
    click.echo(f"Deleted {report.raw_events_deleted} raw event(s); raw events are kept from {kept}.")
    if report.raw_held_back_from:
        click.echo(
            f"Kept raw events from {report.raw_held_back_from} on past retention: "
            "that day has no final summary yet (run `flask activity backfill`)."
        )
    click.echo(
        f"Deleted {report.summaries_deleted} summary row(s) and {report.audit_rows_deleted} audit row(s) "
        f"in {report.seconds:.2f} s."
    )


@activity_cli.command("trends")
@click.option("--from", "start", help="First local day YYYY-MM-DD (default: 30 days before --to).")
@click.option("--to", "end", help="Last local day YYYY-MM-DD, not after today (default: yesterday).")
@click.option("--metrics", help="Comma list of metrics (default: all six).")
def trends_command(start: str | None, end: str | None, metrics: str | None) -> None:
    """Print the trends data object as JSON, exactly as the API's trends endpoint computes it."""
    config = current_app.config
    try:
        first, last = resolve_range(
            parse_day("--from", start),
            parse_day("--to", end),
            today(),
            config["ACTIVITY_MAX_RANGE_DAYS"],
            names=("--from", "--to"),
        )
        wanted = parse_metric_list(metrics, "--metrics")
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    conn = open_db()
    try:
        service = ActivityTrendsService(
            conn, config["ACTIVITY_TIMEZONE"], cache=get_cache(), cache_ttl=config["ACTIVITY_CACHE_TTL"]
        )
        payload = service.trends_payload(first, last, wanted)
    finally:
        conn.close()
    click.echo(payload.body.decode())


@activity_cli.command("replay-spool")
def replay_spool_command() -> None:
    """Replay the spool files of ended processes (any host's) into the database; exit 1 when rows remain."""
    folder = event_spool.get_spool(current_app).folder
    try:
        result = event_spool.replay_pending(current_app)
    except OSError as exc:
        raise click.ClickException(f"The spool folder {folder} could not be read: {exc}.") from exc
    if result["error"] is not None:
        click.echo(
            f"The database did not take the spooled rows ({result['error']}); they wait in {folder} "
            f"after {result['replayed']} row(s) were written. Run it again once the database takes writes.",
            err=True,
        )
        raise click.exceptions.Exit(1)
    click.echo(
        f"Replayed {result['replayed']} row(s) from {result['files_replayed']} spool file(s) of ended "
        f"processes in {folder} ({result['duplicates']} written before, {result['torn']} torn line(s) "
        f"and {result['rejected']} rejected row(s) skipped); {result['files_of_live_processes']} "
        "file(s) belong to running processes, which replay their own."
    )


activity_cli.add_command(db.migrate_command)
for command in api_tokens.COMMANDS:
    activity_cli.add_command(command)


def init_app(app: Flask) -> None:
    """Register the ``activity`` command group."""
    app.cli.add_command(activity_cli)
