"""SQLite through aiosqlite (one worker thread per connection).

``raw_connection`` is the aiosqlite connection, as with ``databases``; the
statements themselves run as single functions on aiosqlite's worker thread
(its ``_execute``), so each costs one hand-over between threads.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiosqlite

from .._query import ParamStyle, is_read_only
from .._records import record_type
from .._url import DatabaseURL
from ..exceptions import ConfigurationError
from .base import (
    Args,
    Cursor,
    OptionSpec,
    Row,
    SQLAlchemyDialect,
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

OPTIONS = OptionSpec(scheme="sqlite", options={**_CONNECT_OPTIONS, **PRAGMAS})

#: sqlite3 builds every row as this type in C: a Record without a wrapper.
SQLiteRecord = record_type(sqlite3.Row, name_misses=IndexError)

_BEGIN = {
    "deferred": "BEGIN DEFERRED",
    "immediate": "BEGIN IMMEDIATE",
    "exclusive": "BEGIN EXCLUSIVE",
}


class _SQLiteCursor:
    def __init__(self, connection: SQLiteConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def fetch(self, count: int) -> list[Row]:
        rows: list[Row] = await self._connection.on_thread(self._cursor.fetchmany, count)
        return rows

    async def close(self) -> None:
        await self._connection.on_thread(self._cursor.close)


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


def _execute(db: sqlite3.Connection, sql: str, args: Args) -> Any:
    cursor = db.execute(sql, args)
    try:
        return cursor.lastrowid  # what databases returns on SQLite
    finally:
        cursor.close()  # finishes a RETURNING statement and its locks


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


def _reset(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK").close()


#: A read run on the calling thread (``prefer_calling_thread``) is checked
#: every ``_BRIEF_STEPS`` SQLite VM instructions; after ``_BRIEF_CHECKS``
#: checks (well under a millisecond) it is stopped and run again on the
#: worker thread, so the calling thread is never blocked for long.
_BRIEF_STEPS = 1000
_BRIEF_CHECKS = 40


class _Budget:
    """A progress handler that stops a statement after ``_BRIEF_CHECKS`` calls."""

    __slots__ = ("checks",)

    def __init__(self) -> None:
        self.checks = 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.spent  # true: SQLite interrupts the statement

    @property
    def spent(self) -> bool:
        return self.checks > _BRIEF_CHECKS


class SQLiteConnection:
    __slots__ = ("_done", "_here", "_here_allowed", "_raw", "_sent")

    def __init__(self, raw: Any, *, here_allowed: bool = False) -> None:
        self._raw = raw
        self._here_allowed = here_allowed  # the sqlite3 connection may change threads
        self._here = False
        # Functions handed to the worker thread, and how many it has finished
        # (each written by one thread only). A cancelled caller stops waiting,
        # not the worker: its statement may still be running there.
        self._sent = 0
        self._done = 0

    @property
    def raw(self) -> Any:
        return self._raw

    def is_closed(self) -> bool:
        # aiosqlite has no public flag; its ``_connection`` is dropped on close.
        return getattr(self._raw, "_connection", None) is None

    def on_thread(self, function: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run ``function(*args)`` on the connection's worker thread (aiosqlite's)."""
        self._sent += 1
        result: Awaitable[T] = self._raw._execute(self._counted, function, *args)
        return result

    def _counted(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        finally:
            self._done += 1  # on the worker thread

    def _on_db(self, function: Callable[..., T], *args: Any) -> Awaitable[T]:
        return self.on_thread(function, self._raw._conn, *args)

    def prefer_calling_thread(self) -> None:
        self._here = self._here_allowed

    def _try_here(self, function: Callable[..., T], sql: str, args: Args) -> tuple[bool, Any]:
        """Run a brief read on the calling thread: (True, result), or (False, None)
        when it is not a read, might wait for a lock, or runs too long."""
        if not self._here or self.is_closed() or not is_read_only(sql):
            return False, None
        if self._sent != self._done:
            # The worker still runs something (a cancelled caller's statement):
            # never use the connection from two threads at once.
            return False, None
        db = self._raw._conn
        # Inside a transaction the connection holds its locks already: a
        # read never waits for another connection (no busy timeout here).
        if not db.in_transaction:
            return False, None
        budget = _Budget()
        db.set_progress_handler(budget, _BRIEF_STEPS)
        try:
            return True, function(db, sql, args)
        except sqlite3.OperationalError:
            if budget.spent:
                # Stopped by the budget; a read leaves the transaction intact.
                return False, None
            raise
        finally:
            db.set_progress_handler(None, 0)

    async def _statement(self, function: Callable[..., T], sql: str, args: Args) -> T:
        """``function(db, sql, args)`` here if it is a brief read, else on the worker."""
        done, result = self._try_here(function, sql, args)
        return result if done else await self._on_db(function, sql, args)

    def fetch_all(self, sql: str, args: Args) -> Awaitable[list[Row]]:
        return self._statement(_fetch_all, sql, args)

    def fetch_one(self, sql: str, args: Args) -> Awaitable[Row | None]:
        return self._statement(_fetch_one, sql, args)

    def execute(self, sql: str, args: Args) -> Awaitable[Any]:
        return self._statement(_execute, sql, args)

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        await self._on_db(_execute_many, sql, args_list)

    async def open_cursor(self, sql: str, args: Args) -> Cursor:
        cursor = await self._on_db(sqlite3.Connection.execute, sql, args)
        return _SQLiteCursor(self, cursor)

    async def run_control(self, statements: Sequence[str]) -> None:
        await self._on_db(_run_control, statements)

    async def interrupt(self, read_only: bool) -> None:
        # The worker thread would run the statement to its end. Interrupting a
        # write inside a transaction rolls back the whole transaction in
        # SQLite, so only statements that write nothing are interrupted.
        if read_only and not self.is_closed():
            await self._raw.interrupt()

    async def reset(self) -> None:
        await self._on_db(_reset)

    async def close(self) -> None:
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
            self._raw.stop()


def _database_path(url: DatabaseURL) -> str:
    return url.database or ":memory:"


class SQLiteBackend(SQLAlchemyDialect):
    dialect_name = "sqlite"
    paramstyle: ParamStyle = "qmark"
    # SQLite undoes only the failed statement; an interrupt is never sent.
    failed_statement_aborts_transaction = False
    cursor_blocks_connection = False
    cancel_needs_interrupt = True
    cancel_waits_for_statement = False
    ddl_commits_transaction = False

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        self._path = _database_path(url)
        self._connect_kwargs = {k: v for k, v in options.items() if k in _CONNECT_OPTIONS}
        # aiosqlite's worker thread runs every statement unless brief reads may
        # run on a calling thread (prefer_calling_thread), which needs this.
        self._connect_kwargs.setdefault("check_same_thread", False)
        self._pragmas = [
            f"PRAGMA {name} = {PRAGMAS[name](value)}"
            for name, value in options.items()
            if name in PRAGMAS
        ]
        # Each connection to ":memory:" is its own database: keep exactly one.
        self.single_connection = self._path == ":memory:"

    async def connect(self) -> SQLiteConnection:
        raw = aiosqlite.connect(self._path, isolation_level=None, **self._connect_kwargs)
        # aiosqlite's worker thread is not a daemon: a script that ends without
        # disconnect() would hang at exit. Flag it before it starts.
        raw._thread.daemon = True
        await raw
        raw.row_factory = SQLiteRecord
        connection = SQLiteConnection(
            raw, here_allowed=not self._connect_kwargs["check_same_thread"]
        )
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
        # IMMEDIATE by default: two deferred transactions that both read and
        # then write deadlock at once (SQLITE_BUSY without waiting).
        level = str(options.get("isolation") or "immediate").strip().lower()
        if level not in _BEGIN:
            raise ConfigurationError(
                f"unknown isolation level {level!r} for SQLite; supported: {', '.join(_BEGIN)}"
            )
        return [_BEGIN[level]]

    def is_disconnect(self, exc: BaseException) -> bool:
        return False

    def is_stale(self, exc: BaseException) -> bool:
        return False
