"""PostgreSQL (asyncpg): connect options, URL schemes, SQL that looks like parameters, types."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from conftest import dialect_of, postgres_driver_of, urls_for

from aiodatabases import (
    CommandTimeoutError,
    ConfigurationError,
    Connection,
    Database,
    DatabaseURL,
    UnknownOptionError,
)

# asyncpg's URLs (psycopg's own tests: test_psycopg.py).
URLS = [url for url in urls_for("postgresql") if postgres_driver_of(url) == "asyncpg"]

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
        with pytest.raises(CommandTimeoutError, match=r"within 0\.1s.*'command_timeout'") as caught:
            await db.execute("SELECT pg_sleep(2)")
        assert isinstance(caught.value, asyncio.TimeoutError)  # what asyncpg raised
        # The connection it ran on is discarded; the next statement gets a new one.
        assert db.pool_stats().closed == 1
        assert await db.fetch_val("SELECT 1") == 1


async def test_command_timeout_in_url(url: str) -> None:
    async with Database(with_options(url, command_timeout="0.1"), max_size=1) as db:
        with pytest.raises(CommandTimeoutError):
            await db.fetch_all("SELECT pg_sleep(2)")
        assert await db.fetch_val("SELECT 1") == 1


async def test_server_settings(url: str) -> None:
    settings = {"application_name": "aiodatabases-tests", "search_path": "pg_catalog, public"}
    async with Database(url, server_settings=settings) as db:
        assert await db.fetch_val("SHOW application_name") == "aiodatabases-tests"
        assert await db.fetch_val("SHOW search_path") == "pg_catalog, public"


@pytest.mark.parametrize("kind", ["function", "coroutine function", "string"])
async def test_password_keyword_reaches_asyncpg(
    url: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # databases passed password= to asyncpg, which asks a callable for the
    # password at every new connection (rotating IAM tokens). The local server
    # may trust every login, so what reaches asyncpg.connect is what we check.
    def token() -> str:
        return "token"

    async def async_token() -> str:
        return token()

    password = {"function": token, "coroutine function": async_token, "string": "token"}[kind]
    seen: list[object] = []
    connect = asyncpg.connect

    async def recording_connect(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("password"))
        return await connect(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", recording_connect)
    with_url_password = str(DatabaseURL(url).replace(password="from-url"))
    async with Database(with_url_password, password=password) as db:
        assert await db.fetch_val("SELECT 1") == 1
    assert seen
    assert all(value is password for value in seen)  # the keyword wins over the URL


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


async def test_pgbouncer_option_turns_the_statement_cache_off(url: str) -> None:
    # (Through a real PgBouncer: tests/pgbouncer/.)
    prepared = "SELECT COUNT(*) FROM pg_prepared_statements"
    for db in (Database(url, pgbouncer=True), Database(with_options(url, pgbouncer="true"))):
        async with db, db.connection() as connection:
            for i in range(3):
                assert await connection.fetch_val("SELECT :i::int + 1", {"i": i}) == i + 1
            assert await connection.fetch_val(prepared) == 0
    async with Database(url, pgbouncer=True, statement_cache_size=0) as db:
        assert await db.fetch_val("SELECT 1") == 1


async def test_pgbouncer_option_keeps_a_statement_cache_given(url: str) -> None:
    # For PgBouncer 1.21+ with max_prepared_statements, which tracks named statements.
    db = Database(url, pgbouncer=True, statement_cache_size=100)
    async with db, db.connection() as connection:
        assert await connection.fetch_val("SELECT :i::int", {"i": 1}) == 1
        assert await connection.fetch_val("SELECT COUNT(*) FROM pg_prepared_statements") > 0


def test_bad_pgbouncer_value_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="pgbouncer"):
        Database(with_options(url, pgbouncer="maybe"))


@pytest.mark.parametrize("pgbouncer", [False, True])
async def test_pgbouncer_option_resets_by_rollback_alone(url: str, pgbouncer: bool) -> None:
    """Through the bouncer a reset's ``CLOSE ALL`` would close the held cursors
    of whichever client's session it reached: with the option it is not sent."""
    async with Database(url, pgbouncer=pgbouncer, min_size=1, max_size=1) as db:
        await db.execute("DECLARE theirs NO SCROLL CURSOR WITH HOLD FOR SELECT 7 AS n")
        task = asyncio.create_task(db.fetch_val("SELECT pg_sleep(60)"))
        await asyncio.sleep(0.2)
        task.cancel()  # the connection is reset before it is reused
        with pytest.raises(asyncio.CancelledError):
            await task
        if pgbouncer:
            assert await db.fetch_val("FETCH 1 FROM theirs") == 7
            await db.execute("CLOSE theirs")
        else:
            with pytest.raises(asyncpg.InvalidCursorNameError):
                await db.fetch_val("FETCH 1 FROM theirs")
        assert db.pool_stats().closed == 0  # the same connection throughout


