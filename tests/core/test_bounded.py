"""``_bounded.within``: a time limit that loses neither a cancellation nor a late result.

The calls here stand in for a driver's connect whose handshake swallows a
cancellation (as aiomysql's and asyncpg's did before Python 3.12); the
real-server scan is tests/faults/test_connect_cancelled.py.
"""

from __future__ import annotations

import asyncio

import pytest

from aiodatabases._bounded import within


class Handle:
    """What a connect returns: something that must be closed."""

    def __init__(self) -> None:
        self.closed = False
        self.closed_event = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self.closed_event.set()


async def stubborn(
    handle: Handle, started: asyncio.Event, swallowed: asyncio.Event, linger: float = 0
) -> Handle:
    """Ignores one cancellation and returns ``handle`` all the same, ``linger`` s later."""
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        swallowed.set()
    await asyncio.sleep(linger)  # ends at least a turn later than its cancellation
    return handle


async def test_a_result_and_an_error_come_through() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> int:
        raise LookupError("no such thing")

    assert await within(answer(), 5) == 42
    assert await within(answer(), None) == 42
    with pytest.raises(LookupError, match="no such thing"):
        await within(fail(), 5)


async def test_the_callers_cancellation_reaches_it_and_a_late_result_is_dropped() -> None:
    handle, started, swallowed = Handle(), asyncio.Event(), asyncio.Event()
    caller = asyncio.create_task(
        within(stubborn(handle, started, swallowed), None, drop=Handle.close)
    )
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert swallowed.is_set()
    assert handle.closed


async def test_a_timeout_cancels_the_call_and_drops_its_late_result() -> None:
    handle, started, swallowed = Handle(), asyncio.Event(), asyncio.Event()
    with pytest.raises(asyncio.TimeoutError):
        await within(stubborn(handle, started, swallowed), 0.01, drop=Handle.close)
    assert swallowed.is_set()
    assert handle.closed


async def test_cancelled_again_while_the_call_ends_the_result_is_still_dropped() -> None:
    handle, started, swallowed = Handle(), asyncio.Event(), asyncio.Event()
    # Still ending when the second cancellation comes.
    slow_to_give_up = stubborn(handle, started, swallowed, linger=0.05)
    caller = asyncio.create_task(within(slow_to_give_up, None, drop=Handle.close))
    await started.wait()
    caller.cancel()
    await swallowed.wait()
    caller.cancel()  # while within() waits for the call to end
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not handle.closed  # the call is still ending...
    await asyncio.wait_for(handle.closed_event.wait(), 5)  # ...and its result is dropped


async def test_a_call_that_fails_after_its_cancellation_is_not_left_unretrieved() -> None:
    started = asyncio.Event()
    dropped: list[object] = []

    async def fails_on_cancel() -> object:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise OSError("connection reset while giving up") from None
        return object()

    caller = asyncio.create_task(within(fails_on_cancel(), None, drop=dropped.append))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert dropped == []
