"""Bad input (issue 15 item 9): a clear error or the right result, and the connection usable after.

Each case runs on every backend three ways: on the ``Database`` (a borrowed
connection), on a held connection (the same one runs the next statement), and
inside a transaction. A failed statement inside ``async with
database.transaction()`` propagates out of the block, which rolls back: what
the transaction wrote before it is gone (PostgreSQL aborts the transaction at
a server-side error; the other servers would let it go on, but the block
ends with the error either way), and the connection runs the next statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import pytest
from conftest import DATABASE_URLS, dialect_of, drop_table, helper_database, scheme_of
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodatabases import Connection, Database, ParameterError, UnknownParameterError

Runner = Callable[[Database | Connection], Awaitable[Any]]
TABLE = "bad_input"


def _driver_errors(url: str) -> dict[str, type[BaseException] | tuple[type[BaseException], ...]]:
    """What each bad value raises on ``url``'s backend (the driver's or the server's own)."""
    scheme = scheme_of(url)
    if scheme == "sqlite":
        return {"unbindable": sqlite3.ProgrammingError, "big int": OverflowError}
    if scheme == "postgresql+psycopg":
        # (Bytes are bound as bytea: into text they are stored as its hex text.)
        return {
            "unbindable": psycopg.ProgrammingError,  # "cannot adapt type"
            "big int": psycopg.DataError,  # bound as numeric: "bigint out of range"
            "nul": psycopg.DataError,
        }
    if scheme == "postgresql":
        return {
            "unbindable": asyncpg.DataError,
            "big int": asyncpg.DataError,
            "nul": asyncpg.CharacterNotInRepertoireError,
            "bad utf-8": asyncpg.DataError,
        }
    errors = _mysql_errors(scheme)
    return {
        "unbindable": ParameterError,
        "big int": errors.DataError,
        "bad utf-8": errors.DataError,
    }


def _mysql_errors(scheme: str) -> Any:
    if scheme == "mysql+asyncmy":
        import asyncmy.errors

        return asyncmy.errors
    import pymysql.err

    return pymysql.err


def _ddl(url: str) -> str:
    suffix = " DEFAULT CHARSET=utf8mb4" if dialect_of(url) == "mysql" else ""
    return f"CREATE TABLE {TABLE} (id BIGINT, s TEXT, b BIGINT){suffix}"


@pytest.fixture
async def table(database_url: str) -> AsyncIterator[str]:
    await drop_table(database_url, TABLE)
    async with helper_database(database_url) as db:
        await db.execute(_ddl(database_url))
    yield database_url
    await drop_table(database_url, TABLE)


def insert(column: str, value: Any) -> Runner:
    return lambda on: on.execute(f"INSERT INTO {TABLE} (id, {column}) VALUES (1, :v)", {"v": value})


async def fails_then_usable(url: str, run: Runner, error: Any) -> None:
    """``run`` raises ``error`` borrowed, held and in a transaction; every time the
    connection runs the next statement, and the transaction rolled back."""
    async with Database(url, min_size=1, max_size=1) as db:
        with pytest.raises(error):
            await run(db)
        assert await db.fetch_val("SELECT 1") == 1
        async with db.connection() as held:
            with pytest.raises(error):
                await run(held)
            assert await held.fetch_val("SELECT 2") == 2
            with pytest.raises(error):
                await _in_a_transaction(held, run)
            assert await held.fetch_val(f"SELECT count(*) FROM {TABLE}") == 0
        # And on the Database again: the pool's one connection is the same one.
        assert await db.fetch_val(f"SELECT count(*) FROM {TABLE}") == 0


async def _in_a_transaction(held: Connection, run: Runner) -> None:
    async with held.transaction():
        await held.execute(f"INSERT INTO {TABLE} (id, s) VALUES (7, 'before')")
        await run(held)


async def stored_then_usable(url: str, column: str, value: Any) -> Any:
    """Insert ``value`` and read it back (held connection, then a transaction)."""
    async with Database(url) as db, db.connection() as held:
        await insert(column, value)(held)
        stored = await held.fetch_val(f"SELECT {column} FROM {TABLE} WHERE id = 1")
        async with held.transaction():
            await held.execute(f"DELETE FROM {TABLE}")
            await insert(column, value)(held)
        assert await held.fetch_val(f"SELECT count(*) FROM {TABLE}") == 1
        return stored


