"""The contenders: aiodatabases, the raw drivers, ``databases`` and SQLAlchemy Core.

Each contender runs every workload the way its own documentation suggests;
all of them read the same rows and check what they read (a wrong result
raises, so a fast but broken contender cannot win).

Workloads (see ``bench.run.WORKLOADS``):

- ``w1`` point selects one after another;
- ``w2`` fetch the wide table whole, several times;
- ``w3`` concurrent tasks of point selects through a pool;
- ``w4`` one ``execute_many`` insert;
- ``w5`` stream the large table;
- ``w6`` transaction churn: begin; insert; select; rollback;
- ``w7a``/``w7b`` W1 and W3 on a ``force_rollback`` database (raw drivers: the
  same code as W1 and W3, since they have no such mode);
- ``w8`` a mixed load: many tasks of point selects, inserts and one-insert
  transactions that commit or roll back by a rule, then the rows counted
  (aiodatabases against the raw driver's own pool only).
"""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .data import (
    CHURN_INSERT_SQL,
    CHURN_SELECT_SQL,
    INSERT_SQL,
    MIXED_COUNT_SQL,
    MIXED_INSERT_SQL,
    MIXED_KINDS,
    POINT_SQL,
    STREAM_SQL,
    WIDE_SQL,
    Row,
    Sizes,
    Style,
    as_mappings,
    mixed_commits,
    mixed_expected_rows,
    point_ids,
    positional,
)

#: Rows per round trip when streaming; aiodatabases' iterate() batch size.
STREAM_BATCH = 500


