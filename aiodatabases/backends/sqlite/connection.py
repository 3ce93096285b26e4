"""One SQLite connection: the ``DriverConnection`` operations, each one function of sqlite3.

Each statement is a brief read on the calling thread (``here.BriefReads``)
or one function run on aiosqlite's worker thread (``worker.WorkerCalls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..base import Args, Cursor, Row
from .here import BriefReads, SlowReads
from .options import BEGIN_STATEMENTS

T = TypeVar("T")


class _SQLiteCursor:
    in_own_transaction = False  # a sqlite3 cursor: its rows are read as it steps

    def __init__(self, connection: SQLiteConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def keep(self) -> None:
        return None

    async def fetch(self, count: int) -> list[Row]:
        rows: list[Row] = await self._connection.on_thread(self._cursor.fetchmany, count)
        return rows

    async def close(self) -> None:
        await self._connection.close_cursor(self._cursor)


# Each operation is one function run on the connection's worker thread: one
# hand-over per statement, where aiosqlite's own calls take two or three.


def _fetch_all(db: sqlite3.Connection, sql: str, args: Args) -> list[Row]:
    return db.execute(sql, args).fetchall()  # the cursor is exhausted: no locks held


def _fetch_one(db: sqlite3.Connection, sql: str, args: Args) -> Row | None:
    cursor = db.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        # An unfinished statement keeps its read lock while the connection idles.
        cursor.close()


class LastInsert:
    """A connection's last inserted rowid, as of its ``total_changes``.

    ``databases`` returned the cursor's ``lastrowid`` unless it was 0, else its
    ``rowcount``, on a connection opened for the statement: the rowid for an
    INSERT, the rows changed for an UPDATE or DELETE, -1 for DDL. On a pooled
    connection ``lastrowid`` still holds an earlier INSERT's rowid after an
    UPDATE, so ``execute`` compares it with this one: a statement that did
    not change it inserted nothing (re-inserting the very same rowid included)
    and returns its ``rowcount``. When rows changed where ``execute`` did not
    see it (a ``fetch_*`` of ``INSERT ... RETURNING``, the raw connection),
    the rowid is read from SQLite again.
    """

    __slots__ = ("changes", "rowid")

    def __init__(self) -> None:
        self.changes = -1  # unknown: read it before the first statement
        self.rowid: int | None = 0


def _execute(db: sqlite3.Connection, sql: str, args: Args, last: LastInsert) -> Any:
    if db.total_changes != last.changes:
        last.rowid = db.execute("SELECT last_insert_rowid()").fetchone()[0]
    cursor = db.execute(sql, args)
    try:
        rowid = cursor.lastrowid
        rowcount = cursor.rowcount
    finally:
        cursor.close()  # finishes a RETURNING statement and its locks
    last.changes = db.total_changes
    if rowid == last.rowid:
        return rowcount  # what databases returns when lastrowid is 0
    last.rowid = rowid
    return rowid


def _execute_many(db: sqlite3.Connection, sql: str, args_list: Sequence[Args]) -> None:
    if db.in_transaction:
        db.executemany(sql, args_list).close()
        return
    # Outside a transaction every row would commit (and sync) on its own;
    # one transaction makes the batch fast and all-or-nothing, as asyncpg does.
    db.execute("BEGIN")
    try:
        db.executemany(sql, args_list).close()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _run_control(db: sqlite3.Connection, statements: Sequence[str]) -> None:
    # Not executescript(): it would COMMIT an open transaction first.
    for sql in statements:
        db.execute(sql).close()


class SQLiteConnection(BriefReads):
    """An aiosqlite connection; brief reads run on the calling thread.

    A read runs on the calling thread when it can (see ``here``): a point
    select costs no hand-over between threads. Everything else runs on the
    worker (see ``worker`` for what a cancelled caller leaves).

    Only SQL runs here, never the user's Python: once ``raw`` (the aiosqlite
    connection, for functions, handlers, PRAGMAs of one's own) has been
    handed out, or with a custom ``factory``, this connection runs every
    statement on its worker thread, as aiosqlite does.
    """

    __slots__ = ("_execute",)
    stream_in_transaction = False  # a cursor is a sqlite3 cursor: nothing to keep

    def __init__(self, raw: Any, *, here: bool, slow: SlowReads) -> None:
        super().__init__(raw, here=here, slow=slow)
        self._execute = functools.partial(_execute, last=LastInsert())

    @property
    def raw(self) -> Any:
        # What the user does with it (functions, handlers, PRAGMAs) is theirs
        # to run on the worker thread, as with aiosqlite: no more reads here.
        self._here = False
        return self._raw

    async def _statement(self, function: Callable[..., T], sql: str, args: Args) -> T:
        """``function(db, sql, args)`` here if it is a brief read, else on the worker."""
        done, result = self._try_here(function, sql, args)
        if done:
            return result  # type: ignore[no-any-return]
        try:
            result = await self._on_worker(function, sql, args)
        except sqlite3.OperationalError as exc:
            self._explain_busy(exc, sql)
            raise
        self._write_locked = True
        return result  # type: ignore[no-any-return]

    # -- the DriverConnection protocol -------------------------------------------------

    def on_thread(self, function: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run ``function(*args)`` on the worker thread (a read: cancellable)."""
        return self._submit(True, function, *args)

    def fetch_all(self, sql: str, args: Args) -> Awaitable[list[Row]]:
        return self._statement(_fetch_all, sql, args)

    def fetch_one(self, sql: str, args: Args) -> Awaitable[Row | None]:
        return self._statement(_fetch_one, sql, args)

    def execute(self, sql: str, args: Args) -> Awaitable[Any]:
        """The new rowid for a statement that inserted, else its rowcount (see ``LastInsert``)."""
        return self._statement(self._execute, sql, args)

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        try:
            await self._on_worker(_execute_many, sql, args_list)
        except sqlite3.OperationalError as exc:
            self._explain_busy(exc, sql)
            raise
        self._write_locked = True

    async def open_cursor(self, sql: str, args: Args) -> Cursor:
        # Tracked: a cursor whose caller gave up as it opened is closed.
        cursor = await self._on_worker(self._open, sql, args)
        return _SQLiteCursor(self, cursor)

    def _open(self, db: sqlite3.Connection, sql: str, args: Args) -> sqlite3.Cursor:
        cursor = db.execute(sql, args)
        self._cursors.add(cursor)
        return cursor

    async def close_cursor(self, cursor: sqlite3.Cursor) -> None:
        try:
            await self._submit(False, self._close, cursor)
        except asyncio.CancelledError:
            with self._lock:
                if cursor in self._cursors:  # skipped: the next call closes it
                    self._orphans.append(cursor)
            raise

    async def run_control(self, statements: Sequence[str]) -> None:
        if len(statements) == 1 and statements[0] in BEGIN_STATEMENTS:
            self._stop_waiting = False
            await self._on_db(False, self._begin_on_worker, statements[0])
        else:
            await self._on_db(False, _run_control, statements)

    async def interrupt(self, read_only: bool) -> None:
        # Cancelled statements are stopped where they are awaited (_submit),
        # which knows whether the worker runs that statement or another one.
        return None

    async def ping(self) -> None:
        return None  # a file of this process's own: no server to have gone away

    async def reset(self) -> None:
        await self._on_db(False, self._reset)

    def _reset(self, db: sqlite3.Connection) -> None:
        self._close_cursors()  # left open by a cancelled iterate()
        if db.in_transaction:
            db.execute("ROLLBACK").close()

    async def close(self) -> None:
        if self._cursors and not self.is_closed():
            # An open cursor's statement would keep the connection (and its lock
            # on the file) alive after close() until the cursor is collected.
            await self._submit(False, self._close_cursors)
        await self._raw.close()

    def terminate(self) -> None:
        # aiosqlite's stop() queues the close on the worker thread together with
        # a future of the current event loop, which may close before the worker
        # answers (an error in the worker thread). Called from a thread that has
        # no event loop, stop() uses no future at all.
        if sys.is_finalizing():
            return  # no new threads now; the worker is a daemon and ends with the process
        stopper = threading.Thread(target=self._stop_quietly, daemon=True)
        stopper.start()
        stopper.join()

    def _stop_quietly(self) -> None:
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            if self._cursors:
                # As in close(): an open cursor would keep the file locked. The
                # worker is idle (its loop is gone): close them from here.
                with self._lock:
                    self._close_cursors()
            self._raw.stop()
