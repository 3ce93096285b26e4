"""PostgreSQL through psycopg (``postgresql+psycopg://``): options, rows, types,
``execute()`` results, psycopg's own errors, cancellation on the server and
streaming with bounded memory."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import tracemalloc
import uuid

import psycopg
import pytest
from conftest import asyncpg_dsn, postgres_driver_of, scheme_of, until, urls_for

from aiodatabases import CommandTimeoutError, ConfigurationError, Database, DatabaseURL, Record
from aiodatabases.exceptions import UnknownOptionError

URLS = [url for url in urls_for("postgresql") if postgres_driver_of(url) == "psycopg"]

pytestmark = [
    pytest.mark.skipif(not URLS, reason="no postgresql+psycopg URL configured"),
    pytest.mark.parametrize("url", URLS, ids=scheme_of),
]


def with_options(url: str, **options: str) -> str:
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


async def test_the_raw_connection_is_psycopgs_in_autocommit(url: str) -> None:
    async with Database(url) as db, db.connection() as connection:
        raw = connection.raw_connection
        assert isinstance(raw, psycopg.AsyncConnection)
        assert raw.autocommit
        async with connection.transaction():
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_rows_are_records(url: str) -> None:
    async with Database(url) as db:
        row = await db.fetch_one("SELECT 1 AS a, 'x' AS b, 2 AS a")
        assert isinstance(row, Record)
        assert row["a"] == 1
        assert row[2] == 2
        assert row.b == "x"
        assert row[-1] == 2
        assert list(row.keys()) == ["a", "b", "a"]
        assert list(row.values()) == [1, "x", 2]
        with pytest.raises(KeyError):
            row["missing"]
        # Columns named like tuple methods are columns.
        named = await db.fetch_one("SELECT 3 AS count, 4 AS index")
        assert named is not None
        assert named.count == 3
        assert named.index == 4
        assert await db.fetch_all("SELECT 1 WHERE false") == []
        assert await db.fetch_one("SELECT 1 WHERE false") is None


async def test_execute_returns_the_first_column_of_the_first_row(url: str) -> None:
    async with Database(url) as db, db.connection() as connection:
        await connection.execute("CREATE TEMP TABLE ex (id serial, v text)")
        assert await connection.execute("INSERT INTO ex (v) VALUES (:v)", {"v": "a"}) is None
        returned = await connection.execute(
            "INSERT INTO ex (v) VALUES (:v) RETURNING id", {"v": "b"}
        )
        assert returned == 2
        assert await connection.execute("UPDATE ex SET v = 'c'") is None
        assert await connection.execute("SELECT v FROM ex ORDER BY id") == "c"


async def test_types_as_psycopg_reads_them(url: str) -> None:
    document = {"name": "naïve", "tags": ["a", "b"]}
    moment = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
    aware = moment.replace(tzinfo=datetime.timezone.utc)
    ident = uuid.uuid4()
    async with Database(url) as db:
        row = await db.fetch_one(
            "SELECT :d::date AS d, :t::timestamp AS t, :tz::timestamptz AS tz,"
            " :n::numeric AS n, :j::json AS j, :jb::jsonb AS jb, :u::uuid AS u,"
            " :a::int[] AS a, :b::bytea AS b, :i::interval AS i",
            {
                "d": moment.date(),
                "t": moment,
                "tz": aware,
                "n": decimal.Decimal("12.3400"),
                "j": json.dumps(document),
                "jb": json.dumps(document),
                "u": ident,
                "a": [1, 2, 3],
                "b": b"\x00\xff",
                "i": datetime.timedelta(days=1, seconds=2),
            },
        )
    assert row is not None
    assert row["d"] == moment.date()
    assert row["t"] == moment
    assert row["tz"] == aware
    assert row["n"] == decimal.Decimal("12.3400")
    assert isinstance(row["n"], decimal.Decimal)
    # JSON as text, as asyncpg returns it (a Core JSON column decodes it).
    assert isinstance(row["j"], str)
    assert json.loads(row["j"]) == document
    assert isinstance(row["jb"], str)
    assert json.loads(row["jb"]) == document
    assert row["u"] == ident
    assert row["a"] == [1, 2, 3]
    assert row["b"] == b"\x00\xff"
    assert row["i"] == datetime.timedelta(days=1, seconds=2)


async def test_percent_signs_and_backslashes_in_sql(url: str) -> None:
    async with Database(url) as db:
        assert await db.fetch_val("SELECT '100%'") == "100%"
        assert await db.fetch_val("SELECT '%s' || :x", {"x": "!"}) == "%s!"
        # A backslash is a plain character in a standard string: ':x' after it binds.
        assert await db.fetch_val("SELECT 'C:\\' || :x", {"x": "dir"}) == "C:\\dir"
        assert await db.fetch_val("SELECT E'it\\'s :x'") == "it's :x"
        assert await db.fetch_val("SELECT 'a' LIKE :p", {"p": "%"}) is True


async def test_errors_are_psycopgs_own(url: str) -> None:
    async with Database(url) as db:
        with pytest.raises(psycopg.errors.UndefinedTable):
            await db.fetch_all("SELECT * FROM no_such_table")
        with pytest.raises(psycopg.errors.SyntaxError):
            await db.execute("SELEC 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await db.fetch_val("SELECT 1 / 0")
        async with db.transaction():
            with pytest.raises(psycopg.IntegrityError):
                await db.execute("DO $$ BEGIN RAISE unique_violation; END $$")
        assert await db.fetch_val("SELECT 1") == 1  # the connection is usable


async def test_execute_many_is_one_pipeline_all_or_nothing(url: str) -> None:
    async with Database(url, max_size=1) as db, db.connection() as connection:
        await connection.execute("CREATE TEMP TABLE em (id int PRIMARY KEY)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            await connection.execute_many(
                "INSERT INTO em VALUES (:id)", [{"id": 1}, {"id": 2}, {"id": 1}]
            )
        assert await connection.fetch_val("SELECT count(*) FROM em") == 0
        await connection.execute_many("INSERT INTO em VALUES (:id)", [{"id": i} for i in range(50)])
        assert await connection.fetch_val("SELECT count(*) FROM em") == 50


async def test_a_cancelled_statement_frees_its_server_backend(url: str) -> None:
    async with Database(url, max_size=2) as db, Database(url) as monitor:
        sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
        active = sleeping + " AND state = 'active'"
        task = asyncio.create_task(db.fetch_val("SELECT pg_sleep(30)"))
        await until(1, lambda: monitor.fetch_val(active))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Stopped on the server before the caller went on: not running now.
        assert await monitor.fetch_val(active) == 0
        assert await db.fetch_val("SELECT 1") == 1


async def test_command_timeout_stops_the_statement_and_discards_the_connection(url: str) -> None:
    async with Database(url, command_timeout=0.5, max_size=1) as db:
        pid = await db.fetch_val("SELECT pg_backend_pid()")
        with pytest.raises(CommandTimeoutError, match=r"0\.5s"):
            await db.fetch_val("SELECT pg_sleep(10)")
        assert await db.fetch_val("SELECT pg_backend_pid()") != pid
    async with Database(asyncpg_dsn(url)) as monitor:
        active = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)'"
        await until(0, lambda: monitor.fetch_val(active))


async def test_iterate_streams_with_bounded_memory(url: str) -> None:
    query = "SELECT n, repeat('x', 200) AS pad FROM generate_series(1, 200000) AS n"
    async with Database(url) as db:
        tracemalloc.start()
        try:
            count = 0
            async for row in db.iterate(query):
                count += 1
                assert row["n"] == count
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 200000
    # The whole result is over 40 MB; a few batches are far below it.
    assert peak < 10_000_000, peak


async def test_options(url: str) -> None:
    async with Database(url, prepare_threshold=0, application_name="aiodb-psycopg") as db:
        assert await db.fetch_val("SELECT current_setting('application_name')") == "aiodb-psycopg"
        for _ in range(3):
            assert await db.fetch_val("SELECT :x::int", {"x": 1}) == 1
        async with db.connection() as connection:
            assert connection.raw_connection.prepare_threshold == 0
    settings = {"search_path": "public", "work_mem": "8MB"}
    no_prepare = with_options(url, prepare_threshold="none")
    async with Database(no_prepare, server_settings=settings) as db:
        assert await db.fetch_val("SHOW work_mem") == "8MB"
    # Sent as libpq's own startup parameter (PgBouncer 1.18 refuses ``options``);
    # the keyword option wins.
    named = {"Application_Name": "from-settings"}
    async with Database(url, server_settings=named) as db:
        assert await db.fetch_val("SHOW application_name") == "from-settings"
    async with Database(url, server_settings=named, application_name="keyword") as db:
        assert await db.fetch_val("SHOW application_name") == "keyword"
    async with Database(url, ssl="disable") as db:
        assert await db.fetch_val("SELECT 1") == 1


async def test_a_callable_password_is_asked_at_each_connect(url: str) -> None:
    asked: list[int] = []

    async def password() -> str:
        asked.append(1)
        return "unused-with-trust"

    async with Database(url, password=password, min_size=1, max_size=1) as db:
        assert await db.fetch_val("SELECT 1") == 1
    assert asked


def test_bad_options_are_refused(url: str) -> None:
    with pytest.raises(UnknownOptionError, match="timeout"):
        Database(url, timeout=3)  # asyncpg's name; psycopg's is connect_timeout
    with pytest.raises(ConfigurationError, match="prepare_threshold"):
        Database(url, prepare_threshold=-1)
    with pytest.raises(ConfigurationError, match="sslmode"):
        Database(url, sslmode="sometimes")
    with pytest.raises(ConfigurationError, match="command_timeout"):
        Database(url, command_timeout=0)


# --- pgbouncer=true (through a real PgBouncer: tests/pgbouncer/) -----------------------

_PREPARED = "SELECT count(*) FROM pg_prepared_statements"


async def _prepared_after_runs(db: Database) -> int:
    async with db.connection() as connection:
        for i in range(8):  # past psycopg's default prepare_threshold (5)
            assert await connection.fetch_val("SELECT :i::int + 1", {"i": i}) == i + 1
        prepared: int = await connection.fetch_val(_PREPARED)
        return prepared


async def test_pgbouncer_option_prepares_no_statement(url: str) -> None:
    async with Database(url) as db:
        assert await _prepared_after_runs(db) > 0  # psycopg's default prepares...
    for db in (Database(url, pgbouncer=True), Database(with_options(url, pgbouncer="true"))):
        async with db:
            assert await _prepared_after_runs(db) == 0  # ... this option never
            async with db.connection() as connection:
                assert connection.raw_connection.prepare_threshold is None


async def test_pgbouncer_option_keeps_a_prepare_threshold_given(url: str) -> None:
    # For PgBouncer 1.21+ with max_prepared_statements, which tracks named statements.
    async with Database(url, pgbouncer=True, prepare_threshold=0) as db:
        assert await _prepared_after_runs(db) > 0


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
            with pytest.raises(psycopg.errors.InvalidCursorName):
                await db.fetch_val("FETCH 1 FROM theirs")
        assert db.pool_stats().closed == 0  # the same connection throughout