async def test_health_check_keeps_a_connection_that_answers(url: str) -> None:
    """Regression: the ping was an empty query, which asyncpg 0.32 fails on
    (AttributeError), so every idle connection was replaced instead of kept."""
    async with Database(url, min_size=1, max_size=1, health_check_after=0.01) as db:
        pid = await db.fetch_val("SELECT pg_backend_pid()")
        await asyncio.sleep(0.1)  # idle past health_check_after: pinged before use
        assert await db.fetch_val("SELECT pg_backend_pid()") == pid
        assert db.pool_stats().closed == 0


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
    "query",
    [
        "command_timeout=soon",
        "command_timeout=0",
        "command_timeout=-1",
        "statement_cache_size=many",
        "timeout=abc",
    ],
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


# --- iterate() outside a transaction --------------------------------------------------
# The cursor is declared WITH HOLD in a transaction of its own, committed
# before anything else runs on the connection: rows stream as they are
# fetched, and the loop body's statements are what they would be without it.


async def test_iterate_stops_early_over_a_huge_result(url: str) -> None:
    # Regression: the cursor was declared WITH HOLD outside any transaction,
    # so the server computed and kept the whole result before the first row.
    async with Database(url, max_size=1) as db:

        async def first_rows() -> list[int]:
            seen = []
            async for row in db.iterate("SELECT generate_series(1, 1000000000) AS n"):
                seen.append(row["n"])
                if len(seen) == 3:
                    break
            return seen

        assert await asyncio.wait_for(first_rows(), 30) == [1, 2, 3]
        async with db.connection() as connection:
            assert await connection.fetch_val("SELECT 1") == 1
            assert not connection.raw_connection.is_in_transaction()


@pytest.fixture
async def counted(url: str) -> AsyncIterator[str]:
    """A table of 700 numbered rows (more than one batch of iterate())."""
    async with Database(url) as db:
        await db.execute("DROP TABLE IF EXISTS iterate_counted")
        await db.execute("CREATE TABLE iterate_counted (n integer PRIMARY KEY)")
        await db.execute("INSERT INTO iterate_counted SELECT generate_series(1, 700)")
    yield "iterate_counted"
    async with Database(url) as db:
        await db.execute("DROP TABLE iterate_counted")


async def test_statements_in_the_loop_body_commit_at_once(url: str, counted: str) -> None:
    async with Database(url) as db, Database(url) as other:

        async def written() -> int:
            count: int = await other.fetch_val(f"SELECT count(*) FROM {counted} WHERE n > 700")
            return count

        seen = []
        async with db.connection() as connection:
            async for row in connection.iterate(f"SELECT n FROM {counted} ORDER BY n"):
                seen.append(row["n"])
                if row["n"] % 100 == 0:
                    # On the iterating connection, between its batches.
                    await connection.execute(
                        f"INSERT INTO {counted} VALUES (:n)", {"n": 1000 + row["n"]}
                    )
                    # Committed, as without the iteration: another connection sees it.
                    assert await written() == 2 * (row["n"] // 100) - 1
                    async with connection.transaction():
                        await connection.execute(
                            f"INSERT INTO {counted} VALUES (:n)", {"n": 2000 + row["n"]}
                        )
                    with contextlib.suppress(LookupError):
                        async with connection.transaction():
                            await connection.execute(
                                f"INSERT INTO {counted} VALUES (:n)", {"n": 3000 + row["n"]}
                            )
                            raise LookupError("rolled back")
                    assert await written() == 2 * (row["n"] // 100)
            assert not connection.raw_connection.is_in_transaction()
        # The rows of the query's start: none of those written while it streamed.
        assert seen == list(range(1, 701))


_FAILS_AT_600 = "SELECT n, 1 / (600 - n) AS x FROM generate_series(1, 1000) AS n"


async def _stream_failing_query(connection: Connection, body_statement: bool) -> list[int]:
    """Rows seen by an iteration whose query fails on its 600th row (raises)."""
    seen: list[int] = []
    try:
        async for row in connection.iterate(_FAILS_AT_600):
            seen.append(row["n"])
            if body_statement and len(seen) == 1:
                assert await connection.fetch_val("SELECT 2") == 2
    finally:
        assert seen == list(range(1, 501))  # the first batch; the second fails on the server
    return seen


@pytest.mark.parametrize("body_statement", [False, True], ids=["mid_stream", "at_body_statement"])
async def test_a_failing_query_fails_the_iteration_and_leaves_the_connection_usable(
    url: str, body_statement: bool
) -> None:
    # With a statement in the body, that statement commits the cursor's
    # transaction, which runs the rest of the query (to keep it): its failure
    # goes to the iteration, after the rows already fetched, and the body's
    # statement succeeds.
    async with Database(url, max_size=1) as db, db.connection() as connection:
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            await _stream_failing_query(connection, body_statement=body_statement)
        assert not connection.raw_connection.is_in_transaction()
        assert await connection.fetch_val("SELECT 1") == 1


async def test_a_statement_after_leaving_an_iteration_by_break(url: str) -> None:
    # The iteration is closed by a task the loop queues (the generator's
    # finalizer): had the statement gone first, it would have made the server
    # keep the rest of the billion rows for the abandoned cursor.
    async with Database(url, max_size=1) as db, db.connection() as connection:

        async def break_then_query() -> int:
            async for _ in connection.iterate("SELECT generate_series(1, 1000000000) AS n"):
                break
            value: int = await connection.fetch_val("SELECT 1")
            return value

        assert await asyncio.wait_for(break_then_query(), 30) == 1
        assert not connection.raw_connection.is_in_transaction()