class BenchError(AssertionError):
    """A contender returned a wrong result."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise BenchError(what)


class Inputs:
    """Everything the workloads need, built before timing starts."""

    def __init__(self, sizes: Sizes, style: Style) -> None:
        from .data import wide_rows

        self.sizes = sizes
        self.ids = point_ids(sizes.point, sizes.wide_rows)
        spread = point_ids(sizes.tasks * sizes.per_task, sizes.wide_rows)
        self.task_ids = [
            spread[k * sizes.per_task : (k + 1) * sizes.per_task] for k in range(sizes.tasks)
        ]
        self.insert_rows: list[Row] = wide_rows(1, sizes.insert_rows, style)
        self.insert_mappings = as_mappings(self.insert_rows)
        self.mixed_rows = mixed_expected_rows(sizes.mixed_tasks, sizes.mixed_steps)


async def _gather_tasks(inputs: Inputs, select: Callable[[int], Awaitable[Any]]) -> None:
    """W3: ``tasks`` concurrent tasks, each running ``per_task`` point selects."""

    async def task(ids: list[int]) -> None:
        for i in ids:
            row = await select(i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    await asyncio.gather(*(task(ids) for ids in inputs.task_ids))


async def _mixed(
    inputs: Inputs,
    select: Callable[[int], Awaitable[Any]],
    insert: Callable[[int], Awaitable[Any]],
    transaction: Callable[[int, bool], Awaitable[Any]],
    count: Callable[[], Awaitable[Any]],
) -> None:
    """W8: ``mixed_tasks`` concurrent tasks of ``mixed_steps`` operations each
    (``data.MIXED_KINDS``), then the rows counted: exactly the inserts and the
    committed transactions."""
    sizes, ids = inputs.sizes, inputs.ids

    async def task(index: int) -> None:
        for step in range(sizes.mixed_steps):
            kind = MIXED_KINDS[step % len(MIXED_KINDS)]
            row_id = index * sizes.mixed_steps + step + 1
            if kind == "select":
                i = ids[row_id % len(ids)]
                row = await select(i)
                _expect(row is not None and row[0] == i, "point select returned a wrong row")
            elif kind == "insert":
                await insert(row_id)
            else:
                await transaction(row_id, mixed_commits(index, step))

    # Every task ends before a failure is raised: one still writing would
    # collide with the next contender's rows.
    results = await asyncio.gather(
        *(task(index) for index in range(sizes.mixed_tasks)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    _expect(int(await count()) == inputs.mixed_rows, "W8 lost rows or kept rolled-back ones")


class Contender:
    """Base: one way of talking to one database."""

    #: Shown in the table.
    name = "?"
    #: Workloads this contender runs (others show a dash).
    supports: frozenset[str] = frozenset(
        {"w1", "w2", "w3", "w4", "w5", "w6", "w7a", "w7b", "w8"}
    )

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    async def start(self) -> None:
        """Connect (not timed)."""

    async def stop(self) -> None:
        """Disconnect (not timed)."""

    async def before(self, workload: str) -> None:
        """Per-run setup that is not timed (W7: connect the force_rollback database)."""

    async def after(self, workload: str) -> None:
        """Per-run teardown that is not timed."""

    async def run(self, workload: str) -> None:
        method: Callable[[], Awaitable[None]] = getattr(self, workload)
        await method()

    # Raw drivers have no force_rollback mode: W7 is W1 and W3 again.
    async def w7a(self) -> None:
        await self.run("w1")

    async def w7b(self) -> None:
        await self.run("w3")


# -- aiodatabases and databases: the same code, since the API is the same ----------------


class DatabaseAPI(Contender):
    """``aiodatabases.Database`` or ``databases.Database``, used as documented.

    Statements outside any block (W1-W5, W7) borrow a pooled connection each;
    W6 uses ``await database.transaction()`` then ``rollback()``.
    """

    def __init__(
        self,
        inputs: Inputs,
        name: str,
        module: str,
        url: str,
        options: dict[str, Any],
        rollback_options: dict[str, Any],
    ) -> None:
        super().__init__(inputs)
        self.name = name
        self._module = importlib.import_module(module)
        self._url = url
        self._options = options
        self._rollback_options = rollback_options
        if module != "aiodatabases":  # W8 compares aiodatabases with the raw pools only
            self.supports = Contender.supports - {"w8"}
        self._db: Any = None
        self._rollback_db: Any = None

    async def start(self) -> None:
        self._db = self._module.Database(self._url, **self._options)
        await self._db.connect()

    async def stop(self) -> None:
        if self._rollback_db is not None:
            await self._rollback_db.disconnect()
            self._rollback_db = None
        await self._db.disconnect()

    async def before(self, workload: str) -> None:
        # Connected only around its own runs: on SQLite its open transaction
        # would lock every other contender's writes out.
        if workload in ("w7a", "w7b"):
            self._rollback_db = self._module.Database(
                self._url, force_rollback=True, **self._rollback_options
            )
            await self._rollback_db.connect()

    async def after(self, workload: str) -> None:
        if self._rollback_db is not None:
            db, self._rollback_db = self._rollback_db, None
            await db.disconnect()

    @staticmethod
    async def _point(db: Any, ids: Sequence[int]) -> None:
        for i in ids:
            row = await db.fetch_one(POINT_SQL, {"id": i})
            _expect(row is not None and row["id"] == i, "point select returned a wrong row")

    async def _tasks(self, db: Any) -> None:
        await _gather_tasks(self.inputs, lambda i: db.fetch_one(POINT_SQL, {"id": i}))

    async def w1(self) -> None:
        await self._point(self._db, self.inputs.ids)

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            rows = await self._db.fetch_all(WIDE_SQL, {"lo": 0})
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch_all lost rows")

    async def w3(self) -> None:
        await self._tasks(self._db)

    async def w4(self) -> None:
        await self._db.execute_many(INSERT_SQL, self.inputs.insert_mappings)

    async def w5(self) -> None:
        count = 0
        async for _row in self._db.iterate(STREAM_SQL, {"lo": 0}):
            count += 1
        _expect(count == self.inputs.sizes.stream_rows, "iterate lost rows")

    async def w6(self) -> None:
        db = self._db
        for i in range(1, self.inputs.sizes.churn + 1):
            transaction = await db.transaction()
            try:
                await db.execute(CHURN_INSERT_SQL, {"id": i, "name": "churn"})
                row = await db.fetch_one(CHURN_SELECT_SQL, {"id": i})
                _expect(row is not None and row[0] == "churn", "churn select missed its row")
            finally:
                await transaction.rollback()

    async def w7a(self) -> None:
        await self._point(self._rollback_db, self.inputs.ids)

    async def w8(self) -> None:
        db = self._db

        async def insert(row_id: int) -> None:
            await db.execute(MIXED_INSERT_SQL, {"id": row_id, "name": "mixed"})

        # SQLite: a deferred transaction (the default, as in databases) takes the
        # write lock at its INSERT, and fails when ten connections contend for
        # it (the error says so); a writing transaction waits for it at BEGIN.
        options = {"isolation": "immediate"} if self._url.startswith("sqlite") else {}

        async def transaction(row_id: int, commit: bool) -> None:
            tx = await db.transaction(**options)
            try:
                await insert(row_id)
            except BaseException:
                await tx.rollback()
                raise
            await (tx.commit() if commit else tx.rollback())

        await _mixed(
            self.inputs,
            lambda i: db.fetch_one(POINT_SQL, {"id": i}),
            insert,
            transaction,
            lambda: db.fetch_val(MIXED_COUNT_SQL),
        )

    async def w7b(self) -> None:
        await self._tasks(self._rollback_db)


# -- PostgreSQL: asyncpg ----------------------------------------------------------------

_PG_POINT = positional(POINT_SQL, "numeric_dollar")
_PG_WIDE = positional(WIDE_SQL, "numeric_dollar")
_PG_INSERT = positional(INSERT_SQL, "numeric_dollar")
_PG_STREAM = positional(STREAM_SQL, "numeric_dollar")
_PG_CHURN_INSERT = positional(CHURN_INSERT_SQL, "numeric_dollar")
_PG_CHURN_SELECT = positional(CHURN_SELECT_SQL, "numeric_dollar")
_PG_MIXED_INSERT = positional(MIXED_INSERT_SQL, "numeric_dollar")


async def _asyncpg_churn(
    acquire: Callable[[], AbstractAsyncContextManager[Any]], count: int
) -> None:
    for i in range(1, count + 1):
        async with acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(_PG_CHURN_INSERT, i, "churn")
                row = await conn.fetchrow(_PG_CHURN_SELECT, i)
                _expect(row is not None and row[0] == "churn", "churn select missed its row")
            finally:
                await transaction.rollback()


async def _asyncpg_stream(conn: Any, expected: int) -> None:
    count = 0
    async with conn.transaction():  # asyncpg cursors live in a transaction
        async for _row in conn.cursor(_PG_STREAM, 0, prefetch=STREAM_BATCH):
            count += 1
    _expect(count == expected, "cursor lost rows")


class AsyncpgPool(Contender):
    """asyncpg's own pool, acquire per query (``pool.fetchrow``): the baseline.

    asyncpg resets a connection on every release (one more round trip).
    """

    name = "asyncpg pool"

    def __init__(self, inputs: Inputs, dsn: str) -> None:
        super().__init__(inputs)
        self._dsn = dsn
        self._pool: Any = None

    async def start(self) -> None:
        import asyncpg

        size = self.inputs.sizes.pool
        self._pool = await asyncpg.create_pool(self._dsn, min_size=size, max_size=size)

    async def stop(self) -> None:
        await self._pool.close()

    async def w1(self) -> None:
        pool = self._pool
        for i in self.inputs.ids:
            row = await pool.fetchrow(_PG_POINT, i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            rows = await self._pool.fetch(_PG_WIDE, 0)
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        pool = self._pool
        await _gather_tasks(self.inputs, lambda i: pool.fetchrow(_PG_POINT, i))

    async def w4(self) -> None:
        await self._pool.executemany(_PG_INSERT, self.inputs.insert_rows)

    async def w5(self) -> None:
        async with self._pool.acquire() as conn:
            await _asyncpg_stream(conn, self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        await _asyncpg_churn(self._pool.acquire, self.inputs.sizes.churn)

    async def w8(self) -> None:
        pool = self._pool

        async def transaction(row_id: int, commit: bool) -> None:
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    await conn.execute(_PG_MIXED_INSERT, row_id, "mixed")
                except BaseException:
                    await tx.rollback()
                    raise
                await (tx.commit() if commit else tx.rollback())

        await _mixed(
            self.inputs,
            lambda i: pool.fetchrow(_PG_POINT, i),
            lambda row_id: pool.execute(_PG_MIXED_INSERT, row_id, "mixed"),
            transaction,
            lambda: pool.fetchval(MIXED_COUNT_SQL),
        )


class _Held:
    """An async context manager that hands out one connection kept open."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def __aenter__(self) -> Any:
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _queue_of(conns: Sequence[Any]) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for conn in conns:
        queue.put_nowait(conn)
    return queue


