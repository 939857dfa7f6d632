"""Freshness delays through real gunicorn: how long a new event takes to show in /trends.

Run from anywhere: ``python bench/bench_freshness.py [--refresh S] [--trials N]``. For each backend
(SQLite, and PostgreSQL in the same run, see backends.py) it starts gunicorn with 2 workers, the
background jobs on, ``ACTIVITY_REFRESH_SECONDS=S`` (default 2) and a 1-second scheduler tick, on
the system clock, and measures two delays ``N`` times each (default 5), at random phases of the
refresh:

- *today*: from a tracked page view's answer until ``/trends?end_date=today`` counts it
  (``total_page_views`` of today's partial row);
- *late*: from the commit of an event written straight into ``user_activity_log`` for a past,
  summarized day (as an import or a late writer would) until ``/trends`` for that day counts it.

Both poll the cached endpoint every 50 ms (no ``cache_bypass``): the answer changes only because
the data version moved. Prints each delay in seconds and as a multiple of the refresh interval; the
bound is one interval plus one tick plus the refresh's own time. No target: the figures are for
the record (exit 1 only when a delay runs past the timeout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from backends import SQLITE, BenchDatabases, add_backends_option, label  # noqa: E402

from activity_monitor.daily_summaries import DailySummaryProcessor  # noqa: E402
from activity_monitor.db import connect  # noqa: E402
from activity_monitor.timeutil import to_db_timestamp, utc_now  # noqa: E402
from app import create_app  # noqa: E402
from demo_host import db as host_db  # noqa: E402
from demo_host.auth import create_user  # noqa: E402
from host_cluster import free_port, stop_process_group  # noqa: E402

USERNAME, PASSWORD = "bench-admin", "bench password"
TICK_SECONDS = 1
POLL_SECONDS = 0.05
# Days before today of the summarized past day the late events land in.
LATE_DAY_OFFSET = 3
METRIC = "total_page_views"


def prepare(host_database: str, monitor_database: str, spool_folder: str, late_day: dt.date) -> None:
    """Migrate new databases, give the late day one event and its final row, create the admin."""
    app = create_app(
        {
            "DATABASE": host_database,
            "ACTIVITY_DATABASE": monitor_database,
            "ACTIVITY_SPOOL_FOLDER": spool_folder,
            "SECRET_KEY": "bench",
            "ACTIVITY_BACKGROUND_TASKS": False,
        }
    )
    app.extensions["activity_monitor"].storage.close()
    insert_event(monitor_database, dt.datetime.combine(late_day, dt.time(9), tzinfo=dt.UTC))
    conn = connect(monitor_database)
    try:
        DailySummaryProcessor(conn, "UTC", 5).summarize_day(late_day)
    finally:
        conn.close()
    conn = host_db.connect(host_database)
    try:
        create_user(conn, USERNAME, PASSWORD, "admin")
    finally:
        conn.close()


def insert_event(database: str, moment: dt.datetime) -> None:
    """Write one page view straight into the monitor's log (committed on return)."""
    conn = connect(database)
    try:
        conn.execute(
            """
            INSERT INTO user_activity_log (session_id, user_id, role, timestamp, page_url, action_type)
            VALUES ('bench-late', 9999, 'driver', ?, '/late', 'page_view')
            """,
            (to_db_timestamp(moment),),
        )
    finally:
        conn.close()


