"""Awaiting a driver's call with a time limit, losing neither a cancellation nor a late result.

``asyncio.wait_for`` before Python 3.12 returns the awaited call's result
when the caller's cancellation meets a call that finished in the same loop
turn: the cancellation is lost, and the caller goes on as if never
cancelled. Some drivers' handshakes do the same inside (they await their own
``wait_for``), so a connect cancelled at that moment goes on and finishes,
and its connection is dropped unclosed (a server session held, and a
ResourceWarning, until the garbage collector comes).

``within`` runs the call in a task of its own and waits for it. The caller's
cancellation always reaches the caller; the call is then cancelled (again,
if it lost that one too), and a result it produced anyway is handed to
``drop`` (to close a connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("aiodatabases")

#: An abandoned call is cancelled again after this many seconds, this many times.
_RETRY_AFTER = 0.1
_TRIES = 10

#: Calls that ignored every cancellation, kept alive until they end (the loop
#: holds tasks only weakly).
_left: set[asyncio.Future[Any]] = set()


async def within(
    call: Coroutine[Any, Any, T],
    timeout: float | None,
    *,
    drop: Callable[[T], object] | None = None,
) -> T:
    """The result of ``call``; ``asyncio.TimeoutError`` after ``timeout`` seconds.

    On timeout or cancellation, ``call`` is cancelled and waited for; if it
    returns a result all the same, ``drop`` is given it.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except BaseException:  # cancelled: the caller's cancellation goes on up
        await _abandon(task, drop)
        raise
    if not done:
        await _abandon(task, drop)
        raise asyncio.TimeoutError
    return task.result()


async def _abandon(task: asyncio.Future[T], drop: Callable[[T], object] | None) -> None:
    """Cancel ``task`` and wait for it to end; whatever it returns goes to ``drop``.

    A call may lose a cancellation too (a driver's own ``wait_for``) and go on
    waiting for a server that never answers: it is cancelled again, every
    ``_RETRY_AFTER`` seconds, ``_TRIES`` times at most; then it is left to
    end in the background (kept alive until then), so that the caller's
    timeout or cancellation is never held up for longer.
    """
    task.add_done_callback(lambda done: _dispose(done, drop))
    for _ in range(_TRIES):
        task.cancel()
        # A second cancellation of the caller ends this wait; the callback still runs.
        await asyncio.wait((task,), timeout=_RETRY_AFTER)
        if task.done():
            return
    logger.warning("an abandoned driver call ignored %d cancellations; leaving it to end", _TRIES)
    _left.add(task)
    task.add_done_callback(_left.discard)


def _dispose(task: asyncio.Future[T], drop: Callable[[T], object] | None) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved: never "exception was never retrieved"
    if exc is not None or drop is None:
        return
    try:
        drop(task.result())
    except Exception as error:  # closing a connection nobody will use
        logger.debug("dropping the late result of an abandoned call failed: %r", error)
