"""Benchmark the foundation: what activity tracking adds to a request, and how fast demo data seeds.

Run from anywhere: ``python bench/bench_foundation.py [--rounds 30] [--per-round 50]``.
Targets: tracking adds at most 15 % to the median latency of a trivial page, and
``seed_demo`` inserts at least 200,000 events a second. Both are measured with the
monitor's database on SQLite and, in the same run, on PostgreSQL (see backends.py; the
host's users stay in a SQLite file either way), and printed side by side at the end.
Exits 1 when a target is missed.

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

from backends import SQLITE, BenchDatabases, add_backends_option, label  # noqa: E402
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


def logged_in_client(
    workdir: Path, tracking: bool, monitor_database: str | None = None
) -> tuple[Flask, FlaskClient]:
    """Build an app on its own host database (the monitor's too, unless ``monitor_database``
    names another), create a user and log the client in."""
    path = workdir / f"tracking_{'on' if tracking else 'off'}.sqlite3"
    app = create_app(
        {
            "DATABASE": str(path),
            "ACTIVITY_DATABASE": monitor_database or str(path),
            "SECRET_KEY": "x",
            "TESTING": True,
            "ACTIVITY_TRACKING_ENABLED": tracking,
        }
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
    workdir: Path,
    monitor_database: str | None,
    path: str,
    rounds: int,
    per_round: int,
    warmup: int,
    hold_connection: bool,
) -> float:
    """Print the median latency with tracking on and off and their ratio; return the ratio.

    ``monitor_database`` is the tracked app's ACTIVITY_DATABASE (None: the host's SQLite file)."""
    apps = {tracking: logged_in_client(workdir, tracking, monitor_database) for tracking in (True, False)}
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
    for app, _ in apps.values():
        app.extensions["activity_monitor"].storage.close()
    title = f"GET {path}" + (" (idle connection held open)" if hold_connection else "")
    print(
        f"{title}: median {on:.3f} ms tracking on, {off:.3f} ms off, ratio {ratio:.3f} ({verdict}); "
        f"per-round ratios: quartiles {low:.3f}-{high:.3f}, range {min(round_ratios):.3f}-"
        f"{max(round_ratios):.3f} over {rounds} rounds of {per_round}"
    )
    return ratio


def profile_tracking(workdir: Path, monitor_database: str | None, path: str, count: int) -> None:
    """Print where a tracked request spends its time (top functions by cumulative time)."""
    app, client = logged_in_client(workdir, True, monitor_database)
    timed_requests(client, path, 50)
    profiler = cProfile.Profile()
    profiler.enable()
    timed_requests(client, path, count)
    profiler.disable()
    app.extensions["activity_monitor"].storage.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


def measure_seeding(workdir: Path, monitor_databases: list[str | None], days: int, users: int) -> float:
    """Seed each fresh database in turn; print and return the median events per second."""
    rates = []
    for run, monitor_database in enumerate(monitor_databases):
        path = workdir / f"seed_{run}.sqlite3"
        app = create_app(
            {
                "DATABASE": str(path),
                "ACTIVITY_DATABASE": monitor_database or str(path),
                "SECRET_KEY": "x",
                "ACTIVITY_BACKGROUND_TASKS": False,
            }
        )
        report = demo_data.seed_demo(app, days=days, users=users, end_day=SEED_END_DAY)
        app.extensions["activity_monitor"].storage.close()
        for leftover in workdir.glob(f"seed_{run}.sqlite3*"):
            leftover.unlink()
        rates.append(report.events_per_second)
    rate = statistics.median(rates)
    verdict = "ok" if rate >= SEED_TARGET else f"UNDER the {SEED_TARGET:,} target"
    print(
        f"seed_demo {users} users x {days} days: {report.events:,} events, {report.sessions:,} sessions; "
        f"median {rate:,.0f} events/s ({verdict}), range {min(rates):,.0f}-{max(rates):,.0f} "
        f"over {len(rates)} runs"
    )
    return rate


def main() -> int:
    """Run both measurements on temporary databases, on each backend; return 1 when a target is missed."""
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
    add_backends_option(parser)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_foundation_"))
    ratios: dict[tuple[str, str], float] = {}
    rates: dict[str, float] = {}
    try:
        with BenchDatabases(workdir, args.backends) as databases:

            def monitor_database(backend: str) -> str | None:
                # On SQLite the monitor shares the host's file, as the demo host does by default.
                return None if backend == SQLITE else databases.new(backend, "monitor")

            for backend in databases.backends:
                print(f"-- monitor database on {label(backend)}")
                for number, path in enumerate(args.paths):
                    for hold in (False, True) if args.hold_connection else (False,):
                        folder = workdir / backend / str(number) / str(hold)
                        folder.mkdir(parents=True)
                        ratio = measure_tracking(
                            folder, monitor_database(backend), path, args.rounds, args.per_round,
                            args.warmup, hold,
                        )
                        ratios[(backend, path + (" (held)" if hold else ""))] = ratio
                    if args.profile:
                        folder = workdir / backend / str(number) / "profile"
                        folder.mkdir(parents=True)
                        count = args.rounds * args.per_round
                        profile_tracking(folder, monitor_database(backend), path, count)
                if not args.skip_seed:
                    rates[backend] = measure_seeding(
                        workdir, [monitor_database(backend) for _ in range(args.seed_runs)], args.days,
                        args.users,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return print_side_by_side(ratios, rates)


def print_side_by_side(ratios: dict[tuple[str, str], float], rates: dict[str, float]) -> int:
    """Print each figure per backend in one table; return 1 when one misses its target."""
    backends = list(dict.fromkeys([backend for backend, _ in ratios] + list(rates)))
    pages = list(dict.fromkeys(page for _, page in ratios))
    print(f"\n{'':<44}" + "".join(f"{label(backend):>14}" for backend in backends))
    missed = False
    for page in pages:
        cells = ""
        for backend in backends:
            ratio = ratios[(backend, page)]
            missed |= ratio > TRACKING_TARGET
            cells += f"{f'{ratio:.3f}' + ('' if ratio <= TRACKING_TARGET else '!'):>14}"
        print(f"{'tracking on / off, GET ' + page:<44}{cells}   target <= {TRACKING_TARGET}")
    if rates:
        cells = ""
        for backend in backends:
            missed |= rates[backend] < SEED_TARGET
            cells += f"{f'{rates[backend]:,.0f}' + ('' if rates[backend] >= SEED_TARGET else '!'):>14}"
        print(f"{'seed_demo events/s':<44}{cells}   target >= {SEED_TARGET:,}")
    if missed:
        print("(! misses its target)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
