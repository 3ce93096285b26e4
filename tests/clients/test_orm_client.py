"""An ORM-style library (ormlite) on aiodatabases, tested the way its users test.

One module-level ``Database(url, force_rollback=True)`` per backend, built at
import; models declared on it; tables created once for the module; each test an
``async def`` on pytest-asyncio's function-scoped loop that connects the
database, works inside its rolled-back transaction and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import DATABASE_URLS, dialect_of, drop_table, helper_database, scheme_of

from aiodatabases import Database

from . import ormlite


@dataclass
class Backend:
    url: str
    database: Database
    registry: ormlite.Registry
    Author: Any
    Book: Any
    Tag: Any


def declare(url: str) -> Backend:
    database = Database(url, force_rollback=True)
    models = ormlite.Registry(database)

    class Author(ormlite.Model):
        registry = models
        tablename = "orm_author"
        columns = [  # noqa: RUF012
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("rating", sa.Integer, nullable=True),
        ]

    class Book(ormlite.Model):
        registry = models
        tablename = "orm_book"
        columns = [  # noqa: RUF012
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("author_id", sa.Integer, sa.ForeignKey("orm_author.id"), nullable=False),
            sa.Column("title", sa.String(200), nullable=False),
        ]

    class Tag(ormlite.Model):
        registry = models
        tablename = "orm_tag"
        columns = [  # noqa: RUF012
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False, unique=True),
        ]

    return Backend(url, database, models, Author, Book, Tag)


BACKENDS = [declare(url) for url in DATABASE_URLS]


@pytest.fixture(scope="module")
def orm_tables() -> Iterator[None]:
    async def create(backend: Backend) -> None:
        for table in reversed(backend.registry.metadata.sorted_tables):
            await drop_table(backend.url, table.name)
        async with helper_database(backend.url) as database:
            for table in backend.registry.metadata.sorted_tables:
                await database.execute(sa.schema.CreateTable(table))

    async def drop(backend: Backend) -> None:
        for table in reversed(backend.registry.metadata.sorted_tables):
            await drop_table(backend.url, table.name)

    for backend in BACKENDS:
        asyncio.run(create(backend))
    yield
    for backend in BACKENDS:
        asyncio.run(drop(backend))


@pytest.fixture(params=BACKENDS, ids=lambda backend: scheme_of(backend.url))
def backend(request: pytest.FixtureRequest, orm_tables: None) -> Backend:
    chosen: Backend = request.param
    return chosen


@pytest.fixture
async def orm(backend: Backend) -> AsyncIterator[Backend]:
    """The backend's module-level database, connected for the test and rolled back after."""
    await backend.database.connect()
    yield backend
    await backend.database.disconnect()


async def test_create_returns_the_autoincrement_id(orm: Backend) -> None:
    first = await orm.Author.objects().create(name="Ursula", rating=5)
    second = await orm.Author.objects().create(name="Iain")
    assert isinstance(first.id, int)
    assert second.id > first.id
    fetched = await orm.Author.objects().get(id=second.id)
    assert (fetched.id, fetched.name, fetched.rating) == (second.id, "Iain", None)
    book = await orm.Book.objects().create(author_id=first.id, title="The Dispossessed")
    assert (await orm.Book.objects().get(author_id=first.id)).title == "The Dispossessed"
    assert book.id is not None


async def test_concurrent_creates_get_their_own_ids(orm: Backend) -> None:
    names = [f"author {n}" for n in range(10)]
    created = await asyncio.gather(*(orm.Author.objects().create(name=n) for n in names))
    assert len({author.id for author in created}) == len(names)
    for author in created:
        assert (await orm.Author.objects().get(id=author.id)).name == author.name


async def test_get_filter_count_exists(orm: Backend) -> None:
    Author = orm.Author
    await Author.objects().bulk_create(
        [Author(name="Ann", rating=3), Author(name="Bob", rating=4), Author(name="Cy", rating=4)]
    )
    assert [a.name for a in await Author.objects().filter(rating=4).all()] == ["Bob", "Cy"]
    assert [a.name for a in await Author.objects().order_by("-name").all()] == ["Cy", "Bob", "Ann"]
    assert await Author.objects().count() == 3
    assert await Author.objects().filter(rating__gte=4).count() == 2
    assert await Author.objects().filter(name__in=["Ann", "Cy", "Zed"]).count() == 2
    assert await Author.objects().filter(name__in=[]).count() == 0
    assert await Author.objects().filter(rating__lt=4).exists()
    assert not await Author.objects().filter(name="Zed").exists()
    assert (await Author.objects().get(name="Ann")).rating == 3
    with pytest.raises(ormlite.NoMatch):
        await Author.objects().get(name="Zed")
    with pytest.raises(ormlite.MultipleMatches):
        await Author.objects().get(rating=4)
    first = await Author.objects().filter(rating=4).first()
    assert first is not None
    assert first.name == "Bob"


