"""``_waits.Deadlines``: one timer times out the waiters of a whole line.

The pool and the gate register every waiting future here; what a timeout
means for users (``PoolTimeoutError``, ``ConnectionBusyError``) is tested in
test_pool.py and test_gate.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiodatabases._waits import Deadlines, TimedOut, served


def waiter(deadlines: Deadlines, timeout: float | None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    deadlines.add(future, timeout)
    return future


async def test_every_waiter_of_a_line_times_out_and_a_served_one_does_not() -> None:
    deadlines = Deadlines()
    first = waiter(deadlines, 0.05)
    second = waiter(deadlines, 0.05)
    third = waiter(deadlines, 0.06)
    second.set_result("a turn")
    for future in (first, third):
        with pytest.raises(TimedOut):
            await asyncio.wait_for(future, 5)
    assert served(second)
    assert await second == "a turn"


async def test_a_later_waiter_with_an_earlier_deadline_times_out_first() -> None:
    deadlines = Deadlines()
    patient = waiter(deadlines, 30)
    hasty = waiter(deadlines, 0.05)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(hasty, 5)
    assert not patient.done()
    patient.cancel()


async def test_waiters_left_after_a_timeout_still_time_out_later() -> None:
    deadlines = Deadlines()
    early = waiter(deadlines, 0.02)
    late = waiter(deadlines, 0.1)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(early, 5)
    assert not late.done()
    with pytest.raises(TimedOut):
        await asyncio.wait_for(late, 5)


async def test_no_timeout_means_none() -> None:
    deadlines = Deadlines()
    forever = waiter(deadlines, None)
    soon = waiter(deadlines, 0.02)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(soon, 5)
    await asyncio.sleep(0.05)
    assert not forever.done()
    forever.cancel()


async def test_a_cancelled_waiter_is_left_as_it_is() -> None:
    deadlines = Deadlines()
    gone = waiter(deadlines, 0.02)
    gone.cancel()
    other = waiter(deadlines, 0.03)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(other, 5)
    assert gone.cancelled()


async def test_a_long_wait_at_the_head_does_not_let_the_line_grow() -> None:
    # Served futures behind a waiter that is still pending are swept out;
    # without that, every wait of a busy line would be kept until the head's
    # deadline.
    deadlines = Deadlines()
    head = waiter(deadlines, 30)
    for _ in range(10_000):
        waiter(deadlines, 30).set_result(None)
    assert len(deadlines._entries) < 200
    head.cancel()


async def test_a_cleared_line_times_out_nobody() -> None:
    deadlines = Deadlines()
    first = waiter(deadlines, 0.02)
    deadlines.clear()  # its waiters were all served or gone
    later = waiter(deadlines, 0.05)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(later, 5)
    assert not first.done()
    first.cancel()
