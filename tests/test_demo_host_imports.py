"""The demo host adopts the monitor as any other app would: through its public names only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import activity_monitor

DEMO_SOURCES = sorted((Path(__file__).resolve().parent.parent / "demo_host").glob("*.py"))


def monitor_references(source: str) -> list[tuple[int, str]]:
    """Return (line, dotted name) of everything the source takes from the monitor's package."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if is_monitor(alias.name)]
        elif isinstance(node, ast.ImportFrom) and is_monitor(node.module or ""):
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "activity_monitor"
        ):
            found.append((node.lineno, f"activity_monitor.{node.attr}"))
    return found


def is_monitor(module: str) -> bool:
    """Tell whether a module name is the monitor's package or one of its modules."""
    return module.split(".")[0] == "activity_monitor"


def private_references(source: str) -> list[tuple[int, str]]:
    """Return the monitor references of a source that are not ``activity_monitor.<public name>``."""
    public = {"activity_monitor"} | {f"activity_monitor.{name}" for name in activity_monitor.__all__}
    return [(line, name) for line, name in monitor_references(source) if name not in public]


def test_the_scan_sees_the_demo_host_and_its_imports_of_the_monitor():
    names = {path.name for path in DEMO_SOURCES}
    assert {"__init__.py", "auth.py", "demo_data.py", "demo_traffic.py"} <= names
    assert any(monitor_references(path.read_text()) for path in DEMO_SOURCES)


@pytest.mark.parametrize(
    "source",
    [
        "from activity_monitor.db import connect",
        "import activity_monitor.timeutil",
        "from activity_monitor import timeutil",
        "import activity_monitor\nactivity_monitor.db.connect('x')",
    ],
)
def test_the_scan_catches_a_private_import(source):
    assert private_references(source)


@pytest.mark.parametrize("path", DEMO_SOURCES, ids=lambda path: path.name)
def test_demo_host_imports_only_public_names_of_the_monitor(path):
    assert private_references(path.read_text()) == []
