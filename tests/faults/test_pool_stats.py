"""``Database.pool_stats()`` and the exhausted pool's error (issue 15 items 12 and 4).

Exact numbers after known operations, on every backend, read through the
public API only: connect, borrow, hold in a block and in a transaction, wait,
a connection discarded after it failed, disconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from conftest import dialect_of, helper_database, scheme_of, until, urls_for

from aiodatabases import Database, NotConnectedError, PoolStats, PoolTimeoutError

SERVER_ID = {
    "postgresql": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
}
KILL = {
    "postgresql": "SELECT pg_terminate_backend({})",
    "mysql": "KILL {}",
}


def stats(db: Database, **expected: int) -> PoolStats:
    found = db.pool_stats()
    assert {name: getattr(found, name) for name in expected} == expected
    assert found.size == found.idle + found.in_use
    return found


async def test_pool_stats_count_what_the_pool_did(database_url: str) -> None:
    db = Database(database_url, min_size=1, max_size=3, acquire_timeout=30)
    with pytest.raises(NotConnectedError):
        db.pool_stats()
    async with db:
        stats(db, size=1, idle=1, in_use=0, waiting=0, opened=1, closed=0, min_size=1, max_size=3)
        assert await db.fetch_val("SELECT 1") == 1  # borrowed and given back
        stats(db, size=1, idle=1, in_use=0, waiting=0, opened=1, closed=0)
        entered = [asyncio.Event() for _ in range(3)]
        leave = asyncio.Event()

        async def hold(index: int) -> None:
            if index == 0:
                async with db.transaction():
                    await db.fetch_val("SELECT 1")
                    entered[index].set()
                    await leave.wait()
            else:
                async with db.connection() as connection:
                    await connection.fetch_val("SELECT 1")
                    entered[index].set()
                    await leave.wait()

        holders = [asyncio.create_task(hold(i)) for i in range(3)]
        await asyncio.gather(*(event.wait() for event in entered))
        stats(db, size=3, idle=0, in_use=3, waiting=0, opened=3, closed=0)
        waiter = asyncio.create_task(db.fetch_val("SELECT 2"))

        async def waiting() -> int:
            return db.pool_stats().waiting

        await until(1, waiting)
        stats(db, size=3, idle=0, in_use=3, waiting=1)
        leave.set()
        assert await asyncio.wait_for(waiter, 30) == 2
        await asyncio.gather(*holders)
        stats(db, size=3, idle=3, in_use=0, waiting=0, opened=3, closed=0)
        snapshot = db.pool_stats()
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.size = 0  # type: ignore[misc]
    with pytest.raises(NotConnectedError):
        db.pool_stats()


# The server sessions it kills: PostgreSQL's and MySQL's (SQLite has none).
@pytest.mark.parametrize("database_url", urls_for("postgresql", "mysql"), ids=scheme_of)
async def test_a_connection_that_failed_is_counted_closed_and_replaced(database_url: str) -> None:
    dialect = dialect_of(database_url)
    db = Database(database_url, min_size=1, max_size=2, acquire_timeout=30)
    async with db, helper_database(database_url) as admin:
        async with db.connection() as connection:
            server_id = await connection.fetch_val(SERVER_ID[dialect])
            await admin.execute(KILL[dialect].format(int(server_id)))
            with pytest.raises(Exception):  # noqa: B017,PT011 the driver's own error
                await asyncio.wait_for(connection.fetch_val("SELECT 1"), 30)
        # The lost one is counted closed; the pool refills to min_size at once.
        async def refilled() -> tuple[int, int, int, int]:
            found = db.pool_stats()
            return (found.size, found.idle, found.opened, found.closed)

        await until((1, 1, 2, 1), refilled)
        stats(db, size=1, idle=1, in_use=0, waiting=0, opened=2, closed=1)
        assert await db.fetch_val("SELECT 3") == 3  # on the new one
        stats(db, size=1, idle=1, in_use=0, opened=2, closed=1)


async def test_force_rollback_stats_describe_the_pool_of_one(database_url: str) -> None:
    async with Database(database_url, force_rollback=True) as db:
        assert await db.fetch_val("SELECT 1") == 1
        stats(db, size=1, idle=0, in_use=1, waiting=0, opened=1, closed=0, max_size=1)
        # Read from another thread too: a snapshot, no call carried.
        found = await asyncio.to_thread(db.pool_stats)
        assert (found.size, found.in_use) == (1, 1)


async def test_an_exhausted_pool_names_its_size_and_the_tasks_holding_it(
    database_url: str,
) -> None:
    db = Database(database_url, max_size=2, acquire_timeout=0.5)
    async with db:
        entered = [asyncio.Event() for _ in range(2)]
        leave = asyncio.Event()

        async def hold(index: int) -> None:
            if index == 0:
                async with db.transaction():
                    await db.fetch_val("SELECT 1")
                    entered[index].set()
                    await leave.wait()
            else:
                async with db.connection() as connection:
                    await connection.fetch_val("SELECT 1")
                    entered[index].set()
                    await leave.wait()

        holders = [asyncio.create_task(hold(i), name=f"holder-{i}") for i in range(2)]
        await asyncio.gather(*(event.wait() for event in entered))

        async def third() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT :v", {"v": "value-never-shown"})

        with pytest.raises(PoolTimeoutError) as caught:
            await asyncio.wait_for(asyncio.create_task(third(), name="third"), 30)
        message = str(caught.value)
        assert "max_size=2" in message
        assert "'holder-0'" in message
        assert "'holder-1'" in message
        assert "acquire_timeout=0.5s" in message
        assert "what was left" not in message
        assert "value-never-shown" not in message
        leave.set()
        await asyncio.gather(*holders)
        stats(db, size=2, idle=2, in_use=0, waiting=0)
        assert await db.fetch_val("SELECT 4") == 4
