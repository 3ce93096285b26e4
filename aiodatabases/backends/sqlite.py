"""SQLite through aiosqlite (one worker thread per connection).

``raw_connection`` is the aiosqlite connection, as with ``databases``. A
brief read runs on the calling thread (no hand-over at all, see
``SQLiteConnection``); every other statement runs as one function on
aiosqlite's worker thread (its ``_execute``): one hand-over between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, urlencode

import aiosqlite

from .._compat import SQLitePaths
from .._query import ParamStyle, is_read_only
from .._records import record_type
from .._url import DatabaseURL
from ..exceptions import ConfigurationError, UnknownOptionError
from .base import (
    Args,
    Cursor,
    OptionSpec,
    Row,
    passthrough,
    to_bool,
    to_float,
    to_int,
)

T = TypeVar("T")


def _pragma_word(value: Any) -> str:
    # PRAGMA values cannot be bound as parameters, so only plain words pass.
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("expected a plain word or number")
    return text


def _pragma_bool(value: Any) -> str:
    return "ON" if to_bool(value) else "OFF"


def _pragma_int(value: Any) -> str:
    return str(to_int(value))


#: PRAGMAs that may be set by option; they are applied to every pooled connection.
PRAGMAS: Mapping[str, Callable[[Any], str]] = {
    "foreign_keys": _pragma_bool,
    "journal_mode": _pragma_word,
    "synchronous": _pragma_word,
    "busy_timeout": _pragma_int,
    "cache_size": _pragma_int,
    "temp_store": _pragma_word,
    "mmap_size": _pragma_int,
    "recursive_triggers": _pragma_bool,
    "case_sensitive_like": _pragma_bool,
    "secure_delete": _pragma_bool,
}

#: Keyword arguments of ``sqlite3.connect`` passed through as they are.
_CONNECT_OPTIONS: Mapping[str, Callable[[Any], Any]] = {
    "timeout": to_float,
    "uri": to_bool,
    "factory": passthrough,
    "check_same_thread": to_bool,
    "detect_types": to_int,
    "cached_statements": to_int,
}

_BEGIN = {
    "deferred": "BEGIN DEFERRED",
    "immediate": "BEGIN IMMEDIATE",
    "exclusive": "BEGIN EXCLUSIVE",
}


def _isolation(value: Any) -> str:
    level = str(value).strip().lower()
    if level not in _BEGIN:
        raise ValueError(f"expected one of {', '.join(_BEGIN)}")
    return level


#: Options of the backend itself: ``isolation`` is the default transaction
#: mode (``transaction(isolation=...)`` picks one per transaction).
_BACKEND_OPTIONS: Mapping[str, Callable[[Any], Any]] = {"isolation": _isolation}


def _one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


def _uri_bool(value: Any) -> str:
    return "1" if to_bool(value) else "0"


#: SQLite's own URI query parameters (https://sqlite.org/uri.html): given in
#: the URL query (``sqlite:///file:app?mode=memory&cache=shared``) they are
#: put in the ``file:`` URI that sqlite3 opens (with ``uri=True``).
URI_PARAMETERS: Mapping[str, Callable[[Any], str]] = {
    "mode": _one_of("ro", "rw", "rwc", "memory"),
    "cache": _one_of("shared", "private"),
    "vfs": _pragma_word,
    "immutable": _uri_bool,
    "nolock": _uri_bool,
    "psow": _uri_bool,
    "modeof": str,
}

OPTIONS = OptionSpec(
    scheme="sqlite",
    options={**_CONNECT_OPTIONS, **PRAGMAS, **URI_PARAMETERS, **_BACKEND_OPTIONS},
)

#: sqlite3 builds every row as this type in C: a Record without a wrapper.
SQLiteRecord = record_type(sqlite3.Row, name_misses=IndexError)

_BEGIN_STATEMENTS = frozenset(_BEGIN.values())
#: Seconds between tries of a BEGIN that waits for another connection's lock
#: (doubling), as SQLite's own busy handler sleeps between its tries.
_FIRST_LOCK_PAUSE = 0.001
_LONGEST_LOCK_PAUSE = 0.05


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


#: A read runs on the calling thread for at most about this long: its progress
#: handler (called every ``_BRIEF_STEPS`` SQLite VM instructions) stops it
#: then, and it runs again on the worker thread.
_BRIEF_SECONDS = 0.0005
_BRIEF_STEPS = 1000

#: SQL whose read took longer than that here twice in a row (stopped, or one
#: step was long: a huge blob, a cold disk) goes to the worker at once for
#: the next ``_FIRST_BACKOFF`` reads, then is tried here again (the wait
#: doubling each time it is still slow). Twice: a pause of the thread (a
#: garbage collection, the machine) must not send a quick read away.
_FIRST_BACKOFF = 64
_MAX_BACKOFF = 1 << 16

#: SQL texts whose slowness is kept; forgotten all together beyond this.
_SLOW_READS_KEPT = 1024

# SQLITE_BUSY and SQLITE_LOCKED (primary result codes).
_BUSY_CODES = (5, 6)
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
_SETS_BUSY_TIMEOUT = re.compile(r"busy_timeout", re.I)


@functools.lru_cache(maxsize=4096)
def _mentions_busy_timeout(sql: str) -> bool:
    return _SETS_BUSY_TIMEOUT.search(sql) is not None


def _may_run_here(sql: str) -> bool:
    # Reading the busy timeout here (pragma_busy_timeout) would see our 0.
    return is_read_only(sql) and not _mentions_busy_timeout(sql)


def _is_instant(statement: str) -> bool:
    return statement in _BEGIN_STATEMENTS or statement.startswith("SAVEPOINT ")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says a lock was taken (it would have waited with a busy timeout)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return str(exc) in _BUSY_MESSAGES


def _lock_upgrade_error(exc: sqlite3.OperationalError) -> sqlite3.OperationalError:
    """``exc`` (SQLITE_BUSY) with what happened and what to do: still an
    ``sqlite3.OperationalError`` starting "database is locked", as code catching
    SQLite's own error expects."""
    explained = sqlite3.OperationalError(
        f"{exc}: this write could not take the database's write lock, which "
        "another connection holds, because the transaction began deferred (the "
        "default, as in sqlite3 and databases) and takes the lock at its first "
        "write; SQLite fails at once when the transaction has read already "
        "(waiting could deadlock) and after the busy timeout otherwise. Roll back "
        "and retry the transaction, or begin it with "
        "transaction(isolation='immediate') (or the database option "
        "isolation=immediate) so that it waits for the lock at BEGIN"
    )
    for name in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, name):
            setattr(explained, name, getattr(exc, name))
    return explained