async def test_literal_sql_uses_the_backends_dialect(orm: Backend) -> None:
    Author = orm.Author
    await Author.objects().create(name="O'Brien")
    statement = Author.objects().filter(name="O'Brien").select()
    sql = orm.registry.sql(statement)
    quote = "`" if dialect_of(orm.url) == "mysql" else '"'
    assert orm.database._backend._dialect.identifier_preparer.quote("select") == (
        f"{quote}select{quote}"
    )
    assert "'O''Brien'" in sql or "'O\\'Brien'" in sql
    rows = await orm.database.fetch_all(sql)
    assert [row["name"] for row in rows] == ["O'Brien"]
    assert await Author.objects().filter(name="O'Brien").exists()


async def test_bulk_update_sends_the_updates_default_string(orm: Backend) -> None:
    Author = orm.Author
    authors = [await Author.objects().create(name=n, rating=1) for n in ("a", "b", "c")]
    statement = Author.table.update().where(Author.table.c.id == sa.bindparam("id"))
    statement = statement.values(name=sa.bindparam("new_name"))
    # What ormar hands to execute_many: the default dialect's text, ``:name`` binds.
    assert str(statement) == "UPDATE orm_author SET name=:new_name WHERE orm_author.id = :id"
    for author in authors:
        author.name = author.name.upper()
        author.rating = 7
    await Author.objects().bulk_update(authors[:2], ["name", "rating"])
    rows = await Author.objects().all()
    assert [(a.name, a.rating) for a in rows] == [("A", 7), ("B", 7), ("c", 1)]


async def test_contains_filter_escapes_wildcards(orm: Backend) -> None:
    Author = orm.Author
    names = ["100% pure", "100 pure", "a_b", "axb", "back\\slash", "backslash"]
    for name in names:
        await Author.objects().create(name=name)

    async def matching(**lookup: str) -> list[str]:
        return [a.name for a in await Author.objects().filter(**lookup).all()]

    assert await matching(name__contains="%") == ["100% pure"]
    assert await matching(name__contains="_") == ["a_b"]
    assert await matching(name__startswith="100%") == ["100% pure"]
    assert await matching(name__endswith="_b") == ["a_b"]
    assert await matching(name__contains="k\\s") == ["back\\slash"]
    assert await matching(name__contains="pure") == ["100% pure", "100 pure"]


async def test_save_update_and_delete(orm: Backend) -> None:
    Author = orm.Author
    author = await Author.objects().create(name="Kim", rating=1)
    author.rating = 2
    await author.save()
    await Author.objects().filter(id=author.id).update(name="Kim S.")
    await author.load()
    assert (author.name, author.rating) == ("Kim S.", 2)
    other = await Author.objects().create(name="Lee")
    await author.delete()
    assert [a.name for a in await Author.objects().all()] == ["Lee"]
    await Author.objects().filter(id=other.id).delete()
    assert await Author.objects().count() == 0


async def test_nested_force_rollback_transaction(orm: Backend) -> None:
    Author = orm.Author
    kept = await Author.objects().create(name="kept")
    async with orm.database.transaction(force_rollback=True):
        await Author.objects().create(name="discarded")
        kept.name = "renamed"
        await Author.objects().bulk_update([kept], ["name"])
        assert [a.name for a in await Author.objects().all()] == ["renamed", "discarded"]
        async with orm.database.transaction(force_rollback=True):
            await Author.objects().delete()
            assert await Author.objects().count() == 0
        assert await Author.objects().count() == 2
    assert [a.name for a in await Author.objects().all()] == ["kept"]


async def test_transaction_decorator_rolls_back_a_failed_unit(orm: Backend) -> None:
    Author, Book = orm.Author, orm.Book

    @orm.registry.transaction()
    async def publish(name: str, titles: list[str]) -> Any:
        author = await Author.objects().create(name=name)
        for title in titles:
            if not title:
                raise ValueError("a book needs a title")
            await Book.objects().create(author_id=author.id, title=title)
        return author

    author = await publish("Le Guin", ["Lathe", "Tehanu"])
    with pytest.raises(ValueError, match="needs a title"):
        await publish("Nobody", ["One", ""])
    assert [a.name for a in await Author.objects().all()] == ["Le Guin"]
    assert await Book.objects().filter(author_id=author.id).count() == 2
    assert await Book.objects().count() == 2


async def test_rows_vanish_after_each_connect(backend: Backend) -> None:
    """Each ``async with database:`` is one rolled-back transaction; so is each test."""
    Author = backend.Author
    async with backend.database:
        assert await Author.objects().count() == 0
        await Author.objects().create(name="temporary")
        assert await Author.objects().count() == 1
    async with backend.database:
        assert await Author.objects().count() == 0
    async with helper_database(backend.url) as plain:
        assert await plain.fetch_val(sa.select(sa.func.count()).select_from(Author.table)) == 0



