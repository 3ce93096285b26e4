"""Waiting for a turn: a future handed over by whoever gives the turn up.

``wait()`` awaits such a future with an optional deadline, as a timer on the
future itself (no task and no shield per wait, unlike ``asyncio.wait_for``).
On timeout the future holds ``TimedOut``; the waiter then leaves the line.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")


class TimedOut(Exception):
    """Set on a waiting future when its deadline passes."""


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimedOut())


async def wait(future: asyncio.Future[T], timeout: float | None) -> T:
    """``await future``; raise ``TimedOut`` after ``timeout`` seconds (None: never).

    Cancelling the caller cancels ``future`` unless it is already done, so
    a caller that catches the cancellation can tell a turn handed over at
    that moment (``served(future)``) from none.
    """
    if timeout is None:
        return await future
    timer = asyncio.get_running_loop().call_later(max(0.0, timeout), _time_out, future)
    try:
        return await future
    finally:
        timer.cancel()


def served(future: asyncio.Future[Any]) -> bool:
    """Whether ``future`` was handed its turn (not cancelled, not timed out)."""
    return future.done() and not future.cancelled() and future.exception() is None
