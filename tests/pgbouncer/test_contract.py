"""The contract through PgBouncer in transaction mode, with ``pgbouncer=true``.

The bouncer has fewer server sessions than the tests have client
connections (``bouncer.POOL_SIZE``), so statements of different clients
share sessions, as they do under load. What a test checks on the server it
reads straight from it (``direct_url``).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from bouncer import session_taken
from conftest import until

from aiodatabases import CommandTimeoutError, Database, InterleaveError


async def _written(direct_url: str) -> list[int]:
    """What another connection sees committed in ``bounce_written``."""
    async with Database(direct_url) as other:
        found = await other.fetch_all("SELECT n FROM bounce_written ORDER BY n")
    return [row["n"] for row in found]


async def _churn(db: Database, stop: asyncio.Event) -> int:
    """Transactions one after another until ``stop``: sessions change hands meanwhile."""
    count = 0
    while not stop.is_set():
        async with db.transaction():
            await db.fetch_val("SELECT :n::int", {"n": count})
        count += 1
        await asyncio.sleep(0)
    return count


async def test_gather_on_one_database(bounced_url: str) -> None:
    async with Database(bounced_url, max_size=10) as db:
        values = await asyncio.gather(
            *(db.fetch_val("SELECT :i::int * 2", {"i": i}) for i in range(200)),
            *(db.fetch_one("SELECT :t::text AS t", {"t": str(i)}) for i in range(100)),
        )
        assert values[:200] == [i * 2 for i in range(200)]
        assert [row["t"] for row in values[200:]] == [str(i) for i in range(100)]


async def test_many_clients_on_few_sessions(bounced_url: str, rows: str) -> None:
    """Unnamed statements, parsed again with each Bind: never another client's."""

    async def client(index: int) -> None:
        async with Database(bounced_url, max_size=4) as db:
            for step in range(20):
                found = await db.fetch_all(
                    "SELECT n, :tag::text AS tag FROM bounce_rows WHERE n <= :m ORDER BY n",
                    {"tag": f"{index}-{step}", "m": index + 1},
                )
                assert [(row["n"], row["tag"]) for row in found] == [
                    (n, f"{index}-{step}") for n in range(1, index + 2)
                ]
            await db.execute_many(
                "INSERT INTO bounce_written (n) VALUES (:n)",
                [{"n": index * 100 + k} for k in range(5)],
            )

    await asyncio.gather(*(client(index) for index in range(6)))
    assert await _written(rows) == sorted(i * 100 + k for i in range(6) for k in range(5))


async def test_transactions_commit_roll_back_and_nest(bounced_url: str, rows: str) -> None:
    insert = "INSERT INTO bounce_written (n) VALUES (:n)"
    async with Database(bounced_url) as db:
        async with db.transaction():
            await db.execute(insert, {"n": 1})
            savepoint = await db.transaction()
            await db.execute(insert, {"n": 2})
            await savepoint.rollback()
            async with db.transaction():
                await db.execute(insert, {"n": 3})
            assert await _written(rows) == []  # not committed yet
        transaction = await db.transaction()
        await db.execute(insert, {"n": 4})
        await transaction.rollback()
        # Every task its own transaction, at once.
        await asyncio.gather(
            *(db.execute(insert, {"n": n}) for n in range(10, 15)),
        )
    assert await _written(rows) == [1, 3, 10, 11, 12, 13, 14]


async def test_set_local_and_isolation_hold_inside_their_transaction(bounced_url: str) -> None:
    async with Database(bounced_url, max_size=3) as db:
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(db, stop))
        for _ in range(5):
            async with db.transaction(isolation="serializable"):
                await db.execute("SET LOCAL statement_timeout = '7s'")
                await asyncio.sleep(0)  # the churn runs meanwhile
                assert await db.fetch_val("SHOW statement_timeout") == "7s"
                assert await db.fetch_val("SHOW transaction_isolation") == "serializable"
            async with db.transaction():
                assert await db.fetch_val("SHOW statement_timeout") == "0"
                assert await db.fetch_val("SHOW transaction_isolation") == "read committed"
        stop.set()
        assert await churn > 0


