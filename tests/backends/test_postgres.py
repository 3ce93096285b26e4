"""PostgreSQL (asyncpg): connect options, URL schemes, SQL that looks like parameters, types."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import uuid

import asyncpg
import pytest
from conftest import dialect_of, urls_for

from aiodatabases import ConfigurationError, Database, DatabaseURL, UnknownOptionError

URLS = urls_for("postgresql")

pytestmark = [
    pytest.mark.skipif(not URLS, reason="no PostgreSQL URL configured"),
    pytest.mark.parametrize("url", URLS, ids=dialect_of),
]


def with_options(url: str, **options: str) -> str:
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


# --- asyncpg.connect options ------------------------------------------------------------


async def test_command_timeout_keyword(url: str) -> None:
    async with Database(url, command_timeout=0.1, max_size=1) as db:
        with pytest.raises(asyncio.TimeoutError):
            await db.execute("SELECT pg_sleep(2)")
        # The same (only) connection is usable again.
        assert await db.fetch_val("SELECT 1") == 1


async def test_command_timeout_in_url(url: str) -> None:
    async with Database(with_options(url, command_timeout="0.1"), max_size=1) as db:
        with pytest.raises(asyncio.TimeoutError):
            await db.fetch_all("SELECT pg_sleep(2)")
        assert await db.fetch_val("SELECT 1") == 1


async def test_server_settings(url: str) -> None:
    settings = {"application_name": "aiodatabases-tests", "search_path": "pg_catalog, public"}
    async with Database(url, server_settings=settings) as db:
        assert await db.fetch_val("SHOW application_name") == "aiodatabases-tests"
        assert await db.fetch_val("SHOW search_path") == "pg_catalog, public"


async def test_statement_cache_size(url: str) -> None:
    prepared = "SELECT COUNT(*) FROM pg_prepared_statements"

    async def prepared_after_queries(db: Database) -> int:
        async with db.connection() as connection:
            for i in range(3):
                assert await connection.fetch_val("SELECT :i::int + 1", {"i": i}) == i + 1
            value: int = await connection.fetch_val(prepared)
            return value

    async with Database(url) as db:
        assert await prepared_after_queries(db) > 0  # the default caches statements...
    async with Database(url, statement_cache_size=0) as db:
        assert await prepared_after_queries(db) == 0  # ... this option turns that off
    async with Database(with_options(url, statement_cache_size="0")) as db:
        assert await prepared_after_queries(db) == 0


@pytest.mark.parametrize("value", ["false", "disable", "prefer"])
async def test_ssl_option_in_url(url: str, value: str) -> None:
    async with Database(with_options(url, ssl=value)) as db:
        assert await db.fetch_val("SELECT 1") == 1


async def test_ssl_keyword(url: str) -> None:
    async with Database(url, ssl=False) as db:
        assert await db.fetch_val("SELECT 1") == 1


def test_bad_ssl_value_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ssl"):
        Database(with_options(url, ssl="bogus"))
    with pytest.raises(ConfigurationError, match="ssl"):
        Database(url, ssl="bogus")


@pytest.mark.parametrize(
    "query", ["command_timeout=soon", "statement_cache_size=many", "timeout=abc"]
)
def test_bad_option_values_are_rejected(url: str, query: str) -> None:
    name, value = query.split("=")
    with pytest.raises(ConfigurationError, match=name):
        Database(with_options(url, **{name: value}))


@pytest.mark.parametrize("option", ["frobnicate", "foreign_keys", "journal_mode", "uri", "factory"])
def test_unknown_options_are_rejected(url: str, option: str) -> None:
    with pytest.raises(UnknownOptionError, match=option):
        Database(with_options(url, **{option: "1"}))
    with pytest.raises(UnknownOptionError, match=option):
        Database(url, **{option: "1"})


# --- URL schemes -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
async def test_scheme_aliases(url: str, scheme: str) -> None:
    async with Database(str(DatabaseURL(url).replace(scheme=scheme))) as db:
        assert await db.fetch_val("SELECT current_database()") == DatabaseURL(url).database


# --- SQL that looks like parameters ---------------------------------------------------


async def test_dollar_quoted_text_is_not_a_parameter(url: str) -> None:
    async with Database(url) as db:
        assert await db.fetch_val("SELECT $$it's :not_a_param$$") == "it's :not_a_param"
        row = await db.fetch_one("SELECT $tag$ :x $$ :y $tag$ AS body, :v::int AS v", {"v": 3})
        assert row is not None
        assert (row["body"], row["v"]) == (" :x $$ :y ", 3)


async def test_dollar_quoted_function_body(url: str) -> None:
    async with Database(url) as db, db.connection() as connection:
        await connection.execute(
            """
            CREATE FUNCTION pg_temp.add_label(n integer) RETURNS text AS $body$
            DECLARE result text;
            BEGIN
                result := ':label ' || n::text;
                RETURN result;
            END;
            $body$ LANGUAGE plpgsql
            """
        )
        assert await connection.fetch_val("SELECT pg_temp.add_label(:n)", {"n": 5}) == ":label 5"


async def test_casts_and_slices_are_not_parameters(url: str) -> None:
    async with Database(url) as db:
        row = await db.fetch_one(
            "SELECT '42'::int AS a, :v::text AS b, (ARRAY[1,2,3])[2:3] AS c,"
            " CAST(:w AS numeric)::text AS d",
            {"v": "x", "w": decimal.Decimal("1.5")},
        )
    assert row is not None
    assert (row["a"], row["b"], row["c"], row["d"]) == (42, "x", [2, 3], "1.5")


# --- types -------------------------------------------------------------------------


async def test_types_round_trip_as_asyncpg_returns_them(url: str) -> None:
    values = {
        "j": json.dumps({"a": [1, 2], "b": None}),
        "jb": json.dumps({"k": "v"}),
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "ts": datetime.datetime(2024, 2, 29, 12, 30, 15, 123456),
        "tstz": datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc),
        "d": datetime.date(2024, 2, 29),
        "n": decimal.Decimal("12345.6789"),
        "b": b"\x00\xffbytes",
        "a": [1, 2, 3],
        "f": True,
    }
    async with Database(url) as db, db.connection() as connection:
        await connection.execute(
            "CREATE TEMP TABLE typed (j json, jb jsonb, u uuid, ts timestamp,"
            " tstz timestamptz, d date, n numeric(10, 4), b bytea, a integer[], f boolean)"
        )
        await connection.execute(
            "INSERT INTO typed VALUES (:j, :jb, :u, :ts, :tstz, :d, :n, :b, :a, :f)", values
        )
        row = await connection.fetch_one("SELECT * FROM typed")
        direct = await connection.fetch_one(
            "SELECT :u::uuid AS u, :n::numeric AS n", {"u": values["u"], "n": values["n"]}
        )
    assert row is not None
    assert direct is not None
    # json and jsonb come back as text, as asyncpg returns them without a codec.
    assert isinstance(row["j"], str)
    assert json.loads(row["j"]) == {"a": [1, 2], "b": None}
    assert json.loads(row["jb"]) == {"k": "v"}
    assert isinstance(row["u"], uuid.UUID)
    assert row["u"] == values["u"]
    assert row["ts"] == values["ts"]
    assert row["ts"].tzinfo is None
    assert row["tstz"] == values["tstz"]
    assert row["tstz"].tzinfo is not None
    assert row["d"] == values["d"]
    assert isinstance(row["n"], decimal.Decimal)
    assert row["n"] == values["n"]
    assert row["b"] == values["b"]
    assert row["a"] == values["a"]
    assert row["f"] is True
    assert (direct["u"], direct["n"]) == (values["u"], values["n"])


async def test_driver_errors_are_asyncpg_errors(url: str) -> None:
    async with Database(url, max_size=1) as db:
        with pytest.raises(asyncpg.exceptions.DataError):
            await db.fetch_val("SELECT :v::int", {"v": "not a number"})
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            await db.fetch_val("SELECT 1 / 0")
        assert await db.fetch_val("SELECT 1") == 1
