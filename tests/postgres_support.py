"""The PostgreSQL side of the suite: one throwaway database per run, one schema per test.

``pytest --backend=postgresql`` (or TEST_BACKEND=postgresql) runs every test against
PostgreSQL at TEST_POSTGRES_URL (default: the local server, user postgres). The run creates
its own database and drops it at the end; each test gets a fresh schema in it, named in the
URL's search_path, so tests never see each other's tables, locks or install ids.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """Return the URL of the server's maintenance database the run connects to first."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_URL)


def with_database(url: str, database: str, schema: str | None = None) -> str:
    """Return the URL naming another database (and, optionally, a schema as search_path)."""
    parts = urlsplit(url)
    query = parts.query
    if schema is not None:
        option = "options=" + quote(f"-csearch_path={schema}")
        query = f"{query}&{option}" if query else option
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, parts.fragment))


def unavailable_reason() -> str | None:
    """Return why PostgreSQL cannot be used here, or None when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'flask-activity-monitor[postgres]')"
    try:
        psycopg.connect(server_url(), connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {server_url()} does not answer: {exc}"
    return None


class ThrowawayDatabase:
    """A database made for one test run, and the schemas of its tests."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"activity_test_{os.getpid()}_{secrets.token_hex(4)}"
        self.admin = psycopg.connect(server_url(), autocommit=True)
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = with_database(server_url(), self.name)
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.count = 0

    def new_schema(self) -> tuple[str, str]:
        """Create an empty schema; return its name and the URL whose search_path is it."""
        self.count += 1
        schema = f"t{self.count}"
        self.conn.execute(f'CREATE SCHEMA "{schema}"')
        return schema, with_database(server_url(), self.name, schema)

    def drop_schema(self, schema: str) -> None:
        """Drop a test's schema with everything in it."""
        self.conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def drop(self) -> None:
        """Drop the whole database (its sessions are ended first)."""
        self.conn.close()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


if __name__ == "__main__":
    # `python tests/postgres_support.py` exits 0 when PostgreSQL answers (make test asks).
    raise SystemExit(0 if unavailable_reason() is None else 1)
