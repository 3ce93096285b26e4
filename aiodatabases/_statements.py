"""Running one statement on a driver connection, and what a cancellation does to it.

The core runs every statement through ``run_statement``, which knows how the
backend's driver behaves when its caller is cancelled mid-statement:

- asyncpg stops the statement on the server itself: it runs as it is;
- aiosqlite's worker thread would run it to its end: a read is interrupted;
- the MySQL drivers cannot abandon a result half read: the statement runs to
  its end in a task of its own (``_Statement``), stopped on the server by
  ``KILL QUERY``, and the caller's ``CancelledError`` comes once it has ended,
  so the connection is usable again before anyone else's statement runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeAlias

from ._query import is_read_only
from .backends.base import Args, Backend, DriverConnection

logger = logging.getLogger("aiodatabases")

#: One driver operation: (driver connection, sql, args) -> result.
Operation: TypeAlias = Callable[[DriverConnection, str, Any], Awaitable[Any]]


def _fetch_all(d: DriverConnection, sql: str, args: Args) -> Awaitable[Any]:
    return d.fetch_all(sql, args)


def _fetch_one(d: DriverConnection, sql: str, args: Args) -> Awaitable[Any]:
    return d.fetch_one(sql, args)


def _execute(d: DriverConnection, sql: str, args: Args) -> Awaitable[Any]:
    return d.execute(sql, args)


def _execute_many(d: DriverConnection, sql: str, args: Sequence[Args]) -> Awaitable[Any]:
    return d.execute_many(sql, args)


FETCH_ALL: Operation = _fetch_all
FETCH_ONE: Operation = _fetch_one
EXECUTE: Operation = _execute
EXECUTE_MANY: Operation = _execute_many

#: Seconds a cancelled statement may take to end after its interrupt; after
#: that it is abandoned (the driver connection is then lost).
_CANCEL_WAIT = 30.0


def run_statement(
    backend: Backend, driver: DriverConnection, op: Operation, sql: str, args: Any
) -> Awaitable[Any]:
    """Run one driver operation, stopping it on the server if the caller is cancelled.

    Cancellation: the statement is interrupted where the driver allows it;
    drivers that cannot abandon a statement half read (MySQL) are waited for
    until the interrupted statement ends, so the connection stays usable. A
    driver that stops a cancelled statement itself (asyncpg) runs as it is.
    """
    if backend.cancel_waits_for_statement:
        return _run_to_its_end(driver, op, sql, args)
    if backend.cancel_needs_interrupt:
        return _run_interruptible(driver, op, sql, args)
    return op(driver, sql, args)


async def _run_interruptible(driver: DriverConnection, op: Operation, sql: str, args: Any) -> Any:
    try:
        return await op(driver, sql, args)
    except asyncio.CancelledError:
        await driver.interrupt(is_read_only(sql))
        raise


async def _run_to_its_end(driver: DriverConnection, op: Operation, sql: str, args: Any) -> Any:
    statement = _Statement(_coroutine(op(driver, sql, args)), driver, sql)
    try:
        # Awaited directly: a cancelled caller cancels the task it waits on,
        # which the statement declines (see _Statement), so the caller waits on.
        return await statement
    except asyncio.CancelledError:
        if statement.done() and not statement.cancelled():
            statement.exception()  # expected: "interrupted"; retrieved, not logged
        raise


class _Statement(asyncio.Task[Any]):
    """A statement that runs to its end: cancelling it interrupts it on the server.

    Its caller awaits it directly. When the caller is cancelled, asyncio
    cancels what the caller waits on: this task, which declines (``cancel()``
    returns False) and starts ``KILL QUERY`` instead. The caller then gets
    its ``CancelledError`` when the statement has ended, with an error or
    not; a second cancellation changes nothing. Only if the statement has
    not ended ``_CANCEL_WAIT`` seconds after the interrupt is it cancelled
    for real (its driver connection is then out of step and gets discarded).
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], driver: DriverConnection, sql: str):
        super().__init__(coroutine)
        self._driver = driver
        self._sql = sql
        self._stopping: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    def cancel(self, msg: Any = None) -> bool:
        if not self.done() and self._stopping is None:
            self._stopping = self.get_loop().create_task(self._stop())
        return False

    async def _stop(self) -> None:
        await interrupt_quietly(self._driver, self._sql)
        await asyncio.wait([self], timeout=_CANCEL_WAIT)
        if not self.done():
            logger.warning(
                "a cancelled statement did not end %ss after its interrupt; abandoning it",
                _CANCEL_WAIT,
            )
            asyncio.Task.cancel(self)


def _coroutine(awaitable: Awaitable[Any]) -> Coroutine[Any, Any, Any]:
    """A coroutine for a task (a backend may return another kind of awaitable)."""
    if asyncio.iscoroutine(awaitable):
        return awaitable

    async def run() -> Any:
        return await awaitable

    return run()


async def interrupt_quietly(driver: DriverConnection, sql: str) -> None:
    """Ask the server to stop ``sql``; a failure is logged, not raised."""
    try:
        await driver.interrupt(is_read_only(sql))
    except Exception as exc:
        logger.warning("could not interrupt a cancelled statement: %r", exc)


async def pause_after(backend: Backend, sql: str) -> None:
    """Let the loop's other tasks run after a statement that may not have suspended.

    A brief read that the backend runs on the calling thread (SQLite)
    finishes without suspending its caller: a loop of such reads would starve
    every other task (and could never be cancelled). So the caller suspends
    once afterwards, as after a statement that waited for I/O. Afterwards,
    not before: a statement that arrived first still runs first.
    """
    if backend.brief_reads_inline and is_read_only(sql):
        await asyncio.sleep(0)
