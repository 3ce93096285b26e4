"""Tasks that nobody awaits any more, kept alive until they end.

asyncio holds tasks weakly. A task left running after its caller gave up
(a commit that must complete, a cursor being closed) is reachable only
through what it waits for, which a driver may itself hold weakly (asyncio's
stream readers are): the garbage collector could then destroy it half way,
leaving its connection half read. So every such task is kept here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

# One test for "it ended well", whether of a waiter's future or of a task.
from ._waits import served as ended_well

__all__ = ["ended_well", "keep", "shielded"]

T = TypeVar("T")

# Touched from several threads (force_rollback's loop thread and the
# application's): a set's add and discard are atomic.
_running: set[asyncio.Future[Any]] = set()


def keep(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """Hold ``future`` (a task) strongly until it is done; return it."""
    _running.add(future)
    future.add_done_callback(_running.discard)
    return future


async def shielded(work: Awaitable[T]) -> T:
    """``await asyncio.shield(work)``, with ``work`` kept alive if the caller gives up."""
    return await asyncio.shield(keep(asyncio.ensure_future(work)))