async def test_iterate_with_statements_in_the_loop_body(bounced_url: str, rows: str) -> None:
    """Outside a block the iteration has a connection of its own: the body's
    statements commit at once, as they do without the bouncer. Another client
    holds the session released last when the second batch is fetched."""
    async with Database(bounced_url, max_size=4) as db, contextlib.AsyncExitStack() as stack:
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(db, stop))
        seen = []
        async for row in db.iterate("SELECT n FROM bounce_rows ORDER BY n"):
            seen.append(row["n"])
            if row["n"] % 100 == 0:
                await db.execute("INSERT INTO bounce_written (n) VALUES (:n)", {"n": row["n"]})
                if row["n"] == 500:  # the last row of the first batch
                    await stack.enter_async_context(session_taken(db))
                if row["n"] == 600:
                    assert await _written(rows) == list(range(100, 700, 100))
                    async with db.transaction():
                        await db.execute("INSERT INTO bounce_written (n) VALUES (-1)")
            await asyncio.sleep(0)
        stop.set()
        await churn
        assert seen == list(range(1, 1201))
        assert await db.fetch_val("SELECT count(*) FROM bounce_written") == 13


async def test_iterate_on_one_connection_runs_the_body_inside_its_transaction(
    bounced_url: str, rows: str
) -> None:
    async with Database(bounced_url) as db:
        async with db.connection() as connection:
            seen = 0
            async for row in connection.iterate("SELECT n FROM bounce_rows ORDER BY n"):
                seen += 1
                if row["n"] == 1:
                    await connection.execute("INSERT INTO bounce_written (n) VALUES (1)")
                    assert await connection.fetch_val("SELECT count(*) FROM bounce_written") == 1
                    assert await _written(rows) == []  # committed when the iteration ends
                    with pytest.raises(InterleaveError, match="pgbouncer=true"):
                        async with connection.transaction():
                            pass
            assert seen == 1200
            assert await _written(rows) == [1]
            async for _ in connection.iterate("SELECT n FROM bounce_rows"):
                break  # the cursor's close is queued: it runs before the next statement
            async with connection.transaction():
                await connection.execute("INSERT INTO bounce_written (n) VALUES (2)")
        assert await _written(rows) == [1, 2]
        async with db.transaction():  # inside a transaction: a plain cursor in it
            async for row in db.iterate("SELECT n FROM bounce_rows WHERE n <= 3"):
                await db.execute("INSERT INTO bounce_written (n) VALUES (:n)", {"n": row["n"] + 10})
        assert await _written(rows) == [1, 2, 11, 12, 13]


async def test_cancelled_statement_stops_on_its_own_session(
    bounced_url: str, direct_url: str
) -> None:
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query LIKE 'SELECT pg_sleep(%'"
    )
    async with Database(bounced_url, max_size=2) as db, Database(bounced_url) as other:
        others = asyncio.create_task(other.fetch_val("SELECT pg_sleep(3)::text || 'done'"))
        cancelled = asyncio.create_task(db.fetch_val("SELECT pg_sleep(60)"))
        async with Database(direct_url) as observer:
            await until(2, lambda: observer.fetch_val(sleeping))
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            await until(1, lambda: observer.fetch_val(sleeping))
        assert await db.fetch_val("SELECT 1") == 1
        assert await others == "done"  # the cancel request reached the right session
        assert db.pool_stats().size == db.pool_stats().idle


async def test_health_check_and_reset_through_the_bouncer(bounced_url: str) -> None:
    async with Database(bounced_url, min_size=1, max_size=1, health_check_after=0.01) as db:
        assert await db.fetch_val("SELECT 1") == 1
        await asyncio.sleep(0.1)  # idle past health_check_after: pinged before use
        assert await db.fetch_val("SELECT 2") == 2
        task = asyncio.create_task(db.fetch_val("SELECT pg_sleep(60)"))
        await asyncio.sleep(0.2)
        task.cancel()  # the connection is reset (ROLLBACK) before it is reused
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.fetch_val("SELECT 3") == 3
        assert db.pool_stats().closed == 0


async def test_command_timeout_through_the_bouncer(bounced_url: str) -> None:
    async with Database(bounced_url, command_timeout=0.2, max_size=2) as db:
        with pytest.raises(CommandTimeoutError):
            await db.fetch_val("SELECT pg_sleep(30)")
        assert await db.fetch_val("SELECT 1") == 1
        assert db.pool_stats().closed == 1  # discarded, not reused