class _LockWait:
    """The pauses between tries of a BEGIN that waits for another connection's
    lock (doubling, as SQLite's own busy handler sleeps between its tries),
    for as long as the busy timeout allows."""

    __slots__ = ("_gives_up_at", "_pause")

    def __init__(self) -> None:
        self._gives_up_at: float | None = None
        self._pause = _FIRST_LOCK_PAUSE

    def pause_after(self, exc: sqlite3.OperationalError, wait_ms: int, stop: bool = False) -> float:
        """Seconds to pause after a failed try; raises ``exc`` when it is not a
        lock, when the busy timeout is over, or when told to ``stop``."""
        if not _is_busy(exc):
            raise exc
        now = time.monotonic()
        if self._gives_up_at is None:
            self._gives_up_at = now + wait_ms / 1000
        if now >= self._gives_up_at or stop:
            raise exc
        pause = min(self._pause, self._gives_up_at - now)
        self._pause = min(2 * self._pause, _LONGEST_LOCK_PAUSE)
        return pause


class _Budget:
    """A progress handler that stops a statement once ``_BRIEF_SECONDS`` have passed."""

    __slots__ = ("ends", "spent")

    def __init__(self) -> None:
        self.ends = time.perf_counter() + _BRIEF_SECONDS
        self.spent = False

    def __call__(self) -> bool:
        self.spent = time.perf_counter() > self.ends
        return self.spent  # true: SQLite interrupts the statement


