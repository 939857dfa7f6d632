"""Benchmark the foundation: what activity tracking adds to a request, and how fast demo data seeds.

Run from anywhere: ``python bench/bench_foundation.py [--rounds 30] [--per-round 50]``.
Targets: tracking adds at most 15 % to the median latency of a trivial page, and
``seed_demo`` inserts at least 200,000 events a second.

The demo host opens its own connection per request (Flask-Login loads the user with it).
With tracking on, the monitor's long-lived append connection keeps the file open, so that
connection is cheaper than with tracking off, where it is the only one and its close
checkpoints and deletes the WAL. ``--hold-connection`` also measures with an idle
connection held open for both apps, which leaves only what the monitor adds.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from activity_monitor import db  # noqa: E402
from app import create_app  # noqa: E402
from demo_host import auth, demo_data  # noqa: E402
from demo_host import db as host_db  # noqa: E402

USERNAME, PASSWORD = "bench_driver", "bench-password-1"
TRACKING_TARGET = 1.15
SEED_TARGET = 200_000
# The last seeded day: fixed, so every run seeds the same rows whatever the date.
SEED_END_DAY = dt.date(2026, 5, 19)


def logged_in_client(workdir: Path, tracking: bool) -> tuple[Flask, FlaskClient]:
    """Build an app on its own database, create a user and log the client in."""
    path = workdir / f"tracking_{'on' if tracking else 'off'}.sqlite3"
    app = create_app(
        {"DATABASE": str(path), "SECRET_KEY": "x", "TESTING": True, "ACTIVITY_TRACKING_ENABLED": tracking}
    )
    conn = host_db.connect(str(path))
    try:
        auth.create_user(conn, USERNAME, PASSWORD, "driver")
    finally:
        conn.close()
    client = app.test_client()
    response = client.post("/api/auth/login", json={"username": USERNAME, "password": PASSWORD})
    if response.status_code != 200:
        raise SystemExit(f"Login failed with {response.status_code}: {response.get_data(as_text=True)}")
    return app, client


def timed_requests(client: FlaskClient, path: str, count: int) -> list[float]:
    """GET a path ``count`` times; return each latency in milliseconds."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}.")
    return latencies


def measure_tracking(
    workdir: Path, path: str, rounds: int, per_round: int, warmup: int, hold_connection: bool
) -> float:
    """Print the median latency with tracking on and off and their ratio; return the ratio."""
    apps = {tracking: logged_in_client(workdir, tracking) for tracking in (True, False)}
    clients = {tracking: client for tracking, (_, client) in apps.items()}
    # SQLite checkpoints and deletes the WAL when the last connection to a database closes;
    # an idle connection held open shows what that costs each request.
    held = [db.connect(app.config["DATABASE"]) for app, _ in apps.values()] if hold_connection else []
    for client in clients.values():
        timed_requests(client, path, warmup)
    samples: dict[bool, list[float]] = {True: [], False: []}
    round_ratios = []
    for round_number in range(rounds):
        # Alternate which app goes first, so drifts in machine load hit both alike.
        order = (True, False) if round_number % 2 == 0 else (False, True)
        this_round = {tracking: timed_requests(clients[tracking], path, per_round) for tracking in order}
        for tracking, latencies in this_round.items():
            samples[tracking].extend(latencies)
        round_ratios.append(statistics.median(this_round[True]) / statistics.median(this_round[False]))
    on, off = statistics.median(samples[True]), statistics.median(samples[False])
    ratio = on / off
    low, high = statistics.quantiles(round_ratios, n=4)[0], statistics.quantiles(round_ratios, n=4)[2]
    verdict = "ok" if ratio <= TRACKING_TARGET else f"OVER the {TRACKING_TARGET:.2f} target"
    for conn in held:
        conn.close()
    label = f"GET {path}" + (" (idle connection held open)" if hold_connection else "")
    print(
        f"{label}: median {on:.3f} ms tracking on, {off:.3f} ms off, ratio {ratio:.3f} ({verdict}); "
        f"per-round ratios: quartiles {low:.3f}-{high:.3f}, range {min(round_ratios):.3f}-"
        f"{max(round_ratios):.3f} over {rounds} rounds of {per_round}"
    )
    return ratio


def profile_tracking(workdir: Path, path: str, count: int) -> None:
    """Print where a tracked request spends its time (top functions by cumulative time)."""
    _, client = logged_in_client(workdir / "profile", True)
    timed_requests(client, path, 50)
    profiler = cProfile.Profile()
    profiler.enable()
    timed_requests(client, path, count)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


def measure_seeding(workdir: Path, days: int, users: int, runs: int) -> float:
    """Seed fresh databases ``runs`` times; print and return the median events per second."""
    rates = []
    for run in range(runs):
        path = workdir / f"seed_{run}.sqlite3"
        app = create_app({"DATABASE": str(path), "SECRET_KEY": "x", "ACTIVITY_BACKGROUND_TASKS": False})
        report = demo_data.seed_demo(app, days=days, users=users, end_day=SEED_END_DAY)
        for leftover in workdir.glob(f"seed_{run}.sqlite3*"):
            leftover.unlink()
        rates.append(report.events_per_second)
    rate = statistics.median(rates)
    verdict = "ok" if rate >= SEED_TARGET else f"UNDER the {SEED_TARGET:,} target"
    print(
        f"seed_demo {users} users x {days} days: {report.events:,} events, {report.sessions:,} sessions; "
        f"median {rate:,.0f} events/s ({verdict}), range {min(rates):,.0f}-{max(rates):,.0f} over {runs} runs"
    )
    return rate


def main() -> None:
    """Run both measurements on temporary databases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=["/api/devices", "/routes"], help="Pages to time.")
    parser.add_argument("--rounds", type=int, default=30, help="Interleaved rounds per page.")
    parser.add_argument("--per-round", type=int, default=50, help="Requests per app per round.")
    parser.add_argument("--warmup", type=int, default=200, help="Untimed requests per app first.")
    parser.add_argument("--profile", action="store_true", help="Profile tracked requests as well.")
    parser.add_argument(
        "--hold-connection", action="store_true", help="Also measure with an idle connection held open."
    )
    parser.add_argument("--days", type=int, default=365, help="Days seed_demo seeds.")
    parser.add_argument("--users", type=int, default=150, help="Users seed_demo seeds.")
    parser.add_argument("--seed-runs", type=int, default=3, help="seed_demo runs (median reported).")
    parser.add_argument("--skip-seed", action="store_true", help="Only measure tracking.")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_foundation_"))
    try:
        for number, path in enumerate(args.paths):
            for hold in (False, True) if args.hold_connection else (False,):
                (workdir / str(number) / str(hold)).mkdir(parents=True)
                measure_tracking(workdir / str(number) / str(hold), path, args.rounds, args.per_round,
                                 args.warmup, hold)
            if args.profile:
                (workdir / str(number) / "profile").mkdir(parents=True)
                profile_tracking(workdir / str(number), path, args.rounds * args.per_round)
        if not args.skip_seed:
            measure_seeding(workdir, args.days, args.users, args.seed_runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
