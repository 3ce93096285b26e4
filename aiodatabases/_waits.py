"""Waiting for a turn: a future handed over by whoever gives the turn up.

A waiter awaits a plain future. Its deadline is kept by the line's
``Deadlines``: one timer for the whole line, armed for the earliest deadline
(no timer per wait, and no task and shield per wait as ``asyncio.wait_for``
would add). When a deadline passes, the future holds ``TimedOut``; the waiter
then leaves the line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

#: Done futures are swept out of a line when it grows past this (and twice
#: the live size after the last sweep), so a long wait at its head cannot
#: make it grow without bound.
_SWEEP_AT = 64


class TimedOut(Exception):
    """Set on a waiting future when its deadline passes."""


def served(future: asyncio.Future[Any]) -> bool:
    """Whether ``future`` is done, neither cancelled nor failed: a waiter's
    future was handed its turn (not timed out), a task ended well.

    ``_background.ended_well`` is this function under the name tasks read better by."""
    return future.done() and not future.cancelled() and future.exception() is None


class Deadlines:
    """The deadlines of the futures waiting in one line, served by one timer.

    The waiters of a line all wait with the same timeout, so deadlines mostly
    come in arrival order: the timer is armed for the oldest pending one and,
    when it fires, times out every future whose deadline has passed and
    re-arms for the earliest left. A future that is served or cancelled first
    is simply skipped. The line calls ``clear()`` when nobody waits in it any
    more, so no timer outlives the waits (nor keeps what was handed out
    alive). Lives in the loop that owns the line.
    """

    __slots__ = ("_entries", "_sweep_at", "_timer")

    def __init__(self) -> None:
        self._entries: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._sweep_at = _SWEEP_AT

    def add(self, future: asyncio.Future[Any], timeout: float | None) -> None:
        """Time ``future`` out after ``timeout`` seconds (None: never)."""
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        entries = self._entries
        while entries and entries[0][1].done():
            entries.popleft()  # served in arrival order: the usual case
        if len(entries) >= self._sweep_at:
            entries = self._entries = deque(e for e in entries if not e[1].done())
            self._sweep_at = max(_SWEEP_AT, 2 * len(entries))
        entries.append((deadline, future))
        timer = self._timer
        if timer is None or deadline < timer.when():
            self._arm(loop, deadline)

    def clear(self) -> None:
        """Nobody waits in the line any more: drop everything, stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()
        self._sweep_at = _SWEEP_AT

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        # Rare (a deadline passed, or the oldest waiter was served long ago):
        # a pass over the whole line is cheap enough here.
        self._timer = None
        now = loop.time()
        pending: deque[tuple[float, asyncio.Future[Any]]] = deque()
        for deadline, future in self._entries:
            if future.done():
                continue
            if deadline <= now:
                future.set_exception(TimedOut())
            else:
                pending.append((deadline, future))
        self._entries = pending
        self._sweep_at = max(_SWEEP_AT, 2 * len(pending))
        if pending:
            self._arm(loop, min(deadline for deadline, _ in pending))