async def _through_queue(queue: asyncio.Queue[Any], work: Callable[[Any], Awaitable[Any]]) -> Any:
    conn = await queue.get()
    try:
        return await work(conn)
    finally:
        queue.put_nowait(conn)


class AsyncpgHeld(Contender):
    """asyncpg on connections held open: the floor (one round trip per query).

    W3 (and W7's W3) spread the tasks over ``pool`` such connections handed
    out through an ``asyncio.Queue``: no reset, no pool bookkeeping.
    """

    name = "asyncpg held"
    supports = Contender.supports - {"w8"}  # W8: against the driver's own pool

    def __init__(self, inputs: Inputs, dsn: str) -> None:
        super().__init__(inputs)
        self._dsn = dsn
        self._conns: list[Any] = []

    async def start(self) -> None:
        import asyncpg

        self._conns = [await asyncpg.connect(self._dsn) for _ in range(self.inputs.sizes.pool)]

    async def stop(self) -> None:
        for conn in self._conns:
            await conn.close()

    async def w1(self) -> None:
        conn = self._conns[0]
        for i in self.inputs.ids:
            row = await conn.fetchrow(_PG_POINT, i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            rows = await self._conns[0].fetch(_PG_WIDE, 0)
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        queue = _queue_of(self._conns)
        await _gather_tasks(
            self.inputs,
            lambda i: _through_queue(queue, lambda conn: conn.fetchrow(_PG_POINT, i)),
        )

    async def w4(self) -> None:
        await self._conns[0].executemany(_PG_INSERT, self.inputs.insert_rows)

    async def w5(self) -> None:
        await _asyncpg_stream(self._conns[0], self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        held = _Held(self._conns[0])
        await _asyncpg_churn(lambda: held, self.inputs.sizes.churn)


# -- SQLite: aiosqlite ------------------------------------------------------------------

_SQ_POINT = positional(POINT_SQL, "qmark")
_SQ_WIDE = positional(WIDE_SQL, "qmark")
_SQ_INSERT = positional(INSERT_SQL, "qmark")
_SQ_STREAM = positional(STREAM_SQL, "qmark")
_SQ_CHURN_INSERT = positional(CHURN_INSERT_SQL, "qmark")
_SQ_CHURN_SELECT = positional(CHURN_SELECT_SQL, "qmark")
_SQ_MIXED_INSERT = positional(MIXED_INSERT_SQL, "qmark")


class Aiosqlite(Contender):
    """One aiosqlite connection, as its documentation uses it: the baseline.

    aiosqlite has no pool (each connection is a thread); W3's tasks share the
    one connection, whose thread runs their statements in turn.
    """

    name = "aiosqlite"

    def __init__(self, inputs: Inputs, path: str) -> None:
        super().__init__(inputs)
        self._path = path
        self._db: Any = None

    async def start(self) -> None:
        import aiosqlite

        self._db = await aiosqlite.connect(self._path, iter_chunk_size=STREAM_BATCH)
        self._db.row_factory = sqlite3.Row  # by name and position, like the others

    async def stop(self) -> None:
        await self._db.close()

    async def _fetchone(self, sql: str, args: tuple[Any, ...]) -> Any:
        async with self._db.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def w1(self) -> None:
        for i in self.inputs.ids:
            row = await self._fetchone(_SQ_POINT, (i,))
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            rows = await self._db.execute_fetchall(_SQ_WIDE, (0,))
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        await _gather_tasks(self.inputs, lambda i: self._fetchone(_SQ_POINT, (i,)))

    async def w4(self) -> None:
        await self._db.executemany(_SQ_INSERT, self.inputs.insert_rows)
        await self._db.commit()

    async def w5(self) -> None:
        count = 0
        async with self._db.execute(_SQ_STREAM, (0,)) as cursor:
            async for _row in cursor:
                count += 1
        _expect(count == self.inputs.sizes.stream_rows, "cursor lost rows")

    async def w6(self) -> None:
        db = self._db
        for i in range(1, self.inputs.sizes.churn + 1):
            # sqlite3's default (legacy) mode begins before the INSERT by itself.
            try:
                await (await db.execute(_SQ_CHURN_INSERT, (i, "churn"))).close()
                row = await self._fetchone(_SQ_CHURN_SELECT, (i,))
                _expect(row is not None and row[0] == "churn", "churn select missed its row")
            finally:
                await db.rollback()

    async def w8(self) -> None:
        # No pool: the tasks share the one connection. A write (and its commit
        # or rollback) holds a lock, so no other task's insert lands inside a
        # transaction that another one rolls back; reads need none.
        db, writing = self._db, asyncio.Lock()

        async def write(row_id: int, commit: bool) -> None:
            async with writing:
                await (await db.execute(_SQ_MIXED_INSERT, (row_id, "mixed"))).close()
                await (db.commit() if commit else db.rollback())

        async def count() -> Any:
            return (await self._fetchone(MIXED_COUNT_SQL, ()))[0]

        await _mixed(
            self.inputs,
            lambda i: self._fetchone(_SQ_POINT, (i,)),
            lambda row_id: write(row_id, True),
            write,
            count,
        )


# -- MySQL: asyncmy and aiomysql ---------------------------------------------------------
# Both drivers have PyMySQL's shape (cursors as async context managers, ``%s``
# parameters, ``begin()``/``rollback()``); each raw contender names its driver's
# pool, connection and unbuffered cursor, the workloads are shared.

_MY_POINT = positional(POINT_SQL, "format")
_MY_WIDE = positional(WIDE_SQL, "format")
_MY_INSERT = positional(INSERT_SQL, "format")
_MY_STREAM = positional(STREAM_SQL, "format")
_MY_CHURN_INSERT = positional(CHURN_INSERT_SQL, "format")
_MY_CHURN_SELECT = positional(CHURN_SELECT_SQL, "format")
_MY_MIXED_INSERT = positional(MIXED_INSERT_SQL, "format")


async def _my_fetchone(conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return await cursor.fetchone()


async def _my_fetchall(conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return await cursor.fetchall()


async def _my_executemany(conn: Any, rows: Sequence[Row]) -> None:
    async with conn.cursor() as cursor:
        await cursor.executemany(_MY_INSERT, rows)


async def _my_stream(conn: Any, unbuffered: type[Any], expected: int) -> None:
    count = 0
    async with conn.cursor(unbuffered) as cursor:
        await cursor.execute(_MY_STREAM, (0,))
        while rows := await cursor.fetchmany(STREAM_BATCH):
            for _row in rows:  # row by row, as the others iterate
                count += 1
    _expect(count == expected, "cursor lost rows")


async def _my_churn(acquire: Callable[[], AbstractAsyncContextManager[Any]], count: int) -> None:
    for i in range(1, count + 1):
        async with acquire() as conn:
            await conn.begin()
            try:
                async with conn.cursor() as cursor:
                    await cursor.execute(_MY_CHURN_INSERT, (i, "churn"))
                row = await _my_fetchone(conn, _MY_CHURN_SELECT, (i,))
                _expect(row is not None and row[0] == "churn", "churn select missed its row")
            finally:
                await conn.rollback()


class _MySQLDriver:
    """What the raw MySQL contenders need of one driver package."""

    name = "?"

    async def create_pool(self, size: int, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def connect(self, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def unbuffered_cursor(self) -> type[Any]:
        raise NotImplementedError


class _AsyncmyDriver(_MySQLDriver):
    name = "asyncmy"

    async def create_pool(self, size: int, kwargs: dict[str, Any]) -> Any:
        import asyncmy

        return await asyncmy.create_pool(minsize=size, maxsize=size, autocommit=True, **kwargs)

    async def connect(self, kwargs: dict[str, Any]) -> Any:
        import asyncmy

        return await asyncmy.connect(autocommit=True, **kwargs)

    def unbuffered_cursor(self) -> type[Any]:
        from asyncmy.cursors import SSCursor

        return SSCursor


def _aiomysql_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    renamed = dict(kwargs)
    renamed["db"] = renamed.pop("database", None)  # aiomysql's name for it
    return renamed


class _AiomysqlDriver(_MySQLDriver):
    name = "aiomysql"

    async def create_pool(self, size: int, kwargs: dict[str, Any]) -> Any:
        import aiomysql

        return await aiomysql.create_pool(
            minsize=size, maxsize=size, autocommit=True, **_aiomysql_kwargs(kwargs)
        )

    async def connect(self, kwargs: dict[str, Any]) -> Any:
        import aiomysql

        return await aiomysql.connect(autocommit=True, **_aiomysql_kwargs(kwargs))

    def unbuffered_cursor(self) -> type[Any]:
        import aiomysql

        cursor: type[Any] = aiomysql.SSCursor
        return cursor


class _MySQLPool(Contender):
    """The driver's own pool (autocommit, like aiodatabases), acquire per query: the baseline."""

    driver: _MySQLDriver = _MySQLDriver()

    def __init__(self, inputs: Inputs, connect_kwargs: dict[str, Any]) -> None:
        super().__init__(inputs)
        self.name = f"{self.driver.name} pool"
        self._kwargs = connect_kwargs
        self._pool: Any = None

    async def start(self) -> None:
        self._pool = await self.driver.create_pool(self.inputs.sizes.pool, self._kwargs)

    async def stop(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    async def _point(self, sql: str, args: tuple[Any, ...]) -> Any:
        async with self._pool.acquire() as conn:
            return await _my_fetchone(conn, sql, args)

    async def w1(self) -> None:
        for i in self.inputs.ids:
            row = await self._point(_MY_POINT, (i,))
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            async with self._pool.acquire() as conn:
                rows = await _my_fetchall(conn, _MY_WIDE, (0,))
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        await _gather_tasks(self.inputs, lambda i: self._point(_MY_POINT, (i,)))

    async def w4(self) -> None:
        async with self._pool.acquire() as conn:
            await _my_executemany(conn, self.inputs.insert_rows)

    async def w5(self) -> None:
        async with self._pool.acquire() as conn:
            await _my_stream(conn, self.driver.unbuffered_cursor(), self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        await _my_churn(self._pool.acquire, self.inputs.sizes.churn)

    async def w8(self) -> None:
        pool = self._pool

        async def insert(row_id: int) -> None:
            async with pool.acquire() as conn, conn.cursor() as cursor:
                await cursor.execute(_MY_MIXED_INSERT, (row_id, "mixed"))

        async def transaction(row_id: int, commit: bool) -> None:
            async with pool.acquire() as conn:
                await conn.begin()
                try:
                    async with conn.cursor() as cursor:
                        await cursor.execute(_MY_MIXED_INSERT, (row_id, "mixed"))
                except BaseException:
                    await conn.rollback()
                    raise
                await (conn.commit() if commit else conn.rollback())

        async def count() -> Any:
            return (await self._point(MIXED_COUNT_SQL, ()))[0]

        await _mixed(
            self.inputs, lambda i: self._point(_MY_POINT, (i,)), insert, transaction, count
        )


class _MySQLHeld(Contender):
    """The driver on connections held open (W3: ``pool`` of them through a queue)."""

    driver: _MySQLDriver = _MySQLDriver()
    supports = Contender.supports - {"w8"}  # W8: against the driver's own pool

    def __init__(self, inputs: Inputs, connect_kwargs: dict[str, Any]) -> None:
        super().__init__(inputs)
        self.name = f"{self.driver.name} held"
        self._kwargs = connect_kwargs
        self._conns: list[Any] = []

    async def start(self) -> None:
        self._conns = [
            await self.driver.connect(self._kwargs) for _ in range(self.inputs.sizes.pool)
        ]

    async def stop(self) -> None:
        for conn in self._conns:
            await conn.ensure_closed()

    async def w1(self) -> None:
        conn = self._conns[0]
        for i in self.inputs.ids:
            row = await _my_fetchone(conn, _MY_POINT, (i,))
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            rows = await _my_fetchall(self._conns[0], _MY_WIDE, (0,))
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        queue = _queue_of(self._conns)
        await _gather_tasks(
            self.inputs,
            lambda i: _through_queue(queue, lambda conn: _my_fetchone(conn, _MY_POINT, (i,))),
        )

    async def w4(self) -> None:
        await _my_executemany(self._conns[0], self.inputs.insert_rows)

    async def w5(self) -> None:
        unbuffered = self.driver.unbuffered_cursor()
        await _my_stream(self._conns[0], unbuffered, self.inputs.sizes.stream_rows)

    async def w6(self) -> None:
        held = _Held(self._conns[0])
        await _my_churn(lambda: held, self.inputs.sizes.churn)


class AsyncmyPool(_MySQLPool):
    driver = _AsyncmyDriver()


class AsyncmyHeld(_MySQLHeld):
    driver = _AsyncmyDriver()


class AiomysqlPool(_MySQLPool):
    driver = _AiomysqlDriver()


class AiomysqlHeld(_MySQLHeld):
    driver = _AiomysqlDriver()


# -- SQLAlchemy asyncio Core --------------------------------------------------------------


class SQLAlchemyCore(Contender):
    """SQLAlchemy 2 asyncio Core with ``text()`` statements built once.

    A connection per query (``async with engine.connect()``), as a request
    handler would take one; SQLAlchemy begins a transaction on first use and
    rolls it back when the connection returns to its pool. No force_rollback
    mode: W7 is not run.
    """

    name = "SQLAlchemy"
    supports = frozenset({"w1", "w2", "w3", "w4", "w5", "w6"})

    def __init__(self, inputs: Inputs, url: str) -> None:
        super().__init__(inputs)
        from sqlalchemy import text

        self._url = url
        self._engine: Any = None
        self._point = text(POINT_SQL)
        self._wide = text(WIDE_SQL)
        self._insert = text(INSERT_SQL)
        self._stream = text(STREAM_SQL).execution_options(yield_per=STREAM_BATCH)
        self._churn_insert = text(CHURN_INSERT_SQL)
        self._churn_select = text(CHURN_SELECT_SQL)

    async def start(self) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        size = self.inputs.sizes.pool
        self._engine = create_async_engine(self._url, pool_size=size, max_overflow=0)

    async def stop(self) -> None:
        await self._engine.dispose()

    def _connect(self) -> Any:
        return self._engine.connect()

    async def _fetchone(self, i: int) -> Any:
        async with self._connect() as conn:
            return (await conn.execute(self._point, {"id": i})).first()

    async def w1(self) -> None:
        for i in self.inputs.ids:
            row = await self._fetchone(i)
            _expect(row is not None and row[0] == i, "point select returned a wrong row")

    async def w2(self) -> None:
        for _ in range(self.inputs.sizes.wide_times):
            async with self._connect() as conn:
                rows = (await conn.execute(self._wide, {"lo": 0})).all()
            _expect(len(rows) == self.inputs.sizes.wide_rows, "fetch lost rows")

    async def w3(self) -> None:
        await _gather_tasks(self.inputs, self._fetchone)

    async def w4(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(self._insert, self.inputs.insert_mappings)

    async def w5(self) -> None:
        count = 0
        async with self._connect() as conn:
            result = await conn.stream(self._stream, {"lo": 0})
            async for _row in result:
                count += 1
        _expect(count == self.inputs.sizes.stream_rows, "stream lost rows")

    async def w6(self) -> None:
        for i in range(1, self.inputs.sizes.churn + 1):
            async with self._connect() as conn:
                transaction = await conn.begin()
                try:
                    await conn.execute(self._churn_insert, {"id": i, "name": "churn"})
                    row = (await conn.execute(self._churn_select, {"id": i})).first()
                    _expect(row is not None and row[0] == "churn", "churn select missed its row")
                finally:
                    await transaction.rollback()
