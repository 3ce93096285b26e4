"""A small connection pool, owned by one event loop.

Why our own and not the driver's: we decide when a connection needs a reset
(only after an interruption, not after every use: that saves a round trip per
query), it is the same for every driver, and it is built in ``connect()`` in
the running loop, never earlier.

A connection comes back clean (handed to the first waiter, or put on the
idle list) or dirty (reset in a background task first; terminated if the
reset fails). Releasing never awaits, so it cannot be interrupted half way
by a cancellation. Waiters are served in arrival order: a released
connection goes to the longest waiter directly, never to a newcomer.

A connection idle for longer than ``health_check_after`` is pinged before it
is handed out (``_health``); one that fails is discarded and the next one
taken. A lost connection is replaced in the background while the pool is
below ``min_size`` (one attempt per loss).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from ._background import Background
from ._bounded import within
from ._health import Ages, answers
from ._pool_stats import Lent, PoolStats, Tally, exhausted_message
from ._waits import Line, TimedOut, deadline_after
from .backends.base import DriverConnection
from .exceptions import NotConnectedError, PoolTimeoutError

logger = logging.getLogger("aiodatabases.pool")

_RESET_TIMEOUT = 10.0


class _Slot:
    """A free place in a full pool, handed to the longest waiter to open a connection in."""


_SLOT = _Slot()

_Handed: TypeAlias = DriverConnection | _Slot | None


class Pool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[DriverConnection]],
        *,
        min_size: int,
        max_size: int,
        timeout: float | None,
        recycle: float | None = None,
        health_check_after: float | None = None,
        acquire_listeners: list[Callable[[float], None]] | None = None,
        name: str = "",
    ) -> None:
        self._connect = connect
        self._name = name  # for the log: the URL, its password masked
        self.min_size = min_size
        self.max_size = max_size
        self._timeout = timeout
        self._ages = Ages(recycle, health_check_after)  # every open connection
        self._idle: deque[DriverConnection] = deque()
        self._size = 0  # open or opening, idle or in use
        # What a waiter is handed: a connection, a slot to open one in, or
        # None (the pool closed: look again). Served in arrival order.
        self._waiters: Line[_Handed, None] = Line(self._hand_on)
        self._background = Background()  # resets and closes: close() waits for them
        self._closed = False
        self._all_back: asyncio.Future[None] | None = None  # close() waits for it
        # For stats() and the PoolTimeoutError message: totals, waiters, holders.
        self._tally = Tally(min_size, max_size, acquire_listeners)
        self._lent: Lent[DriverConnection] = Lent()

    async def open(self) -> None:
        """Open ``min_size`` connections (concurrently); on failure, keep none open."""
        results = await asyncio.gather(
            *(self._open_one() for _ in range(self.min_size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                raise result

    async def _open_one(self, counted: bool = False) -> None:
        """Open a connection for the idle list (or a waiter); ``counted``: its place already is."""
        if not counted:
            self._size += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._count_out()
            raise
        self._note_opened(conn)
        self.release(conn)  # to the idle list (or a waiter)

    async def acquire(self, deadline: float | None = None) -> DriverConnection:
        """A connection for the caller's exclusive use.

        Waiters are served in arrival order, with a released connection or
        with a place freed by a discarded one. The wait ends at ``deadline``
        (``time.monotonic()``), the statement's if it waited before (for its
        turn at a gate); else at ``_waits.deadline_after(timeout)``.
        Cancellation: nothing is taken; whatever was handed to the caller is
        passed on. How long it waited is told to the acquire listeners (``Tally``).
        """
        started = time.perf_counter() if self._tally.listeners else 0.0
        while True:
            if self._closed:
                raise NotConnectedError(
                    "the database was disconnected: this connection belongs to a connect() "
                    "that disconnect() ended; after connect(), take database.connection() again"
                )
            conn = self._take_idle()
            if conn is not None:
                return self._handed(started, conn)
            if self._idle:  # the most recent one has idled long: check it first
                conn = await self._checked(self._idle.pop())
                if conn is not None:
                    return self._handed(started, conn)
                continue
            if self._size < self.max_size:
                self._size += 1
                return self._handed(started, await self._open_in_slot())
            if deadline is None:  # only now that a wait has to happen
                deadline = deadline_after(self._timeout)
            handed = await self._wait(deadline)
            if isinstance(handed, _Slot):
                # a place freed for us, not a newcomer
                return self._handed(started, await self._open_in_slot())
            if handed is not None:
                return self._handed(started, handed)  # a connection handed over by release()

    def _handed(self, started: float, conn: DriverConnection) -> DriverConnection:
        """``conn`` goes to the caller (noted in ``_lent``); its wait is told if timed."""
        if started:
            self._tally.waited(time.perf_counter() - started)
        return self._lent.note(conn)

    def take_idle(self) -> DriverConnection | None:
        """An idle connection at once, or None (then ``acquire()`` waits or opens one)."""
        if self._closed:
            return None
        conn = self._take_idle()  # not noted in _lent: borrowed for one statement (hot path)
        if conn is not None and self._tally.listeners:
            self._tally.waited(0.0)
        return conn

    def _take_idle(self) -> DriverConnection | None:
        while self._idle:
            conn = self._idle.pop()  # most recently used: warm caches, fewer idle timeouts
            if conn.is_closed():
                # Its socket may still be open (closed by the server).
                self.discard(conn, why="it was closed while idle")
            elif self._ages.expired(conn):
                self.discard(conn, why="pool_recycle: it is too old")
            elif self._ages.needs_check(conn):
                self._idle.append(conn)  # for acquire() to check (it can await)
                return None
            else:
                return conn
        return None

    async def _checked(self, conn: DriverConnection) -> DriverConnection | None:
        """``conn`` if it answers a ping (and the pool is open); else None, discarded."""
        try:
            alive = await answers(conn)
        except BaseException:
            self._forget(conn)  # cancelled: terminated half way
            raise
        if alive and not self._closed:
            return conn
        self.discard(conn, why="it failed its health check" if not alive else "the pool closed")
        return None

    async def _open_in_slot(self) -> DriverConnection:
        """Open a connection in a place already counted in ``_size`` for the caller."""
        try:
            conn = await self._connect()
        except BaseException:
            self._count_out()
            raise
        self._note_opened(conn)
        if self._closed:  # close() came while it opened: it waits for this one too
            self.discard(conn, why="the pool closed while it opened")
            raise NotConnectedError("the database was disconnected while this waited")
        self._top_up()  # the server answers again after losses
        return conn

    def _top_up(self) -> None:
        """Open connections in the background up to ``min_size``, one attempt each."""
        while not self._closed and self._size < self.min_size:
            self._size += 1
            self._background.start(self._open_spare())

    async def _open_spare(self) -> None:
        try:
            await self._open_one(counted=True)
        except Exception as exc:  # the server is still away: the next loss or open retries
            logger.debug("opening a connection to refill the pool failed: %r", exc)

    def _note_opened(self, conn: DriverConnection) -> None:
        self._ages.opened(conn)
        self._tally.opened += 1
        logger.debug("opened a connection to %s (pool size %d)", self._name, self._size)

    async def _wait(self, deadline: float | None) -> _Handed:
        """A connection handed over, a slot to open one in, or None: look again."""
        started = time.monotonic()
        self._tally.waiting += 1
        try:
            return await self._waiters.wait(None, deadline)
        except TimedOut:  # what ran out, and who holds the connections
            holders = self._lent.describe(self._size - len(self._idle) - len(self._lent))
            message = exhausted_message(
                self._timeout, started, deadline, self.max_size, self._size, holders
            )
            logger.info("acquiring a connection to %s timed out: %s", self._name, message)
            raise PoolTimeoutError(message) from None
        finally:
            self._tally.waiting -= 1

    def _hand_on(self, handed: _Handed) -> None:
        """Served, then cancelled before running on: pass on what we got."""
        if isinstance(handed, _Slot):
            self._count_out()
        elif handed is not None:
            self.release(handed)

    def release(self, conn: DriverConnection, *, dirty: bool = False, broken: bool = False) -> None:
        """Return a connection. Never awaits (see the module docstring)."""
        if self._lent:  # empty unless a connection block or transaction holds one
            self._lent.pop(conn, None)
        if self._closed:
            self.discard(conn, why="it came back after the pool closed")  # close() waits for it
            return
        if broken or conn.is_closed():
            self.discard(conn, why="it is broken")
            return
        if dirty:
            self._background.start(self._reset_then_return(conn))
            return
        if self._ages.expired(conn):
            self.discard(conn, why="pool_recycle: it is too old")  # a waiter opens a new one
        elif not self._waiters.serve_first(conn):
            self._ages.went_idle(conn)
            self._idle.append(conn)

    async def _reset_then_return(self, conn: DriverConnection) -> None:
        try:
            await within(conn.reset(), _RESET_TIMEOUT)
        except BaseException as exc:
            logger.warning("discarding a connection whose reset failed: %r", exc)
            self._forget(conn)
            conn.terminate()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.release(conn)

    def discard(
        self, conn: DriverConnection, *, first: Awaitable[None] | None = None, why: str
    ) -> None:
        """Take ``conn`` out of the pool now; await ``first``, then close it, both in
        the background (the driver may be ending a statement); close() waits for them."""
        logger.debug("discarding a connection to %s: %s", self._name, why)
        self._forget(conn)
        self._background.start(_close_quietly(conn, first))

    def _forget(self, conn: DriverConnection) -> None:
        self._lent.pop(conn, None)
        if self._ages.forget(conn):  # once per connection
            self._tally.closed += 1
            self._count_out()
            self._top_up()

    def _count_out(self) -> None:
        """One connection fewer, open or opening: a place for a waiter, or for close()."""
        self._size -= 1
        self._wake_one()
        if self._size == 0 and self._all_back is not None and not self._all_back.done():
            self._all_back.set_result(None)

    def _wake_one(self) -> None:
        """A place came free: give it to the longest waiter (counted for it at once)."""
        if self._closed or self._size >= self.max_size:
            return
        self._size += 1
        if not self._waiters.serve_first(_SLOT):
            self._size -= 1  # nobody waits: the place stays free

    def stats(self) -> PoolStats:
        """A snapshot, readable from any thread (see ``_pool_stats.snapshot``)."""
        return self._tally.stats(self._size, len(self._idle))

    async def close(self, within: float | None = 0.0) -> None:
        """Close every connection; waiting acquirers fail with ``NotConnectedError``.

        Idle ones are closed at once; one still in use (its statement running)
        or being opened is closed when it comes back, waited for up to
        ``within`` seconds (``None``: no limit), then dropped.
        """
        self._closed = True
        while self._waiters.serve_first(None):  # each looks again and finds the pool closed
            pass
        await self._background.settle()  # resets and closes
        while self._idle:
            conn = self._idle.pop()
            self._forget(conn)
            try:
                await conn.close()
            except Exception as exc:
                logger.debug("error closing a connection: %r", exc)
                conn.terminate()
        if self._size > 0:
            await self._wait_for_the_rest(within)
        await self._background.settle()  # resets and closes

    async def _wait_for_the_rest(self, within: float | None) -> None:
        all_back = asyncio.get_running_loop().create_future()
        self._all_back = all_back
        try:
            await asyncio.wait_for(asyncio.shield(all_back), within)
        except asyncio.TimeoutError:
            logger.warning(
                "closing the pool: %d connection(s) still in use after %.1fs more; "
                "dropping them",
                self._size,
                within,
            )
            self._drop_the_rest()

    def _drop_the_rest(self) -> None:
        for conn in self._ages.open_ones():
            self._forget(conn)
            conn.terminate()

    def terminate(self) -> None:
        """Drop every connection without awaiting (the loop may be gone)."""
        self._closed = True
        self._idle.clear()
        self._drop_the_rest()


async def _close_quietly(conn: DriverConnection, first: Awaitable[None] | None = None) -> None:
    """Await ``first``, then close ``conn`` (or drop its socket if that fails)."""
    try:
        if first is not None:
            await first
        await within(conn.close(), _RESET_TIMEOUT)
    except BaseException as exc:
        logger.debug("closing a discarded connection failed: %r", exc)
        conn.terminate()
        if isinstance(exc, asyncio.CancelledError):
            raise
