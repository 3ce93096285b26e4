"""Drop-in compatibility with `databases` 0.9: what its documentation promises.

Each test follows one promise of the `databases` 0.9 documentation (the
quickstart, "Database Queries", "Connections and Transactions", "Tests and
Migrations" and the 0.8 release notes on task-local connections), written
here from the text of the promise, and runs on every configured backend.
Only the import differs from code written for `databases`.
Where aiodatabases deliberately differs, docs/migrating-from-databases.md
says so and why; those differences are tested where they are implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import sqlalchemy
from conftest import dialect_of, drop_table, helper_database

from aiodatabases import Database, DatabaseURL

# "Table declarations": the table the documentation uses throughout.
metadata = sqlalchemy.MetaData()
notes = sqlalchemy.Table(
    "notes",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("text", sqlalchemy.String(length=100)),
    sqlalchemy.Column("completed", sqlalchemy.Boolean),
)

# The transaction isolation level each backend accepts.
ISOLATION = {"postgresql": "serializable", "mysql": "serializable", "sqlite": "exclusive"}


@pytest.fixture
async def url(notes: str) -> str:
    """conftest's empty ``notes`` table (id, text, completed); its URL."""
    return notes


async def all_texts(database: Any) -> list[str]:
    query = sqlalchemy.select(notes.c.text).order_by(notes.c.id)
    return [row.text for row in await database.fetch_all(query=query)]


# The documentation's quickstart runs on SQLite; the same auto-increment key elsewhere.
AUTO_ID = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "SERIAL PRIMARY KEY",
    "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
}


# -- Quickstart -----------------------------------------------------------------------------


async def test_quickstart(database_url: str) -> None:
    await drop_table(database_url, "HighScores")
    database = Database(database_url)
    await database.connect()
    try:
        id_column = AUTO_ID[dialect_of(database_url)]
        query = f"CREATE TABLE HighScores (id {id_column}, name VARCHAR(100), score INTEGER)"
        await database.execute(query=query)
        query = "INSERT INTO HighScores(name, score) VALUES (:name, :score)"
        values = [
            {"name": "Daisy", "score": 92},
            {"name": "Neil", "score": 87},
            {"name": "Carol", "score": 43},
        ]
        await database.execute_many(query=query, values=values)
        rows = await database.fetch_all(query="SELECT * FROM HighScores")
        assert [(row["name"], row["score"]) for row in rows] == [
            ("Daisy", 92),
            ("Neil", 87),
            ("Carol", 43),
        ]
    finally:
        await database.disconnect()
        await drop_table(database_url, "HighScores")


# -- Database Queries -----------------------------------------------------------------------


async def test_queries_with_sqlalchemy_core(url: str) -> None:
    database = Database(url)
    await database.connect()
    try:
        query = notes.insert()
        values = {"text": "example1", "completed": True}
        await database.execute(query=query, values=values)

        query = notes.insert()
        values_list = [
            {"text": "example2", "completed": False},
            {"text": "example3", "completed": True},
        ]
        await database.execute_many(query=query, values=values_list)

        query = notes.select()
        rows = await database.fetch_all(query=query)
        assert [(row["text"], row["completed"]) for row in rows] == [
            ("example1", True),
            ("example2", False),
            ("example3", True),
        ]
        row = await database.fetch_one(query=query)
        assert row is not None
        assert row["text"] == "example1"
        assert await database.fetch_val(query=query) == row["id"]  # column=0
        assert await database.fetch_val(query=query, column=1) == "example1"
        iterated = [row["text"] async for row in database.iterate(query=query)]
        assert iterated == ["example1", "example2", "example3"]
    finally:
        await database.disconnect()


STOCK_DIALECTS = {
    "postgresql": "sqlalchemy.dialects.postgresql",
    "mysql": "sqlalchemy.dialects.mysql",
    "sqlite": "sqlalchemy.dialects.sqlite",
}


async def test_creating_tables_with_schema_compilation(database_url: str) -> None:
    import importlib

    await drop_table(database_url, "docs_notes")
    table_metadata = sqlalchemy.MetaData()
    sqlalchemy.Table(
        "docs_notes",
        table_metadata,
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("text", sqlalchemy.String(length=100)),
        sqlalchemy.Column("completed", sqlalchemy.Boolean),
    )
    dialect = importlib.import_module(STOCK_DIALECTS[dialect_of(database_url)]).dialect()
    database = Database(database_url)
    await database.connect()
    try:
        for _ in range(2):  # if_not_exists: the second time does nothing
            for table in table_metadata.tables.values():
                schema = sqlalchemy.schema.CreateTable(table, if_not_exists=True)
                query = str(schema.compile(dialect=dialect))
                await database.execute(query=query)
        await database.execute(
            "INSERT INTO docs_notes (text, completed) VALUES (:text, :completed)",
            {"text": "x", "completed": True},
        )
        assert await database.fetch_val("SELECT text FROM docs_notes") == "x"
    finally:
        await database.disconnect()
        await drop_table(database_url, "docs_notes")


