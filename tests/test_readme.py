"""README stays true: every option is documented, and the demo adopts the monitor with its lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from activity_monitor import DEFAULTS

# Run once, in the SQLite run: the README does not depend on the backend.
pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def adoption_block() -> list[str]:
    """Return the lines of README's adoption example that call ActivityMonitor and init_app."""
    block = README[README.index("## Add it to your Flask app") :]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    start = code.index("monitor = ActivityMonitor(")
    return [line.strip() for line in code[start:].splitlines() if line.strip()]


def test_every_option_is_in_the_readme_table():
    documented = set(re.findall(r"^\| `(ACTIVITY_\w+)` \|", README, re.M))
    assert documented == set(DEFAULTS)


def test_readme_opens_with_adding_it_to_a_flask_app():
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[0] == "Add it to your Flask app"


def test_the_quick_start_shows_exactly_make_run_and_make_test():
    section = README[README.index("## Quick start") :]
    commands = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert [line.split()[:2] for line in commands.splitlines()] == [["make", "run"], ["make", "test"]]


def test_the_demo_host_adopts_the_monitor_with_exactly_the_readmes_lines():
    demo = [line.strip() for line in (ROOT / "demo_host" / "__init__.py").read_text().splitlines()]
    lines = adoption_block()
    start = demo.index(lines[0])
    assert demo[start : start + len(lines)] == lines