class SlowReads:
    """Which SQL runs too long for the calling thread, shared by a database's connections.

    See ``_FIRST_BACKOFF``: two reads over budget in a row send the SQL to the
    worker for a while; a brief read forgives it.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # sql -> [reads still sent away, how many the next time]; [0, 0]: one strike.
        self._seen: dict[str, list[int]] = {}

    def sends_away(self, sql: str) -> bool:
        seen = self._seen
        if not seen:
            return False
        entry = seen.get(sql)
        if entry is None or entry[0] == 0:
            return False
        entry[0] -= 1
        return True

    def took_long(self, sql: str) -> None:
        seen = self._seen
        entry = seen.get(sql)
        if entry is None:
            if len(seen) >= _SLOW_READS_KEPT:
                seen.clear()
            seen[sql] = [0, 0]
            return
        backoff = min(max(2 * entry[1], _FIRST_BACKOFF), _MAX_BACKOFF)
        entry[:] = [backoff, backoff]

    def was_brief(self, sql: str) -> None:
        if self._seen:
            self._seen.pop(sql, None)


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


class SQLiteConnection:
    """An aiosqlite connection; brief reads run on the calling thread.

    A read (``is_read_only``) runs on the calling thread when the worker
    thread is idle, with no busy timeout and a budget of about half a
    millisecond: a read that would wait for a lock, or that runs longer, is
    stopped (a read leaves nothing half done) and runs again on the worker
    thread, where it waits and can be interrupted as usual. So a point select
    costs no hand-over between threads. Everything else runs on the worker.

    Only SQL runs here, never the user's Python: once ``raw`` (the aiosqlite
    connection, for functions, handlers, PRAGMAs of one's own) has been
    handed out, or with a custom ``factory``, this connection runs every
    statement on its worker thread, as aiosqlite does.

    Cancellation (``_submit``): a statement still queued for the worker is
    skipped; a read that is running is interrupted, unless an ``iterate()``
    cursor is open (an interrupt would stop that too); a write runs to its end
    (interrupting it would roll back the whole transaction).
    """

    __slots__ = (
        "_cursors",
        "_done",
        "_execute",
        "_here",
        "_lock",
        "_orphans",
        "_raw",
        "_sent",
        "_slow",
        "_stop_waiting",
        "_wait",
        "_wait_ms",
        "_write_locked",
        "ran_inline",
    )
    stream_in_transaction = False  # a cursor is a sqlite3 cursor: nothing to keep

    def __init__(self, raw: Any, *, here: bool, slow: SlowReads) -> None:
        self._raw = raw
        self._here = here  # brief reads may run on the calling thread
        self._slow = slow  # shared by the database's connections
        self.ran_inline = False  # the last statement ran on the calling thread
        # Calls handed to the worker thread, and how many it has finished or
        # skipped (each written by one thread only): equal when it is idle.
        self._sent = 0
        self._done = 0
        self._lock = threading.Lock()  # a call's flags, and interrupts
        # Cursors opened for iterate() and not closed yet, and those whose
        # caller gave up after they opened (closed by the next worker call).
        self._cursors: set[sqlite3.Cursor] = set()
        self._orphans: list[sqlite3.Cursor] = []
        # "PRAGMA busy_timeout = <ms>" restoring the configured wait, or None:
        # unknown (not read yet, or a statement may have changed it).
        self._wait: str | None = None
        self._wait_ms = 0  # that wait, once read
        self._stop_waiting = False  # a BEGIN on the worker gives up waiting for a lock
        # False from a BEGIN DEFERRED until a write succeeds: the transaction
        # may not hold the write lock yet (see ``_explain_busy``).
        self._write_locked = False
        self._execute = functools.partial(_execute, last=LastInsert())

    @property
    def raw(self) -> Any:
        # What the user does with it (functions, handlers, PRAGMAs) is theirs
        # to run on the worker thread, as with aiosqlite: no more reads here.
        self._here = False
        return self._raw

    def is_closed(self) -> bool:
        # aiosqlite has no public flag; its ``_connection`` is dropped on close.
        return getattr(self._raw, "_connection", None) is None

    # -- the worker thread ---------------------------------------------------------------

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

    # -- brief reads on the calling thread ---------------------------------------------

    def _try_here(self, function: Callable[..., T], sql: str, args: Args) -> tuple[bool, Any]:
        """Run a brief read on the calling thread: (True, result), or (False, None)
        when it is not a read, would wait for a lock, or runs too long."""
        if not _may_run_here(sql) or not self._free_here() or self._slow.sends_away(sql):
            return False, None
        db = self._raw._conn
        # Never wait for a lock here (the busy timeout would block the thread):
        # such a read runs on the worker instead. Even inside a transaction
        # that holds the write lock: making room in a full page cache needs
        # the exclusive lock, which another connection's reader can hold off
        # (SQLite then just does not spill; without a busy timeout it does
        # not wait to).
        wait = self._no_wait(db)
        budget = _Budget()
        db.set_progress_handler(budget, _BRIEF_STEPS)
        self.ran_inline = True
        try:
            result = function(db, sql, args)
        except sqlite3.OperationalError as exc:
            # Stopped by the budget or by a lock: a read leaves nothing half done.
            if budget.spent:
                self._slow.took_long(sql)
                return False, None
            if _is_busy(exc):
                return False, None
            raise
        finally:
            db.set_progress_handler(None, 0)
            db.execute(wait).close()
        if time.perf_counter() > budget.ends:
            self._slow.took_long(sql)  # one step took long
        else:
            self._slow.was_brief(sql)
        return True, result

    def _free_here(self) -> bool:
        """Whether the calling thread may use the connection now: never while
        the worker still runs something (a cancelled caller's statement)."""
        idle = self._sent == self._done and not self._orphans
        return self._here and idle and not self.is_closed()

    async def control_now(self, statements: Sequence[str]) -> bool:
        """BEGIN or SAVEPOINT on the calling thread: they change a flag and take
        a lock (or, after a crash, recover the journal).

        A lock that another connection holds is waited for here, between
        tries, for as long as the busy timeout allows (then its "database is
        locked" is raised): a caller cancelled meanwhile leaves at once with
        nothing begun, where SQLite's own wait, on the worker, could not be
        interrupted.
        """
        if len(statements) != 1 or not _is_instant(statements[0]):
            return False
        waiting = _LockWait()
        while self._free_here():
            try:
                self._run_here(statements[0])
                return True
            except sqlite3.OperationalError as exc:
                pause = waiting.pause_after(exc, self._wait_ms)
            await asyncio.sleep(pause)
        return False

    def _run_here(self, statement: str) -> None:
        """``statement`` on the calling thread without waiting for a lock."""
        self.ran_inline = True  # failed or not, the caller did not suspend
        self._run_without_wait(self._raw._conn, statement)

    def _run_without_wait(self, db: sqlite3.Connection, statement: str) -> None:
        wait = self._no_wait(db)
        try:
            db.execute(statement).close()
        finally:
            db.execute(wait).close()
        if statement in _BEGIN_STATEMENTS:
            self._write_locked = statement != "BEGIN DEFERRED"

    def _no_wait(self, db: sqlite3.Connection) -> str:
        """Set the busy timeout to 0; return the statement that restores it."""
        wait = self._wait
        if wait is None:
            self._wait_ms = int(db.execute("PRAGMA busy_timeout").fetchone()[0])
            wait = self._wait = f"PRAGMA busy_timeout = {self._wait_ms}"
        db.execute("PRAGMA busy_timeout = 0").close()
        return wait

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

    def _explain_busy(self, exc: sqlite3.OperationalError, sql: str) -> None:
        """Raise a clearer error if ``sql``, a write in a deferred transaction,
        failed to take the write lock; else return (``exc`` is raised as is)."""
        if self._write_locked or not _is_busy(exc) or is_read_only(sql):
            return
        if self.is_closed() or not self._raw._conn.in_transaction:
            return
        raise _lock_upgrade_error(exc) from exc

    def _on_worker(self, function: Callable[..., T], sql: str, *args: Any) -> Awaitable[T]:
        """A statement on the worker thread (see ``_submit``)."""
        if _mentions_busy_timeout(sql):
            self._wait = None  # read it again before the next statement here
        return self._on_db(is_read_only(sql), function, sql, *args)

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

    def _close(self, cursor: sqlite3.Cursor) -> None:
        self._cursors.discard(cursor)
        cursor.close()

    async def run_control(self, statements: Sequence[str]) -> None:
        if len(statements) == 1 and statements[0] in _BEGIN_STATEMENTS:
            self._stop_waiting = False
            await self._on_db(False, self._begin_on_worker, statements[0])
        else:
            await self._on_db(False, _run_control, statements)

    def stop_waiting(self) -> None:
        self._stop_waiting = True  # read by _begin_on_worker between its tries

    def _begin_on_worker(self, db: sqlite3.Connection, statement: str) -> None:
        """On the worker: a BEGIN that waits for another connection's lock as
        long as the busy timeout allows, trying again between pauses, so that
        ``stop_waiting()`` can end the wait (SQLite's own wait cannot be)."""
        waiting = _LockWait()
        while True:
            try:
                self._run_without_wait(db, statement)
                return
            except sqlite3.OperationalError as exc:
                pause = waiting.pause_after(exc, self._wait_ms, stop=self._stop_waiting)
            time.sleep(pause)

    async def interrupt(self, read_only: bool) -> None:
        # Cancelled statements are stopped where they are awaited (_submit),
        # which knows whether the worker runs that statement or another one.
        return None

    async def reset(self) -> None:
        await self._on_db(False, self._reset)

    def _reset(self, db: sqlite3.Connection) -> None:
        self._close_cursors()  # left open by a cancelled iterate()
        if db.in_transaction:
            db.execute("ROLLBACK").close()

    def _close_cursors(self) -> None:
        self._close_orphans()
        for cursor in list(self._cursors):
            self._close(cursor)

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


async def _worker_ended(raw: Any) -> None:
    """Wait until the worker thread of a connection that failed to open has ended.

    aiosqlite then stops it with a future of this loop, which the thread
    answers later: a loop closed first (the caller gave up at once) would make
    that answer fail in the thread.
    """
    while _worker_thread(raw).is_alive():  # noqa: ASYNC110 - no awaitable says it ended
        await asyncio.sleep(0.001)


def _worker_thread(raw: Any) -> threading.Thread:
    """aiosqlite's worker thread: its ``_thread`` (0.22), or the connection itself
    (before 0.22 it was a ``Thread`` subclass)."""
    thread: threading.Thread = getattr(raw, "_thread", None) or raw
    return thread


@dataclass(frozen=True)
class Target:
    """What sqlite3 opens: the path (or ``file:`` URI) and what kind of database it is."""

    path: str
    is_uri: bool
    #: Each connection to a private in-memory database is its own database.
    private_memory: bool
    #: A named in-memory database in shared cache (``mode=memory&cache=shared``,
    #: ``file::memory:?cache=shared``): SQLite drops it when its last connection
    #: closes, so one connection is kept open while the database is connected.
    shared_memory: bool


def database_target(url: DatabaseURL, uri_parameters: Mapping[str, str]) -> Target:
    """The path of ``url`` with SQLite's URI parameters (if any) in its ``file:`` URI."""
    path = url.database or ":memory:"
    if uri_parameters:
        if not path.startswith("file:"):
            # '?', '#' and '%' in a file name would be read as URI syntax.
            path = "file:" + quote(path, safe="/:")
        path += ("&" if "?" in path else "?") + urlencode(uri_parameters)
    if not path.startswith("file:"):
        return Target(path, False, path == ":memory:", False)
    name, _, query = path[len("file:") :].partition("?")
    parameters = {key: value.lower() for key, value in parse_qsl(query)}
    memory = name == ":memory:" or parameters.get("mode") == "memory"
    shared = memory and parameters.get("cache") == "shared"
    return Target(path, True, memory and not shared, shared)


class SQLiteBackend(SQLitePaths):
    dialect_name = "sqlite"
    paramstyle: ParamStyle = "qmark"
    # SQLite undoes only the failed statement; an interrupt is never sent.
    failed_statement_aborts_transaction = False
    cursor_blocks_connection = False
    cancel_waits_for_statement = False
    ddl_commits_transaction = False

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        self.url = self.target_url = url
        self._target = database_target(
            url, {k: v for k, v in options.items() if k in URI_PARAMETERS}
        )
        #: The ``sqlite3.connect`` keywords given (keyword or URL), read at every connect.
        self.connect_options: dict[str, Any] = {
            k: v for k, v in options.items() if k in _CONNECT_OPTIONS
        }
        # The connection that keeps a shared in-memory database alive while connected.
        self._keeper: sqlite3.Connection | None = None
        self._slow_reads = SlowReads()
        self._pragmas = [
            f"PRAGMA {name} = {PRAGMAS[name](value)}"
            for name, value in options.items()
            if name in PRAGMAS
        ]
        self._isolation = options.get("isolation", "deferred")

    @property
    def single_connection(self) -> bool:
        # Each connection to ":memory:" is its own database: keep exactly one.
        # A shared in-memory one too: shared-cache connections lock each other's
        # tables without waiting (SQLITE_LOCKED), so one Database uses one.
        target = self._target
        return target.private_memory or target.shared_memory

    def use_target(self, url: DatabaseURL, connect_options: dict[str, Any]) -> None:
        """Open later connections to ``url`` with these ``sqlite3.connect`` keywords
        (the dict itself is kept: changes to it apply to later connections)."""
        unknown = sorted(set(connect_options) - set(_CONNECT_OPTIONS))
        if unknown:
            raise UnknownOptionError(
                f"unknown sqlite3.connect option(s) {', '.join(map(repr, unknown))}; "
                f"supported: {', '.join(sorted(_CONNECT_OPTIONS))}"
            )
        # The URL's PRAGMAs and isolation were applied when the backend was built.
        options = OPTIONS.parse(url.options, {})
        self._target = database_target(
            url, {k: v for k, v in options.items() if k in URI_PARAMETERS}
        )
        for name, value in options.items():  # the URL's own, as at construction
            if name in _CONNECT_OPTIONS:
                connect_options.setdefault(name, value)
        self.target_url = url
        self.connect_options = connect_options

    def _connect_kwargs(self) -> tuple[dict[str, Any], bool]:
        """The keywords for ``sqlite3.connect``, and whether brief reads may run inline."""
        kwargs = dict(self.connect_options)
        if self._target.is_uri:
            kwargs.setdefault("uri", True)
        # Brief reads run on the calling thread (see SQLiteConnection), which
        # needs this; with check_same_thread=True everything runs on the worker,
        # as it does with a factory (its connections may run Python of their own).
        kwargs.setdefault("check_same_thread", False)
        inline = not (kwargs["check_same_thread"] or "factory" in kwargs)
        return kwargs, inline

    def open_kept(self) -> None:
        """Connecting: keep a shared in-memory database alive until ``close_kept()``."""
        self._keep_shared_memory(self._connect_kwargs()[0])

    def _keep_shared_memory(self, kwargs: Mapping[str, Any]) -> None:
        if self._target.shared_memory and self._keeper is None:
            # In memory: no I/O to wait for. Never used for statements.
            self._keeper = sqlite3.connect(
                self._target.path, uri=bool(kwargs.get("uri")), check_same_thread=False
            )

    def close_kept(self) -> None:
        """The database disconnected: let a shared in-memory database go."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    async def connect(self) -> SQLiteConnection:
        kwargs, inline = self._connect_kwargs()
        self._keep_shared_memory(kwargs)
        raw = aiosqlite.connect(self._target.path, isolation_level=None, **kwargs)
        # aiosqlite's worker thread is not a daemon: a script that ends without
        # disconnect() would hang at exit. Flag it before it starts.
        _worker_thread(raw).daemon = True
        try:
            await raw
        except BaseException:
            await _worker_ended(raw)
            raise
        raw.row_factory = SQLiteRecord
        connection = SQLiteConnection(raw, here=inline, slow=self._slow_reads)
        try:
            await connection.run_control(self._pragmas)
        except BaseException:
            await raw.close()
            raise
        return connection

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        unknown = set(options) - {"isolation"}
        if unknown:
            raise ConfigurationError(
                f"unknown transaction option(s) {sorted(unknown)} for SQLite; supported: isolation"
            )
        # DEFERRED by default, as sqlite3 (and so ``databases``) begins: a
        # transaction takes the write lock at its first write, so readers
        # never wait for each other. The price, two transactions that both
        # read and then write, is explained by ``_explain_busy``.
        level = options.get("isolation") or self._isolation
        try:
            return [_BEGIN[_isolation(level)]]
        except ValueError:
            raise ConfigurationError(
                f"unknown isolation level {level!r} for SQLite; supported: {', '.join(_BEGIN)}"
            ) from None

    def is_disconnect(self, exc: BaseException) -> bool:
        return False

    def is_stale(self, exc: BaseException) -> bool:
        return False
