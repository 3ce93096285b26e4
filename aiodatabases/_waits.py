"""Waiting for a turn: a line of futures, each handed its turn by whoever gives it up.

A waiter awaits a plain future in a ``Line``. Its deadline is kept by the
line's ``Deadlines``: one timer for the whole line, armed for the earliest
deadline (no timer per wait, and no task and shield per wait as
``asyncio.wait_for`` would add). When a deadline passes, the future holds
``TimedOut``; the waiter then leaves the line.

One statement may wait several times before it runs (for the owning loop to
start it, for its turn on a shared connection, for a pooled connection):
``acquire_timeout`` bounds them together. The first wait that has to happen
fixes the statement's deadline (``deadline_after``); the later ones use what
is left of it. Deadlines are ``time.monotonic()`` values, the same clock in
every loop and thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")

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


# The deadline of the statement a call carried to its owning loop runs: set
# in the carried call's own context (a copy of its caller's), so it is seen
# by that call and by nothing else.
_carried_deadline: Final = contextvars.ContextVar[float | None](
    "aiodatabases_deadline", default=None
)


def deadline_after(timeout: float | None) -> float | None:
    """The deadline of the current statement's wait: the one fixed when it was
    carried to the owning loop, else ``timeout`` seconds from now (None: never).

    Called only when a wait has to happen: a statement that waits for nothing
    computes no deadline.
    """
    deadline = _carried_deadline.get()
    if deadline is not None or timeout is None:
        return deadline
    return time.monotonic() + timeout


def context_for_carried(deadline: float | None) -> contextvars.Context:
    """A copy of the current context for a call carried to another loop,
    whose waits there end at ``deadline``."""
    context = contextvars.copy_context()
    if deadline is not None or _carried_deadline.get() is not None:
        context.run(_carried_deadline.set, deadline)
    return context


def forget_deadline() -> None:
    """In a background task started from a carried call: its waits are its own."""
    if _carried_deadline.get() is not None:
        _carried_deadline.set(None)


class Line(Generic[T, K]):
    """Waiters in arrival order, each with a key saying who waits, and their deadlines.

    Whoever gives a turn up hands it (a value of type ``T``) to a waiter: the
    longest one (``serve_first``, the pool's rule) or the longest one a rule
    admits (``serve_first_where``, the gate's). A waiter handed its turn at
    the moment it gave up (cancelled) gives the value to ``hand_on``, so a
    turn is never lost. Lives in the loop that owns it.
    """

    __slots__ = ("_deadlines", "_entries", "_hand_on")

    def __init__(self, hand_on: Callable[[T], None]) -> None:
        self._entries: deque[tuple[asyncio.Future[T], K]] = deque()
        self._deadlines = Deadlines()
        self._hand_on = hand_on

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[tuple[asyncio.Future[T], K]]:
        return iter(self._entries)

    async def wait(self, key: K, deadline: float | None) -> T:
        """Wait in line until handed a turn; ``TimedOut`` at ``deadline`` (None: never).

        Cancellation: the caller holds nothing; a turn handed over at the
        moment of cancellation goes to ``hand_on``.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = (future, key)
        self._entries.append(entry)
        self._deadlines.add_at(future, deadline)
        try:
            return await future
        except BaseException:  # TimedOut, a cancellation
            if served(future):
                self._hand_on(future.result())  # handed the turn as we gave up
            else:
                future.cancel()
                self._leave(entry)
            raise

    def serve_first(self, value: T) -> bool:
        """Hand ``value`` to the longest live waiter; False if nobody waits."""
        entries = self._entries
        while entries:
            future, _ = entries.popleft()
            if not future.done():
                future.set_result(value)
                if not entries:
                    self._deadlines.clear()
                return True
        self._deadlines.clear()
        return False

    def serve_first_where(self, admits: Callable[[K], bool], value: T) -> bool:
        """Hand ``value`` to the longest live waiter whose key ``admits``; False if none."""
        for entry in self._entries:
            future, key = entry
            if not future.done() and admits(key):
                self._leave(entry)
                future.set_result(value)
                return True
        return False

    def any_where(self, admits: Callable[[K], bool]) -> bool:
        """Whether a live waiter's key ``admits`` (one would be served ahead)."""
        return any(not future.done() and admits(key) for future, key in self._entries)

    def _leave(self, entry: tuple[asyncio.Future[T], K]) -> None:
        # A finished future may already have been popped (and skipped) by a wake-up.
        with contextlib.suppress(ValueError):
            self._entries.remove(entry)
        if not self._entries:
            self._deadlines.clear()


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

    __slots__ = ("_armed_for", "_entries", "_sweep_at", "_timer")

    def __init__(self) -> None:
        self._entries: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the deadline the timer fires at
        self._sweep_at = _SWEEP_AT

    def add(self, future: asyncio.Future[Any], timeout: float | None) -> None:
        """Time ``future`` out after ``timeout`` seconds (None: never)."""
        self.add_at(future, None if timeout is None else time.monotonic() + max(0.0, timeout))

    def add_at(self, future: asyncio.Future[Any], deadline: float | None) -> None:
        """Time ``future`` out at ``deadline`` (``time.monotonic()``; None: never)."""
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        entries = self._entries
        while entries and entries[0][1].done():
            entries.popleft()  # served in arrival order: the usual case
        if len(entries) >= self._sweep_at:
            entries = self._entries = deque(e for e in entries if not e[1].done())
            self._sweep_at = max(_SWEEP_AT, 2 * len(entries))
        entries.append((deadline, future))
        if self._timer is None or deadline < self._armed_for:
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
        self._armed_for = deadline
        self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        # Rare (a deadline passed, or the oldest waiter was served long ago):
        # a pass over the whole line is cheap enough here.
        self._timer = None
        now = time.monotonic()
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
