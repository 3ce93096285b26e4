"""``Connection``: one per task, held by ``async with``, shared explicitly across tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql
import aiosqlite
import asyncmy
import asyncpg
import psycopg
import pytest
from conftest import dialect_of, scheme_of, urls_for

from aiodatabases import Connection, Database, DatabaseURL, InterleaveError, NotConnectedError

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


async def texts(db: Database | Connection) -> list[str]:
    return [row["text"] for row in await db.fetch_all("SELECT text FROM notes ORDER BY id")]


async def test_connection_is_per_task(database_url: str) -> None:
    async with Database(database_url) as db:
        mine = db.connection()
        assert isinstance(mine, Connection)
        assert db.connection() is mine

        async def theirs() -> Connection:
            connection = db.connection()
            assert db.connection() is connection
            return connection

        first, second = await asyncio.gather(theirs(), theirs())
        assert first is not second
        assert mine is not first
        assert mine is not second
        assert await asyncio.create_task(theirs()) is not mine
        assert db.connection() is mine


async def test_a_new_connect_gives_new_task_connections(database_url: str) -> None:
    database = Database(database_url)
    async with database:
        before = database.connection()
    async with database:
        after = database.connection()
        assert after is not before
        assert await after.fetch_val("SELECT 1") == 1


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_async_with_connection_keeps_one_postgres_backend(url: str) -> None:
    pid = "SELECT pg_backend_pid()"
    async with Database(url) as db, db.connection() as connection:
        first = await connection.fetch_val(pid)

        async def elsewhere() -> int:
            # Each of these holds a pooled connection at the same time.
            value: int = await db.fetch_val("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
            return value

        others = await asyncio.gather(*(elsewhere() for _ in range(4)))
        assert first not in others
        assert await db.fetch_val(pid) == first
        assert await connection.fetch_val(pid) == first
        async with db.transaction():
            assert await db.fetch_val(pid) == first
        rows = [row[0] async for row in db.iterate("SELECT pg_backend_pid()")]
        assert rows == [first]


@pytest.mark.parametrize("url", urls_for("sqlite"), ids=dialect_of)
async def test_async_with_connection_keeps_one_sqlite_connection(url: str) -> None:
    async with Database(url) as db, db.connection() as connection:
        await connection.execute("CREATE TEMP TABLE scratch (x INTEGER)")

        async def elsewhere() -> None:
            async with db.connection() as other:
                await asyncio.sleep(0.01)
                await other.fetch_val("SELECT 1")

        await asyncio.gather(*(elsewhere() for _ in range(3)))
        await db.execute("INSERT INTO scratch VALUES (1)")
        await connection.execute("INSERT INTO scratch VALUES (2)")
        assert await db.fetch_val("SELECT SUM(x) FROM scratch") == 3
        await connection.execute("DROP TABLE scratch")


async def test_nested_async_with_connection(database_url: str) -> None:
    async with Database(database_url) as db:
        connection = db.connection()
        async with connection:
            async with connection:
                raw = connection.raw_connection
            # The outer block still holds it.
            assert connection.raw_connection is raw
        with pytest.raises(NotConnectedError):
            connection.raw_connection  # noqa: B018


def raw_driver_type(url: str) -> type[Any]:
    driver_types: dict[str, type[Any]] = {
        "postgresql": asyncpg.Connection,
        "postgresql+psycopg": psycopg.AsyncConnection,
        "sqlite": aiosqlite.Connection,
        "mysql": aiomysql.Connection,  # as in databases
        "mysql+asyncmy": asyncmy.Connection,
        "mysql+aiomysql": aiomysql.Connection,
    }
    return driver_types[DatabaseURL(url).scheme]


async def raw_select_one(raw: Any) -> Any:
    if isinstance(raw, asyncpg.Connection):
        return await raw.fetchval("SELECT 1")
    if isinstance(raw, psycopg.AsyncConnection):
        async with raw.cursor() as cursor:
            await cursor.execute("SELECT 1")
            return (await cursor.fetchone())[0]
    if isinstance(raw, aiosqlite.Connection):
        async with raw.execute("SELECT 1") as cursor:
            return (await cursor.fetchone())[0]
    # The MySQL drivers (PyMySQL's shape): asyncmy's cursor() is sync, aiomysql's a coroutine.
    cursor = raw.cursor()
    if asyncio.iscoroutine(cursor):
        cursor = await cursor
    await cursor.execute("SELECT 1")
    value = (await cursor.fetchone())[0]
    await cursor.close()
    return value


async def test_raw_connection_is_the_driver_connection_inside_the_block(database_url: str) -> None:
    driver_type = raw_driver_type(database_url)
    async with Database(database_url) as db:
        connection = db.connection()
        with pytest.raises(NotConnectedError):
            connection.raw_connection  # noqa: B018
        async with connection:
            raw = connection.raw_connection
            assert isinstance(raw, driver_type)
            assert await raw_select_one(raw) == 1
        with pytest.raises(NotConnectedError):
            connection.raw_connection  # noqa: B018
        async with db.transaction():
            assert isinstance(db.connection().raw_connection, driver_type)


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_explicitly_shared_connection_runs_gathered_statements(url: str) -> None:
    async with Database(url) as db, db.connection() as connection:
        backend = await connection.fetch_val("SELECT pg_backend_pid()")

        async def work(i: int) -> tuple[int, int]:
            await connection.execute("SELECT pg_sleep(0.05)")
            pid = await connection.fetch_val("SELECT pg_backend_pid()")
            value = await connection.fetch_val("SELECT :i::int", {"i": i})
            return pid, value

        results = await asyncio.gather(*(work(i) for i in range(10)))
        assert results == [(backend, i) for i in range(10)]


async def test_explicitly_shared_connection_on_every_backend(notes: str) -> None:
    # MySQL cannot run a statement on a connection while it streams an iterate()
    # (InterleaveError, tested below): there the gathered tasks do not iterate.
    streams_block = dialect_of(notes) == "mysql"
    async with Database(notes) as db, db.connection() as connection:

        async def work(i: int) -> None:
            await connection.execute(INSERT, {"text": str(i), "completed": False})
            assert str(i) in await texts(connection)
            if streams_block:
                rows = await connection.fetch_all("SELECT text FROM notes")
            else:
                rows = [row async for row in connection.iterate("SELECT text FROM notes")]
            assert str(i) in [row["text"] for row in rows]

        await asyncio.gather(*(work(i) for i in range(10)))
        assert sorted(await texts(connection), key=int) == [str(i) for i in range(10)]
        rows = [row["text"] async for row in connection.iterate("SELECT text FROM notes")]
        assert sorted(rows, key=int) == [str(i) for i in range(10)]


@pytest.mark.parametrize("url", urls_for("mysql"), ids=lambda url: DatabaseURL(url).scheme)
async def test_statement_while_a_shared_mysql_connection_streams_fails_at_once(url: str) -> None:
    # Legitimate MySQL difference: the protocol cannot interleave a statement with
    # an unbuffered result, so another task's statement fails at once (no hang).
    async with Database(url, acquire_timeout=5) as db, db.connection() as connection:
        rows = connection.iterate("SELECT 1 AS x UNION ALL SELECT 2")
        first = await rows.__anext__()
        try:
            with pytest.raises(InterleaveError):
                await asyncio.create_task(connection.fetch_val("SELECT 3"))
            assert [first["x"], *[row["x"] async for row in rows]] == [1, 2]
        finally:
            await rows.aclose()  # type: ignore[attr-defined]
        assert await connection.fetch_val("SELECT 3") == 3


async def test_transaction_on_a_shared_connection_owns_it(notes: str) -> None:
    """Other tasks wait for it; tasks created inside it run inside it."""
    async with Database(notes, acquire_timeout=5) as db, db.connection() as connection:
        opened = asyncio.Event()

        async def outsider() -> None:
            await opened.wait()
            await connection.execute(INSERT, {"text": "outsider", "completed": False})

        # Created before the transaction: not part of it.
        outsider_task = asyncio.create_task(outsider())
        async with connection.transaction(force_rollback=True):
            opened.set()
            await asyncio.sleep(0.05)  # give the outsider every chance to run
            assert not outsider_task.done()
            child = asyncio.create_task(
                connection.execute(INSERT, {"text": "child", "completed": False})
            )
            await child  # runs inside the transaction, so it does not wait
            assert await texts(connection) == ["child"]
            assert not outsider_task.done()
        await outsider_task
        # The rollback discarded the child's write and never the outsider's.
        assert await texts(connection) == ["outsider"]
    async with Database(notes) as other:
        assert await texts(other) == ["outsider"]
