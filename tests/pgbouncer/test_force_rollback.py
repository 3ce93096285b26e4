"""``force_rollback`` and the pytest plugin through PgBouncer in transaction mode.

The one rollback connection is inside a transaction for its whole life, so
the bouncer gives it one server session until it disconnects (the same
backend process throughout, whatever other clients do), and the rollback
at ``disconnect()`` leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
from conftest import helper_database

from aiodatabases import Database

pytest_plugins = ["pytester"]

# Inner sessions run in this process, and pytester drops the modules each one
# imported when it ends; compiled extensions cannot be imported twice (see
# tests/testing/test_plugin.py): import them here, once.
for _module in ("hypothesis", "asyncpg", "aiodatabases.backends.postgres"):
    importlib.import_module(_module)


async def test_force_rollback_keeps_one_session(bounced_url: str, direct_url: str) -> None:
    db = Database(bounced_url, force_rollback=True)
    async with db, Database(bounced_url, max_size=4) as others:
        await db.execute("CREATE TABLE bounce_rolled (n integer)")
        pid = await db.fetch_val("SELECT pg_backend_pid()")

        async def other_clients() -> None:
            for n in range(20):
                async with others.transaction():
                    await others.fetch_val("SELECT :n::int", {"n": n})

        pids = await asyncio.gather(
            other_clients(),
            *(db.fetch_val("SELECT pg_backend_pid()") for _ in range(20)),
            *(db.execute("INSERT INTO bounce_rolled (n) VALUES (:n)", {"n": n}) for n in range(5)),
        )
        assert set(pids[1:21]) == {pid}
        async with db.transaction():
            await db.execute("INSERT INTO bounce_rolled (n) VALUES (99)")
        assert await db.fetch_val("SELECT count(*) FROM bounce_rolled") == 6
    async with helper_database(direct_url) as observer:
        # Rolled back at disconnect: the table too.
        assert await observer.fetch_val("SELECT to_regclass('bounce_rolled') IS NULL") is True


_INI = """\
[pytest]
addopts = -p no:cacheprovider --strict-markers --strict-config
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

_CONFTEST = """\
import pytest


@pytest.fixture(scope="session")
def aiodatabases_schema():
    async def build(database):
        await database.execute("CREATE TABLE IF NOT EXISTS bounce_plugin (n integer)")

    return build
"""

_TESTS = """\
import asyncio

import pytest

COUNT = "SELECT count(*) FROM bounce_plugin"


@pytest.mark.parametrize("round_", range(3))
async def test_round(aiodatabases_db, round_):
    with open({pids!r}, "a") as pids:
        pids.write(f"{{await aiodatabases_db.fetch_val('SELECT pg_backend_pid()')}}\\n")
    assert await aiodatabases_db.fetch_val(COUNT) == 0
    insert = "INSERT INTO bounce_plugin (n) VALUES (:n)"
    await asyncio.gather(*(aiodatabases_db.execute(insert, {{"n": n}}) for n in range(5)))
    async with aiodatabases_db.transaction():
        await aiodatabases_db.execute(insert, {{"n": round_}})
    rows = [row["n"] async for row in aiodatabases_db.iterate("SELECT n FROM bounce_plugin")]
    assert len(rows) == 6
    assert await aiodatabases_db.fetch_val(COUNT) == 6


def test_sync(aiodatabases_db):
    assert asyncio.run(aiodatabases_db.fetch_val(COUNT)) == 0
"""


def test_pytest_plugin_through_the_bouncer(
    pytester: pytest.Pytester, bounced_url: str, direct_url: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids.txt"
    pytester.makeini(_INI)
    pytester.makepyfile(conftest=_CONFTEST, test_rounds=_TESTS.format(pids=str(pids)))
    try:
        result = pytester.runpytest_inprocess("--aiodatabases-url", bounced_url)
        result.assert_outcomes(passed=4)
        assert len(set(pids.read_text().split())) == 1  # one server session throughout

        async def committed() -> int:
            async with helper_database(direct_url) as observer:
                return int(await observer.fetch_val("SELECT count(*) FROM bounce_plugin"))

        assert asyncio.run(committed()) == 0
    finally:

        async def drop() -> None:
            async with helper_database(direct_url) as observer:
                await observer.execute("DROP TABLE IF EXISTS bounce_plugin")

        asyncio.run(drop())