def unbindables() -> list[Any]:
    return [object(), print, lambda: None, type("NoText", (), {})()]


@pytest.mark.parametrize(
    "index", range(len(unbindables())), ids=["object", "builtin", "lambda", "class"]
)
async def test_an_unbindable_value_is_refused(table: str, index: int) -> None:
    value = unbindables()[index]
    await fails_then_usable(table, insert("s", value), _driver_errors(table)["unbindable"])
    # Never stored as its repr (what the MySQL drivers did with anything they do not know).
    async with Database(table) as db:
        assert await db.fetch_all(f"SELECT s FROM {TABLE}") == []


async def test_a_set_is_refused(table: str) -> None:
    # The drivers' own error: sqlite3 and asyncpg refuse it; PyMySQL writes
    # it as a list (the server refuses it), asyncmy raises TypeError.
    await fails_then_usable(table, insert("s", {1, 2}), Exception)


async def test_an_unbindable_value_in_execute_many_is_refused(table: str) -> None:
    async def run(on: Database | Connection) -> None:
        rows = [{"v": "fine"}, {"v": object()}]
        await on.execute_many(f"INSERT INTO {TABLE} (id, s) VALUES (1, :v)", rows)

    await fails_then_usable(table, run, _driver_errors(table)["unbindable"])


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, 2**100], ids=["2**63", "-2**63-1", "2**100"]
)
async def test_an_integer_past_64_bits_is_refused(table: str, value: int) -> None:
    await fails_then_usable(table, insert("b", value), _driver_errors(table)["big int"])


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63)], ids=["max", "min"])
async def test_the_64_bit_limits_round_trip(table: str, value: int) -> None:
    assert await stored_then_usable(table, "b", value) == value


async def test_nul_in_a_string(table: str) -> None:
    value = "before\x00after"
    errors = _driver_errors(table)
    if "nul" in errors:  # PostgreSQL's text cannot hold it
        await fails_then_usable(table, insert("s", value), errors["nul"])
    else:
        assert await stored_then_usable(table, "s", value) == value


async def test_invalid_utf8_bytes_into_text(table: str) -> None:
    value = b"ok \xff\xfe \xc3("
    errors = _driver_errors(table)
    if "bad utf-8" in errors:
        await fails_then_usable(table, insert("s", value), errors["bad utf-8"])
    elif scheme_of(table) == "postgresql+psycopg":  # bound as bytea, stored as its text
        assert await stored_then_usable(table, "s", value) == "\\x" + value.hex()
    else:  # SQLite keeps what it is given: the bytes, as a BLOB
        assert await stored_then_usable(table, "s", value) == value


async def test_a_lone_surrogate_is_refused(table: str) -> None:
    # Not encodable as UTF-8 at all: the driver (or the server) refuses it.
    await fails_then_usable(table, insert("s", "\udcff"), Exception)


async def test_a_one_megabyte_statement(table: str) -> None:
    literal = "x" * 1_000_000
    async with Database(table) as db:
        assert await db.fetch_val(f"SELECT '{literal}'") == literal
        assert await db.fetch_val("SELECT 1") == 1


