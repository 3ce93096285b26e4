"""The pool's waiting line, where a wake-up, a timeout and a cancellation meet.

These drive ``_pool.Pool`` directly (with real connections of each backend)
because the races need a release and a cancellation in the same step of the
loop, which the public API cannot arrange on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiodatabases import Database, PoolTimeoutError
from aiodatabases._pool import Pool
from aiodatabases._url import DatabaseURL
from aiodatabases.backends import create_backend


@contextlib.asynccontextmanager
async def one_connection_pool(url: str, timeout: float) -> AsyncIterator[Pool]:
    backend = create_backend(DatabaseURL(url), {}, {})
    pool = Pool(backend.connect, min_size=1, max_size=1, timeout=timeout)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    async with one_connection_pool(database_url, 5.0) as pool:
        yield pool


async def waiting(pool: Pool) -> asyncio.Task[object]:
    task = asyncio.create_task(pool.acquire())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()  # it waits in line
    return task


async def test_a_waiter_cancelled_just_before_a_release_passes_it_on(pool: Pool) -> None:
    held = await pool.acquire()
    first = await waiting(pool)
    second = await waiting(pool)
    first.cancel()  # its wait ends now, in the line still
    pool.release(held)  # in the same step: the first in line is skipped
    with pytest.raises(asyncio.CancelledError):
        await first
    connection = await asyncio.wait_for(second, 5)
    assert connection is held
    pool.release(connection)


async def test_a_waiter_woken_then_cancelled_passes_the_wake_up_on(pool: Pool) -> None:
    held = await pool.acquire()
    first = await waiting(pool)
    second = await waiting(pool)
    pool.release(held)  # wakes the first in line...
    first.cancel()  # ...which is cancelled before it runs on
    with pytest.raises(asyncio.CancelledError):
        await first
    connection = await asyncio.wait_for(second, 5)
    assert connection is held
    pool.release(connection)


async def test_a_waiter_timed_out_just_before_a_release_raises_pool_timeout(
    database_url: str,
) -> None:
    async with one_connection_pool(database_url, 0.05) as pool:
        held = await pool.acquire()
        late = await waiting(pool)
        time.sleep(0.1)  # noqa: ASYNC251 - the loop is held while the deadline passes
        # One step of the loop runs this task on, then the late timer; in the
        # next, this task runs before the waiter the timer woke.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # The timer has fired, the waiter has not run on yet: the release skips it.
        pool.release(held)
        with pytest.raises(PoolTimeoutError):
            await late
        connection = await pool.acquire()
        assert connection is held
        pool.release(connection)


async def test_a_released_connection_goes_to_the_longest_waiter_not_a_newcomer(
    pool: Pool,
) -> None:
    held = await pool.acquire()
    first = await waiting(pool)
    pool.release(held)
    # A statement arriving now (before the waiter has run on) finds nothing idle.
    assert pool.take_idle() is None
    newcomer = asyncio.create_task(pool.acquire())
    assert await asyncio.wait_for(first, 5) is held
    await asyncio.sleep(0.05)
    assert not newcomer.done()  # it waits its turn
    pool.release(held)
    assert await asyncio.wait_for(newcomer, 5) is held
    pool.release(held)


async def test_a_connection_handed_to_a_cancelled_waiter_goes_to_the_next(pool: Pool) -> None:
    held = await pool.acquire()
    first = await waiting(pool)
    second = await waiting(pool)
    pool.release(held)  # handed to the first...
    first.cancel()  # ...cancelled before it runs on: it must not keep it
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5) is held
    pool.release(held)
    assert pool.take_idle() is held  # and nothing was lost or doubled
    assert pool.take_idle() is None
    pool.release(held)


async def test_a_waiter_timed_out_and_cancelled_at_once_is_cancelled(database_url: str) -> None:
    # Regression: the deadline's internal mark escaped to a cancelled caller.
    async with one_connection_pool(database_url, 0.01) as pool:
        held = await pool.acquire()
        late = await waiting(pool)
        asyncio.get_running_loop().call_later(0.02, late.cancel)
        time.sleep(0.05)  # noqa: ASYNC251 - both timers fall due in one step of the loop
        with pytest.raises(asyncio.CancelledError):
            await late
        pool.release(held)
        assert pool.take_idle() is held
        pool.release(held)


async def test_a_slot_freed_by_a_broken_connection_goes_to_the_longest_waiter(
    pool: Pool,
) -> None:
    held = await pool.acquire()
    first = await waiting(pool)
    # The newcomer's first step is queued before the waiter's wake-up.
    newcomer = asyncio.create_task(pool.acquire())
    pool.release(held, broken=True)  # discarded: its place is free for a new one
    replacement = await asyncio.wait_for(first, 10)
    assert replacement is not held
    for _ in range(10):
        await asyncio.sleep(0)
    assert not newcomer.done()  # it waits its turn behind the first
    pool.release(replacement)
    assert await asyncio.wait_for(newcomer, 10) is replacement
    pool.release(replacement)


async def test_nothing_of_a_finished_wait_keeps_a_connection_alive(database_url: str) -> None:
    # Regression: the line's one deadline timer stayed armed after the wait
    # was served, holding the handed-over connection until the deadline.
    database = Database(database_url, min_size=0, max_size=1, acquire_timeout=60)
    async with database:

        async def hold() -> weakref.ref[Any]:
            async with database.connection() as connection:
                await asyncio.sleep(0.05)  # the other one waits in the pool's line
                return weakref.ref(connection.raw_connection)

        raws = await asyncio.gather(hold(), hold())
    gc.collect()
    assert [raw() for raw in raws] == [None, None]
