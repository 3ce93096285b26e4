"""The private paths of `databases` 0.9 that its popular clients reach (``aiodatabases._compat``).

Each test does what such a client does, written from the description of the
path; the last one checks that aiodatabases itself never uses them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import dialect_of, urls_for

import aiodatabases
from aiodatabases import Database, DatabaseURL, UnknownOptionError

sqlite_only = pytest.mark.skipif(not urls_for("sqlite"), reason="no SQLite URL configured")


# --- every backend ---------------------------------------------------------------------


def test_backend_database_url_and_url_string(database_url: str) -> None:
    database = Database(database_url)
    backend_url = database._backend._database_url  # type: ignore[attr-defined]
    assert isinstance(backend_url, DatabaseURL)
    assert backend_url == database_url
    assert backend_url.dialect == dialect_of(database_url)
    assert database.url._url == database_url
    assert database._backend._dialect is database.dialect  # type: ignore[attr-defined]


async def test_driver_errors_pass_through_unwrapped(notes: str) -> None:
    async with Database(notes) as database:
        await database.execute("INSERT INTO notes (id, text) VALUES (1, 'a')")
        with pytest.raises(Exception, match=r"(?i)duplicate|unique") as caught:
            await database.execute("INSERT INTO notes (id, text) VALUES (1, 'b')")
        driver = type(caught.value).__module__.split(".")[0]
        assert driver in {"asyncpg", "psycopg", "asyncmy", "pymysql", "sqlite3"}
        if driver == "psycopg":
            import psycopg

            assert isinstance(caught.value, psycopg.IntegrityError)
        else:
            assert "IntegrityError" in type(caught.value).__name__ or driver == "asyncpg"
        async with database.connection() as connection:
            raw = connection.raw_connection
            assert type(raw).__module__.split(".")[0] in {
                "asyncpg",
                "psycopg",
                "asyncmy",
                "aiomysql",
                "aiosqlite",
            }


# --- SQLite: _options and _pool ----------------------------------------------------------


class AnsweringConnection(sqlite3.Connection):
    """A factory whose connections know one more SQL function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.create_function("answer", 0, lambda: 42)


async def answers_on_held_connections(database: Database, count: int) -> list[Any]:
    async def ask() -> Any:
        async with database.connection() as connection:
            await asyncio.sleep(0.01)  # hold it while the others take theirs
            return await connection.fetch_val("SELECT answer()")

    return await asyncio.gather(*(ask() for _ in range(count)))


@sqlite_only
def test_sqlite_options_are_the_connect_keywords(tmp_path: Path) -> None:
    backend: Any = Database(f"sqlite:///{tmp_path / 'o.db'}")._backend
    assert backend._options == {}
    backend = Database(
        f"sqlite:///{tmp_path / 'o.db'}?timeout=2&foreign_keys=on", uri=False
    )._backend
    assert backend._options == {"timeout": 2.0, "uri": False}
    assert backend._options is backend._options  # one mutable dict


@sqlite_only
async def test_sqlite_factory_set_in_options_before_connect_is_used(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'f.db'}", max_size=3)
    database._backend._options["factory"] = AnsweringConnection  # type: ignore[attr-defined]
    async with database:
        assert await answers_on_held_connections(database, 3) == [42] * 3
        assert await database.fetch_val("SELECT answer()") == 42


@sqlite_only
async def test_sqlite_pool_replaced_before_connect_is_used(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'p.db'}", max_size=2)
    backend: Any = database._backend
    pool = backend._pool
    replacement = pool.__class__(
        backend._database_url, **backend._options, factory=AnsweringConnection
    )
    backend._pool = replacement
    assert "factory" in backend._options  # the replacement's options are the backend's now
    async with database:
        assert await answers_on_held_connections(database, 2) == [42] * 2
    with pytest.raises(UnknownOptionError, match="bogus"):
        backend._pool = pool.__class__(backend._database_url, bogus=1)


class ForeignKeysConnection(sqlite3.Connection):
    """The factory an ORM installs: every connection enforces foreign keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA foreign_keys=1")


def define_model(database: Database) -> None:
    """What the ORM does at every model class definition for a SQLite database."""
    backend: Any = database._backend
    if backend._dialect.name == "sqlite" and "factory" not in backend._options:
        backend._options["factory"] = ForeignKeysConnection
        old_pool = backend._pool
        backend._pool = old_pool.__class__(backend._database_url, **backend._options)


@sqlite_only
@pytest.mark.parametrize("query", ["", "?timeout=5&journal_mode=wal"])
async def test_the_orm_foreign_keys_pattern(tmp_path: Path, query: str) -> None:
    database = Database(f"sqlite:///{tmp_path / 'orm.db'}{query}", max_size=4)
    define_model(database)  # class Album(Model)
    define_model(database)  # class Track(Model): ForeignKey(Album)
    async with database:
        await database.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, name TEXT)")
        await database.execute(
            "CREATE TABLE tracks (id INTEGER PRIMARY KEY, "
            "album INTEGER NOT NULL REFERENCES albums (id), title TEXT)"
        )
        album = await database.execute("INSERT INTO albums (name) VALUES ('Malibu')")
        await database.execute("INSERT INTO tracks (album, title) VALUES (:a, 'x')", {"a": album})
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await database.execute("INSERT INTO tracks (album, title) VALUES (999, 'orphan')")

        async def orphan() -> None:  # on several pooled connections at once
            async with database.connection() as connection:
                await asyncio.sleep(0.01)
                await connection.execute("INSERT INTO tracks (album, title) VALUES (998, 'y')")

        outcomes = await asyncio.gather(*(orphan() for _ in range(4)), return_exceptions=True)
        assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes)
        assert await database.fetch_val("SELECT COUNT(*) FROM tracks") == 1


# --- not used by aiodatabases itself -------------------------------------------------------

_PRIVATE_PATHS = re.compile(r"\._database_url\b|\._options\[|\b_backend\._pool\b|\bSQLitePool\b")


def test_aiodatabases_does_not_use_the_private_paths() -> None:
    package = Path(aiodatabases.__file__).parent
    users = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "_compat.py" and _PRIVATE_PATHS.search(path.read_text())
    ]
    assert users == []
