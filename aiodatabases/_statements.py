"""Running one statement on a driver connection, and what a cancellation does to it.

The core runs every statement through ``run_statement``, which knows how the
backend's driver behaves when its caller is cancelled mid-statement:

- asyncpg stops the statement on the server itself, and the SQLite backend
  its worker thread's (a queued statement is skipped, a running read
  interrupted): they run as they are;
- the MySQL drivers cannot abandon a result half read: the statement runs to
  its end in a task of its own (``_Statement``), stopped on the server by
  ``KILL QUERY``, and the caller's ``CancelledError`` comes once it has ended,
  so the connection is usable again before anyone else's statement runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeAlias, TypeVar, cast

from ._background import keep
from ._query import is_read_only
from .backends.base import Args, Backend, DriverConnection

logger = logging.getLogger("aiodatabases")

T = TypeVar("T")

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


def may_run_again(backend: Backend, exc: BaseException, first_use: bool) -> bool:
    """The health check: whether a statement that failed with ``exc`` runs once
    more, on another connection from the pool.

    Only when its connection came from the pool for this statement
    (``first_use``: nothing of the caller's is on it) and ``exc`` says that
    connection was dead before the statement was sent, so the statement never
    reached the server. Nothing else is ever retried: a statement that may
    have run is the caller's to see fail. The second failure is final.
    """
    return first_use and backend.is_stale(exc)


def run_statement(
    backend: Backend,
    driver: DriverConnection,
    op: Operation,
    sql: str,
    args: Any,
    on_lost: Callable[[Any], Awaitable[None]] | None = None,
) -> Awaitable[Any]:
    """Run one driver operation, stopping it on the server if the caller is cancelled.

    Cancellation: the statement is stopped where the driver allows it;
    drivers that cannot abandon a statement half read (MySQL) are waited for
    until the interrupted statement ends, so the connection stays usable; a
    result the cancelled caller will never see is handed to ``on_lost`` (a
    cursor must be closed). A backend that stops a cancelled statement
    itself (asyncpg, SQLite) runs as it is.
    """
    if backend.capabilities.cancel_waits_for_statement:
        return _run_to_its_end(driver, op, sql, args, on_lost)
    return op(driver, sql, args)


async def _run_to_its_end(
    driver: DriverConnection,
    op: Operation,
    sql: str,
    args: Any,
    on_lost: Callable[[Any], Awaitable[None]] | None,
) -> Any:
    statement = _Statement(_coroutine(op(driver, sql, args)), driver, sql)
    try:
        # Awaited directly: a cancelled caller cancels the task it waits on,
        # which the statement declines (see _Statement), so the caller waits on.
        return await statement
    except asyncio.CancelledError:
        # Before the connection is used again: the interrupt has reached the
        # server (a late one would stop the next statement), and a result
        # nobody will read is dealt with.
        await _ToItsEnd(statement.settle(on_lost), loop=statement.get_loop())
        raise


class _ToItsEnd(asyncio.Task[Any]):
    """A task that runs to its end: ``cancel()`` declines.

    A caller awaiting it that is cancelled waits for it to end and then gets
    its ``CancelledError``. So does the loop's own shutdown (``asyncio.run``
    cancels every task and waits for them).
    """

    def cancel(self, msg: Any = None) -> bool:
        return False


class _Told(_ToItsEnd):
    """``_ToItsEnd`` that calls ``on_cancel()`` (once) when it declines."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], on_cancel: Callable[[], None]):
        super().__init__(coroutine)
        self._on_cancel: Callable[[], None] | None = on_cancel

    def cancel(self, msg: Any = None) -> bool:
        on_cancel, self._on_cancel = self._on_cancel, None
        if on_cancel is not None and not self.done():
            on_cancel()
        return False


def to_its_end(work: Awaitable[T], on_cancel: Callable[[], None] | None = None) -> asyncio.Task[T]:
    """``work`` run to its end, even if its caller is cancelled meanwhile.

    A caller awaiting the returned task that is cancelled waits for it to end
    and then gets its ``CancelledError`` (the task tells how the work ended);
    ``on_cancel()`` may hurry the work along (give up waiting for a lock).
    Cheaper than a task behind ``asyncio.shield``: the caller is woken once.
    """
    coroutine = _coroutine(work)
    task = _ToItsEnd(coroutine) if on_cancel is None else _Told(coroutine, on_cancel)
    return cast("asyncio.Task[T]", keep(task))


class _Statement(_ToItsEnd):
    """A statement that runs to its end: cancelling it interrupts it on the server.

    Its caller awaits it directly. When the caller is cancelled, asyncio
    cancels what the caller waits on: this task, which declines and starts
    ``KILL QUERY`` instead. The caller then gets its ``CancelledError`` when
    the statement has ended, with an error or not; a second cancellation
    changes nothing. Only if the statement has not ended ``_CANCEL_WAIT``
    seconds after the interrupt is it cancelled for real (its driver
    connection is then out of step and gets discarded).
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], driver: DriverConnection, sql: str):
        super().__init__(self._run(coroutine))
        self._driver = driver
        self._sql = sql
        self._stopping: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    async def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await coroutine
        except Exception:
            if self._stopping is None:
                raise
        # Stopped for a caller that gave up ("interrupted"): nobody's error
        # (asyncio.run's shutdown would report it as unhandled).
        raise asyncio.CancelledError

    def cancel(self, msg: Any = None) -> bool:
        if not self.done() and self._stopping is None:
            # It declines cancellation too: the loop's shutdown must not stop
            # the interrupt half way (the statement would run to its own end).
            self._stopping = _ToItsEnd(self._stop(), loop=self.get_loop())
        return False

    async def _stop(self) -> None:
        for _ in range(2):
            if self.done():
                break
            try:
                await interrupt_quietly(self._driver, self._sql)
                break
            except asyncio.CancelledError:
                # The loop's shutdown cancels every task it finds, the
                # interrupt's own (its connection's) too; one made now is spared.
                continue
        await asyncio.wait([self], timeout=_CANCEL_WAIT)
        if not self.done():
            logger.warning(
                "a cancelled statement did not end %ss after its interrupt; abandoning it",
                _CANCEL_WAIT,
            )
            asyncio.Task.cancel(self)

    async def settle(self, on_lost: Callable[[Any], Awaitable[None]] | None) -> None:
        """After the caller gave up: the interrupt delivered, a lost result handed on."""
        if self._stopping is not None:
            await self._stopping
        if self.cancelled() or self.exception() is not None:
            return
        if on_lost is not None:
            try:
                await on_lost(self.result())
            except Exception as exc:
                logger.debug("releasing the result of a cancelled statement failed: %r", exc)


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


async def pause_if_inline(driver: DriverConnection) -> None:
    """Let the loop's other tasks run if the last statement did not suspend.

    A brief read that the backend ran on the calling thread (SQLite) finished
    without suspending its caller: a loop of such reads (or of failing ones)
    would starve every other task, and could never be cancelled. So the
    caller suspends once afterwards, as after a statement that waited for
    I/O; afterwards, so that a statement that arrived first still runs first.
    """
    if driver.ran_inline:
        await asyncio.sleep(0)
