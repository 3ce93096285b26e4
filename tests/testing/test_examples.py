"""The examples' own test suites pass, run as a user would run them.

Each runs in a subprocess (``python -m pytest examples/<app>/tests``) against
a new SQLite file and, when configured, a new PostgreSQL and MySQL database
that the plugin creates and drops (``--aiodatabases-drop``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import helper_database, scheme_of, urls_for

from aiodatabases import DatabaseURL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["starlette_app", "fastapi_app"]
# One URL per server dialect, the first (the drivers are covered by test_plugin.py).
_FIRST_BY_DIALECT: dict[str, str] = {}
for _url in urls_for("postgresql", "mysql"):
    _FIRST_BY_DIALECT.setdefault(DatabaseURL(_url).dialect, _url)
_SERVERS = list(_FIRST_BY_DIALECT.values())


async def _database_exists(url: DatabaseURL) -> bool:
    if url.dialect == "postgresql":
        admin_url = url.replace(database="postgres")
        query = "SELECT COUNT(*) FROM pg_database WHERE datname = :name"
    else:
        admin_url = url.replace(database="")
        query = "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"
    async with helper_database(admin_url) as admin:
        return bool(await admin.fetch_val(query, {"name": url.database}))


def _run_example(example: str, url: str, *args: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [*command, f"examples/{example}/tests", "--aiodatabases-url", url, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert " passed" in output
    assert " failed" not in output
    assert " error" not in output


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_on_sqlite(example: str, tmp_path: Path) -> None:
    _run_example(example, f"sqlite:///{tmp_path / 'example.db'}")


@pytest.mark.parametrize("server_url", _SERVERS, ids=scheme_of)
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_on_a_server(example: str, server_url: str) -> None:
    url = DatabaseURL(server_url).replace(database=f"aiodatabases_example_{uuid.uuid4().hex[:8]}")
    _run_example(example, str(url), "--aiodatabases-drop")
    assert not asyncio.run(_database_exists(url))
