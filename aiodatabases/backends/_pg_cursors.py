"""PostgreSQL's cursors for ``iterate()``: kept past their own transaction, or pinned in it.

Both are SQL cursors (DECLARE/FETCH/CLOSE), which can be closed, unlike a
protocol portal. Outside a transaction a cursor is declared in a transaction
of its own, which stays open while the rows stream (the server reads them
as they are fetched):

- ``HeldCursor`` (the default) is declared ``WITH HOLD``, and its
  transaction is committed before anything else runs on the connection:
  only then does the server keep the rest of the result for the cursor, so
  statements and transactions in the loop body are what they would be
  without the iteration.
- ``PinnedCursor`` (the ``pgbouncer`` option) keeps its transaction open
  until the iteration ends. Through PgBouncer in transaction mode the
  server session is handed to other clients between transactions: a held
  cursor would stay in a session this client no longer has, and its next
  FETCH would reach another one ("cursor ... does not exist"). Statements
  of the loop body on the same connection run inside that transaction; a
  transaction cannot begin there (``PostgresConnection.run_control``, with
  ``_common.PINNED_TRANSACTION``).

psycopg's twins are in ``_psycopg_connection`` (its statements differ).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import asyncpg

from .base import Row


class Holder(Protocol):
    """What a cursor needs of its connection (``PostgresConnection``)."""

    #: The cursor whose own transaction is open, if any.
    holding: HeldCursor | PinnedCursor | None

    #: Where statements go (the driver's connection, or its timed calls).
    calls: Any

    @property
    def raw(self) -> Any: ...

    async def let_hold_go(self) -> None:
        """Commit the open transaction of a ``HeldCursor`` (nothing for a pinned one)."""


class HeldCursor:
    """A cursor declared ``WITH HOLD`` outside a transaction, or a plain one inside one."""

    def __init__(self, conn: Holder, name: str, in_own_transaction: bool) -> None:
        self._conn = conn
        self._raw = conn.raw
        self._calls = conn.calls
        self._name = name
        self.in_own_transaction = in_own_transaction
        #: The cursor's query failed as its rest was kept (at that COMMIT):
        #: raised by the next fetch, where the iteration sees it.
        self.failed: BaseException | None = None

    async def keep(self) -> None:
        if self.in_own_transaction:
            await self._conn.let_hold_go()

    async def fetch(self, count: int) -> list[Row]:
        if self.failed is not None:
            raise self.failed
        holding = self._conn.holding
        if holding is not None and holding is not self:
            # Another cursor's own transaction is open: this is another statement
            # (its failure or cancellation must not abort that transaction, nor
            # that transaction's abort fail this one).
            await self._conn.let_hold_go()
        rows: list[Row] = await self._calls.fetch(f"FETCH FORWARD {int(count)} FROM {self._name}")
        return rows

    async def close(self) -> None:
        if self._raw.is_closed():
            return
        if not self.in_own_transaction:
            await self._conn.let_hold_go()  # another cursor's (as for fetch)
            if self.failed is None or not isinstance(self.failed, asyncpg.PostgresError):
                # (A COMMIT stopped by a timeout may have kept the cursor.)
                await self._calls.execute(f"CLOSE {self._name}")
            return
        self._conn.holding = None
        self.in_own_transaction = False
        await close_and_commit(self._calls, self._name)


class PinnedCursor:
    """A cursor outside a transaction whose own transaction lasts as long as it does.

    ``in_own_transaction`` stays False: nothing ends the transaction before
    the cursor is closed (``keep()`` does nothing).
    """

    in_own_transaction = False

    def __init__(self, conn: Holder, name: str) -> None:
        self._conn = conn
        self._raw = conn.raw
        self._calls = conn.calls
        self._name = name

    async def keep(self) -> None:
        return None

    async def fetch(self, count: int) -> list[Row]:
        # After a failed statement of the loop body (same connection) the
        # transaction is aborted: asyncpg's InFailedSQLTransactionError says so.
        rows: list[Row] = await self._calls.fetch(f"FETCH FORWARD {int(count)} FROM {self._name}")
        return rows

    async def close(self) -> None:
        if self._raw.is_closed():
            return
        if self._conn.holding is self:
            self._conn.holding = None
        await close_and_commit(self._calls, self._name)


async def close_and_commit(calls: Any, name: str) -> None:
    """End a cursor and its own transaction: the rest of its result is never kept."""
    try:
        await calls.execute(f"CLOSE {name}; COMMIT")
    except Exception:
        # The query failed while streaming (its transaction is aborted), or
        # the close timed out: the connection's next user finds no transaction.
        with contextlib.suppress(Exception):
            await calls.execute("ROLLBACK")
        raise
