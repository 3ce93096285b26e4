"""What one ``connect()`` builds: the pool, and where its statements run.

A ``Runtime`` is created by ``Database.connect()`` and dropped by the
``disconnect()`` that balances it. It owns the pool and every loop-bound
object, all living in one loop: the connecting loop, or for a force_rollback
database a private loop thread. ``call()`` runs a coroutine function there,
carrying it over from any other loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from ._background import Background, shielded
from ._loops import LoopThread, carry, carry_call, check_can_carry
from ._observe import Observers
from ._pool import Pool
from ._statements import (
    Operation,
    interrupt_quietly,
    may_run_again,
    pause_if_inline,
    run_statement,
)
from ._waits import forget_deadline
from .backends.base import Backend, DriverConnection
from .exceptions import CommandTimeoutError

logger = logging.getLogger("aiodatabases")

T = TypeVar("T")
P = ParamSpec("P")


class Holder(Protocol):
    """What holds a pooled connection outside the pool (a connection's ``Session``)."""

    async def close_for_disconnect(self) -> None:
        """Wait for the running statement, roll back, close; refuse everything after."""

    def close_at_terminate(self) -> None:
        """The same without awaiting: the owning loop is gone (the pool drops the socket)."""


@dataclass(frozen=True)
class Settings:
    """Core options, shared by every backend."""

    min_size: int
    max_size: int
    acquire_timeout: float | None
    pool_recycle: float | None = None
    #: Seconds a pooled connection may idle before it is pinged when taken; None: never.
    health_check_after: float | None = None
    #: The statement log writes the values bound (``_statement_log``).
    log_values: bool = False
    #: Seconds from which a statement is logged as slow (WARNING); None: never.
    slow_statement_threshold: float | None = None


class Runtime:
    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        thread: LoopThread | None,
        observers: Observers,
        connect: Callable[[], Awaitable[DriverConnection]] | None = None,
    ) -> None:
        """``connect`` opens the pool's connections (default: ``backend.connect``;
        a replica's tells its failures apart, see ``_replicas``)."""
        self.backend = backend
        self.settings = settings
        #: The ``Database``'s hooks: statements run them in the caller's task.
        self.observers = observers
        self.loop = loop
        self.thread = thread
        max_size = 1 if backend.capabilities.single_connection else settings.max_size
        self.pool = Pool(
            connect or backend.connect,
            min_size=min(settings.min_size, max_size),
            max_size=max_size,
            timeout=settings.acquire_timeout,
            recycle=settings.pool_recycle,
            health_check_after=settings.health_check_after,
            acquire_listeners=observers.acquire_listeners,
            name=backend.url.obscure_password,
        )
        self._background = Background()  # cleanups (spawn): close() waits for them
        # Connections holding a driver connection now; weakly, so that one whose
        # task ended without closing it is still collected (``Session.__del__``).
        self.holders: weakref.WeakSet[Holder] = weakref.WeakSet()
        self._watch: AsyncGenerator[None, None] | None = None
        self._closed = False

    # -- where code runs ------------------------------------------------------------

    def call(
        self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]:
        """Run ``func`` in the owning loop; await the result in the caller's loop.

        In the owning loop this is ``func(*args)`` itself (no extra frame).
        """
        if asyncio.get_running_loop() is self.loop:
            return func(*args, **kwargs)
        # A private loop thread never blocks; another application loop might.
        start_timeout = None if self.thread is not None else self.settings.acquire_timeout
        return carry(self.loop, start_timeout, func, *args, **kwargs)

    def call_keeping(
        self,
        on_lost: Callable[[T], None],
        func: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[T]:
        """``call()`` for work whose result the caller must give back (a hold, a
        cursor): if the caller gives up while the work, carried to the owning
        loop, succeeds, ``on_lost(result)`` runs in the caller's loop (it may
        only post back, e.g. ``spawn``). In the owning loop nothing can be
        lost: the work runs in the caller's own task.
        """
        if asyncio.get_running_loop() is self.loop:
            return func(*args, **kwargs)
        start_timeout = None if self.thread is not None else self.settings.acquire_timeout
        return carry_call(self.loop, start_timeout, on_lost, lambda: func(*args, **kwargs))

    def check_reachable(self) -> None:
        """Raise ``WrongEventLoopError`` if the current loop cannot use this runtime."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            check_can_carry(self.loop)

    def spawn(self, func: Callable[[], Awaitable[Any]]) -> None:
        """Start ``func()`` in the owning loop, from any thread, without waiting.

        Used for cleanup found by the garbage collector or after a cancellation;
        ``call_soon_threadsafe`` is safe from both.
        """
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._track, func)

    def _track(self, func: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            forget_deadline()  # cleanup of a carried call: not bounded by what is left of it
            try:
                await func()
            except Exception:
                logger.exception("aiodatabases background cleanup failed")

        self._background.start(run())

    def release_orphan(self, driver: DriverConnection) -> None:
        """Return a connection whose holder was garbage collected (any thread)."""
        if sys.is_finalizing():
            return  # the process is ending: its sockets and daemon threads go with it
        if self.loop.is_closed():
            driver.terminate()
            return
        self.loop.call_soon_threadsafe(lambda: self.pool.release(driver, dirty=True))

    # -- statements outside any block: borrow a connection for one statement --------

    async def run_borrowed(self, op: Operation, sql: str, args: Any) -> Any:
        """Run one statement on a pooled connection taken for it alone.

        A connection found dead before the statement was sent is replaced
        once (``may_run_again``, the health check).

        Cancellation: the connection goes back marked dirty and is reset
        (the server-side statement cancelled) before anyone reuses it. Where
        the driver cannot abandon a statement half read (MySQL), the borrowed
        connection holds nothing worth keeping: the statement is stopped on
        the server and the connection discarded (the pool opens another),
        instead of running every statement as a task of its own to protect it.
        """
        pool = self.pool
        backend = self.backend
        discard_on_cancel = backend.capabilities.cancel_waits_for_statement
        for attempt in (1, 2):
            driver = pool.take_idle() or await pool.acquire()
            try:
                if discard_on_cancel:
                    result = await op(driver, sql, args)
                else:
                    result = await run_statement(backend, driver, op, sql, args)
            except BaseException as exc:
                if discard_on_cancel and isinstance(exc, asyncio.CancelledError):
                    stop = interrupt_quietly(driver, sql)
                    pool.discard(driver, first=stop, why="its statement was cancelled")
                    raise
                dirty, broken = self.classify_failure(driver, exc)
                pool.release(driver, dirty=dirty, broken=broken)
                if not may_run_again(backend, exc, attempt == 1):
                    await pause_if_inline(driver)  # a failed read may not have suspended
                    raise
                continue
            pool.release(driver)
            if driver.ran_inline:  # checked here: no coroutine for the common case
                await pause_if_inline(driver)  # with nothing held
            return result
        raise AssertionError("unreachable")

    def classify_failure(self, driver: DriverConnection, exc: BaseException) -> tuple[bool, bool]:
        """(dirty, broken) for a connection whose statement raised ``exc``."""
        if driver.is_closed() or self.backend.is_disconnect(exc):
            return False, True
        if isinstance(exc, CommandTimeoutError):
            # Never reused: behind a stalled network it would stall the next
            # statement too, and a reply may be half read (the backend closed
            # or is closing it).
            return False, True
        # A cancelled statement may still be running or being cancelled on the
        # server: reset before reuse. Ordinary errors leave it clean.
        return isinstance(exc, asyncio.CancelledError), False

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool; on failure nothing stays open."""
        try:
            self.backend.open_kept()
            await self.pool.open()
        except BaseException:
            await shielded(self.close())
            raise
        if self.thread is None:
            await self._watch_loop_shutdown()

    async def _watch_loop_shutdown(self) -> None:
        """Close gracefully when the owning loop shuts down without disconnect().

        ``asyncio.run()`` and pytest-asyncio finalize the loop's async
        generators before closing it; this one's ``finally`` closes the pool
        while the loop can still run it, so no socket is left to the GC.
        """

        async def watch() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self._close_now()

        self._watch = watch()
        await self._watch.__anext__()  # registered with the loop from here on

    async def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.aclose()  # its finally closes
        else:
            await self._close_now()

    async def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        timeout = self.settings.acquire_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        # Every connection a task still holds (parked in a transaction, an
        # unfinished iteration): at once, so that one waiting for a lock another
        # holds is not closed after it.
        await asyncio.gather(
            *(holder.close_for_disconnect() for holder in list(self.holders)),
            return_exceptions=True,
        )
        await self._background.settle()
        try:
            # Borrowed connections still running a statement: within what is
            # left of the same bound.
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self.pool.close(left)
        finally:
            self._close_kept()

    def terminate(self) -> None:
        """Drop everything without awaiting: the owning loop is closed."""
        logging.getLogger("aiodatabases.pool").info(
            "dropping the connections to %s: their event loop is closed",
            self.backend.url.obscure_password,
        )
        for holder in list(self.holders):
            holder.close_at_terminate()
        self.pool.terminate()
        self._close_kept()

    def _close_kept(self) -> None:
        # What a backend keeps open for the connected life (SQLite's shared
        # in-memory database, opened by ``open_kept()`` or its first
        # connection), see ``backends.base.Backend``.
        self.backend.close_kept()

    def submit_to_thread(self, func: Callable[[], Awaitable[T]]) -> Future[T]:
        if self.thread is None:
            raise RuntimeError("this runtime has no loop thread")
        return self.thread.submit(func)
