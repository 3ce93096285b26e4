"""Which connection a task uses (``_tasks``): its own, or the one its context continues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import DATABASE_URLS

from aiodatabases import Database

# Plain (not force_rollback) databases, built at import time.
DATABASES = {url: Database(url, acquire_timeout=10) for url in DATABASE_URLS}


@pytest.fixture(scope="module", autouse=True)
def notes_tables(notes_for_module: None) -> None:
    """One ``notes`` table for the module's module-level databases."""


@pytest.fixture
async def nothing_left_after(database_url: str) -> AsyncIterator[None]:
    """After the test and its ``rolled_back`` teardown: the table is empty again.

    Checked in each test's own teardown, so no test relies on another having
    run before it.
    """
    yield
    async with Database(database_url) as database:
        leaked = await database.fetch_val("SELECT count(*) FROM notes")
    assert leaked == 0, "a write of a rolled-back test was committed"


@pytest.fixture
async def rolled_back(database_url: str, nothing_left_after: None) -> AsyncIterator[Database]:
    """The common ``databases`` recipe: each test inside a transaction that rolls back.

    pytest-asyncio runs this setup, the test and the teardown as three tasks
    that share one context; the test must run inside the fixture's transaction.
    """
    database = DATABASES[database_url]
    async with database, database.transaction(force_rollback=True):
        yield database


@pytest.mark.parametrize("round_", [1, 2])
async def test_fixture_transaction_is_the_tests_transaction(
    rolled_back: Database, round_: int
) -> None:
    assert await rolled_back.fetch_val("SELECT count(*) FROM notes") == 0
    await rolled_back.execute("INSERT INTO notes (text) VALUES (:t)", {"t": f"round {round_}"})
    assert await rolled_back.fetch_val("SELECT count(*) FROM notes") == 1


async def test_a_rolled_back_tests_write_is_not_seen_outside_it(
    rolled_back: Database, database_url: str
) -> None:
    await rolled_back.execute("INSERT INTO notes (text) VALUES (:t)", {"t": "uncommitted"})
    assert await rolled_back.fetch_val("SELECT count(*) FROM notes") == 1
    async with Database(database_url) as other:
        assert await other.fetch_val("SELECT count(*) FROM notes") == 0


async def test_a_running_parents_connection_is_not_shared_with_its_children(
    database_url: str,
) -> None:
    database = Database(database_url, acquire_timeout=10)
    seen: list[object] = []

    async def child() -> None:
        seen.append(database.connection())

    async with database, database.connection() as parent:
        await asyncio.gather(child(), child())
        assert parent not in seen
        assert seen[0] is not seen[1]


async def test_a_task_keeps_its_connection_across_calls(database_url: str) -> None:
    async with Database(database_url) as database:
        assert database.connection() is database.connection()
