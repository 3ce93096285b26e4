"""``iterate()`` through PgBouncer with ``pgbouncer=true``: the cursor pinned in its transaction.

However an iteration ends (slow loop body, failure, cancellation), its rows
come from the session it began in, and afterwards no server session is
left inside a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from bouncer import raises_sqlstate, session_taken
from conftest import until

from aiodatabases import Database

_LEFT_IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND state LIKE 'idle in transaction%'"
)
_SELECT = "SELECT n FROM bounce_rows ORDER BY n"
DIVISION_BY_ZERO, IN_FAILED_TRANSACTION = "22012", "25P02"


async def _nothing_left_open(direct_url: str) -> None:
    async with Database(direct_url) as observer:
        await until(0, lambda: observer.fetch_val(_LEFT_IN_TRANSACTION))


async def test_a_slow_loop_body_keeps_the_cursor(bounced_url: str, rows: str) -> None:
    """No early commit after ``KEEP_STREAM_AFTER``: the next batch comes from the
    cursor's own session, though another client holds the one released last."""
    async with Database(bounced_url, max_size=3) as db, contextlib.AsyncExitStack() as stack:
        seen = []
        async for row in db.iterate(_SELECT):
            seen.append(row["n"])
            if row["n"] == 1:
                await asyncio.sleep(0.2)
                await stack.enter_async_context(session_taken(db))
        assert seen == list(range(1, 1201))
    await _nothing_left_open(rows)


async def test_a_failing_statement_in_the_loop_body_on_its_connection(
    bounced_url: str, rows: str
) -> None:
    async with Database(bounced_url) as db, db.connection() as connection:

        async def iterate() -> None:
            async for row in connection.iterate(_SELECT):
                if row["n"] == 1:
                    with raises_sqlstate(DIVISION_BY_ZERO):
                        await connection.execute("SELECT 1 / 0")

        # It ran inside the iteration's transaction, which it aborted.
        with raises_sqlstate(IN_FAILED_TRANSACTION):
            await iterate()
        assert await connection.fetch_val("SELECT 1") == 1
    await _nothing_left_open(rows)


async def test_a_query_that_fails_while_streaming(bounced_url: str, rows: str) -> None:
    async with Database(bounced_url) as db:
        seen = []

        async def iterate() -> None:
            async for row in db.iterate("SELECT 1000 / (700 - n) AS q FROM bounce_rows ORDER BY n"):
                seen.append(row["q"])

        with raises_sqlstate(DIVISION_BY_ZERO):
            await iterate()
        assert len(seen) == 500  # the first batch
        assert await db.fetch_val("SELECT 1") == 1
    await _nothing_left_open(rows)


async def test_an_iteration_cancelled_in_its_loop_body(bounced_url: str, rows: str) -> None:
    async with Database(bounced_url, max_size=2) as db:
        started = asyncio.Event()

        async def iterate() -> None:
            async for _ in db.iterate(_SELECT):
                started.set()
                await db.fetch_val("SELECT pg_sleep(60)")

        task = asyncio.create_task(iterate())
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert not task.done(), task.exception()  # (an iteration that failed at once)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.fetch_val("SELECT count(*) FROM bounce_rows") == 1200
        await _nothing_left_open(rows)
        assert db.pool_stats().in_use == 0
