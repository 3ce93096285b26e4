"""``Database``: construction, lifecycle and the statement methods, on real servers."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import (
    DATABASE_URLS,
    dialect_of,
    drop_notes,
    mysql_driver_of,
    postgres_driver_of,
    reset_notes,
    scheme_of,
    urls_for,
)

from aiodatabases import (
    AiodatabasesError,
    ConfigurationError,
    Database,
    DatabaseURL,
    MissingDriverError,
    MissingParameterError,
    NotConnectedError,
    Record,
    UnknownOptionError,
    UnknownParameterError,
    UnknownSchemeError,
)

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"
COUNT = "SELECT COUNT(*) FROM notes"

# Built at import time, before any event loop exists (as applications do).
IMPORT_TIME_DATABASES = {url: Database(url) for url in DATABASE_URLS}


def with_options(url: str, **options: str) -> str:
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


def driver_errors(url: str) -> SimpleNamespace:
    """The exception types the driver raises for each kind of failed statement."""
    if dialect_of(url) == "postgresql" and postgres_driver_of(url) == "psycopg":
        import psycopg

        return SimpleNamespace(
            syntax=psycopg.errors.SyntaxError,
            unique=psycopg.errors.UniqueViolation,
            undefined_table=psycopg.errors.UndefinedTable,
        )
    if dialect_of(url) == "postgresql":
        import asyncpg

        return SimpleNamespace(
            syntax=asyncpg.exceptions.PostgresSyntaxError,
            unique=asyncpg.exceptions.UniqueViolationError,
            undefined_table=asyncpg.exceptions.UndefinedTableError,
        )
    if dialect_of(url) == "mysql":
        # Each MySQL driver raises its own PEP 249 classes (aiomysql re-uses PyMySQL's).
        if mysql_driver_of(url) == "aiomysql":
            import pymysql.err as errors
        else:
            import asyncmy.errors as errors  # type: ignore[no-redef]

        return SimpleNamespace(
            syntax=errors.ProgrammingError,  # 1064
            unique=errors.IntegrityError,  # 1062 duplicate entry
            undefined_table=errors.ProgrammingError,  # 1146
        )
    return SimpleNamespace(
        syntax=sqlite3.OperationalError,
        unique=sqlite3.IntegrityError,
        undefined_table=sqlite3.OperationalError,
    )


async def texts(db: Database) -> list[str]:
    return [row["text"] for row in await db.fetch_all("SELECT text FROM notes ORDER BY id")]


# --- construction ------------------------------------------------------------------


def test_construction_needs_no_event_loop(database_url: str) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    database = Database(database_url)
    assert not database.is_connected


def test_construction_does_no_io() -> None:
    # Nothing listens on port 1: building the object must still work.
    database = Database("postgresql://nobody:secret@127.0.0.1:1/nothing")
    assert not database.is_connected


async def test_database_built_at_import_time_connects_in_the_test_loop(database_url: str) -> None:
    database = IMPORT_TIME_DATABASES[database_url]
    async with database:
        assert await database.fetch_val("SELECT 1") == 1
    assert not database.is_connected


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(UnknownSchemeError, match="mongodb"):
        Database("mongodb://localhost/app")


def test_unknown_option_keyword_is_named(database_url: str) -> None:
    with pytest.raises(UnknownOptionError, match="frobnicate"):
        Database(database_url, frobnicate=1)


def test_unknown_option_in_url_is_named(database_url: str) -> None:
    with pytest.raises(UnknownOptionError, match="frobnicate"):
        Database(with_options(database_url, frobnicate="1"))


@pytest.mark.parametrize(
    "options",
    [
        {"min_size": 5, "max_size": 2},
        {"max_size": 0},
        {"min_size": -1},
        {"acquire_timeout": -1},
        {"max_size": "abc"},
        {"min_size": "abc"},
        {"acquire_timeout": "abc"},
    ],
    ids=repr,
)
def test_bad_option_values_are_rejected_at_once(database_url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Database(database_url, **options)


@pytest.mark.parametrize(
    "options",
    [{"min_size": "5", "max_size": "2"}, {"acquire_timeout": "-1"}, {"max_size": "abc"}],
    ids=repr,
)
def test_bad_option_values_in_url_are_rejected_at_once(
    database_url: str, options: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError):
        Database(with_options(database_url, **options))


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("postgresql://localhost/app", "asyncpg", "postgresql"),
        ("postgresql+asyncpg://localhost/app", "asyncpg", "postgresql"),
        ("sqlite:///app.db", "aiosqlite", "sqlite"),
        ("mysql://localhost/app", "aiomysql", "mysql"),
        ("mysql+aiomysql://localhost/app", "aiomysql", "mysql"),
        ("mysql+asyncmy://localhost/app", "asyncmy", "asyncmy"),
    ],
)
def test_missing_driver_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, url: str, driver: str, extra: str
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == driver:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingDriverError) as info:
        Database(url)
    assert f"pip install 'aiodatabases[{extra}]'" in str(info.value)
    assert isinstance(info.value, ImportError)


# --- lifecycle ---------------------------------------------------------------------


async def test_is_connected_follows_connect_and_disconnect(database_url: str) -> None:
    database = Database(database_url)
    assert not database.is_connected
    await database.connect()
    try:
        assert database.is_connected
    finally:
        await database.disconnect()
    assert not database.is_connected


async def test_async_with_returns_the_database(database_url: str) -> None:
    database = Database(database_url)
    async with database as entered:
        assert entered is database
        assert database.is_connected


async def test_connect_and_disconnect_nest_by_count(database_url: str) -> None:
    database = Database(database_url)
    async with database:
        async with database:
            assert await database.fetch_val("SELECT 1") == 1
        assert database.is_connected
        assert await database.fetch_val("SELECT 2") == 2
        await database.connect()
        await database.disconnect()
        assert await database.fetch_val("SELECT 3") == 3
    assert not database.is_connected


async def test_extra_disconnect_is_a_no_op(database_url: str) -> None:
    database = Database(database_url)
    await database.disconnect()  # never connected
    async with database:
        pass
    await database.disconnect()
    await database.disconnect()
    assert not database.is_connected
    async with database:
        assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.parametrize(
    "use",
    [
        lambda db: db.fetch_all("SELECT 1"),
        lambda db: db.fetch_one("SELECT 1"),
        lambda db: db.fetch_val("SELECT 1"),
        lambda db: db.execute("SELECT 1"),
        lambda db: db.execute_many("SELECT :x", [{"x": 1}]),
    ],
    ids=["fetch_all", "fetch_one", "fetch_val", "execute", "execute_many"],
)
async def test_statements_on_a_disconnected_database_raise(database_url: str, use: Any) -> None:
    database = Database(database_url)
    with pytest.raises(NotConnectedError):
        await use(database)
    async with database:
        pass
    with pytest.raises(NotConnectedError):
        await use(database)


async def test_iterate_connection_and_transaction_on_a_disconnected_database_raise(
    database_url: str,
) -> None:
    database = Database(database_url)
    with pytest.raises(NotConnectedError):
        async for _ in database.iterate("SELECT 1"):
            pass
    with pytest.raises(NotConnectedError):
        database.connection()
    with pytest.raises(NotConnectedError):
        async with database.transaction():
            pass


@pytest.mark.parametrize("force_rollback", [False, True])
def test_same_object_in_consecutive_event_loops(database_url: str, force_rollback: bool) -> None:
    database = Database(database_url, force_rollback=force_rollback)

    async def use(text: str) -> list[str]:
        async with database:
            assert database.is_connected
            await asyncio.gather(*(database.fetch_val("SELECT 1") for _ in range(5)))
            await database.execute(INSERT, {"text": text, "completed": False})
            return await texts(database)

    asyncio.run(reset_notes(database_url))
    try:
        first = asyncio.run(use("first"))
        assert not database.is_connected
        second = asyncio.run(use("second"))
        assert not database.is_connected
        if force_rollback:
            # Each loop's writes were rolled back at its disconnect().
            assert (first, second) == (["first"], ["second"])
        else:
            assert (first, second) == (["first"], ["first", "second"])
    finally:
        asyncio.run(drop_notes(database_url))


# --- statements --------------------------------------------------------------------


async def test_fetch_all_returns_records_in_order(notes: str) -> None:
    async with Database(notes) as db:
        assert await db.fetch_all("SELECT * FROM notes") == []
        await db.execute(INSERT, {"text": "a", "completed": True})
        await db.execute(INSERT, {"text": "b", "completed": False})
        rows = await db.fetch_all("SELECT id, text, completed FROM notes ORDER BY id")
    assert all(isinstance(row, Record) for row in rows)
    assert [(row["text"], bool(row["completed"])) for row in rows] == [("a", True), ("b", False)]


async def test_fetch_all_with_values(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute_many(INSERT, [{"text": t, "completed": t == "b"} for t in "abc"])
        rows = await db.fetch_all(
            "SELECT text FROM notes WHERE completed = :completed ORDER BY id", {"completed": False}
        )
    assert [row["text"] for row in rows] == ["a", "c"]


async def test_fetch_one_returns_the_first_row_or_none(notes: str) -> None:
    async with Database(notes) as db:
        assert await db.fetch_one("SELECT * FROM notes") is None
        await db.execute_many(
            INSERT, [{"text": "a", "completed": True}, {"text": "b", "completed": False}]
        )
        row = await db.fetch_one("SELECT text FROM notes ORDER BY id")
        assert isinstance(row, Record)
        assert row["text"] == "a"
        # Still usable after a fetch_one that left rows unread.
        assert await db.fetch_val(COUNT) == 2


async def test_fetch_val_by_index_and_by_name(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": True})
        query = "SELECT id, text, completed FROM notes"
        assert await db.fetch_val(query) == 1
        assert await db.fetch_val(query, column=1) == "a"
        assert await db.fetch_val(query, column="text") == "a"
        assert await db.fetch_val(query, {}, "text") == "a"
        assert await db.fetch_val("SELECT text FROM notes WHERE id = :id", {"id": 99}) is None


async def test_execute_returns_what_databases_returns(notes: str) -> None:
    async with Database(notes) as db:
        if dialect_of(notes) == "postgresql":
            # The first column of the first row: RETURNING, or None without it.
            assert await db.execute(INSERT, {"text": "a", "completed": True}) is None
            returned = await db.execute(INSERT + " RETURNING id", {"text": "b", "completed": True})
            assert returned == 2
            assert (
                await db.execute(
                    "UPDATE notes SET text = :text WHERE id = 2 RETURNING text", {"text": "c"}
                )
                == "c"
            )
        else:
            # The cursor's lastrowid.
            assert await db.execute(INSERT, {"text": "a", "completed": True}) == 1
            assert await db.execute(INSERT, {"text": "b", "completed": True}) == 2
        assert await texts(db) == ["a", "b" if dialect_of(notes) != "postgresql" else "c"]


async def test_execute_many_inserts_every_row(notes: str) -> None:
    values = [{"text": f"note {i}", "completed": i % 2 == 0} for i in range(50)]
    async with Database(notes) as db:
        assert await db.execute_many(INSERT, values) is None
        rows = await db.fetch_all("SELECT text, completed FROM notes ORDER BY id")
    assert [(row["text"], bool(row["completed"])) for row in rows] == [
        (v["text"], v["completed"]) for v in values
    ]


async def test_execute_many_is_all_or_nothing(notes: str) -> None:
    errors = driver_errors(notes)
    insert = "INSERT INTO notes (id, text, completed) VALUES (:id, :text, :completed)"
    rows = [{"id": i, "text": str(i), "completed": True} for i in (1, 2, 3, 2)]
    async with Database(notes, max_size=1) as db:
        with pytest.raises(errors.unique):
            await db.execute_many(insert, rows)
        assert await db.fetch_val(COUNT) == 0
        await db.execute_many(insert, rows[:3])
        assert await texts(db) == ["1", "2", "3"]
        async with db.transaction(force_rollback=True):
            await db.execute_many(insert, [{"id": 4, "text": "4", "completed": True}])
            assert await db.fetch_val(COUNT) == 4
        assert await db.fetch_val(COUNT) == 3


async def test_execute_many_with_no_values_does_nothing(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute_many(INSERT, [])
        assert await db.fetch_val(COUNT) == 0


async def test_iterate_yields_every_row_in_order(notes: str) -> None:
    # More rows than one batch, so that several fetches are needed.
    values = [{"text": f"note {i}", "completed": False} for i in range(1234)]
    async with Database(notes) as db:
        async with db.transaction():  # one commit, not one per row
            await db.execute_many(INSERT, values)
        seen = [row async for row in db.iterate("SELECT id, text FROM notes ORDER BY id")]
        filtered = [
            row["text"]
            async for row in db.iterate(
                "SELECT text FROM notes WHERE id <= :last ORDER BY id", {"last": 3}
            )
        ]
        assert await db.fetch_val(COUNT) == 1234  # usable after iterating
    assert all(isinstance(row, Record) for row in seen)
    assert [row["text"] for row in seen] == [v["text"] for v in values]
    assert filtered == ["note 0", "note 1", "note 2"]


async def test_iterate_stopped_early_leaves_the_database_usable(notes: str) -> None:
    async with Database(notes, max_size=1) as db:
        await db.execute_many(INSERT, [{"text": str(i), "completed": False} for i in range(20)])
        async for row in db.iterate("SELECT text FROM notes ORDER BY id"):
            assert row["text"] == "0"
            break
        assert await db.fetch_val(COUNT) == 20


# --- parameters --------------------------------------------------------------------


async def test_missing_parameter_is_named_and_nothing_runs(notes: str) -> None:
    async with Database(notes) as db:
        with pytest.raises(MissingParameterError, match="completed"):
            await db.execute(INSERT, {"text": "a"})
        with pytest.raises(MissingParameterError, match="completed"):
            await db.execute(INSERT)
        with pytest.raises(MissingParameterError, match="completed"):
            await db.execute_many(INSERT, [{"text": "a", "completed": True}, {"text": "b"}])
        with pytest.raises(MissingParameterError, match="id"):
            await db.fetch_all("SELECT * FROM notes WHERE id = :id")
        assert await db.fetch_val(COUNT) == 0


async def test_unknown_parameter_is_rejected_and_nothing_runs(notes: str) -> None:
    async with Database(notes) as db:
        with pytest.raises(UnknownParameterError, match="colour"):
            await db.execute(INSERT, {"text": "a", "completed": True, "colour": "red"})
        with pytest.raises(UnknownParameterError, match="colour"):
            await db.fetch_one("SELECT 1", {"colour": "red"})
        assert await db.fetch_val(COUNT) == 0


async def test_values_are_bound_not_formatted(notes: str) -> None:
    hostile = ["x'); DROP TABLE notes; --", "it's", ":text", "100%", "\\", '"quoted"', "$1", "?"]
    async with Database(notes) as db:
        await db.execute_many(INSERT, [{"text": text, "completed": False} for text in hostile])
        await db.execute(INSERT, {"text": hostile[0], "completed": True})
        assert await texts(db) == [*hostile, hostile[0]]
        assert (
            await db.fetch_val(
                "SELECT COUNT(*) FROM notes WHERE text = :text", {"text": hostile[0]}
            )
            == 2
        )


async def test_one_parameter_used_twice(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": True})
        query = "SELECT COUNT(*) FROM notes WHERE text = :t OR text = :t || 'x'"
        assert await db.fetch_val(query, {"t": "a"}) == 1


async def test_colon_name_inside_a_string_literal_is_not_a_parameter(database_url: str) -> None:
    async with Database(database_url) as db:
        assert await db.fetch_val("SELECT ':name'") == ":name"
        row = await db.fetch_one(
            "SELECT ':name' AS s, CAST(:v AS INTEGER) AS v, 'a '':b'' c' AS t", {"v": 7}
        )
    assert row is not None
    assert (row["s"], row["v"], row["t"]) == (":name", 7, "a ':b' c")


async def test_colon_name_inside_a_comment_is_not_a_parameter(database_url: str) -> None:
    async with Database(database_url) as db:
        query = "SELECT CAST(:v AS INTEGER) -- not :this\n /* nor :that */"
        assert await db.fetch_val(query, {"v": 5}) == 5


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_postgres_cast_after_a_parameter(url: str) -> None:
    async with Database(url) as db:
        assert await db.fetch_val("SELECT :v::text", {"v": "42"}) == "42"
        assert await db.fetch_val("SELECT :v::int + 1", {"v": 41}) == 42
        assert await db.fetch_val("SELECT '7'::int") == 7


# --- failed statements -------------------------------------------------------------


async def test_syntax_error_raises_the_driver_error_and_the_database_stays_usable(
    database_url: str,
) -> None:
    errors = driver_errors(database_url)
    # One connection: the one that failed must be the one that works next.
    async with Database(database_url, max_size=1) as db:
        with pytest.raises(errors.syntax) as info:
            await db.fetch_all("SELEC 1")
        assert not isinstance(info.value, AiodatabasesError)
        assert await db.fetch_val("SELECT 1") == 1
        with pytest.raises(errors.undefined_table):
            await db.execute("INSERT INTO no_such_table VALUES (1)")
        assert await db.fetch_val("SELECT 2") == 2


async def test_unique_violation_raises_the_driver_error_and_the_database_stays_usable(
    notes: str,
) -> None:
    errors = driver_errors(notes)
    insert = "INSERT INTO notes (id, text, completed) VALUES (:id, :text, :completed)"
    async with Database(notes, max_size=1) as db:
        await db.execute(insert, {"id": 1, "text": "a", "completed": True})
        with pytest.raises(errors.unique) as info:
            await db.execute(insert, {"id": 1, "text": "b", "completed": True})
        assert not isinstance(info.value, AiodatabasesError)
        with pytest.raises(errors.unique):
            await db.execute_many(insert, [{"id": 1, "text": "c", "completed": True}])
        await db.execute(insert, {"id": 2, "text": "d", "completed": True})
        assert await texts(db) == ["a", "d"]


async def test_error_inside_a_transaction_rolls_it_back_and_the_database_stays_usable(
    notes: str,
) -> None:
    errors = driver_errors(notes)
    async with Database(notes, max_size=1) as db:
        with pytest.raises(errors.undefined_table):  # noqa: PT012
            async with db.transaction():
                await db.execute(INSERT, {"text": "rolled back", "completed": True})
                await db.execute("INSERT INTO no_such_table VALUES (1)")
        assert await db.fetch_val(COUNT) == 0
        await db.execute(INSERT, {"text": "kept", "completed": True})
        async with db.transaction():
            await db.execute(INSERT, {"text": "kept too", "completed": True})
        assert await texts(db) == ["kept", "kept too"]
    async with Database(notes) as other:
        assert await texts(other) == ["kept", "kept too"]


async def test_unique_violation_inside_a_transaction_then_rollback(notes: str) -> None:
    errors = driver_errors(notes)
    insert = "INSERT INTO notes (id, text, completed) VALUES (:id, :text, :completed)"
    async with Database(notes, max_size=1) as db:
        await db.execute(insert, {"id": 1, "text": "a", "completed": True})
        with pytest.raises(errors.unique):  # noqa: PT012
            async with db.transaction():
                await db.execute(insert, {"id": 2, "text": "b", "completed": True})
                await db.execute(insert, {"id": 1, "text": "c", "completed": True})
        assert await texts(db) == ["a"]
        assert await db.fetch_val("SELECT 1") == 1