async def test_raw_queries(url: str) -> None:
    async with Database(url) as database:
        query = "INSERT INTO notes(text, completed) VALUES (:text, :completed)"
        values = {"text": "example1", "completed": True}
        await database.execute(query=query, values=values)

        values_list = [
            {"text": "example2", "completed": False},
            {"text": "example3", "completed": True},
        ]
        await database.execute_many(query=query, values=values_list)

        query = "SELECT * FROM notes WHERE completed = :completed"
        rows = await database.fetch_all(query=query, values={"completed": True})
        assert [row["text"] for row in rows] == ["example1", "example3"]

        query = "SELECT * FROM notes WHERE id = :id"
        result = await database.fetch_one(query=query, values={"id": 1})
        assert result is not None
        assert result["text"] == "example1"


async def test_query_result_attribute_and_mapping_access(url: str) -> None:
    def as_dict(result: Any) -> dict[str, Any]:
        # One function for rows of raw and of Core queries, no instance checks.
        return {key: result._mapping[key] for key in ("id", "text")}

    async with Database(url) as database:
        await database.execute(notes.insert(), {"text": "example1", "completed": True})
        raw = await database.fetch_one(query="SELECT * FROM notes WHERE id = :id", values={"id": 1})
        core = await database.fetch_one(notes.select().where(notes.c.id == 1))
    for result in (raw, core):
        assert result is not None
        assert result.id == 1
        assert result._mapping["id"] == 1
        assert as_dict(result) == {"id": 1, "text": "example1"}
    assert core is not None
    # Column reference access.
    assert core[notes.c.text] == "example1"
    assert core[notes.c.completed] is True


async def test_execute_return_values(url: str) -> None:
    """What ``databases`` returns from ``execute()``, per backend."""
    raw_insert = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"
    async with Database(url) as database:
        # A Core insert returns the new primary key on every backend.
        pk = await database.execute(notes.insert(), {"text": "example1", "completed": True})
        assert isinstance(pk, int)
        row = await database.fetch_one(notes.select().where(notes.c.id == pk))
        assert row is not None
        assert row["text"] == "example1"

        raw = await database.execute(raw_insert, {"text": "example2", "completed": False})
        if dialect_of(url) == "postgresql":
            # Raw SQL: the first column of the first returned row, or None.
            assert raw is None
            returned = await database.execute(
                raw_insert + " RETURNING id", {"text": "e3", "completed": True}
            )
            assert returned == 3
        else:
            assert raw == 2  # the cursor's lastrowid


# -- Connections and Transactions -----------------------------------------------------------


async def test_connecting_and_disconnecting(url: str) -> None:
    async with Database(url) as database:
        assert database.is_connected
        assert await database.fetch_val("SELECT 1") == 1
    assert not database.is_connected

    database = Database(url)
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    assert await database.fetch_val("SELECT 1") == 1
    await database.disconnect()
    assert not database.is_connected
    await database.disconnect()  # disconnecting again does nothing
    assert not database.is_connected


async def test_connection_options(url: str) -> None:
    parsed = DatabaseURL(url)
    in_url = str(parsed.replace(options={**parsed.options, "min_size": "1", "max_size": "2"}))
    for database in (Database(in_url), Database(url, min_size=1, max_size=2)):
        async with database:
            results = await asyncio.gather(*(database.fetch_val("SELECT 1") for _ in range(4)))
            assert results == [1, 1, 1, 1]
    assert Database(url, min_size=1, max_size=2).options == {"min_size": 1, "max_size": 2}


async def test_transaction_block_commits_or_rolls_back(url: str) -> None:
    async with Database(url) as database:
        async with database.transaction():
            await database.execute(notes.insert(), {"text": "kept", "completed": True})

        async def fail() -> None:
            async with database.transaction():
                await database.execute(notes.insert(), {"text": "lost", "completed": True})
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail()
        assert await all_texts(database) == ["kept"]


async def test_transaction_from_a_specific_connection(url: str) -> None:
    async with Database(url) as database:
        async with database.connection() as connection:
            async with connection.transaction():
                await connection.execute(notes.insert(), {"text": "kept", "completed": True})
            with contextlib.suppress(RuntimeError):
                async with connection.transaction():
                    await connection.execute(notes.insert(), {"text": "lost", "completed": True})
                    raise RuntimeError("boom")
            assert await all_texts(connection) == ["kept"]
        assert await all_texts(database) == ["kept"]


