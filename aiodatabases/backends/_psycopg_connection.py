"""One psycopg connection: statements, the rows as ``Record``, and streaming cursors.

Statements go through one psycopg cursor per connection (the core runs
them one at a time), in autocommit mode: the core sends BEGIN and COMMIT
itself. Streaming is the asyncpg backend's design (``backends/_pg_cursors``):
a SQL cursor (DECLARE/FETCH/CLOSE), outside a transaction ``WITH HOLD`` in a
transaction of its own that the next other statement commits first, or
(``pgbouncer=true``) pinned in that transaction until the iteration ends.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq

from ..exceptions import InterleaveError
from ._common import PINNED_TRANSACTION
from ._psycopg_timeout import deadline
from ._tuple_rows import row_class
from .base import Args, Cursor, Row

_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_ACTIVE = pq.TransactionStatus.ACTIVE


def _no_rows(values: Sequence[Any]) -> Any:
    return values


class RecordRows:
    """psycopg's row factory: each result's rows of a class made once per column names."""

    __slots__ = ("_encoding",)

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding  # the connection's, read once when it opened

    def __call__(self, cursor: Any) -> Callable[[Sequence[Any]], Any]:
        res = cursor.pgresult
        if res is None or not res.nfields:
            return _no_rows
        return _shape(tuple(map(res.fname, range(res.nfields))), self._encoding)


@functools.lru_cache(maxsize=1024)
def _shape(names: tuple[bytes, ...], encoding: str) -> Callable[[Sequence[Any]], Any]:
    made: Callable[[Sequence[Any]], Any] = row_class(tuple(n.decode(encoding) for n in names))
    return made


class PsycopgCursor:
    """A cursor declared ``WITH HOLD`` outside a transaction, or a plain one inside
    one (``_pg_cursors.HeldCursor``'s twin)."""

    def __init__(self, conn: PsycopgConnection, name: str, in_own_transaction: bool) -> None:
        self._conn = conn
        self._name = name
        self.in_own_transaction = in_own_transaction
        #: The cursor's query failed as its rest was kept (at that COMMIT):
        #: raised by the next fetch, where the iteration sees it.
        self.failed: BaseException | None = None

    async def keep(self) -> None:
        if self.in_own_transaction:
            await self._conn._let_hold_go()

    async def fetch(self, count: int) -> list[Row]:
        if self.failed is not None:
            raise self.failed
        conn = self._conn
        if conn.holding is not None and conn.holding is not self:
            await conn._let_hold_go()  # another cursor's own transaction (a statement of its own)
        return await conn._rows(f"FETCH FORWARD {int(count)} FROM {self._name}", None)

    async def close(self) -> None:
        conn = self._conn
        if conn.is_closed():
            return
        if not self.in_own_transaction:
            await conn._let_hold_go()  # another cursor's (as for fetch)
            if self.failed is None or not isinstance(self.failed, psycopg.DatabaseError):
                await conn._run(f"CLOSE {self._name}", None)
            return
        conn.holding = None
        self.in_own_transaction = False
        await conn._close_and_commit(self._name)


class PinnedPsycopgCursor:
    """A cursor outside a transaction whose own transaction lasts as long as it
    does (``pgbouncer=true``; ``_pg_cursors.PinnedCursor``'s twin)."""

    in_own_transaction = False  # nothing ends its transaction before its close

    def __init__(self, conn: PsycopgConnection, name: str) -> None:
        self._conn = conn
        self._name = name

    async def keep(self) -> None:
        return None

    async def fetch(self, count: int) -> list[Row]:
        # After a failed statement of the loop body (same connection) the
        # transaction is aborted: psycopg's InFailedSqlTransaction says so.
        return await self._conn._rows(f"FETCH FORWARD {int(count)} FROM {self._name}", None)

    async def close(self) -> None:
        conn = self._conn
        if conn.is_closed():
            return
        if conn.holding is self:
            conn.holding = None
        await conn._close_and_commit(self._name)


class PsycopgConnection:
    __slots__ = ("_cur", "_cursor_ids", "_pinning", "_raw", "_timed_out", "_timeout", "holding")
    ran_inline = False  # psycopg always waits for the server

    def __init__(
        self,
        raw: Any,
        timeout: float | None,
        timed_out: Callable[[], Exception],
        pinning: bool = False,
    ) -> None:
        self._raw = raw
        self._cur = raw.cursor(row_factory=RecordRows(raw.info.encoding))
        self._timeout = timeout
        self._timed_out = timed_out
        self._cursor_ids = itertools.count(1)
        #: Cursors outside a transaction are pinned in it (the ``pgbouncer``
        #: option), not held past it.
        self._pinning = pinning
        #: The cursor whose own transaction is open.
        self.holding: PsycopgCursor | PinnedPsycopgCursor | None = None

    @property
    def raw(self) -> Any:
        return self._raw

    @property
    def stream_in_transaction(self) -> bool:
        return self.holding is not None

    def is_closed(self) -> bool:
        raw = self._raw
        if raw.closed:
            return True
        pgconn = raw.pgconn
        if pgconn.transaction_status == _ACTIVE:
            return False  # a statement is running: its own wait reads the socket
        # Idle, nothing is read from the socket: something there (the server
        # ending the session, or a notice) is read now, and may close it.
        fd = pgconn.socket
        # A read takes what has arrived; the end of the stream after the
        # server's last words is seen by the next one.
        for _ in range(3):
            if not select.select([fd], [], [], 0)[0]:
                break
            try:
                pgconn.consume_input()
            except psycopg.Error:
                break
        if pgconn.status == pq.ConnStatus.BAD:
            pgconn.finish()  # as psycopg's close(): no "deleted while open" warning
        return bool(raw.closed)

    # -- statements --------------------------------------------------------------

    async def _run(self, sql: str, args: Args | None) -> Any:
        """Run one statement on the connection's cursor (within ``command_timeout``)."""
        cur = self._cur
        if self._timeout is None:
            await cur.execute(sql, args)
        else:
            with deadline(self._raw, self._timeout, self._timed_out):
                await cur.execute(sql, args)
        return cur

    async def _rows(self, sql: str, args: Args | None) -> list[Row]:
        cur = await self._run(sql, args)
        res = cur.pgresult
        if res is None or res.status != _TUPLES_OK:
            return []
        rows: list[Row] = await cur.fetchall()
        return rows

    async def fetch_all(self, sql: str, args: Args) -> list[Row]:
        if self.holding is not None:
            await self._let_hold_go()
        return await self._rows(sql, args)

    async def fetch_one(self, sql: str, args: Args) -> Row | None:
        if self.holding is not None:
            await self._let_hold_go()
        cur = await self._run(sql, args)
        res = cur.pgresult
        if res is None or res.status != _TUPLES_OK:
            return None
        return await cur.fetchone()

    async def execute(self, sql: str, args: Args) -> Any:
        # databases returns the first column of the first row (RETURNING id), else None.
        row = await self.fetch_one(sql, args)
        return None if row is None or not len(row) else row[0]

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        await self._let_hold_go()
        if self._timeout is None:
            await self._batch(sql, args_list)
        else:
            with deadline(self._raw, self._timeout, self._timed_out):
                await self._batch(sql, args_list)

    async def _batch(self, sql: str, args_list: Sequence[Args]) -> None:
        """psycopg's ``executemany``: one pipeline, one round trip; outside a
        transaction in one of its own in the same pipeline, so that a value
        psycopg cannot adapt half way (the rows before it already sent)
        leaves nothing stored."""
        raw, cur = self._raw, self._cur
        if self._in_transaction():
            await cur.executemany(sql, args_list)
            return
        try:
            async with raw.pipeline():
                await cur.execute("BEGIN")
                await cur.executemany(sql, args_list)
                await cur.execute("COMMIT")
        except Exception:
            if not raw.closed and self._in_transaction():
                await cur.execute("ROLLBACK")
            raise

    async def open_cursor(self, sql: str, args: Args) -> Cursor:
        await self._let_hold_go()
        name = f"aiodatabases_cursor_{next(self._cursor_ids)}"
        if self._in_transaction():
            await self._run(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", args)
            return PsycopgCursor(self, name, in_own_transaction=False)
        # A transaction of the cursor's own, so that the server streams the rows.
        hold = "" if self._pinning else " WITH HOLD"
        try:
            await self._run("BEGIN", None)
            await self._run(f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {sql}", args)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._run("ROLLBACK", None)
            raise
        cursor: PsycopgCursor | PinnedPsycopgCursor
        if self._pinning:
            cursor = PinnedPsycopgCursor(self, name)
        else:
            cursor = PsycopgCursor(self, name, in_own_transaction=True)
        self.holding = cursor
        return cursor

    def _in_transaction(self) -> bool:
        return self._raw.pgconn.transaction_status in (_INTRANS, _INERROR)

    async def _let_hold_go(self) -> None:
        """Commit the transaction of a streaming cursor before another statement
        (see ``backends/postgres.PostgresConnection.let_hold_go``); a pinned
        cursor's transaction stays: the statement runs inside it."""
        cursor = self.holding
        if cursor is None or isinstance(cursor, PinnedPsycopgCursor):
            return
        self.holding = None
        cursor.in_own_transaction = False
        try:
            await self._run("COMMIT", None)
        except Exception as exc:
            cursor.failed = exc  # the transaction, and the cursor with it, is gone
            if self._raw.closed:
                # (command_timeout closed it): why the statement cannot run.
                raise
            if self._in_transaction():
                await self._run("ROLLBACK", None)

    async def _close_and_commit(self, name: str) -> None:
        """End a cursor and its own transaction: the rest of its result is never kept."""
        try:
            await self._run(f"CLOSE {name}; COMMIT", None)
        except Exception:
            # Its query failed while streaming (the transaction is aborted), or
            # the close timed out: the connection's next user finds no transaction.
            with contextlib.suppress(Exception):
                await self._run("ROLLBACK", None)
            raise

    async def run_control(self, statements: Sequence[str]) -> None:
        if isinstance(self.holding, PinnedPsycopgCursor):
            # The core begins a transaction (it sees none open): it cannot
            # begin inside the pinned cursor's, nor end that one.
            raise InterleaveError(PINNED_TRANSACTION)
        await self._let_hold_go()
        # One simple-protocol round trip for all of them (no arguments: no % read).
        await self._run("; ".join(statements), None)

    async def control_now(self, statements: Sequence[str]) -> bool:
        return False  # every statement is a round trip to the server

    def stop_waiting(self) -> None:
        return None  # a BEGIN waits for no lock here

    async def interrupt(self, read_only: bool) -> None:
        # psycopg cancels a cancelled statement on the server itself, and waits for its end.
        return None

    async def ping(self) -> None:
        await self._run("", None)  # an empty query: one simple-protocol round trip

    async def reset(self) -> None:
        holding, self.holding = self.holding, None
        if isinstance(holding, PsycopgCursor):
            holding.in_own_transaction = False
        if self._pinning:
            # Through PgBouncer the session may be another client's by now,
            # with its cursors: a rollback only (valid in every state).
            await self._run("ROLLBACK", None)
        else:
            # Valid in every state; WITH HOLD cursors outlive transactions.
            await self._run("ROLLBACK; CLOSE ALL", None)

    async def close(self) -> None:
        await self._raw.close()

    def terminate(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.pgconn.finish()