async def test_ten_thousand_values_in_one_in(table: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    t = sqlalchemy.table(TABLE, sqlalchemy.column("id"), sqlalchemy.column("s"))
    ids = list(range(10_000))
    async with Database(table) as db:
        await db.execute_many(
            f"INSERT INTO {TABLE} (id, s) VALUES (:id, 'r')",
            [{"id": i} for i in range(0, 20_000, 100)],
        )
        core = sqlalchemy.select(sqlalchemy.func.count()).select_from(t).where(t.c.id.in_(ids))
        assert await db.fetch_val(core) == 100
        # Raw SQL: one :name per value (a list is not expanded in raw SQL, as in databases).
        names = ", ".join(f":v{i}" for i in ids)
        values = {f"v{i}": i for i in ids}
        assert (
            await db.fetch_val(f"SELECT count(*) FROM {TABLE} WHERE id IN ({names})", values) == 100
        )
        assert await db.fetch_val("SELECT 1") == 1


async def test_odd_parameter_names(table: str) -> None:
    async with Database(table) as db:
        # :a-b is :a then -b; :1 is no parameter: a value for either is refused before sending.
        with pytest.raises(UnknownParameterError, match="':b'"):
            await db.fetch_val("SELECT :a-b", {"a": 1, "b": 2})
        with pytest.raises(UnknownParameterError, match="cannot be a parameter name"):
            await db.fetch_val("SELECT :1", {"1": 5})
        # A :name inside a string literal or a comment is text.
        assert await db.fetch_val("SELECT ':name' -- :other") == ":name"
        row = await db.fetch_one("SELECT :é AS a, :_x1 AS b", {"é": "2", "_x1": "3"})
        assert row is not None
        assert (row["a"], row["b"]) == ("2", "3")
        if dialect_of(table) == "postgresql":
            assert await db.fetch_val("SELECT :x::text", {"x": "7"}) == "7"
        assert await db.fetch_val("SELECT 1") == 1


async def test_a_name_inside_an_escaped_string_is_text(table: str) -> None:
    # MySQL reads \' in a string as a quote (its default sql_mode); the others
    # only ''. Either way the :x inside the string is text, :y a parameter.
    quote = "\\'" if dialect_of(table) == "mysql" else "''"
    async with Database(table) as db:
        row = await db.fetch_one(f"SELECT 'it{quote}s :x' AS a, :y AS b", {"y": "v"})
        assert row is not None
        assert (row["a"], row["b"]) == ("it's :x", "v")


def _quoted(url: str, name: str) -> str:
    return f"`{name}`" if dialect_of(url) == "mysql" else f'"{name}"'


async def test_unicode_identifiers(table: str) -> None:
    # MySQL identifiers hold the Basic Multilingual Plane only: no emoji there.
    emoji = "" if dialect_of(table) == "mysql" else "_🙂"
    name, column = _quoted(table, f"τραπέζι_表{emoji}"), _quoted(table, "名前")
    async with Database(table) as db:
        await db.execute(f"DROP TABLE IF EXISTS {name}")
        await db.execute(f"CREATE TABLE {name} ({column} VARCHAR(20))")
        try:
            await db.execute(f"INSERT INTO {name} ({column}) VALUES (:名前)", {"名前": "値"})
            row = await db.fetch_one(f"SELECT {column} FROM {name}")
            assert row is not None
            assert row["名前"] == "値"
        finally:
            await db.execute(f"DROP TABLE {name}")


# Text that SQL would misread if it were ever put into the statement.
_INJECTION_PIECES = [
    "'", "''", '"', "\\", "\\'", "%", "%s", "%(x)s", "?", "$1", ":name", ":v", "::int",
    "--", "/*", "*/", ";", " OR 1=1", "; DROP TABLE bad_input; --", "\n", "\t", "é", "表", "🙂",
]  # fmt: skip
injection_text = st.lists(
    st.one_of(st.sampled_from(_INJECTION_PIECES), st.text(max_size=4).filter(
        lambda s: "\x00" not in s and not any("\ud800" <= c <= "\udfff" for c in s)
    )),
    max_size=8,
).map("".join)  # fmt: skip


@pytest.mark.parametrize("url", DATABASE_URLS, ids=scheme_of)
def test_injection_strings_are_stored_verbatim(url: str) -> None:
    with asyncio.Runner() as runner:
        runner.run(drop_table(url, TABLE))
        db = Database(url)
        runner.run(db.connect())
        runner.run(db.execute(_ddl(url)))

        @settings(max_examples=25, deadline=None)
        @given(st.lists(injection_text, min_size=1, max_size=6))
        def round_trip(texts: list[str]) -> None:
            runner.run(_round_trip(db, texts))

        try:
            round_trip()
        finally:
            runner.run(db.disconnect())
            runner.run(drop_table(url, TABLE))


async def _round_trip(db: Database, texts: list[str]) -> None:
    await db.execute(f"DELETE FROM {TABLE}")
    rows = [{"id": i, "s": text} for i, text in enumerate(texts)]
    await db.execute_many(f"INSERT INTO {TABLE} (id, s) VALUES (:id, :s)", rows)
    await db.execute(f"INSERT INTO {TABLE} (id, s) VALUES (:id, :s)", {"id": 100, "s": texts[0]})
    stored = await db.fetch_all(f"SELECT id, s FROM {TABLE} ORDER BY id")
    assert [row["s"] for row in stored] == [*texts, texts[0]]
    assert await db.fetch_val("SELECT :s", {"s": texts[-1]}) == texts[-1]
    assert await db.fetch_val(f"SELECT count(*) FROM {TABLE}") == len(texts) + 1