async def test_lower_level_transaction_api(url: str) -> None:
    async def write(database: Database, text: str, fail: bool) -> None:
        transaction = await database.transaction()
        try:
            await database.execute(notes.insert(), {"text": text, "completed": True})
            if fail:
                raise RuntimeError("boom")
        except RuntimeError:
            await transaction.rollback()
        else:
            await transaction.commit()

    async with Database(url) as database:
        await write(database, "committed", fail=False)
        await write(database, "rolled back", fail=True)
        # start() is the explicit form of the await.
        transaction = database.transaction()
        await transaction.start()
        await database.execute(notes.insert(), {"text": "started", "completed": True})
        await transaction.commit()
        assert await all_texts(database) == ["committed", "started"]


async def test_transaction_decorator(url: str) -> None:
    async with Database(url) as database:

        @database.transaction()
        async def create_note(text: str, fail: bool = False) -> None:
            await database.execute(notes.insert(), {"text": text, "completed": True})
            if fail:
                raise RuntimeError("boom")

        await create_note("first")
        with pytest.raises(RuntimeError):
            await create_note("lost", fail=True)
        await create_note("second")
        assert await all_texts(database) == ["first", "second"]


async def test_decorator_uses_the_calling_tasks_connection(url: str) -> None:
    """Concurrent calls of one decorated function: each its own transaction."""
    async with Database(url) as database:
        started = asyncio.Event()
        failing_may_end = asyncio.Event()

        @database.transaction()
        async def create_note(text: str, fail: bool) -> None:
            await database.execute(notes.insert(), {"text": text, "completed": True})
            if fail:
                started.set()
                await failing_may_end.wait()
                raise RuntimeError("boom")
            failing_may_end.set()

        async def succeed() -> None:
            await started.wait()
            await create_note("kept", fail=False)

        # Elsewhere both transactions are open at once; SQLite has one writer, so
        # there the failing one ends first and the other waits for its lock.
        if dialect_of(url) == "sqlite":
            failing_may_end.set()
        results = await asyncio.gather(
            create_note("lost", fail=True), succeed(), return_exceptions=True
        )
        assert isinstance(results[0], RuntimeError)
        assert results[1] is None
        assert await all_texts(database) == ["kept"]


async def test_transaction_state_is_shared_through_the_connection(url: str) -> None:
    async def add_excitement(connection: Any, id: int) -> None:
        await connection.execute(
            notes.update().where(notes.c.id == id).values(text=notes.c.text + "!!!")
        )

    async with Database(url) as database:
        async with database.transaction():
            await database.execute("INSERT INTO notes(id, text) VALUES (1, 'databases is cool')")
            # A child task given the connection runs inside the transaction.
            await asyncio.create_task(add_excitement(database.connection(), id=1))
        assert await database.fetch_val("SELECT text FROM notes WHERE id=1") == (
            "databases is cool!!!"
        )


async def test_nested_transactions_are_savepoints(url: str) -> None:
    async with Database(url) as db:
        async with db.transaction():
            await db.execute(notes.insert(), {"text": "outer", "completed": True})
            with contextlib.suppress(ValueError):
                async with db.transaction():
                    await db.execute(notes.insert(), {"text": "inner", "completed": True})
                    raise ValueError("Abort the inner transaction")
            await db.execute(notes.insert(), {"text": "outer again", "completed": True})
        assert await all_texts(db) == ["outer", "outer again"]


async def test_isolation_level(url: str) -> None:
    level = ISOLATION[dialect_of(url)]
    async with Database(url) as database:
        async with database.transaction(isolation=level):
            await database.execute(notes.insert(), {"text": "isolated", "completed": True})
            if dialect_of(url) == "postgresql":
                setting = await database.fetch_val(
                    "SELECT current_setting('transaction_isolation')"
                )
                assert setting == "serializable"
        assert await all_texts(database) == ["isolated"]


async def test_uncommitted_writes_are_invisible_to_other_tasks(url: str) -> None:
    async def count_in_another_task(database: Database) -> int:
        count = sqlalchemy.select(sqlalchemy.func.count()).select_from(notes)
        return int(await database.fetch_val(count))

    async with Database(url) as database:
        transaction = await database.transaction()
        await database.execute(notes.insert(), {"text": "pending", "completed": True})
        # A child task is not given the transaction's connection: it has its own.
        assert await asyncio.create_task(count_in_another_task(database)) == 0
        assert await count_in_another_task(database) == 1  # this task: inside it
        await transaction.commit()
        assert await asyncio.create_task(count_in_another_task(database)) == 1


# -- Tasks and connections ------------------------------------------------------------------


