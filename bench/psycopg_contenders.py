"""The raw psycopg contenders: psycopg_pool's ``AsyncConnectionPool`` and held connections.

Both use psycopg as its documentation shows, in autocommit mode (one round
trip per statement, as aiodatabases' psycopg backend), with psycopg's
default ``prepare_threshold``; W5 streams through a named (server-side)
cursor in a transaction, ``itersize`` rows per round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .contenders import (
    STREAM_BATCH,
    Contender,
    Inputs,
    _expect,
    _gather_tasks,
    _Held,
    _mixed,
    _queue_of,
    _through_queue,
)
from .data import (
    CHURN_INSERT_SQL,
    CHURN_SELECT_SQL,
    INSERT_SQL,
    MIXED_COUNT_SQL,
    MIXED_INSERT_SQL,
    POINT_SQL,
    STREAM_SQL,
    WIDE_SQL,
    positional,
)

_POINT = positional(POINT_SQL, "format")
_WIDE = positional(WIDE_SQL, "format")
_INSERT = positional(INSERT_SQL, "format")
_STREAM = positional(STREAM_SQL, "format")
_CHURN_INSERT = positional(CHURN_INSERT_SQL, "format")
_CHURN_SELECT = positional(CHURN_SELECT_SQL, "format")
_MIXED_INSERT = positional(MIXED_INSERT_SQL, "format")


def conninfo(url: str) -> str:
    """The libpq URI of a ``postgresql://`` URL (any ``+driver`` dropped)."""
    return "postgresql" + url[url.index("://") :]


async def _fetchrow(conn: Any, sql: str, *args: Any) -> Any:
    cur = await conn.execute(sql, args)
    return await cur.fetchone()


async def _stream(conn: Any, expected: int) -> None:
    count = 0
    async with conn.transaction(), conn.cursor("bench_stream") as cur:
        cur.itersize = STREAM_BATCH
        await cur.execute(_STREAM, (0,))
        async for _row in cur:
            count += 1
    _expect(count == expected, "cursor lost rows")


async def _churn(acquire: Callable[[], AbstractAsyncContextManager[Any]], count: int) -> None:
    for i in range(1, count + 1):
        async with acquire() as conn, conn.transaction(force_rollback=True):
            await conn.execute(_CHURN_INSERT, (i, "churn"))
            row = await _fetchrow(conn, _CHURN_SELECT, i)
            _expect(row is not None and row[0] == "churn", "churn select missed its row")


class PsycopgPool(Contender):
    """psycopg_pool's ``AsyncConnectionPool``, a connection per query: the baseline.

    The pool checks a connection's state when it comes back (no round trip
    when it is idle, a rollback if it is not).
    """

    name = "psycopg pool"

    def __init__(self, inputs: Inputs, url: str) -> None:
        super().__init__(inputs)
        self._conninfo = conninfo(url)
        self._pool: Any = None

    async def start(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        size = self.inputs.sizes.pool
        self._pool = AsyncConnectionPool(
            self._conninfo, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
        )
        await self._pool.open(wait=True)

    async def stop(self) -> None:
        await self._pool.close()

    async def _select(self, i: int) -> Any:
        async with self._pool.connection() as conn:
            return await _fetchrow(conn, _POINT, i)

    async def w1(self) -> None:
        for i in self.inputs.ids:
            row = await self._select(i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            async with self._pool.connection() as conn:
                cur = await conn.execute(_WIDE, (0,))
                rows = await cur.fetchall()
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        await _gather_tasks(self.inputs, self._select)

    async def w4(self) -> None:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(_INSERT, self.inputs.insert_rows)

    async def w5(self) -> None:
        async with self._pool.connection() as conn:
            await _stream(conn, self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        await _churn(self._pool.connection, self.inputs.sizes.churn)

    async def w8(self) -> None:
        pool = self._pool

        async def insert(row_id: int) -> None:
            async with pool.connection() as conn:
                await conn.execute(_MIXED_INSERT, (row_id, "mixed"))

        async def transaction(row_id: int, commit: bool) -> None:
            async with pool.connection() as conn, conn.transaction(force_rollback=not commit):
                await conn.execute(_MIXED_INSERT, (row_id, "mixed"))

        async def count() -> Any:
            async with pool.connection() as conn:
                row = await _fetchrow(conn, MIXED_COUNT_SQL)
            return row[0]

        await _mixed(self.inputs, self._select, insert, transaction, count)


class PsycopgHeld(Contender):
    """psycopg on connections held open: the floor (one round trip per query).

    W3 (and W7's W3) spread the tasks over ``pool`` such connections handed
    out through an ``asyncio.Queue``.
    """

    name = "psycopg held"
    supports = Contender.supports - {"w8"}  # W8: against the driver's own pool

    def __init__(self, inputs: Inputs, url: str) -> None:
        super().__init__(inputs)
        self._conninfo = conninfo(url)
        self._conns: list[Any] = []

    async def start(self) -> None:
        import psycopg

        self._conns = [
            await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            for _ in range(self.inputs.sizes.pool)
        ]

    async def stop(self) -> None:
        for conn in self._conns:
            await conn.close()

    async def w1(self) -> None:
        conn = self._conns[0]
        for i in self.inputs.ids:
            row = await _fetchrow(conn, _POINT, i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            cur = await self._conns[0].execute(_WIDE, (0,))
            rows = await cur.fetchall()
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        queue = _queue_of(self._conns)
        await _gather_tasks(
            self.inputs,
            lambda i: _through_queue(queue, lambda conn: _fetchrow(conn, _POINT, i)),
        )

    async def w4(self) -> None:
        async with self._conns[0].cursor() as cur:
            await cur.executemany(_INSERT, self.inputs.insert_rows)

    async def w5(self) -> None:
        await _stream(self._conns[0], self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        held = _Held(self._conns[0])
        await _churn(lambda: held, self.inputs.sizes.churn)