def writer_model(database: Database) -> Any:
    """A model of ``orm_author`` on another database object (its own registry)."""
    models = ormlite.Registry(database)

    class Writer(ormlite.Model):
        registry = models
        tablename = "orm_author"
        columns = [  # noqa: RUF012
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100)),
        ]

    return Writer


async def test_update_and_delete_return_the_rows_changed(backend: Backend) -> None:
    """As in databases, MySQL and SQLite give the rowcount when the lastrowid is 0.

    ormar returns ``execute(update/delete)`` as the number of rows changed; on
    PostgreSQL (the first column of no row) it is None.
    """
    table = backend.Author.table
    async with helper_database(backend.url) as other:  # rows this database never inserted
        await other.execute_many(table.insert(), [{"name": name} for name in "abc"])
    try:
        async with Database(backend.url) as database:
            Writer = writer_model(database)
            changed = await Writer.objects().filter(name__in=["a", "b"]).update(name="z")
            raw = await database.execute(
                "UPDATE orm_author SET name = :new WHERE name = :old", {"new": "y", "old": "z"}
            )
            missed = await Writer.objects().filter(name="nobody").delete()
            deleted = await Writer.objects().delete()
    finally:
        async with helper_database(backend.url) as other:
            await other.execute(table.delete())
    if dialect_of(backend.url) == "postgresql":
        assert (changed, raw, missed, deleted) == (None, None, None, None)
    else:
        assert (changed, raw, missed, deleted) == (2, 2, 0, 3)


async def test_gathered_creates_inside_a_transaction_roll_back_together(orm: Backend) -> None:
    Author = orm.Author
    await Author.objects().create(name="before")

    @orm.registry.transaction()
    async def create_then_fail() -> None:
        await asyncio.gather(*(Author.objects().create(name=f"g{n}") for n in range(5)))
        assert await Author.objects().count() == 6
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        await create_then_fail()
    assert [a.name for a in await Author.objects().all()] == ["before"]
    async with orm.database.transaction():
        await asyncio.gather(*(Author.objects().create(name=f"h{n}") for n in range(3)))
    assert await Author.objects().filter(name__startswith="h").count() == 3


async def test_select_related_and_iterate(orm: Backend) -> None:
    Author, Book = orm.Author, orm.Book
    ann = await Author.objects().create(name="Ann")
    bob = await Author.objects().create(name="Bob", rating=2)
    for author, title in [(ann, "A1"), (bob, "B1"), (ann, "A2")]:
        await Book.objects().create(author_id=author.id, title=title)
    pairs = await Book.objects().filter(title__startswith="A").joined(Author, "author_id")
    assert [(book.title, author.name) for book, author in pairs] == [("A1", "Ann"), ("A2", "Ann")]
    assert pairs[0][1] == ann
    titles = [book.title async for book in Book.objects().order_by("-title").iterate()]
    assert titles == ["B1", "A2", "A1"]


def integrity_errors() -> tuple[type[BaseException], ...]:
    """The drivers' own errors, which databases passes through and clients catch."""
    import sqlite3

    import asyncpg
    import psycopg
    import pymysql

    errors: list[type[BaseException]] = [
        sqlite3.IntegrityError,
        asyncpg.IntegrityConstraintViolationError,
        psycopg.IntegrityError,
        pymysql.err.IntegrityError,
    ]
    with contextlib.suppress(ImportError):
        import asyncmy.errors

        errors.append(asyncmy.errors.IntegrityError)
    return tuple(errors)


async def test_a_duplicate_in_a_savepoint_leaves_the_rollback_usable(orm: Backend) -> None:
    """A client catches the driver's IntegrityError around a nested transaction and goes on."""
    Tag = orm.Tag
    await Tag.objects().create(name="python")
    with pytest.raises(integrity_errors()):
        async with orm.database.transaction():
            await Tag.objects().create(name="python")
    await Tag.objects().create(name="sql")
    assert [tag.name for tag in await Tag.objects().all()] == ["python", "sql"]


async def test_a_duplicate_outside_a_transaction_leaves_the_rollback_usable(orm: Backend) -> None:
    """The same without the savepoint, as ormar's own tests do (databases 0.9 aborts the
    rolled-back transaction on PostgreSQL: every later statement fails)."""
    Tag = orm.Tag
    await Tag.objects().create(name="python")
    with pytest.raises(integrity_errors()):
        await Tag.objects().create(name="python")
    await Tag.objects().create(name="sql")
    assert [tag.name for tag in await Tag.objects().all()] == ["python", "sql"]
