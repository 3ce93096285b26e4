"""PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from .._bounded import within
from .._query import ParamStyle
from .._records import record_type
from .._url import DatabaseURL
from ..exceptions import InterleaveError
from ._common import (
    PINNED_TRANSACTION,
    connect_timed_out,
    postgres_begin,
    statement_timed_out,
)
from ._pg_cursors import HeldCursor, PinnedCursor
from .base import (
    Args,
    Capabilities,
    Cursor,
    KeepsNothing,
    OptionSpec,
    Row,
    SQLAlchemyDialect,
    passthrough,
    positive_seconds,
    to_bool,
    to_float,
    to_int,
)


def _ssl_option(value: Any) -> Any:
    """``ssl`` accepts a bool, an ``SSLContext`` or a libpq sslmode name."""
    if isinstance(value, (bool, _ssl.SSLContext)):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return to_bool(text)
    modes = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
    if text not in modes:
        raise ValueError(f"expected a bool, an SSLContext or one of {', '.join(modes)}")
    return text


OPTIONS = OptionSpec(
    scheme="postgresql",
    options={
        # Passed to asyncpg.connect() as they are (command_timeout checked first:
        # asyncpg refuses a bad one only at connect()).
        "command_timeout": positive_seconds,
        "server_settings": passthrough,
        "statement_cache_size": to_int,
        "max_cached_statement_lifetime": to_int,
        "max_cacheable_statement_size": to_int,
        "ssl": _ssl_option,
        "timeout": to_float,
        # asyncpg: a string, or a callable (sync or async) asked for the password
        # at every new connection (rotating tokens); overrides the URL's password,
        # as the keyword did in databases.
        "password": passthrough,
        # Read from the URL's query by DatabaseURL (unix socket directory).
        "host": str,
        # Ours: the server is reached through PgBouncer in transaction mode
        # (no prepared statements, cursors pinned in their transaction).
        "pgbouncer": to_bool,
    },
)

T = TypeVar("T")

#: asyncpg builds every row as this type in C: a Record without a wrapper.
PostgresRecord = record_type(asyncpg.Record)


class _TimedCalls:
    """asyncpg's statement calls, for a connection with a ``command_timeout``.

    asyncpg times a statement out itself and asks the server to cancel it,
    but raises a bare ``asyncio.TimeoutError``: here it becomes
    ``CommandTimeoutError``, saying what ran out, and the core discards the
    connection when its holder lets it go (behind a stalled network asyncpg
    would wait for the cancellation's answer at the next statement; the
    discard's ``close()`` waits for it, and sends the cancel, in the
    background). A statement after it in the same block still runs, once
    asyncpg has its answer, as with asyncpg alone (bounded by the option
    too). Without the option the driver's connection is used directly, with
    no frame of ours.
    """

    __slots__ = ("_raw", "_timed_out")

    def __init__(self, raw: Any, timed_out: Callable[[], Exception]) -> None:
        self._raw = raw
        self._timed_out = timed_out

    def fetch(self, sql: str, *args: Any) -> Awaitable[list[Row]]:
        return self._timed(self._raw.fetch, sql, *args)

    def fetchrow(self, sql: str, *args: Any) -> Awaitable[Row | None]:
        return self._timed(self._raw.fetchrow, sql, *args)

    def fetchval(self, sql: str, *args: Any) -> Awaitable[Any]:
        return self._timed(self._raw.fetchval, sql, *args)

    def execute(self, sql: str, *args: Any) -> Awaitable[Any]:
        return self._timed(self._raw.execute, sql, *args)

    def executemany(self, sql: str, args_list: Sequence[Args]) -> Awaitable[Any]:
        return self._timed(self._raw.executemany, sql, args_list)

    async def _timed(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await call(*args)
        except asyncio.TimeoutError as exc:  # asyncpg's: only command_timeout in a statement
            raise self._timed_out() from exc


class PostgresConnection:
    __slots__ = ("_cursor_ids", "_pinning", "_raw", "calls", "holding")
    ran_inline = False  # asyncpg always waits for the server

    def __init__(
        self, raw: Any, timed_out: Callable[[], Exception] | None = None, pinning: bool = False
    ) -> None:
        self._raw = raw
        #: Where statements go: the driver's connection, or (with a
        #: ``command_timeout``) its calls with the timeout explained (``_TimedCalls``).
        self.calls: Any = raw if timed_out is None else _TimedCalls(raw, timed_out)
        self._cursor_ids = itertools.count(1)
        #: Cursors outside a transaction are pinned in it (the ``pgbouncer``
        #: option), not held past it (see ``_pg_cursors``).
        self._pinning = pinning
        #: The cursor whose own transaction is open (see ``_pg_cursors``).
        self.holding: HeldCursor | PinnedCursor | None = None

    @property
    def raw(self) -> Any:
        return self._raw

    @property
    def stream_in_transaction(self) -> bool:
        return self.holding is not None

    def is_closed(self) -> bool:
        return bool(self._raw.is_closed())

    # The driver's own coroutines, returned as they are: no frame of ours
    # (unless a streaming cursor's transaction must be committed first).
    def fetch_all(self, sql: str, args: Args) -> Awaitable[list[Row]]:
        if self.holding is not None:
            return self._after_hold(self.calls.fetch, sql, *args)
        rows: Awaitable[list[Row]] = self.calls.fetch(sql, *args)
        return rows

    def fetch_one(self, sql: str, args: Args) -> Awaitable[Row | None]:
        if self.holding is not None:
            return self._after_hold(self.calls.fetchrow, sql, *args)
        row: Awaitable[Row | None] = self.calls.fetchrow(sql, *args)
        return row

    def execute(self, sql: str, args: Args) -> Awaitable[Any]:
        # databases returns the first column of the first row (RETURNING id), else None.
        if self.holding is not None:
            return self._after_hold(self.calls.fetchval, sql, *args)
        value: Awaitable[Any] = self.calls.fetchval(sql, *args)
        return value

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        await self.let_hold_go()
        await self.calls.executemany(sql, args_list)

    async def open_cursor(self, sql: str, args: Args) -> Cursor:
        await self.let_hold_go()
        name = f"aiodatabases_cursor_{next(self._cursor_ids)}"
        if self._raw.is_in_transaction():
            await self.calls.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", *args)
            return HeldCursor(self, name, in_own_transaction=False)
        # A transaction of the cursor's own (see _pg_cursors), so that the
        # server streams the rows instead of keeping the whole result first.
        hold = "" if self._pinning else " WITH HOLD"
        try:
            await self.calls.execute("BEGIN")
            await self.calls.execute(f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {sql}", *args)
        except BaseException:
            # Failed, or the caller was cancelled (a BEGIN or DECLARE that ran on
            # the server meanwhile): the caller holds no transaction, whatever ran.
            with contextlib.suppress(Exception):
                await self.calls.execute("ROLLBACK")
            raise
        cursor: HeldCursor | PinnedCursor
        if self._pinning:
            cursor = PinnedCursor(self, name)
        else:
            cursor = HeldCursor(self, name, in_own_transaction=True)
        self.holding = cursor
        return cursor

    async def _after_hold(self, run: Callable[..., Awaitable[T]], sql: str, *args: Any) -> T:
        await self.let_hold_go()
        return await run(sql, *args)

    async def let_hold_go(self) -> None:
        """Commit the transaction of a streaming cursor before another statement.

        The server then keeps the rest of the cursor's result for it (that
        is when the rest of its query runs). If the query fails there (or
        times out), the failure goes to the iteration (its next fetch), not
        to the statement. A pinned cursor's transaction stays: the statement
        runs inside it.
        """
        cursor = self.holding
        if cursor is None or isinstance(cursor, PinnedCursor):
            return
        self.holding = None
        cursor.in_own_transaction = False
        try:
            await self.calls.execute("COMMIT")
        except Exception as exc:
            cursor.failed = exc  # the transaction, and the cursor with it, is gone
            if self._raw.is_closed():
                return
            if self._raw.is_in_transaction():
                await self.calls.execute("ROLLBACK")

    async def run_control(self, statements: Sequence[str]) -> None:
        holding = self.holding
        if holding is not None:
            if isinstance(holding, PinnedCursor):
                # The core begins a transaction (it sees none open): it
                # cannot begin inside the pinned cursor's, nor end that one.
                raise InterleaveError(PINNED_TRANSACTION)
            await self.let_hold_go()
        # One simple-protocol round trip for all of them.
        await self.calls.execute("; ".join(statements))

    async def control_now(self, statements: Sequence[str]) -> bool:
        return False  # every statement is a round trip to the server

    def stop_waiting(self) -> None:
        return None  # a BEGIN waits for no lock here

    async def interrupt(self, read_only: bool) -> None:
        # asyncpg sends the server a cancel request itself when the call is cancelled.
        return None

    async def ping(self) -> None:
        # asyncpg has no ping: one simple-protocol round trip (not an empty
        # query, whose reply asyncpg 0.32 fails to read).
        await self.calls.execute("SELECT 1")

    async def reset(self) -> None:
        # Valid in every state (idle, open, aborted); asyncpg first waits for
        # the cancel request of an interrupted statement to complete.
        holding, self.holding = self.holding, None
        if isinstance(holding, HeldCursor):
            holding.in_own_transaction = False
        await self.calls.execute("ROLLBACK")
        if not self._pinning:
            # WITH HOLD cursors outlive transactions. (Through PgBouncer the
            # session may be another client's by now, with its cursors.)
            await self.calls.execute("CLOSE ALL")

    async def close(self) -> None:
        await self._raw.close(timeout=5)

    def terminate(self) -> None:
        # If its event loop is closed this raises: the socket can then only be
        # left to the garbage collector (which warns about the unclosed transport).
        with contextlib.suppress(RuntimeError):
            self._raw.terminate()


def _terminate(raw: Any) -> None:
    raw.terminate()


class PostgresBackend(SQLAlchemyDialect, KeepsNothing):
    dialect_name = "postgresql"
    paramstyle: ParamStyle = "numeric_dollar"
    capabilities = Capabilities(failed_statement_aborts_transaction=True)

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self._pgbouncer = bool(options.pop("pgbouncer", False))
        if self._pgbouncer:
            # Named prepared statements live in one server session, which the
            # bouncer gives other clients between transactions. Without its cache
            # asyncpg prepares only unnamed statements and sends each one's Parse
            # again with its Bind and Execute, before one Sync: all on the session
            # the bouncer gives that statement. (A cache given explicitly is kept:
            # PgBouncer 1.21+ with max_prepared_statements tracks named ones.)
            options.setdefault("statement_cache_size", 0)
            self.capabilities = _THROUGH_PGBOUNCER
        self._connect_kwargs: dict[str, Any] = {
            "host": url.hostname,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database or None,
            "record_class": PostgresRecord,
        }
        self._connect_kwargs.update(options)

    async def connect(self) -> PostgresConnection:
        try:
            # asyncpg bounds the connect by its ``timeout`` itself, but can
            # lose a cancellation and the connection with it (see _bounded).
            raw = await within(asyncpg.connect(**self._connect_kwargs), None, drop=_terminate)
        except asyncio.TimeoutError as exc:
            # asyncpg's says nothing; refused and unreachable name the address already.
            kwargs = self._connect_kwargs
            raise connect_timed_out(
                "PostgreSQL", *self._where(), kwargs.get("timeout", 60.0), "timeout"
            ) from exc
        timed_out = None if self._connect_kwargs.get("command_timeout") is None else self._timed_out
        return PostgresConnection(raw, timed_out, pinning=self._pgbouncer)

    def _where(self) -> tuple[str, int]:
        kwargs = self._connect_kwargs
        return kwargs["host"] or "localhost", kwargs["port"] or 5432

    def _timed_out(self) -> Exception:
        timeout = self._connect_kwargs["command_timeout"]
        return statement_timed_out("PostgreSQL", *self._where(), timeout)

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        return postgres_begin(options)

    def is_stale(self, exc: BaseException) -> bool:
        # A server-side kill seen while idle leaves asyncpg consuming an error
        # ("cannot switch to state"), or closed: both raised before sending.
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            return "cannot switch to state" in str(exc)
        return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)

    def is_disconnect(self, exc: BaseException) -> bool:
        if self.is_stale(exc):
            return True
        return isinstance(
            exc,
            (
                OSError,
                asyncpg.ConnectionDoesNotExistError,
                asyncpg.exceptions.PostgresConnectionError,
                asyncpg.exceptions.AdminShutdownError,
            ),
        )


#: The capabilities with ``pgbouncer=true`` (see ``Capabilities``).
_THROUGH_PGBOUNCER = dataclasses.replace(
    PostgresBackend.capabilities, iteration_keeps_transaction=True
)
