"""``acquire_timeout`` bounds the whole wait of one statement, not each wait in it.

A statement may wait three times before it runs: for the owning loop to
start it (called from another loop), for its turn on a shared connection
(the gate), and for a pooled connection. One deadline covers all three; the
error is the one of the wait that ran out.

No timing is asserted: each test arranges waits that add up to more than the
bound (the first ends at ``FIRST``, the second at ``SECOND``, both within
the bound on their own) and asserts the outcome: the statement fails. Were
each wait bounded on its own, it would succeed at ``SECOND``. The deadline
and the second wait's end are timers of the same loop, so a loaded machine
cannot reorder them.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conftest import LoopInThread

from aiodatabases import ConnectionBusyError, Database, PoolTimeoutError
from aiodatabases.connection import Connection

TIMEOUT = 1.0
FIRST = 0.6  # the first wait ends here: 0.4 s of the bound left
SECOND = 1.4  # the second ends here: within TIMEOUT of FIRST, past TIMEOUT in all


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - asyncio.get_running_loop().time()))


async def test_a_wait_for_the_gate_then_for_the_pool_is_bounded_once(database_url: str) -> None:
    database = Database(database_url, max_size=1, acquire_timeout=TIMEOUT)
    async with database:
        start = asyncio.get_running_loop().time()
        shared = database.connection()
        opened = asyncio.Event()

        async def transaction_until_first() -> None:  # holds the gate, and the one connection
            async with shared.transaction():
                opened.set()
                await sleep_until(start + FIRST)

        async def connection_until_second() -> None:  # first in the pool's line
            async with database.connection():
                await sleep_until(start + SECOND)

        owner = asyncio.create_task(transaction_until_first())
        await opened.wait()
        statement = asyncio.create_task(shared.fetch_val("SELECT 1"))  # waits at the gate
        holder = asyncio.create_task(connection_until_second())
        # The message says the truth: the pool had only what the gate left of the bound.
        with pytest.raises(PoolTimeoutError, match=r"what was left of acquire_timeout=1\.0s"):
            await statement
        await asyncio.gather(owner, holder)
        assert await shared.fetch_val("SELECT 2") == 2  # nothing was left held


@pytest.mark.parametrize("held", ["pool", "gate"])
async def test_a_wait_for_the_owning_loop_then_for_a_connection_is_bounded_once(
    database_url: str, loop_thread: LoopInThread, held: str
) -> None:
    database = Database(database_url, max_size=1, acquire_timeout=TIMEOUT)
    loop_thread.run(database.connect())
    try:
        owner = loop_thread.loop
        start = time.monotonic()
        holding = threading.Event()
        connection: list[Connection] = []

        async def hold_until_second() -> None:  # in the owning loop
            if held == "pool":
                async with database.connection():
                    holding.set()
                    await sleep_until(owner.time() + SECOND - (time.monotonic() - start))
            else:
                connection.append(database.connection())
                async with connection[0].transaction():
                    holding.set()
                    await sleep_until(owner.time() + SECOND - (time.monotonic() - start))

        holder = asyncio.run_coroutine_threadsafe(hold_until_second(), owner)
        assert await asyncio.to_thread(holding.wait, 10)
        # The owning loop is running but blocked until FIRST: the call waits to start.
        owner.call_soon_threadsafe(time.sleep, max(0.0, FIRST - (time.monotonic() - start)))
        if held == "pool":
            with pytest.raises(PoolTimeoutError, match=r"what was left of acquire_timeout"):
                await database.fetch_val("SELECT 1")  # borrows: waits for the pool
        else:
            with pytest.raises(ConnectionBusyError, match=r"what was left of it after"):
                await connection[0].fetch_val("SELECT 1")  # waits at the gate
        await asyncio.wrap_future(holder)
        assert await database.fetch_val("SELECT 2") == 2
    finally:
        loop_thread.run(database.disconnect())
