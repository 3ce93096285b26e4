"""Tasks that nobody awaits any more, kept alive until they end.

asyncio holds tasks weakly. A task left running after its caller gave up
(a commit that must complete, a cursor being closed) is reachable only
through what it waits for, which a driver may itself hold weakly (asyncio's
stream readers are): the garbage collector could then destroy it half way,
leaving its connection half read. So every such task is kept here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

# One test for "it ended well", whether of a waiter's future or of a task.
from ._waits import served as ended_well

__all__ = ["ended_well", "keep", "shielded"]

T = TypeVar("T")


class Background:
    """Tasks kept alive until they end; their owner can wait for them all (``settle``).

    The one registry of such tasks: the pool's resets and closes and the
    runtime's cleanups each form a group that their ``close()`` waits for;
    every other kept task (a carried call, a statement run to its end, the
    work of ``shielded``) is in the module's group, which nobody waits for.
    A set's add and discard are atomic: a group may be touched from several
    threads (force_rollback's loop thread and the application's).
    """

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: set[asyncio.Future[Any]] = set()

    def __bool__(self) -> bool:
        return bool(self._running)

    def keep(self, future: asyncio.Future[T]) -> asyncio.Future[T]:
        """Hold ``future`` (a task) strongly until it is done; return it."""
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` as a kept task of the running loop (closed unrun if none
        runs: a connection collected late, after its loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        self.keep(loop.create_task(work))

    async def settle(self) -> None:
        """Wait until every task of the group has ended (and those they started)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


_anywhere = Background()


def keep(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """Hold ``future`` (a task) strongly until it is done; return it."""
    return _anywhere.keep(future)


async def shielded(work: Awaitable[T]) -> T:
    """``await asyncio.shield(work)``, with ``work`` kept alive if the caller gives up."""
    return await asyncio.shield(keep(asyncio.ensure_future(work)))
