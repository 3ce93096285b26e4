"""Handing calls to aiosqlite's worker thread, and what a cancelled caller leaves behind.

Every call is one function run on the worker (aiosqlite's ``_execute``): one
hand-over between threads per statement. A caller that gives up (cancelled)
and the worker agree under one lock about that call (see ``_Call``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Call:
    """One function handed to the worker thread, and what became of it.

    Its flags change under the connection's lock, so that a cancelled
    caller and the worker agree: a call given up before it started is
    skipped, a read running when given up is interrupted, and a cursor
    opened for a caller that gave up is closed.
    """

    __slots__ = ("abandoned", "done", "result", "started")

    def __init__(self) -> None:
        self.abandoned = False
        self.started = False
        self.done = False
        self.result: Any = None


class WorkerCalls:
    """The worker-thread half of ``SQLiteConnection``: submitting calls, giving them up.

    Cancellation (``_submit``): a call still queued for the worker is
    skipped; a read that is running is interrupted, unless an ``iterate()``
    cursor is open (an interrupt would stop that too); a write runs to its
    end (interrupting it would roll back the whole transaction); a cursor
    opened for a caller that gave up is closed by the next call.
    """

    __slots__ = ("_cursors", "_done", "_lock", "_orphans", "_raw", "_sent", "ran_inline")

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        #: True when the last statement ran on the calling thread (``BriefReads``).
        self.ran_inline = False
        # Calls handed to the worker thread, and how many it has finished or
        # skipped (each written by one thread only): equal when it is idle.
        self._sent = 0
        self._done = 0
        self._lock = threading.Lock()  # a call's flags, and interrupts
        # Cursors opened for iterate() and not closed yet, and those whose
        # caller gave up after they opened (closed by the next worker call).
        self._cursors: set[sqlite3.Cursor] = set()
        self._orphans: list[sqlite3.Cursor] = []

    def is_closed(self) -> bool:
        # aiosqlite has no public flag; its ``_connection`` is dropped on close.
        return getattr(self._raw, "_connection", None) is None

    async def _submit(self, read_only: bool, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the worker thread (aiosqlite's); see the class
        docstring for what a cancellation of the caller does."""
        call = _Call()
        self._sent += 1
        self.ran_inline = False
        try:
            result: T = await self._raw._execute(self._run, call, function, args)
        except asyncio.CancelledError:
            self._give_up(call, read_only)
            raise
        return result

    def _give_up(self, call: _Call, read_only: bool) -> None:
        with self._lock:
            call.abandoned = True
            if not call.started:
                return  # the worker will skip it
            if not call.done:
                if read_only and not self._cursors and not self.is_closed():
                    self._raw._conn.interrupt()  # this call's statement, nobody else's
                return
            if isinstance(call.result, sqlite3.Cursor):
                self._orphans.append(call.result)  # opened, never to be iterated

    def _run(self, call: _Call, function: Callable[..., T], args: tuple[Any, ...]) -> T | None:
        """On the worker thread: one call, unless its caller gave up first."""
        try:
            with self._lock:
                if call.abandoned:
                    return None
                call.started = True
            self._close_orphans()
            result = function(*args)
            with self._lock:
                call.result, call.done = result, True
                lost = call.abandoned and isinstance(result, sqlite3.Cursor)
            if lost:
                self._close(cast(sqlite3.Cursor, result))
            return result
        finally:
            with self._lock:
                call.done = True
            self._done += 1

    def _on_db(self, read_only: bool, function: Callable[..., T], *args: Any) -> Awaitable[T]:
        return self._submit(read_only, function, self._raw._conn, *args)

    def _close_orphans(self) -> None:
        while self._orphans:
            self._close(self._orphans.pop())

    def _close(self, cursor: sqlite3.Cursor) -> None:
        self._cursors.discard(cursor)
        cursor.close()

    def _close_cursors(self) -> None:
        self._close_orphans()
        for cursor in list(self._cursors):
            self._close(cursor)


async def worker_ended(raw: Any) -> None:
    """Wait until the worker thread of a connection that failed to open has ended.

    aiosqlite then stops it with a future of this loop, which the thread
    answers later: a loop closed first (the caller gave up at once) would make
    that answer fail in the thread.
    """
    while worker_thread(raw).is_alive():  # noqa: ASYNC110 - no awaitable says it ended
        await asyncio.sleep(0.001)


def worker_thread(raw: Any) -> threading.Thread:
    """aiosqlite's worker thread: its ``_thread`` (0.22), or the connection itself
    (before 0.22 it was a ``Thread`` subclass)."""
    thread: threading.Thread = getattr(raw, "_thread", None) or raw
    return thread
