"""The gate's waiting line, where a hand-over, a timeout and a cancellation meet.

These drive ``_gate.Gate`` directly: the races need a release and a
cancellation (or an expired deadline) in the same step of the loop, which
the public API cannot arrange on purpose. What the gate means for users is
tested through ``Database`` in test_tasks.py and test_transaction.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiodatabases import ConnectionBusyError
from aiodatabases._gate import Gate, Scope

NOBODY: tuple[Scope, ...] = ()


async def waiting(gate: Gate, timeout: float | None = 5.0) -> asyncio.Task[None]:
    task = asyncio.create_task(gate.acquire(NOBODY, timeout, "a waiter"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()  # it waits in line
    return task


async def test_statements_pass_one_at_a_time_in_arrival_order() -> None:
    gate = Gate()
    await gate.acquire(NOBODY, None, "first")
    order: list[int] = []

    async def statement(n: int) -> None:
        await gate.acquire(NOBODY, 5.0, f"statement {n}")
        order.append(n)
        await asyncio.sleep(0)
        gate.release()

    tasks = [asyncio.create_task(statement(n)) for n in range(5)]
    await asyncio.sleep(0)
    gate.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_waiter_cancelled_just_before_a_release_passes_it_on() -> None:
    gate = Gate()
    await gate.acquire(NOBODY, None, "holder")
    first = await waiting(gate)
    second = await waiting(gate)
    first.cancel()
    gate.release()  # in the same step: the cancelled one is skipped
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    gate.release()
    await asyncio.wait_for(gate.acquire(NOBODY, 1.0, "after"), 5)  # the gate is free


async def test_a_waiter_handed_the_turn_then_cancelled_passes_it_on() -> None:
    gate = Gate()
    await gate.acquire(NOBODY, None, "holder")
    first = await waiting(gate)
    second = await waiting(gate)
    gate.release()  # hands the turn to the first in line...
    first.cancel()  # ...which is cancelled before it runs on
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)


async def test_a_waiter_timed_out_just_before_a_release_raises_busy() -> None:
    gate = Gate()
    await gate.acquire(NOBODY, None, "holder")
    late = await waiting(gate, timeout=0.05)
    time.sleep(0.1)  # noqa: ASYNC251 - the loop is held while the deadline passes
    # One step runs this task on, then the late timer; in the next, this task
    # runs before the waiter the timer woke.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.release()  # the timed-out waiter is skipped: the turn stays free
    with pytest.raises(ConnectionBusyError, match="a statement of task"):
        await late
    await asyncio.wait_for(gate.acquire(NOBODY, 1.0, "after"), 5)


async def test_a_timed_out_waiter_leaves_the_turn_with_its_holder() -> None:
    gate = Gate()
    await gate.acquire(NOBODY, None, "holder")
    late = await waiting(gate, timeout=0.05)
    patient = await waiting(gate)
    with pytest.raises(ConnectionBusyError):
        await late
    for _ in range(10):
        await asyncio.sleep(0)
    assert not patient.done()  # the holder still has the turn
    gate.release()
    await asyncio.wait_for(patient, 5)


async def test_an_owned_gate_admits_only_its_scope_and_times_out_others() -> None:
    gate = Gate()
    mine = Scope("'owner'")
    gate.set_owner(mine)
    await asyncio.wait_for(gate.acquire((mine,), 1.0, "owner"), 5)
    gate.release()
    with pytest.raises(ConnectionBusyError, match="a transaction started by task 'owner'"):
        await gate.acquire(NOBODY, 0.05, "outsider")
    outsider = await waiting(gate)
    gate.set_owner(None)  # the transaction ended: the outsider passes
    await asyncio.wait_for(outsider, 5)


async def test_a_waiter_timed_out_and_cancelled_at_once_takes_no_turn() -> None:
    # Regression: the deadline's mark on the future was taken for a turn
    # handed over, and the turn "passed on" while the holder still held it.
    loop = asyncio.get_running_loop()
    gate = Gate()
    await gate.acquire(NOBODY, None, "holder")
    late = await waiting(gate, timeout=0.01)
    loop.call_later(0.02, late.cancel)
    time.sleep(0.05)  # noqa: ASYNC251 - both timers fall due in one step of the loop
    with pytest.raises(asyncio.CancelledError):
        await late
    third = await waiting(gate)  # the holder still has the turn
    gate.release()
    await asyncio.wait_for(third, 5)