async def test_a_connection_per_task(url: str) -> None:
    async with Database(url) as database:

        async def connections() -> tuple[Any, Any]:
            return database.connection(), database.connection()

        mine = await connections()
        assert mine[0] is mine[1]  # the same within a task
        others = await asyncio.gather(*(asyncio.create_task(connections()) for _ in range(3)))
        seen = {id(mine[0])}
        for first, second in others:
            assert first is second
            assert id(first) not in seen  # every task its own
            seen.add(id(first))


async def test_child_tasks_do_not_inherit_the_connection(url: str) -> None:
    async def current_connection() -> Any:
        return database.connection()

    async with Database(url) as database, database.connection() as connection:
        assert database.connection() is connection
        assert await asyncio.create_task(current_connection()) is not connection


async def test_sibling_tasks_have_independent_transactions(url: str) -> None:
    async with Database(url) as database:

        async def write(text: str, fail: bool) -> None:
            async with database.transaction():
                await database.execute(notes.insert(), {"text": text, "completed": True})
                await asyncio.sleep(0)
                if fail:
                    raise RuntimeError("boom")

        results = await asyncio.gather(
            write("lost", fail=True), write("kept", fail=False), return_exceptions=True
        )
        assert isinstance(results[0], RuntimeError)
        assert results[1] is None
        assert await all_texts(database) == ["kept"]


async def test_concurrent_queries_from_many_tasks(url: str) -> None:
    async with Database(url) as database:

        async def work(i: int) -> str | None:
            await database.execute(notes.insert(), {"text": f"n{i}", "completed": True})
            return await database.fetch_val(
                sqlalchemy.select(notes.c.text).where(notes.c.text == f"n{i}")
            )

        assert await asyncio.gather(*(work(i) for i in range(10))) == [f"n{i}" for i in range(10)]
        assert sorted(await all_texts(database)) == sorted(f"n{i}" for i in range(10))


# -- Iterate ----------------------------------------------------------------------------------


async def test_iterate_without_loading_every_row(url: str) -> None:
    values = [{"text": f"n{i:04}", "completed": i % 2 == 0} for i in range(1200)]
    async with Database(url) as database:
        await database.execute_many(notes.insert(), values)
        core = [row["text"] async for row in database.iterate(query=notes.select())]
        raw = [
            row.text
            async for row in database.iterate(
                "SELECT text FROM notes WHERE completed = :completed ORDER BY id",
                {"completed": True},
            )
        ]
        async with database.connection() as connection:
            on_connection = [row[notes.c.text] async for row in connection.iterate(notes.select())]
    assert core == on_connection == [v["text"] for v in values]
    assert raw == [v["text"] for v in values if v["completed"]]


# -- Tests and Migrations ----------------------------------------------------------------------


async def test_force_rollback_database(url: str) -> None:
    database = Database(url, force_rollback=True)
    async with database:
        await database.execute(notes.insert(), {"text": "test data", "completed": True})
        assert await all_texts(database) == ["test data"]
    async with database:  # connecting again: the previous test's writes are gone
        assert await all_texts(database) == []
    async with helper_database(url) as other:
        assert await all_texts(other) == []


async def test_force_rollback_context(url: str) -> None:
    database = Database(url)
    with database.force_rollback():
        async with database:
            await database.execute(notes.insert(), {"text": "test data", "completed": True})
            assert await all_texts(database) == ["test data"]
    async with database:
        assert await all_texts(database) == []


async def test_force_rollback_transaction(url: str) -> None:
    async with Database(url) as database:
        async with database.transaction(force_rollback=True):
            await database.execute(notes.insert(), {"text": "test data", "completed": True})
            assert await all_texts(database) == ["test data"]
        assert await all_texts(database) == []


def test_url_for_migrations() -> None:
    url = DatabaseURL("mysql://user:secret@localhost:3306/app")
    assert str(url.replace(driver="pymysql")) == "mysql+pymysql://user:secret@localhost:3306/app"
    assert url.dialect == "mysql"
    assert url.database == "app"
    assert "secret" not in repr(url)


# -- The Connection API --------------------------------------------------------------------------


async def test_connection_methods(url: str) -> None:
    async with Database(url) as database, database.connection() as connection:
        assert connection.raw_connection is not None
        await connection.execute(notes.insert(), {"text": "a", "completed": True})
        await connection.execute_many(
            "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
            [{"text": "b", "completed": False}, {"text": "c", "completed": True}],
        )
        assert [row.text for row in await connection.fetch_all(notes.select())] == ["a", "b", "c"]
        row = await connection.fetch_one("SELECT text FROM notes WHERE id = :id", {"id": 2})
        assert row is not None
        assert row.text == "b"
        assert await connection.fetch_val(notes.select(), column=notes.c.text) == "a"
