"""Faults around connections: failed commits, interrupted connects, disconnect under load (§4)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
from conftest import asyncpg_dsn, busy_query, until_busy, urls_for

from aiodatabases import Database, NotConnectedError

POSTGRES_URLS = urls_for("postgresql")


async def test_sqlite_commit_that_fails_busy_does_not_leave_a_transaction_open(
    tmp_path: Path,
) -> None:
    # Regression: the failed COMMIT left the pooled connection inside its
    # transaction, and every later writer got "database is locked".
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    async with Database(url, timeout=0.3, max_size=2, acquire_timeout=10) as db:
        await db.execute("CREATE TABLE b (id INTEGER)")
        await db.execute_many("INSERT INTO b VALUES (:i)", [{"i": i} for i in range(2000)])
        reading, stop = asyncio.Event(), asyncio.Event()

        async def reader() -> None:  # holds a read lock while it iterates
            async for _ in db.iterate("SELECT id FROM b"):
                reading.set()
                await stop.wait()
                break

        reader_task = asyncio.create_task(reader())
        await reading.wait()
        with pytest.raises(Exception, match="locked"):
            async with db.transaction():
                await db.execute("INSERT INTO b VALUES (-1)")
        stop.set()
        await reader_task

        async def later_writer() -> None:
            await db.execute("INSERT INTO b VALUES (-2)")

        await asyncio.create_task(later_writer())
        assert await db.fetch_val("SELECT count(*) FROM b WHERE id < 0") == 1


async def _connections_named(url: str, name: str) -> int:
    monitor = await asyncpg.connect(asyncpg_dsn(url))
    try:
        count: int = await monitor.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        )
        return count
    finally:
        await monitor.close()


async def _until_no_connections(url: str, name: str) -> None:
    for _ in range(200):  # polling an eventual server state, up to ~10 s
        if await _connections_named(url, name) == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"connections named {name!r} are still open on the server")


@pytest.mark.parametrize("url", POSTGRES_URLS)
@pytest.mark.parametrize("force_rollback", [False, True])
@pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.01])
async def test_connect_cancelled_half_way_leaves_nothing_open(
    url: str, force_rollback: bool, delay: float
) -> None:
    name = f"aiodb-{uuid.uuid4().hex[:12]}"
    database = Database(
        url,
        force_rollback=force_rollback,
        min_size=5,
        server_settings={"application_name": name},
    )
    connecting = asyncio.create_task(database.connect())
    await asyncio.sleep(delay)
    connecting.cancel()
    try:
        await connecting
    except asyncio.CancelledError:
        assert not database.is_connected
    else:
        await database.disconnect()  # it finished before the cancel landed
    await _until_no_connections(url, name)
    # ...and the object can still connect normally.
    async with database:
        assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.parametrize("force_rollback", [False, True])
async def test_disconnect_fails_statements_still_waiting(notes: str, force_rollback: bool) -> None:
    database_url = notes  # busy_query writes there on SQLite
    # Regression: statements queued for the pool ran on new connections after
    # disconnect(); now they fail at once with NotConnectedError.
    db = Database(database_url, force_rollback=force_rollback, max_size=1, acquire_timeout=10)
    await db.connect()
    tasks = [asyncio.create_task(db.fetch_one(busy_query(database_url, 0.5)))]
    await until_busy(database_url)  # the first runs; the others wait for its connection
    tasks += [asyncio.create_task(db.fetch_one(busy_query(database_url, 0.5))) for _ in range(2)]
    await asyncio.sleep(0)
    await db.disconnect()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] is not None
    assert not isinstance(results[0], BaseException)
    assert all(isinstance(r, NotConnectedError) for r in results[1:]), results
