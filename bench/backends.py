"""The monitor databases a benchmark runs on: SQLite files, and PostgreSQL beside them when it answers.

Every benchmark measures each backend in the same run and prints their figures side by side.
PostgreSQL is the server at TEST_POSTGRES_URL (default: the local one, user postgres, as for
the tests): the run creates a throwaway database there, hands out one schema of it per monitor
database, and drops it at the end. When no server answers, the PostgreSQL figures are skipped
with a note. Not a benchmark itself (``make bench`` runs the ``bench_*.py`` files only).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import postgres_support  # noqa: E402

SQLITE, POSTGRESQL = "sqlite", "postgresql"
BACKENDS = (SQLITE, POSTGRESQL)


def add_backends_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backends`` (default: both) to a benchmark's options."""
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="Backends of the monitor's database to measure (default: both, in the same run).",
    )


class BenchDatabases:
    """Hands out monitor databases on each backend of the run: SQLite files in ``folder``, and
    schemas of one throwaway PostgreSQL database, created on entry and dropped on exit."""

    def __init__(self, folder: str | Path, wanted: Sequence[str] = BACKENDS):
        self.folder = Path(folder)
        self.wanted = list(wanted)
        self.backends: list[str] = []
        self.postgres: postgres_support.ThrowawayDatabase | None = None
        self.schemas: dict[str, str] = {}

    def __enter__(self) -> BenchDatabases:
        for backend in self.wanted:
            if backend == POSTGRESQL:
                reason = postgres_support.unavailable_reason()
                if reason is not None:
                    print(f"(PostgreSQL skipped: {reason})")
                    continue
                self.postgres = postgres_support.ThrowawayDatabase()
            self.backends.append(backend)
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self.postgres is not None:
            self.postgres.drop()
            self.postgres = None

    def new(self, backend: str, name: str) -> str:
        """Return the ACTIVITY_DATABASE of a new, empty monitor database on ``backend``."""
        if backend == SQLITE:
            return str(self.folder / f"{name}.sqlite3")
        assert self.postgres is not None, "PostgreSQL is not part of this run"
        schema, url = self.postgres.new_schema()
        self.schemas[url] = schema
        return url

    def discard(self, database: str) -> None:
        """Delete a database handed out by :meth:`new` (its file, or its schema)."""
        if database in self.schemas:
            assert self.postgres is not None
            self.postgres.drop_schema(self.schemas.pop(database))
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(database + suffix):
                os.remove(database + suffix)


def label(backend: str) -> str:
    """Return the name a backend's figures are printed under."""
    return {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}[backend]