class Server:
    """gunicorn with 2 workers and the background jobs on, in its own process group."""

    def __init__(
        self, host_database: str, monitor_database: str, spool_folder: str, refresh: int, log_path: Path
    ):
        self.port = free_port()
        env = {
            **os.environ,
            "FLASK_DATABASE": host_database,
            "FLASK_ACTIVITY_DATABASE": monitor_database,
            # In the run's temporary folder, not the repository's instance folder.
            "FLASK_ACTIVITY_SPOOL_FOLDER": spool_folder,
            "FLASK_SECRET_KEY": "bench-secret",
            "FLASK_ACTIVITY_RATE_LIMIT": "100000000 per minute",
            "FLASK_ACTIVITY_BACKGROUND_TASKS": "true",
            "FLASK_ACTIVITY_REFRESH_SECONDS": str(refresh),
            "FLASK_ACTIVITY_SCHEDULER_TICK_SECONDS": str(TICK_SECONDS),
            "GUNICORN_WORKERS": "2",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_LOGLEVEL": "warning",
        }
        for key in (
            "FLASK_ACTIVITY_CACHE_URL",
            "FLASK_ACTIVITY_REDIS_URL",
            "FLASK_ACTIVITY_RATELIMIT_STORAGE_URL",
        ):
            env.pop(key, None)
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
        ]
        self.process = subprocess.Popen(
            [*command, "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.cookie = ""

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """Send one request with the admin's cookie; return (status, body)."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, payload, headers)
            response = conn.getresponse()
            data = response.read()
            if response.getheader("Set-Cookie"):
                self.cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
            return response.status, data
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until /healthz answers, then log the admin in."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gunicorn did not answer /healthz in time")
        status, _ = self.request("POST", "/api/auth/login", {"username": USERNAME, "password": PASSWORD})
        if status != 200:
            raise RuntimeError(f"the bench admin could not log in ({status})")

    def value(self, day: dt.date) -> int:
        """Return the day's total_page_views as /trends (cache allowed) answers it."""
        status, body = self.request(
            "GET", f"/api/admin/activity/trends?start_date={day}&end_date={day}&metrics={METRIC}"
        )
        if status != 200:
            raise RuntimeError(f"/trends answered {status}: {body[:300]!r}")
        return int(json.loads(body)["data"]["metrics"][METRIC][0]["value"] or 0)

    def wait_for_value(self, day: dt.date, at_least: int, timeout: float) -> float:
        """Poll until the day's value reaches ``at_least``; return the seconds it took (or raise)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.value(day) >= at_least:
                return time.perf_counter() - started
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"{day} did not reach {at_least} within {timeout} s")

    def wait_for_todays_row(self, timeout: float) -> None:
        """Wait until /health shows today's row (the new leader's catch-up writes it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("GET", "/api/admin/activity/health")
            if status == 200 and json.loads(body)["checks"]["freshness"]["today"]["computed_at"]:
                return
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"no leader wrote today's row within {timeout} s")

    def stop(self) -> None:
        """Stop the master and its workers."""
        stop_process_group(self.process)
        self.log.close()


def measure(server: Server, database: str, refresh: int, trials: int) -> dict[str, list[float]]:
    """Return the today and late delays in seconds, ``trials`` of each, at random phases."""
    timeout = 5 * refresh + 10
    today = utc_now().date()
    late_day = today - dt.timedelta(days=LATE_DAY_OFFSET)
    server.wait_for_todays_row(timeout)
    delays: dict[str, list[float]] = {"today": [], "late": []}
    rng = random.Random(12)
    for _ in range(trials):
        time.sleep(rng.uniform(0, refresh))
        if utc_now().date() != today:
            raise RuntimeError("the day changed during the run; run it again")
        before = server.value(today)
        status, _ = server.request("GET", "/")
        if status != 200:
            raise RuntimeError(f"the tracked page answered {status}")
        delays["today"].append(server.wait_for_value(today, before + 1, timeout))

        time.sleep(rng.uniform(0, refresh))
        before = server.value(late_day)
        insert_event(database, dt.datetime.combine(late_day, dt.time(15), tzinfo=dt.UTC))
        delays["late"].append(server.wait_for_value(late_day, before + 1, timeout))
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", type=int, default=2, help="ACTIVITY_REFRESH_SECONDS of the server.")
    parser.add_argument("--trials", type=int, default=5, help="Measurements of each delay per backend.")
    add_backends_option(parser)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-freshness-") as folder,
        BenchDatabases(folder, args.backends) as databases,
    ):
        print(
            f"gunicorn, 2 workers on 127.0.0.1, ACTIVITY_REFRESH_SECONDS={args.refresh}, "
            f"tick {TICK_SECONDS} s; {args.trials} trials of each delay"
        )
        for backend in databases.backends:
            host_database = str(Path(folder) / f"host-{backend}.sqlite3")
            monitor_database = host_database if backend == SQLITE else databases.new(backend, "activity")
            late_day = utc_now().date() - dt.timedelta(days=LATE_DAY_OFFSET)
            spool_folder = str(Path(folder) / f"spool-{backend}")
            prepare(host_database, monitor_database, spool_folder, late_day)
            log_path = Path(folder) / f"{backend}.log"
            server = Server(host_database, monitor_database, spool_folder, args.refresh, log_path)
            try:
                server.wait_ready()
                results[label(backend)] = measure(server, monitor_database, args.refresh, args.trials)
            except RuntimeError as exc:
                print(f"{label(backend)}: {exc}")
                print(Path(server.log.name).read_text(errors="replace")[-2000:])
                return 1
            finally:
                server.stop()

    bound = (args.refresh + TICK_SECONDS) / args.refresh
    print(
        f"\ndelay until /trends shows the event: seconds, and / ACTIVITY_REFRESH_SECONDS (bound ~{bound:.2f}"
    )
    print("plus the refresh's own time: one interval, one tick)")
    print(
        f"{'backend':<12}{'delay':<8}{'median s':>10}{'max s':>8}{'median ×':>10}{'max ×':>8}"
        "   every trial (×)"
    )
    for name, delays in results.items():
        for kind, values in delays.items():
            ratios = [value / args.refresh for value in values]
            print(
                f"{name:<12}{kind:<8}{statistics.median(values):>10.2f}{max(values):>8.2f}"
                f"{statistics.median(ratios):>10.2f}{max(ratios):>8.2f}   "
                + " ".join(f"{ratio:.2f}" for ratio in ratios)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
