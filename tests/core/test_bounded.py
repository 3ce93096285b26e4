"""``_bounded.within``: a time limit that loses neither a cancellation nor a late result.

The calls here stand in for a driver's connect whose handshake swallows a
cancellation (as aiomysql's and asyncpg's did before Python 3.12); the
real-server scan is tests/faults/test_connect_cancelled.py.
"""

from __future__ import annotations

import asyncio

import pytest

from aiodatabases import _bounded
from aiodatabases._bounded import within


class Handle:
    """What a connect returns: something that must be closed."""

    def __init__(self) -> None:
        self.closed_event = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.closed_event.is_set()

    def close(self) -> None:
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


async def test_a_call_that_loses_the_cancellation_too_is_cancelled_again() -> None:
    """A driver's own ``wait_for`` may lose the cancellation, then wait on a
    server that never answers: the timeout still ends the wait."""
    started, swallowed, answer = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def loses_one_then_waits() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()
        await answer.wait()  # never set: only a second cancellation ends it

    waiting = asyncio.create_task(within(loses_one_then_waits(), 0.01))
    done, _ = await asyncio.wait((waiting,), timeout=5)  # a hang guard, not a timing assert
    answer.set()  # whatever happened, let the call end
    assert waiting in done
    assert isinstance(waiting.exception(), asyncio.TimeoutError)
    assert swallowed.is_set()


async def test_a_call_that_ignores_every_cancellation_is_left_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_bounded, "_RETRY_AFTER", 0.01)
    handle, finish = Handle(), asyncio.Event()
    cancellations = 0

    async def deaf() -> Handle:
        nonlocal cancellations
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                cancellations += 1
        return handle

    waiting = asyncio.create_task(within(deaf(), 0.01, drop=Handle.close))
    done, _ = await asyncio.wait((waiting,), timeout=5)  # a hang guard, not a timing assert
    if waiting not in done:
        finish.set()  # let the call end, then fail
    assert waiting in done
    assert isinstance(waiting.exception(), asyncio.TimeoutError)
    assert cancellations == _bounded._TRIES
    assert len(_bounded._left) == 1  # kept alive, not destroyed pending
    finish.set()
    await asyncio.wait_for(handle.closed_event.wait(), 5)  # ended, and its result dropped
    await asyncio.sleep(0)
    assert _bounded._left == set()
