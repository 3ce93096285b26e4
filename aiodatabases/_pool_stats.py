"""What a pool says about itself: ``PoolStats``, and who holds its connections.

A ``Lent`` record notes, for each connection ``Pool.acquire()`` handed out
(to a connection block, a transaction), the name of the task it went to and
when (a name, not the task: a task that ended
without giving its connection back must still be collected, see
``_tasks``). Noting is a dictionary store per hand-out; the description is
written only when a ``PoolTimeoutError`` needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")

logger = logging.getLogger("aiodatabases.pool")

#: Holders named in one message at most (the longest holding first).
_NAMED = 5


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a connected ``Database``'s pool (``Database.pool_stats()``).

    ``size`` counts the connections open or being opened, ``idle`` those
    ready in the pool, ``in_use`` the rest (held by a caller, being opened
    for one, or being reset before they go back): ``size == idle + in_use``,
    never more than ``max_size``. ``waiting`` counts the callers waiting for
    a connection. ``opened`` and ``closed`` are totals since ``connect()``
    (a connection taken out of the pool, discarded or at ``disconnect()``,
    counts as closed at once; a connect that failed counts in neither).
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    opened: int
    closed: int
    min_size: int
    max_size: int


def snapshot(
    *, closed: int, opened: int, size: int, idle: int, waiting: int, min_size: int, max_size: int
) -> PoolStats:
    """``PoolStats`` from counts read without stopping the owning loop.

    Another thread may read them while the loop changes them, one before and
    one after a change: the snapshot is kept possible (``closed`` is read
    first, so it never exceeds ``opened``; ``idle`` and ``in_use`` stay within
    ``size``, ``size`` within ``max_size``).
    """
    size = min(max(size, 0), max_size)
    idle = min(max(idle, 0), size)
    return PoolStats(
        size=size,
        idle=idle,
        in_use=size - idle,
        waiting=max(waiting, 0),
        opened=opened,
        closed=min(closed, opened),
        min_size=min_size,
        max_size=max_size,
    )


class Tally:
    """A pool's totals and waiters (for ``PoolStats``), and who is told how long
    each acquire waited (``acquire_listeners``: OpenTelemetry's histogram; the
    list is its owner's, changed in place; empty, it costs a truth test)."""

    __slots__ = ("closed", "listeners", "max_size", "min_size", "opened", "waiting")

    def __init__(
        self, min_size: int, max_size: int, listeners: list[Callable[[float], None]] | None
    ) -> None:
        self.min_size, self.max_size = min_size, max_size
        self.opened = 0
        self.closed = 0
        self.waiting = 0
        self.listeners = [] if listeners is None else listeners

    def stats(self, size: int, idle: int) -> PoolStats:
        """A snapshot (``closed`` read first: never more closed than opened)."""
        closed = self.closed
        return snapshot(
            closed=closed,
            opened=self.opened,
            size=size,
            idle=idle,
            waiting=self.waiting,
            min_size=self.min_size,
            max_size=self.max_size,
        )

    def waited(self, seconds: float) -> None:
        for listener in self.listeners:
            try:
                listener(seconds)
            except Exception:
                logger.exception("an acquire listener failed; ignored")


class Lent(dict[K, tuple[str, float]]):
    """The connections handed out by ``Pool.acquire()``: to which task (by name)
    and since when. ``take_idle()`` (a statement borrowing a connection, the
    hot path) notes nothing: such a connection is counted as borrowed."""

    def note(self, conn: K) -> K:
        """``conn`` goes to the current task now; returns it."""
        task = asyncio.current_task()
        self[conn] = (task.get_name() if task is not None else "", time.monotonic())
        return conn

    def describe(self, others: int) -> str:
        """Who holds the connections, longest first; ``others`` are not noted."""
        now = time.monotonic()
        held = sorted(self.values(), key=lambda entry: entry[1])
        parts = [
            f"task {name!r} for {now - since:.2f}s" if name else f"(no task) for {now - since:.2f}s"
            for name, since in held[:_NAMED]
        ]
        if len(held) > _NAMED:
            parts.append(f"{len(held) - _NAMED} more")
        if others > 0:
            parts.append(
                f"{others} running one statement each outside any connection block, "
                "or being opened or reset"
            )
        return ", ".join(parts) if parts else "nothing (all being closed)"


def exhausted_message(
    timeout: float | None,
    started: float,
    deadline: float | None,
    max_size: int,
    size: int,
    holders: str,
) -> str:
    """The ``PoolTimeoutError`` of a wait that began at ``started`` and ran out at
    ``deadline``: how long it waited, what bounded it, who holds the connections."""
    waited = time.monotonic() - started
    # The deadline may have been fixed by an earlier wait of the same statement
    # (its turn on a shared connection, the start of a call carried to its loop).
    before = 0.0 if deadline is None or timeout is None else started - (deadline - timeout)
    if before > 0.001:
        bound = (
            f"what was left of acquire_timeout={timeout}s after {before:.2f}s spent waiting "
            "before: for its turn on a shared connection, or for the owning event loop"
        )
    else:
        bound = f"acquire_timeout={timeout}s"
    return (
        f"no database connection became free in the {waited:.2f}s this statement waited "
        f"for one ({bound}): the pool is full (max_size={max_size}, all {size} in use), "
        f"held by {holders}. Raise max_size or acquire_timeout (it bounds the whole wait "
        "of one statement), or look for a task that holds a connection while it waits "
        "for another task that needs one (a deadlock)"
    )
