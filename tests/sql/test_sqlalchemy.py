"""SQLAlchemy Core statements, result types and records, on every backend (issue 4).

Statements built with SQLAlchemy Core run on every backend exactly like raw
SQL; the ``values=`` argument is applied the way ``databases`` applies it;
compiled forms are cached per statement shape; result columns get their
SQLAlchemy type's processing when they are read. Raw SQL keeps working when
SQLAlchemy is not installed (checked in a subprocess that blocks the import).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from conftest import (
    DATABASE_URLS,
    dialect_of,
    drop_table,
    helper_database,
    scheme_of,
    urls_for,
)
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable
from sqlalchemy.sql.compiler import SQLCompiler

from aiodatabases import Database, Record

# -- tables -------------------------------------------------------------------------------

# The ``notes`` table that conftest creates with raw DDL, declared for Core.
notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100)),
    sa.Column("completed", sa.Boolean),
)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


def enum_values(members: type[enum.Enum]) -> list[str]:
    return [member.value for member in members]


class Shouting(sa.TypeDecorator[str]):
    """Stored in lower case, read in upper case: both directions are observable."""

    impl = sa.String(50)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.lower()

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()


class Counted(sa.TypeDecorator[str]):
    """Records every value it converts."""

    impl = sa.String(50)
    cache_ok = True
    calls: ClassVar[list[str]] = []

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        Counted.calls.append(str(value))
        return f"<{value}>"


class Strict(sa.TypeDecorator[str]):
    """Refuses to convert the value 'bad'."""

    impl = sa.String(50)
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value == "bad":
            raise ValueError("Strict cannot read 'bad'")
        return value


metadata = sa.MetaData()

typed = sa.Table(
    "sa_typed",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shout", Shouting),
    # native_enum=False: a VARCHAR on every backend (no CREATE TYPE on PostgreSQL).
    sa.Column("mood", sa.Enum(Mood, native_enum=False)),
    sa.Column("mood_value", sa.Enum(Mood, native_enum=False, values_callable=enum_values)),
    sa.Column("data", sa.JSON),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("flag", sa.Boolean),
    sa.Column("day", sa.Date),
    sa.Column("at", sa.Time),
    sa.Column("stamp", sa.DateTime),
)

lazy = sa.Table(
    "sa_lazy",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("counted", Counted),
    sa.Column("strict", Strict),
)

authors = sa.Table(
    "sa_authors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)

books = sa.Table(
    "sa_books",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("author_id", sa.Integer),
    sa.Column("name", sa.String(50)),
    sa.Column("price", sa.Numeric(8, 2)),
)


async def drop_tables(url: str) -> None:
    for table in reversed(metadata.sorted_tables):
        await drop_table(url, table.name)


@pytest.fixture
async def tables(database_url: str) -> AsyncIterator[str]:
    """The tables of ``metadata``, created with ``CreateTable``; yields the URL."""
    await drop_tables(database_url)
    async with helper_database(database_url) as db:
        for table in metadata.sorted_tables:
            await db.execute(CreateTable(table))
    yield database_url
    await drop_tables(database_url)


@pytest.fixture
async def notes_table(notes: str) -> str:
    """conftest's empty ``notes`` table (the fixture's name is taken by the Table here)."""
    return notes


def select_texts() -> sa.Select[Any]:
    return sa.select(notes.c.text, notes.c.completed).order_by(notes.c.id)


async def texts(db: Database) -> list[tuple[str, bool]]:
    return [(row.text, row.completed) for row in await db.fetch_all(select_texts())]


async def is_mariadb_with_returning(db: Database) -> bool:
    version = str(await db.fetch_val("SELECT VERSION()"))
    if "mariadb" not in version.lower():
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (10, 5)


# -- statements ---------------------------------------------------------------------------


async def test_select_insert_update_delete(notes_table: str) -> None:
    async with Database(notes_table) as db:
        await db.execute(notes.insert().values(text="a", completed=False))
        await db.execute(notes.insert().values(text="b", completed=True))
        assert await texts(db) == [("a", False), ("b", True)]

        await db.execute(notes.update().where(notes.c.text == "a").values(completed=True))
        await db.execute(notes.delete().where(notes.c.text == "b"))
        assert await texts(db) == [("a", True)]

        assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1
        assert await db.fetch_one(notes.select().where(notes.c.text == "missing")) is None
        row = await db.fetch_one(notes.select())
        assert row is not None
        assert (row.id, row.text, row.completed) == (1, "a", True)


async def test_values_are_applied_as_databases_applies_them(notes_table: str) -> None:
    async with Database(notes_table) as db:
        # insert and update: statement.values(**values)
        await db.execute(notes.insert(), {"text": "a", "completed": False})
        await db.execute(notes.insert().values(completed=True), {"text": "b"})
        await db.execute(notes.update().where(notes.c.text == "a"), {"text": "a2"})
        # text(): bound parameters
        await db.execute(
            sa.text("UPDATE notes SET completed = :done WHERE text = :text"),
            {"done": True, "text": "a2"},
        )
        assert await texts(db) == [("a2", True), ("b", True)]


async def test_values_bind_the_parameters_of_a_select_and_a_delete(notes_table: str) -> None:
    async with Database(notes_table) as db:
        await db.execute_many(notes.insert(), [{"text": t, "completed": True} for t in "abc"])
        wanted = notes.select().where(notes.c.text == sa.bindparam("wanted"))
        row = await db.fetch_one(wanted, {"wanted": "b"})
        assert row is not None
        assert row.text == "b"
        assert [r.text for r in await db.fetch_all(wanted, {"wanted": "c"})] == ["c"]
        assert await db.fetch_val(wanted, {"wanted": "a"}, column=notes.c.text) == "a"

        await db.execute(notes.delete().where(notes.c.text == sa.bindparam("gone")), {"gone": "a"})
        assert [text for text, _ in await texts(db)] == ["b", "c"]


async def test_parameter_mistakes_raise_sqlalchemys_errors_naming_them(notes_table: str) -> None:
    async with Database(notes_table) as db:
        with pytest.raises(sa.exc.CompileError, match="nope"):
            await db.execute(notes.insert(), {"text": "a", "nope": 1})
        with pytest.raises(sa.exc.ArgumentError, match="nope"):
            await db.fetch_all(sa.text("SELECT id FROM notes WHERE id = :id"), {"id": 1, "nope": 2})
        with pytest.raises(sa.exc.InvalidRequestError, match="wanted"):
            await db.fetch_all(notes.select().where(notes.c.text == sa.bindparam("wanted")))
        assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0


async def test_text_with_bind_params(notes_table: str) -> None:
    async with Database(notes_table) as db:
        insert = sa.text("INSERT INTO notes (text, completed) VALUES (:text, :completed)")
        await db.execute(insert, {"text": "a", "completed": True})
        await db.execute(insert.bindparams(text="b", completed=False))
        select = sa.text("SELECT id, text FROM notes WHERE text = :text")
        row = await db.fetch_one(select, {"text": "b"})
        assert row is not None
        assert (row.id, row.text) == (2, "b")
        # Declared result columns get their types' processing.
        typed_select = sa.text("SELECT text, completed FROM notes ORDER BY id").columns(
            notes.c.text, notes.c.completed
        )
        rows = await db.fetch_all(typed_select)
        assert [(r.text, r.completed) for r in rows] == [("a", True), ("b", False)]
        assert all(type(r.completed) is bool for r in rows)
        assert rows[0][notes.c.completed] is True


@pytest.mark.parametrize(
    "ids", [[3], [2, 4], [1, 2, 3, 4, 5], []], ids=["one", "two", "all", "empty"]
)
async def test_expanding_in(notes_table: str, ids: list[int]) -> None:
    async with Database(notes_table) as db:
        await db.execute_many(
            notes.insert(), [{"text": f"n{i}", "completed": True} for i in range(5)]
        )
        select = sa.select(notes.c.id).where(notes.c.id.in_(ids)).order_by(notes.c.id)
        assert [row.id for row in await db.fetch_all(select)] == ids
        not_in = sa.select(notes.c.id).where(notes.c.id.not_in(ids)).order_by(notes.c.id)
        assert [row.id for row in await db.fetch_all(not_in)] == [
            i for i in range(1, 6) if i not in ids
        ]
        by_text = sa.select(notes.c.id).where(notes.c.text.in_([f"n{i - 1}" for i in ids]))
        assert sorted(row.id for row in await db.fetch_all(by_text)) == ids

        expanding = sa.text("SELECT id FROM notes WHERE id IN :ids ORDER BY id").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        assert [row.id for row in await db.fetch_all(expanding, {"ids": ids})] == ids

        await db.execute(notes.update().where(notes.c.id.in_(ids)).values(completed=False))
        done = sa.select(notes.c.id).where(notes.c.completed.is_(False)).order_by(notes.c.id)
        assert [row.id for row in await db.fetch_all(done)] == ids


async def test_insert_and_delete_returning(notes_table: str) -> None:
    async with Database(notes_table) as db:
        insert = (
            notes.insert().values(text="a", completed=True).returning(notes.c.id, notes.c.completed)
        )
        delete = notes.delete().returning(notes.c.text)
        if dialect_of(notes_table) == "mysql" and not await is_mariadb_with_returning(db):
            # MySQL itself has no RETURNING: the server's error comes through.
            with pytest.raises(Exception, match=r"(?i)syntax"):
                await db.fetch_one(insert)
            return
        row = await db.fetch_one(insert)
        assert row is not None
        assert (row.id, row[notes.c.completed]) == (1, True)
        await db.execute(notes.insert().values(text="b", completed=False))
        assert sorted(r.text for r in await db.fetch_all(delete)) == ["a", "b"]
        assert await db.fetch_all(notes.select()) == []


@pytest.mark.parametrize("url", urls_for("postgresql", "sqlite"), ids=scheme_of)
async def test_update_returning(url: str) -> None:
    await drop_table(url, "notes")
    async with Database(url) as db:
        await db.execute(CreateTable(notes))
        try:
            await db.execute(notes.insert().values(text="a", completed=False))
            update = notes.update().values(completed=True).returning(notes.c.id, notes.c.completed)
            assert [(r.id, r.completed) for r in await db.fetch_all(update)] == [(1, True)]
        finally:
            await db.execute(DropTable(notes))


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_execute_returns_the_first_returned_column_on_postgresql(url: str) -> None:
    await drop_table(url, "notes")
    async with Database(url) as db:
        await db.execute(CreateTable(notes))
        try:
            returning_text = notes.insert().values(text="r", completed=True).returning(notes.c.text)
            assert await db.execute(returning_text) == "r"
            # A Core insert returns the new primary key (implicit RETURNING).
            assert await db.execute(notes.insert().values(text="s")) == 2
        finally:
            await db.execute(DropTable(notes))


async def test_ddl_create_and_drop_table(database_url: str) -> None:
    table = sa.Table(
        "sa_ddl",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20), index=True),
        sa.Column("mood", sa.Enum(Mood, native_enum=False)),
    )
    await drop_table(database_url, "sa_ddl")
    async with Database(database_url) as db:
        await db.execute(CreateTable(table))
        try:
            await db.execute(CreateTable(table, if_not_exists=True))  # exists: nothing happens
            for index in table.indexes:
                await db.execute(CreateIndex(index))
            await db.execute(table.insert().values(name="x", mood=Mood.SAD))
            assert await db.fetch_val(sa.select(table.c.mood)) is Mood.SAD
        finally:
            await db.execute(DropTable(table))
        await db.execute(DropTable(table, if_exists=True))  # gone: nothing happens
        await db.execute(CreateTable(table))  # it was dropped: it can be created again
        assert await db.fetch_all(sa.select(table)) == []
        await db.execute(DropTable(table))


async def test_native_enum_ddl_and_results(database_url: str) -> None:
    """A native Enum: PostgreSQL needs its type created first; MySQL has ENUM columns."""
    mood = sa.Enum(Mood, name="sa_mood")
    mood_value = sa.Enum(Mood, name="sa_mood_value", values_callable=enum_values)
    table = sa.Table(
        "sa_native",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mood", mood),
        sa.Column("mood_value", mood_value),
    )
    postgres = dialect_of(database_url) == "postgresql"
    await drop_table(database_url, "sa_native")
    async with Database(database_url) as db:
        if postgres:
            from sqlalchemy.dialects.postgresql import CreateEnumType, DropEnumType

            for enum_type in (mood, mood_value):
                await db.execute(f"DROP TYPE IF EXISTS {enum_type.name}")
                await db.execute(CreateEnumType(enum_type))
        await db.execute(CreateTable(table))
        try:
            await db.execute(table.insert(), {"mood": Mood.SAD, "mood_value": Mood.HAPPY})
            row = await db.fetch_one(sa.select(table.c.mood, table.c.mood_value))
            assert row is not None
            assert (row.mood, row.mood_value) == (Mood.SAD, Mood.HAPPY)
            raw = await db.fetch_one("SELECT mood, mood_value FROM sa_native")
            assert raw is not None
            assert (str(raw["mood"]), str(raw["mood_value"])) == ("SAD", "happy")
        finally:
            await db.execute(DropTable(table))
            if postgres:
                for enum_type in (mood, mood_value):
                    await db.execute(DropEnumType(enum_type))


# -- execute_many ------------------------------------------------------------------------


async def test_execute_many_inserts_every_row(notes_table: str) -> None:
    values = [{"text": f"n{i}", "completed": i % 3 == 0} for i in range(120)]
    async with Database(notes_table) as db:
        await db.execute_many(notes.insert(), values)
        assert await texts(db) == [(v["text"], v["completed"]) for v in values]
        rename = notes.update().where(notes.c.text == sa.bindparam("old"))
        await db.execute_many(
            rename.values(text=sa.bindparam("new")),
            [{"old": "n0", "new": "m0"}, {"old": "n1", "new": "m1"}],
        )
        await db.execute_many(
            notes.delete().where(notes.c.text == sa.bindparam("gone")),
            [{"gone": f"n{i}"} for i in range(2, 120)],
        )
        assert await texts(db) == [("m0", True), ("m1", False)]


async def test_execute_many_with_no_values_does_nothing(notes_table: str) -> None:
    async with Database(notes_table) as db:
        await db.execute_many(notes.insert(), [])
        assert await db.fetch_all(notes.select()) == []


async def test_execute_many_applies_bind_processing(tables: str) -> None:
    async with Database(tables) as db:
        await db.execute_many(
            typed.insert(),
            [{"shout": "Hello", "mood": Mood.HAPPY}, {"shout": "World", "mood": Mood.SAD}],
        )
        raw = await db.fetch_all("SELECT shout, mood FROM sa_typed ORDER BY id")
        assert [(r["shout"], r["mood"]) for r in raw] == [("hello", "HAPPY"), ("world", "SAD")]


@pytest.mark.parametrize("url", urls_for("mysql"), ids=scheme_of)
async def test_execute_many_is_one_statement_on_mysql(url: str) -> None:
    await drop_table(url, "notes")
    async with Database(url) as db, db.connection() as connection:
        await connection.execute(CreateTable(notes))
        try:

            async def com_insert() -> int:
                row = await connection.fetch_one("SHOW SESSION STATUS LIKE 'Com_insert'")
                assert row is not None
                return int(row[1])

            before = await com_insert()
            await connection.execute_many(
                notes.insert(), [{"text": f"n{i}", "completed": True} for i in range(50)]
            )
            assert await com_insert() - before == 1
            assert await connection.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 50
        finally:
            await connection.execute(DropTable(notes))


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_execute_many_is_one_batch_on_postgresql(url: str) -> None:
    """One pipelined batch is one implicit transaction: every row has the same xmin.

    (pg_stat_statements is not loaded on every server; a loop of single
    statements outside a transaction would give each row its own xmin.)
    """
    await drop_table(url, "notes")
    async with Database(url) as db:
        await db.execute(CreateTable(notes))
        try:
            await db.execute_many(
                notes.insert(), [{"text": f"n{i}", "completed": True} for i in range(50)]
            )
            assert await db.fetch_val("SELECT count(DISTINCT xmin::text) FROM notes") == 1
            for i in range(3):
                await db.execute(notes.insert().values(text=f"single{i}"))
            assert await db.fetch_val("SELECT count(DISTINCT xmin::text) FROM notes") == 4
        finally:
            await db.execute(DropTable(notes))


# -- compiled forms are cached -----------------------------------------------------------


@pytest.fixture
def compilations(monkeypatch: pytest.MonkeyPatch) -> list[SQLCompiler]:
    """Every SQL compiler SQLAlchemy builds from here on (one per compilation)."""
    built: list[SQLCompiler] = []
    original = SQLCompiler.__init__

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "__init__", counting)
    return built


async def test_a_statement_shape_is_compiled_once(
    notes_table: str, compilations: list[SQLCompiler]
) -> None:
    label = f"n_{uuid.uuid4().hex}"  # a shape no other test has compiled
    async with Database(notes_table) as db:
        for text in ("a", "b", "c"):
            await db.execute(notes.insert().values(text=text, completed=True))
        compilations.clear()

        for text in ("a", "b", "c", "zzz"):
            await db.fetch_all(sa.select(notes.c.id.label(label)).where(notes.c.text == text))
        assert len(compilations) == 1

        # Expanding IN: one compiled form for lists of every length.
        for ids in ([1], [1, 2], [1, 2, 3], []):
            await db.fetch_all(sa.select(notes.c.id.label(label)).where(notes.c.id.in_(ids)))
        assert len(compilations) == 2

        # DML with other literal values, and values= for the same columns.
        await db.execute(notes.update().where(notes.c.id == 1).values(text="x"))
        await db.execute(notes.insert(), {"text": "y", "completed": True})
        warm = len(compilations)
        for i in range(3):
            await db.execute(notes.update().where(notes.c.id == i).values(text=f"x{i}"))
            await db.execute(notes.insert(), {"text": f"y{i}", "completed": False})
        assert len(compilations) == warm

    # The cache is per dialect, not per Database.
    async with Database(notes_table) as other:
        await other.fetch_all(sa.select(notes.c.id.label(label)).where(notes.c.text == "d"))
    assert len(compilations) == warm


# -- result processing ---------------------------------------------------------------------

FIRST = {
    "shout": "Hello",
    "mood": Mood.HAPPY,
    "mood_value": Mood.SAD,
    "data": {"a": [1, 2], "b": None, "c": "é"},
    "price": decimal.Decimal("12.34"),
    "flag": True,
    "day": datetime.date(2024, 5, 6),
    "at": datetime.time(12, 34, 56),
    "stamp": datetime.datetime(2024, 5, 6, 7, 8, 9),
}
SECOND = {"data": [1, "x", {"k": True}], "flag": False}


async def insert_typed_rows(db: Database) -> None:
    await db.execute(typed.insert(), FIRST)
    await db.execute(typed.insert().values(**SECOND))


def expected_first() -> dict[str, Any]:
    return {"id": 1, **FIRST, "shout": "HELLO"}


def expected_second() -> dict[str, Any]:
    empty = dict.fromkeys(FIRST)
    return {"id": 2, **empty, **SECOND}


async def test_result_types_are_applied(tables: str) -> None:
    async with Database(tables) as db:
        await insert_typed_rows(db)
        first, second = await db.fetch_all(typed.select().order_by(typed.c.id))
    assert dict(first) == expected_first()
    assert dict(second) == expected_second()
    assert type(first.price) is decimal.Decimal
    assert first.flag is True
    assert second.flag is False
    assert type(first.day) is datetime.date
    assert type(first.at) is datetime.time
    assert type(first.stamp) is datetime.datetime
    assert first.stamp.tzinfo is None
    assert isinstance(first.data, dict)
    assert isinstance(second.data, list)


async def test_enum_by_name_and_by_value_and_typedecorator_storage(tables: str) -> None:
    async with Database(tables) as db:
        await insert_typed_rows(db)
        raw = await db.fetch_one("SELECT shout, mood, mood_value FROM sa_typed WHERE id = 1")
        # Through Core: bound by name / by value, read back as members.
        by_name = await db.fetch_one(typed.select().where(typed.c.mood == Mood.HAPPY))
        by_value = await db.fetch_one(typed.select().where(typed.c.mood_value == Mood.SAD))
    assert raw is not None
    assert dict(raw) == {"shout": "hello", "mood": "HAPPY", "mood_value": "sad"}
    assert by_name is not None
    assert by_value is not None
    assert by_name.id == by_value.id == 1


async def test_result_types_on_every_fetch(tables: str) -> None:
    select = typed.select().where(typed.c.id == 1)
    async with Database(tables) as db:
        await insert_typed_rows(db)
        fetched = [
            await db.fetch_one(select),
            *(await db.fetch_all(select)),
            *[row async for row in db.iterate(select)],
        ]
        async with db.connection() as connection:
            fetched.append(await connection.fetch_one(select))
            fetched.extend([row async for row in connection.iterate(select)])
        async with db.transaction():
            fetched.append(await db.fetch_one(select))
        assert await db.fetch_val(select, column=typed.c.data) == FIRST["data"]
        assert await db.fetch_val(select, column="mood") is Mood.HAPPY
        assert (
            await db.fetch_val(sa.select(typed.c.price).where(typed.c.id == 1)) == (FIRST["price"])
        )
    for row in fetched:
        assert isinstance(row, Record)
        assert dict(row) == expected_first()


async def test_result_types_are_applied_when_a_column_is_read(
    tables: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(Counted, "calls", calls)
    async with Database(tables) as db:
        await db.execute_many(
            lazy.insert(),
            [{"counted": f"c{i}", "strict": "bad" if i == 3 else "ok"} for i in range(20)],
        )
        rows = await db.fetch_all(lazy.select().order_by(lazy.c.id))
    # Fetching converted nothing, and a value that cannot be converted did not fail it.
    assert len(rows) == 20
    assert calls == []
    assert rows[5]["counted"] == "<c5>"
    assert calls == ["c5"]
    assert rows[3]["counted"] == "<c3>"
    assert calls == ["c5", "c3"]
    assert rows[4].strict == "ok"
    with pytest.raises(ValueError, match="bad"):
        rows[3].strict  # noqa: B018


# -- records ----------------------------------------------------------------------------------


async def test_record_access_by_column_name_index_and_attribute(tables: str) -> None:
    async with Database(tables) as db:
        await insert_typed_rows(db)
        row = await db.fetch_one(typed.select().where(typed.c.id == 1))
    assert row is not None
    assert row[typed.c.mood] is Mood.HAPPY
    assert row["mood"] is Mood.HAPPY
    assert row.mood is Mood.HAPPY
    assert row[2] is Mood.HAPPY
    assert row[-1] == FIRST["stamp"]
    assert row._mapping[typed.c.data] == FIRST["data"]
    assert row._mapping["shout"] == "HELLO"
    names = [column.name for column in typed.columns]
    assert list(row.keys()) == names
    assert list(row) == names
    assert list(row.values()) == list(expected_first().values())
    assert list(row.items()) == list(expected_first().items())
    assert dict(row) == dict(row._mapping) == expected_first()
    assert len(row) == len(names)
    assert "mood" in row
    assert "missing" not in row
    with pytest.raises(KeyError):
        row["missing"]
    with pytest.raises(AttributeError):
        row.missing  # noqa: B018
    with pytest.raises(IndexError):
        row[len(names)]


async def test_labelled_columns(tables: str) -> None:
    async with Database(tables) as db:
        await db.execute(authors.insert().values(id=1, name="Ann"))
        await db.execute(books.insert().values(id=7, author_id=1, name="Book", price="9.50"))
        select = sa.select(
            authors.c.name.label("author"),
            books.c.price.label("cost"),
            (books.c.id + 1).label("next_id"),
        ).select_from(authors.join(books, books.c.author_id == authors.c.id))
        row = await db.fetch_one(select)
    assert row is not None
    assert list(row.keys()) == ["author", "cost", "next_id"]
    assert row["author"] == row.author == row[0] == "Ann"
    assert row.cost == decimal.Decimal("9.50")
    assert type(row.cost) is decimal.Decimal
    assert row.next_id == 8


@pytest.mark.parametrize(
    "label_style",
    [sa.LABEL_STYLE_DISAMBIGUATE_ONLY, sa.LABEL_STYLE_NONE],
    ids=["disambiguated", "duplicate-names"],
)
async def test_same_column_name_from_two_tables(tables: str, label_style: Any) -> None:
    async with Database(tables) as db:
        await db.execute(authors.insert().values(id=1, name="Ann"))
        await db.execute(books.insert().values(id=7, author_id=1, name="Book", price=1))
        select = (
            sa.select(authors.c.id, authors.c.name, books.c.id, books.c.name)
            .select_from(authors.join(books, books.c.author_id == authors.c.id))
            .set_label_style(label_style)
        )
        row = await db.fetch_one(select)
    assert row is not None
    # By position and by column, each keeps its own value.
    assert (row[0], row[1], row[2], row[3]) == (1, "Ann", 7, "Book")
    assert (row[authors.c.id], row[books.c.id]) == (1, 7)
    assert (row[authors.c.name], row[books.c.name]) == ("Ann", "Book")
    assert list(row.values()) == [1, "Ann", 7, "Book"]
    if label_style is sa.LABEL_STYLE_NONE:
        assert list(row.keys()) == ["id", "name", "id", "name"]
    else:  # SQLAlchemy's default labels the second ones
        assert list(row.keys()) == ["id", "name", "id_1", "name_1"]
        assert dict(row) == {"id": 1, "name": "Ann", "id_1": 7, "name_1": "Book"}
    assert list(row.items()) == list(zip(row.keys(), [1, "Ann", 7, "Book"], strict=True))


async def test_columns_of_a_statement_built_again_find_their_own_values(tables: str) -> None:
    """The compiled form is shared by equal statements; column lookup must not be."""
    async with Database(tables) as db:
        await db.execute(authors.insert().values(id=1, name="Ann"))
        await db.execute(books.insert().values(id=7, author_id=1, name="Book", price=1))
        for _ in range(3):
            # Lightweight table() constructs, built anew for each query.
            a = sa.table("sa_authors", sa.column("id"), sa.column("name"))
            b = sa.table("sa_books", sa.column("id"), sa.column("author_id"), sa.column("name"))
            select = sa.select(a.c.id, b.c.id, a.c.name, b.c.name).select_from(
                a.join(b, b.c.author_id == a.c.id)
            )
            row = await db.fetch_one(select)
            assert row is not None
            assert (row[a.c.id], row[b.c.id], row[a.c.name], row[b.c.name]) == (1, 7, "Ann", "Book")


async def test_a_column_that_is_not_in_the_result_raises_key_error(tables: str) -> None:
    async with Database(tables) as db:
        await db.execute(authors.insert().values(id=1, name="Ann"))
        await db.execute(books.insert().values(id=7, author_id=1, name="Book", price=1))
        select = sa.select(authors.c.id, authors.c.name).select_from(
            authors.join(books, books.c.author_id == authors.c.id)
        )
        row = await db.fetch_one(select)
    assert row is not None
    assert row[authors.c.id] == 1
    # books.id has the name of a selected column, but it was not selected.
    with pytest.raises(KeyError):
        row[books.c.id]
    with pytest.raises(KeyError):
        row[books.c.price]


async def test_raw_sql_duplicate_column_names_keep_their_own_values(database_url: str) -> None:
    async with Database(database_url) as db:
        row = await db.fetch_one("SELECT 1 AS id, 7 AS id, 'x' AS name")
    assert row is not None
    assert (row[0], row[1], row[2]) == (1, 7, "x")
    assert len(row) == 3
    assert list(row.keys()) == ["id", "id", "name"]
    assert list(row.values()) == [1, 7, "x"]
    assert list(row.items()) == [("id", 1), ("id", 7), ("name", "x")]


# -- Database.dialect ---------------------------------------------------------------------------

QUOTED_SELECT = {"postgresql": '"select"', "sqlite": '"select"', "mysql": "`select`"}


@pytest.mark.parametrize("url", DATABASE_URLS, ids=scheme_of)
def test_dialect_is_the_backends_sqlalchemy_dialect(url: str) -> None:
    database = Database(url)  # not connected: the dialect needs no connection
    dialect = database.dialect
    assert isinstance(dialect, sa.engine.Dialect)
    assert dialect.name == dialect_of(url)
    assert dialect.identifier_preparer.quote("select") == QUOTED_SELECT[dialect.name]
    assert dialect.identifier_preparer.quote("plain") == "plain"
    # The path code written for `databases` uses, kept as an alias.
    assert database._backend._dialect is dialect
    assert Database(url).dialect is dialect


async def test_identifiers_quoted_by_the_dialect_work_on_the_server(database_url: str) -> None:
    async with Database(database_url) as db:
        quote = db.dialect.identifier_preparer.quote
        row = await db.fetch_one(f"SELECT 1 AS {quote('select')}, 2 AS {quote('from')}")
    assert row is not None
    assert dict(row) == {"select": 1, "from": 2}


async def test_a_query_that_is_neither_sql_nor_a_statement_is_rejected(database_url: str) -> None:
    async with Database(database_url) as db:
        with pytest.raises(TypeError, match="SQLAlchemy Core statement"):
            await db.fetch_all(42)


# -- without SQLAlchemy -------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_raw_sql_works_when_sqlalchemy_cannot_be_imported(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'no-sqlalchemy.db'}"
    result = run_python(
        f"""
        import sys
        sys.modules["sqlalchemy"] = None  # "import sqlalchemy" now fails: not installed

        import asyncio
        from aiodatabases import Database, MissingDriverError

        async def main():
            async with Database({url!r}) as db:
                await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
                await db.execute_many("INSERT INTO t (v) VALUES (:v)", [{{"v": "a"}}, {{"v": "b"}}])
                rows = await db.fetch_all("SELECT id, v FROM t WHERE v = :v", {{"v": "b"}})
                assert [dict(row) for row in rows] == [{{"id": 2, "v": "b"}}], rows
                assert [row["v"] async for row in db.iterate("SELECT v FROM t")] == ["a", "b"]
                for name, attempt in [
                    ("dialect", lambda: db.dialect),
                    ("_backend._dialect", lambda: db._backend._dialect),
                ]:
                    try:
                        attempt()
                    except MissingDriverError as exc:
                        assert isinstance(exc, ImportError)
                        print(name, "->", exc)
                    else:
                        raise AssertionError(name + " did not raise")

        asyncio.run(main())
        print("raw sql ok")
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "raw sql ok"
    for name in ("dialect", "_backend._dialect"):
        (line,) = [line for line in lines if line.startswith(f"{name} ->")]
        assert "aiodatabases[sqlalchemy]" in line


def test_sqlalchemy_is_imported_only_for_core_statements(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'lazy-import.db'}"
    result = run_python(
        f"""
        import asyncio, sys
        from aiodatabases import Database

        async def main():
            async with Database({url!r}) as db:
                await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
                await db.fetch_all("SELECT id FROM t WHERE id = :id", {{"id": 1}})
                print("after raw sql:", "sqlalchemy" in sys.modules)
                import sqlalchemy
                await db.fetch_all(sqlalchemy.text("SELECT id FROM t"))

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["after raw sql: False"]


def test_a_statement_compiled_for_asyncpg_and_for_psycopg_keeps_each_placeholders() -> None:
    # Regression: the compiled-shape cache was keyed by the dialect's name, which
    # both PostgreSQL dialects share: psycopg's %s reached asyncpg.
    from aiodatabases._sqlalchemy import compile_statement

    table = sa.table("shared_shape", sa.column("id"))
    query = sa.select(table.c.id).where(table.c.id == 1)
    assert "$1" in compile_statement(query, None, "postgresql")[0]
    assert "%s" in compile_statement(query, None, "postgresql+psycopg")[0]
    assert "$1" in compile_statement(query, None, "postgresql")[0]
