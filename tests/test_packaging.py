"""The distribution: `python -m build` makes an sdist and a wheel that carry everything the monitor
serves, and `pip install` of the wheel into a fresh venv lets a foreign app adopt it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

# Run once, in the SQLite run: packaging does not depend on the backend.
pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
FOREIGN_APP = """
from flask import Flask, g
from activity_monitor import ActivityMonitor, Identity

app = Flask(__name__)
app.config["SECRET_KEY"] = "packaged"
monitor = ActivityMonitor(app, ACTIVITY_DATABASE="{database}",
                          identity_loader=lambda: Identity(7, "admin", username="pat"))

@app.get("/work")
def work():
    return "done"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Build the sdist and the wheel once for this module."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def test_the_wheel_carries_the_migrations_templates_and_static_files(built):
    (wheel,) = built.glob("flask_activity_monitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "activity_monitor/migrations/sqlite/001_user_activity_log.sql" in names
    assert "activity_monitor/migrations/sqlite/legacy_import.sql" in names
    assert "activity_monitor/migrations/postgresql/001_user_activity_log.sql" in names
    assert "activity_monitor/storage/postgresql.py" in names
    assert "activity_monitor/templates/activity_monitor/page.html" in names
    assert "activity_monitor/static/activity_monitor.js" in names
    assert "activity_monitor/static/vendor/chartjs/chart.umd.min.js" in names
    assert not any(name.startswith(("demo_host/", "tests/", "app.py")) for name in names)


def test_the_sdist_is_built_too(built):
    assert list(built.glob("flask_activity_monitor-*.tar.gz"))


def test_a_fresh_venv_installs_the_wheel_and_a_foreign_app_adopts_it(built, tmp_path):
    (wheel,) = built.glob("flask_activity_monitor-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "foreign.py").write_text(FOREIGN_APP.format(database=tmp_path / "monitor.sqlite3"))
    script = textwrap.dedent(
        """
        from foreign import app
        client = app.test_client()
        assert client.get("/work").data == b"done"
        assert client.get("/healthz").data == b"ok\\n"
        page = client.get("/admin/activity")
        assert page.status_code == 200, page.status_code
        assert client.get("/admin/activity/static/vendor/chartjs/chart.umd.min.js").status_code == 200
        import sqlite3
        conn = sqlite3.connect(app.config["ACTIVITY_DATABASE"])
        assert conn.execute("SELECT user_id, role, page_url FROM user_activity_log WHERE page_url = '/work'"
                            ).fetchall() == [(7, "admin", "/work")]
        from flask import Flask
        from activity_monitor import ActivityMonitor, ConfigError
        other = Flask("other")
        other.config.update(SECRET_KEY="s", ACTIVITY_REDIS_URL="redis://127.0.0.1:6379/15")
        try:
            ActivityMonitor(other, ACTIVITY_DATABASE=app.config["ACTIVITY_DATABASE"] + ".other")
        except ConfigError as exc:
            assert "flask-activity-monitor[redis]" in str(exc), exc
        else:
            raise AssertionError("a Redis URL without redis-py was accepted")
        third = Flask("third")
        third.config.update(SECRET_KEY="s")
        try:
            ActivityMonitor(third, ACTIVITY_DATABASE="postgresql://monitor@127.0.0.1:5432/monitor")
        except ConfigError as exc:
            assert "flask-activity-monitor[postgres]" in str(exc), exc
        else:
            raise AssertionError("a PostgreSQL URL without psycopg was accepted")
        print("adopted")
        """
    )
    run = subprocess.run([str(python), "-c", script], cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "adopted"
    cli = subprocess.run(
        [str(venv / "bin" / "flask"), "--app", "foreign", "activity", "migrate"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert "schema is at version" in cli.stdout
