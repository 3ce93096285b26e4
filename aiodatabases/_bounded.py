"""Awaiting a driver's call with a time limit, losing neither a cancellation nor a late result.

``asyncio.wait_for`` before Python 3.12 returns the awaited call's result
when the caller's cancellation meets a call that finished in the same loop
turn: the cancellation is lost, and the caller goes on as if never
cancelled. Some drivers' handshakes do the same inside (they await their own
``wait_for``), so a connect cancelled at that moment goes on and finishes,
and its connection is dropped unclosed (a server session held, and a
ResourceWarning, until the garbage collector comes).

``within`` runs the call in a task of its own and waits for it. The caller's
cancellation always reaches the caller; the call is then cancelled, and a
result it produced anyway is handed to ``drop`` (to close a connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("aiodatabases")


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
    """Cancel ``task`` and wait for it to end; whatever it returns goes to ``drop``."""
    task.cancel()
    task.add_done_callback(lambda done: _dispose(done, drop))
    await asyncio.wait((task,))  # a second cancellation of the caller: the callback still runs


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
