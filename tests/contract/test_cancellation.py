"""Cancellation and faults: §4 of the contract."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import psycopg
import pytest
from conftest import (
    asyncpg_dsn,
    dialect_of,
    distinct_connections_at_once,
    postgres_driver_of,
    sleep_query,
    until,
    urls_for,
)

from aiodatabases import Database, PoolTimeoutError

POSTGRES_URLS = urls_for("postgresql")
_LONG_SLEEP = "SELECT pg_sleep(30)"


async def _server_sleepers(url: str) -> int:
    """How many backends are running the long sleep right now (seen from outside)."""
    monitor = await asyncpg.connect(asyncpg_dsn(url))
    try:
        count: int = await monitor.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
            _LONG_SLEEP,
        )
        return count
    finally:
        await monitor.close()


@pytest.mark.parametrize("url", POSTGRES_URLS)
@pytest.mark.parametrize("inside_block", [False, True], ids=["bare", "in-connection-block"])
async def test_cancel_mid_query_cancels_on_server_and_keeps_pool_full(
    url: str, inside_block: bool
) -> None:
    async with Database(url, min_size=0, max_size=3, acquire_timeout=10) as database:

        async def sleeper() -> None:
            if inside_block:
                async with database.connection() as connection:
                    await connection.fetch_one(_LONG_SLEEP)
            else:
                await database.fetch_one(_LONG_SLEEP)

        tasks = [asyncio.create_task(sleeper()) for _ in range(3)]
        await until(3, lambda: _server_sleepers(url))
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

        # The statements were cancelled on the server, not left running.
        await until(0, lambda: _server_sleepers(url))
        # The pool is at full strength: three connections usable at once.
        assert len(await distinct_connections_at_once(database, 3, "SELECT pg_backend_pid()")) == 3


@pytest.mark.parametrize("url", POSTGRES_URLS)
async def test_cancel_inside_transaction_rolls_back_and_frees_connection(url: str) -> None:
    async with Database(url, min_size=0, max_size=1, acquire_timeout=10) as database:
        await database.execute("DROP TABLE IF EXISTS cancel_t")
        await database.execute("CREATE TABLE cancel_t (x int)")
        try:

            async def work() -> None:
                async with database.transaction():
                    await database.execute("INSERT INTO cancel_t VALUES (1)")
                    await database.fetch_one(_LONG_SLEEP)

            task = asyncio.create_task(work())
            await until(1, lambda: _server_sleepers(url))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(0, lambda: _server_sleepers(url))
            # The only connection is usable and the transaction was rolled back.
            assert await database.fetch_val("SELECT count(*) FROM cancel_t") == 0
        finally:
            await database.execute("DROP TABLE IF EXISTS cancel_t")


@pytest.mark.parametrize("url", POSTGRES_URLS)
async def test_cancel_on_force_rollback_connection(url: str) -> None:
    async with Database(url, force_rollback=True) as database:
        await database.execute("CREATE TABLE cancel_fr (x int)")
        await database.execute("INSERT INTO cancel_fr VALUES (1)")
        task = asyncio.create_task(database.fetch_one(_LONG_SLEEP))
        await until(1, lambda: _server_sleepers(url))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(0, lambda: _server_sleepers(url))
        await database.execute("INSERT INTO cancel_fr VALUES (2)")
        assert await database.fetch_val("SELECT sum(x) FROM cancel_fr") == 3


async def test_cancel_many_tasks_then_everything_still_works(database_url: str) -> None:
    async with Database(database_url, max_size=4, acquire_timeout=10) as database:
        slow = sleep_query(database_url, 2)
        tasks = [asyncio.create_task(database.fetch_one(slow)) for _ in range(8)]
        await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        values = await asyncio.gather(
            *(database.fetch_val("SELECT :n", {"n": str(n)}) for n in range(8))
        )
        assert values == [str(n) for n in range(8)]


async def _select_one(database: Database) -> None:
    await database.fetch_val("SELECT 1")


async def _begin(database: Database) -> None:
    await database.transaction()


@pytest.mark.parametrize("wait", [_select_one, _begin], ids=["statement", "transaction"])
async def test_cancel_while_waiting_for_the_pool_takes_nothing(
    database_url: str, caplog: pytest.LogCaptureFixture, wait: Any
) -> None:
    # The wait stops at once; for a transaction nothing is begun (and rolled
    # back) when the connection comes free, as while its start ran shielded.
    caplog.set_level(logging.WARNING, logger="aiodatabases")
    async with Database(database_url, min_size=0, max_size=1, acquire_timeout=10) as database:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with database.connection():
                holding.set()
                await release.wait()

        hold_task = asyncio.create_task(holder())
        await holding.wait()
        waiter = asyncio.create_task(wait(database))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await hold_task
        assert await database.fetch_val("SELECT 7") == 7
        async with database.transaction():
            assert await database.fetch_val("SELECT 8") == 8
    assert "rolling it back" not in caplog.text


@pytest.mark.parametrize("url", POSTGRES_URLS)
async def test_a_commit_cancelled_while_it_runs_has_ended_when_the_caller_is_told(
    url: str,
) -> None:
    # The COMMIT takes 0.3 s (a deferred constraint trigger sleeps in it). Its
    # caller, cancelled meanwhile, gets CancelledError once it has ended: the
    # write is visible from another connection at that moment.
    setup = [
        "CREATE TABLE aiodb_slow_commit (id integer)",
        "CREATE FUNCTION aiodb_slow_commit_sleep() RETURNS trigger LANGUAGE plpgsql "
        "AS 'BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END'",
        "CREATE CONSTRAINT TRIGGER aiodb_slow_commit_trigger AFTER INSERT ON aiodb_slow_commit "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION aiodb_slow_commit_sleep()",
    ]
    async with Database(url) as database:
        await database.execute("DROP TABLE IF EXISTS aiodb_slow_commit")
        await database.execute("DROP FUNCTION IF EXISTS aiodb_slow_commit_sleep()")
        for sql in setup:
            await database.execute(sql)
        try:
            committing = asyncio.Event()

            async def write() -> None:
                transaction = await database.transaction()
                await database.execute("INSERT INTO aiodb_slow_commit VALUES (1)")
                committing.set()
                await transaction.commit()

            writer = asyncio.create_task(write())
            await committing.wait()
            await asyncio.sleep(0.05)  # the COMMIT runs on the server
            writer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await writer
            other = await asyncpg.connect(asyncpg_dsn(url))
            try:
                assert await other.fetchval("SELECT count(*) FROM aiodb_slow_commit") == 1
            finally:
                await other.close()
        finally:
            await database.execute("DROP TABLE aiodb_slow_commit")
            await database.execute("DROP FUNCTION aiodb_slow_commit_sleep()")


async def test_pool_timeout_names_the_problem(database_url: str) -> None:
    database = Database(database_url, min_size=0, max_size=1, acquire_timeout=0.2)

    async def other_task() -> object:
        return await database.fetch_val("SELECT 1")

    async with database, database.connection():
        with pytest.raises(PoolTimeoutError, match="max_size=1"):
            await asyncio.create_task(other_task())


async def test_task_that_never_closes_its_block_gives_the_connection_back(
    database_url: str,
) -> None:
    import gc

    async with Database(database_url, min_size=0, max_size=1, acquire_timeout=5) as database:

        async def forgetful() -> None:
            connection = database.connection()
            await connection.__aenter__()  # user code that never exits its block
            await connection.fetch_val("SELECT 1")

        await asyncio.create_task(forgetful())
        await asyncio.sleep(0)  # let the loop drop its last reference to the ended task
        gc.collect()
        # Nothing is kept for a task that ended: the only connection is free.
        assert await database.fetch_val("SELECT 3") == 3


@pytest.mark.parametrize("url", POSTGRES_URLS)
async def test_connection_killed_by_server_is_replaced(url: str) -> None:
    async with Database(url, min_size=1, max_size=1, acquire_timeout=10) as database:
        pid = await database.fetch_val("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        # The caller whose connection is gone gets a clear driver error, or the
        # pool already saw the socket close; either way the next one works.
        with contextlib.suppress(
            asyncpg.PostgresError, asyncpg.InterfaceError, psycopg.Error, OSError
        ):
            await database.fetch_val("SELECT 1")
        new_pid = await database.fetch_val("SELECT pg_backend_pid()")
        assert new_pid != pid


async def test_a_statement_cancelled_twice_has_ended_before_the_next_one_runs(
    database_url: str,
) -> None:
    # Regression (MySQL): a second cancellation while the first one's interrupt
    # was still on its way let the caller go with its statement still running;
    # the next statement on the connection then read that statement's answer.
    database = Database(database_url, max_size=1, acquire_timeout=30)
    if postgres_driver_of(database_url) == "psycopg" and dialect_of(database_url) == "postgresql":
        # psycopg closes the connection when its cancel on the server is itself
        # interrupted: the statement is stopped, the connection is never reused
        # (the block's next statement says so) and the pool opens another.
        async with database:
            for _ in range(3):
                async with database.connection() as connection:
                    await _cancel_twice(connection, database_url)
                    with pytest.raises(psycopg.OperationalError, match="connection is closed"):
                        await connection.fetch_val("SELECT 42")
                assert await database.fetch_val("SELECT 42") == 42
        return
    async with database, database.connection() as connection:
        for _ in range(3):
            await _cancel_twice(connection, database_url)
            assert await connection.fetch_val("SELECT 42") == 42


async def _cancel_twice(connection: Any, url: str) -> None:
    sleeper = asyncio.create_task(connection.fetch_val(sleep_query(url, 3)))
    await asyncio.sleep(0.3)  # it runs on the server
    sleeper.cancel()
    await asyncio.sleep(0)  # the first cancellation is under way...
    sleeper.cancel()  # ...when the second one comes
    with pytest.raises(asyncio.CancelledError):
        await sleeper
