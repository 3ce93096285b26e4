"""MySQL/MariaDB (aiomysql, the ``mysql://`` default, and asyncmy): what is specific to MySQL.

Every test runs on each configured MySQL URL, so on both drivers.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomysql
import asyncmy
import asyncmy.errors
import pymysql.err
import pytest
from conftest import (
    distinct_connections_at_once,
    drop_table,
    helper_database,
    notes_ddl,
    until,
    urls_for,
)

from aiodatabases import (
    AiodatabasesError,
    CommandTimeoutError,
    ConfigurationError,
    Database,
    DatabaseURL,
    InterleaveError,
    PoolTimeoutError,
    UnknownOptionError,
)

URLS = urls_for("mysql")

pytestmark = [
    pytest.mark.skipif(not URLS, reason="no MySQL URL configured"),
    pytest.mark.parametrize("url", URLS, ids=lambda url: DatabaseURL(url).scheme),
]

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"
COUNT = "SELECT COUNT(*) FROM notes"
_LONG_SLEEP = "SELECT SLEEP(30)"


def with_options(url: str, **options: str) -> str:
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **options}))


@pytest.fixture
async def notes(url: str) -> AsyncIterator[str]:
    """An empty ``notes`` table in this URL's database; yields the URL."""
    await drop_table(url, "notes")
    async with helper_database(url) as db:
        await db.execute(notes_ddl(url))
    yield url
    await drop_table(url, "notes")


async def texts(db: Any) -> list[str]:
    return [row["text"] for row in await db.fetch_all("SELECT text FROM notes ORDER BY id")]


async def committed(url: str) -> list[str]:
    async with helper_database(url) as other:
        return await texts(other)


#: The monitors' own connections: one that has quit may still be listed by the
#: server for a moment (under load), and must not count as the library's.
_MONITORS: set[int] = set()


async def server_connections(url: str) -> set[int]:
    """Ids of the server connections that use this URL's (private) database."""
    async with helper_database(url) as monitor:
        _MONITORS.add(int(await monitor.fetch_val("SELECT CONNECTION_ID()")))
        rows = await monitor.fetch_all(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db",
            {"db": DatabaseURL(url).database},
        )
    return {int(row[0]) for row in rows} - _MONITORS


async def server_sleepers(url: str, info: str = _LONG_SLEEP) -> int:
    """How many connections run the long sleep (or ``info``) on the server right now."""
    async with helper_database(url) as monitor:
        count: int = await monitor.fetch_val(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = :db AND COMMAND = 'Query' AND INFO = :info",
            {"db": DatabaseURL(url).database, "info": info},
        )
    return count


# --- options -------------------------------------------------------------------------------


async def test_min_size_opens_connections_at_connect(url: str) -> None:
    before = await server_connections(url)
    db = Database(url, min_size=3, max_size=5)
    async with db:
        opened = await server_connections(url) - before
        assert len(opened) == 3
        assert await db.fetch_val("SELECT CONNECTION_ID()") in opened
    await until(set(), lambda: server_connections_since(url, before))


async def server_connections_since(url: str, before: set[int]) -> set[int]:
    return await server_connections(url) - before


@pytest.mark.parametrize("in_url", [False, True], ids=["keyword", "url"])
async def test_max_size_bounds_the_connections_held_at_once(url: str, in_url: bool) -> None:
    options = {"min_size": "0", "max_size": "2", "acquire_timeout": "0.5"}
    db = Database(with_options(url, **options)) if in_url else Database(url, **options)
    async with db:
        assert len(await distinct_connections_at_once(db, 2, "SELECT CONNECTION_ID()")) == 2
        held = asyncio.Barrier(3)
        release = asyncio.Event()

        async def hold() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                await held.wait()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await held.wait()
        with pytest.raises(PoolTimeoutError, match="max_size=2"):
            await db.fetch_val("SELECT 1")
        release.set()
        await asyncio.gather(*holders)
        assert await db.fetch_val("SELECT 2") == 2


@pytest.mark.parametrize("in_url", [False, True], ids=["keyword", "url"])
async def test_pool_recycle_replaces_old_connections(url: str, in_url: bool) -> None:
    options = {"min_size": "1", "max_size": "1", "pool_recycle": "0.5"}
    db = Database(with_options(url, **options)) if in_url else Database(url, **options)
    async with db:
        first = await db.fetch_val("SELECT CONNECTION_ID()")
        assert await db.fetch_val("SELECT CONNECTION_ID()") == first  # young: reused
        await asyncio.sleep(0.7)
        second = await db.fetch_val("SELECT CONNECTION_ID()")
        assert second != first
        assert await db.fetch_val("SELECT CONNECTION_ID()") == second
    # The old connection was closed, not just forgotten.
    await until(False, lambda: server_has(url, first))


async def server_has(url: str, connection_id: int) -> bool:
    return connection_id in await server_connections(url)


async def test_without_pool_recycle_the_connection_is_kept(url: str) -> None:
    async with Database(url, min_size=1, max_size=1) as db:
        first = await db.fetch_val("SELECT CONNECTION_ID()")
        await asyncio.sleep(0.7)
        assert await db.fetch_val("SELECT CONNECTION_ID()") == first


@pytest.mark.parametrize(
    "make",
    [lambda url: Database(url, ssl=False), lambda url: Database(with_options(url, ssl="false"))],
)
async def test_ssl_false_connects_without_tls(url: str, make: Callable[[str], Database]) -> None:
    async with make(url) as db:
        row = await db.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert row is not None
        assert row[1] == ""


async def test_ssl_true_never_falls_back_to_plain_text(url: str) -> None:
    async with helper_database(url) as db:
        have_ssl = await db.fetch_val("SELECT @@have_ssl")
    if have_ssl == "YES":
        async with Database(url, ssl=True) as db:
            row = await db.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert row is not None
            assert row[1] != ""
    else:
        # TLS was asked for and the server has none: connecting must fail, not
        # carry on unencrypted.
        with pytest.raises(Exception):  # noqa: B017, PT011 (the driver's own error)
            async with Database(url, ssl=True) as db:
                await db.fetch_val("SELECT 1")


async def test_unix_socket(url: str) -> None:
    async with helper_database(url) as tcp:
        socket_path = await tcp.fetch_val("SELECT @@socket")
        tcp_host = await tcp.fetch_val(
            "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
        )
    assert not tcp_host.startswith("localhost")
    query = "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
    # On a Unix socket the server sees the client as plain "localhost" (no port).
    async with Database(url, unix_socket=socket_path) as db:
        assert await db.fetch_val(query) == "localhost"
    async with Database(with_options(url, unix_socket=socket_path)) as db:
        assert await db.fetch_val(query) == "localhost"


@pytest.mark.parametrize("in_url", [False, True], ids=["keyword", "url"])
async def test_charset_utf8mb4_round_trips_emoji(url: str, notes: str, in_url: bool) -> None:
    emoji = "naïve 😀🎉 𝄞"
    db = (
        Database(with_options(url, charset="utf8mb4"))
        if in_url
        else Database(url, charset="utf8mb4")
    )
    async with db:
        assert await db.fetch_val("SELECT @@character_set_client") == "utf8mb4"
        await db.execute("ALTER TABLE notes CONVERT TO CHARACTER SET utf8mb4")
        await db.execute(INSERT, {"text": emoji, "completed": True})
        assert await db.fetch_val("SELECT text FROM notes") == emoji
        assert await db.fetch_val("SELECT :s", {"s": emoji}) == emoji
        assert await db.fetch_val("SELECT COUNT(*) FROM notes WHERE text = :s", {"s": emoji}) == 1


@pytest.mark.parametrize(
    "option", ["frobnicate", "server_settings", "statement_cache_size", "pragma", "isolation"]
)
def test_unknown_options_are_rejected(url: str, option: str) -> None:
    with pytest.raises(UnknownOptionError, match=option):
        Database(url, **{option: "1"})
    with pytest.raises(UnknownOptionError, match=option):
        Database(with_options(url, **{option: "1"}))


@pytest.mark.parametrize(
    "options",
    [
        {"ssl": "maybe"},
        {"connect_timeout": "soon"},
        {"pool_recycle": "-1"},
        {"command_timeout": "soon"},
        {"command_timeout": "0"},
    ],
    ids=repr,
)
def test_bad_option_values_are_rejected(url: str, options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Database(url, **options)
    with pytest.raises(ConfigurationError):
        Database(with_options(url, **options))


@pytest.mark.parametrize("scheme", ["mysql", "mysql+asyncmy", "mysql+aiomysql"])
async def test_scheme_aliases(url: str, scheme: str) -> None:
    async with Database(DatabaseURL(url).replace(scheme=scheme)) as db:
        assert await db.fetch_val("SELECT 1") == 1


# --- which driver each scheme uses ---------------------------------------------------------

# As in databases, plain mysql:// is aiomysql; asyncmy is asked for by name.
_DRIVER_OF_SCHEME = {
    "mysql": (aiomysql.Connection, pymysql.err.IntegrityError),
    "mysql+aiomysql": (aiomysql.Connection, pymysql.err.IntegrityError),
    "mysql+asyncmy": (asyncmy.Connection, asyncmy.errors.IntegrityError),
}


@pytest.mark.parametrize("scheme", list(_DRIVER_OF_SCHEME))
async def test_each_scheme_hands_out_its_drivers_connection(url: str, scheme: str) -> None:
    connection_type, _ = _DRIVER_OF_SCHEME[scheme]
    async with Database(DatabaseURL(url).replace(scheme=scheme)) as db, db.connection() as c:
        assert type(c.raw_connection) is connection_type


@pytest.mark.parametrize("scheme", list(_DRIVER_OF_SCHEME))
async def test_a_duplicate_key_raises_the_drivers_own_integrity_error(
    notes: str, scheme: str
) -> None:
    # Client code written for databases catches pymysql.err.IntegrityError on
    # mysql://: it must be that very class, not wrapped and not asyncmy's.
    _, error_type = _DRIVER_OF_SCHEME[scheme]
    async with Database(DatabaseURL(notes).replace(scheme=scheme)) as db:
        await db.execute("INSERT INTO notes (id, text) VALUES (1, 'a')")
        with pytest.raises(error_type) as info:
            await db.execute("INSERT INTO notes (id, text) VALUES (1, 'b')")
        assert await texts(db) == ["a"]  # the connection is still usable
    assert type(info.value) is error_type
    assert info.value.args[0] == 1062  # ER_DUP_ENTRY


# --- statements ----------------------------------------------------------------------------


async def test_execute_returns_lastrowid(notes: str) -> None:
    async with Database(notes) as db:
        assert await db.execute(INSERT, {"text": "a", "completed": True}) == 1
        assert await db.execute(INSERT, {"text": "b", "completed": False}) == 2
        explicit = "INSERT INTO notes (id, text) VALUES (:id, :text)"
        assert await db.execute(explicit, {"id": 40, "text": "c"}) == 40
        assert await db.execute(INSERT, {"text": "d", "completed": False}) == 41
        async with db.connection() as connection:  # the same on a held connection
            assert await connection.execute(INSERT, {"text": "e", "completed": True}) == 42
        assert await texts(db) == ["a", "b", "c", "d", "e"]


async def test_execute_returns_what_databases_returns(notes: str) -> None:
    # databases (aiomysql) returns lastrowid, or the affected row count where
    # lastrowid is 0 (UPDATE, DELETE, an INSERT with no AUTO_INCREMENT), and
    # None for a statement that returns rows. The same on both drivers.
    await drop_table(notes, "codes")
    async with Database(notes) as db:
        try:
            assert await db.execute("CREATE TABLE codes (code VARCHAR(10) PRIMARY KEY)") == 0
            await db.execute_many(INSERT, [{"text": t, "completed": False} for t in "abc"])
            assert await db.execute(INSERT, {"text": "d", "completed": True}) == 4
            update = "UPDATE notes SET completed = :c"
            assert await db.execute(update, {"c": True}) == 3
            assert await db.execute(update, {"c": True}) == 0  # matched 3, changed none
            assert await db.execute("UPDATE notes SET text = 'x' WHERE id = 99") == 0
            assert await db.execute("DELETE FROM notes WHERE id <= 2") == 2
            assert await db.execute("DELETE FROM notes WHERE id <= 2") == 0
            assert await db.execute("INSERT INTO codes VALUES (:c)", {"c": "a"}) == 1
            assert await db.execute("INSERT INTO codes VALUES ('b'), ('c')") == 2
            upsert = "INSERT INTO codes VALUES ('a') ON DUPLICATE KEY UPDATE code = 'z'"
            assert await db.execute(upsert) == 2  # MySQL counts an updated duplicate twice
            assert await db.execute("SELECT 1") is None
            async with db.connection() as connection:  # the same on a held connection
                assert await connection.execute("DELETE FROM codes") == 3
        finally:
            await drop_table(notes, "codes")


async def test_execute_many_is_one_batch_and_inserts_every_row(notes: str) -> None:
    values = [{"text": f"n{i}", "completed": i % 3 == 0} for i in range(200)]
    async with Database(notes) as db, db.connection() as connection:

        async def com_insert() -> int:
            row = await connection.fetch_one("SHOW SESSION STATUS LIKE 'Com_insert'")
            assert row is not None
            return int(row[1])

        before = await com_insert()
        await connection.execute_many(INSERT, values)
        # The drivers send INSERT ... VALUES as one multi-row statement.
        assert await com_insert() - before == 1
        rows = await connection.fetch_all("SELECT text, completed FROM notes ORDER BY id")
    assert [(row["text"], row["completed"]) for row in rows] == [
        (v["text"], v["completed"]) for v in values
    ]


async def test_percent_literals_with_and_without_parameters(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute_many(
            INSERT, [{"text": t, "completed": True} for t in ("abc", "xa", "100%")]
        )
        assert await db.fetch_val("SELECT COUNT(*) FROM notes WHERE text LIKE 'a%'") == 1
        assert (
            await db.fetch_val(
                "SELECT COUNT(*) FROM notes WHERE text LIKE 'a%' AND completed = :c", {"c": True}
            )
            == 1
        )
        assert await db.fetch_val("SELECT text FROM notes WHERE text LIKE '%\\%'") == "100%"
        assert await db.fetch_val("SELECT DATE_FORMAT('2024-05-06', '%Y')") == "2024"
        assert (
            await db.fetch_val("SELECT DATE_FORMAT(:d, '%Y-%m')", {"d": "2024-05-06"}) == "2024-05"
        )
        assert await db.fetch_val("SELECT '100%'") == "100%"
        assert await db.fetch_val("SELECT CONCAT(:v, '%%s')", {"v": "x"}) == "x%%s"
        await db.execute("UPDATE notes SET text = CONCAT(text, '%') WHERE text LIKE 'x%'")
        await db.execute(
            "UPDATE notes SET text = CONCAT(text, '%s') WHERE text LIKE :p", {"p": "abc%"}
        )
        await db.execute_many(
            "INSERT INTO notes (text) VALUES (CONCAT(:t, '%'))", [{"t": "y"}, {"t": "z"}]
        )
        assert sorted(await texts(db)) == ["100%", "abc%s", "xa%", "y%", "z%"]


async def test_gather_of_50_queries_on_one_database(notes: str) -> None:
    async with Database(notes) as db:
        values = await asyncio.gather(
            *(db.fetch_val("SELECT :i + SLEEP(0.01)", {"i": i}) for i in range(50))
        )
        assert values == list(range(50))
        await asyncio.gather(
            *(db.execute(INSERT, {"text": str(i), "completed": False}) for i in range(50))
        )
        assert sorted(await texts(db), key=int) == [str(i) for i in range(50)]


# --- force_rollback ------------------------------------------------------------------------


class LoopInThread:
    """An event loop running in a thread of its own (an app server's, a TestClient's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def test_force_rollback_across_two_loops_and_threads(notes: str) -> None:
    db = Database(notes, force_rollback=True)
    other = LoopInThread()
    try:
        async with db:
            await db.execute(INSERT, {"text": "test loop", "completed": False})
            # Blocking call from the test loop (a synchronous TestClient request).
            other.run(db.execute(INSERT, {"text": "thread loop", "completed": True}))
            assert other.run(texts(db)) == ["test loop", "thread loop"]

            # Both loops at the same time, gathered on each side.
            async def in_thread() -> None:
                await asyncio.gather(
                    *(db.execute(INSERT, {"text": f"t{i}", "completed": True}) for i in range(5))
                )

            future = asyncio.run_coroutine_threadsafe(in_thread(), other.loop)
            await asyncio.gather(
                *(db.execute(INSERT, {"text": f"m{i}", "completed": False}) for i in range(5))
            )
            await asyncio.wrap_future(future)
            seen = await texts(db)
            assert sorted(seen) == sorted(
                ["test loop", "thread loop"]
                + [f"t{i}" for i in range(5)]
                + [f"m{i}" for i in range(5)]
            )
            assert await committed(notes) == []
    finally:
        other.close()
    assert await committed(notes) == []


async def test_concurrent_transactions_on_the_shared_connection_keep_their_outcome(
    notes: str,
) -> None:
    class Boom(Exception):
        pass

    async with Database(notes, force_rollback=True, acquire_timeout=10) as db:

        async def work(i: int) -> None:
            async with db.transaction():
                await db.execute(INSERT, {"text": str(i), "completed": False})
                await asyncio.sleep(0.01)  # let the others queue up
                await db.execute(INSERT, {"text": f"{i}b", "completed": False})
                if i % 2:
                    raise Boom(i)

        results = await asyncio.gather(*(work(i) for i in range(10)), return_exceptions=True)
        assert [isinstance(r, Boom) for r in results] == [i % 2 == 1 for i in range(10)]
        expected = sorted(t for i in range(0, 10, 2) for t in (str(i), f"{i}b"))
        assert sorted(await texts(db)) == expected
        async with db.transaction(force_rollback=True):
            await db.execute(INSERT, {"text": "gone", "completed": False})
        assert sorted(await texts(db)) == expected
        assert await committed(notes) == []
    assert await committed(notes) == []


# --- command_timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("in_url", [False, True], ids=["keyword", "in-url"])
@pytest.mark.parametrize("inside_block", [False, True], ids=["bare", "in-connection-block"])
async def test_command_timeout_stops_a_slow_statement_and_ends_its_session(
    url: str, in_url: bool, inside_block: bool
) -> None:
    # The drivers have no statement timeout: ours closes the connection at
    # the deadline and ends its session on the server (KILL CONNECTION).
    if in_url:
        db = Database(with_options(url, command_timeout="0.5"), max_size=1)
    else:
        db = Database(url, command_timeout=0.5, max_size=1)
    async with db:
        session = int(await db.fetch_val("SELECT CONNECTION_ID()"))  # the pool's only one

        async def slow() -> Any:
            if inside_block:
                async with db.connection() as connection:
                    return await connection.fetch_val(_LONG_SLEEP)
            return await db.fetch_val(_LONG_SLEEP)

        with pytest.raises(CommandTimeoutError, match=r"within 0\.5s.*'command_timeout'"):
            await asyncio.wait_for(slow(), 30)
        assert db.pool_stats().closed == 1  # the connection it ran on is discarded

        async def still_there() -> bool:
            return session in await server_connections(url)

        await until(False, still_there)  # its statement is not left running on the server
        assert await db.fetch_val("SELECT 1") == 1


async def test_command_timeout_bounds_each_batch_of_an_iteration(url: str) -> None:
    async with Database(url, command_timeout=0.5) as db:
        with pytest.raises(CommandTimeoutError):
            async for _ in db.iterate("SELECT 1 UNION ALL SELECT SLEEP(30)"):
                pass
        await until(0, lambda: server_sleepers(url, "SELECT 1 UNION ALL SELECT SLEEP(30)"))
        assert await db.fetch_val("SELECT 1") == 1


async def test_a_statement_within_command_timeout_is_untouched(url: str) -> None:
    async with Database(url, command_timeout=5, max_size=1) as db:
        async with db.connection() as connection:
            first = await connection.fetch_val("SELECT CONNECTION_ID()")
            assert await connection.fetch_val("SELECT SLEEP(0.2)") == 0
            assert await connection.fetch_val("SELECT CONNECTION_ID()") == first
        assert db.pool_stats().closed == 0


# --- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("inside_block", [False, True], ids=["bare", "in-connection-block"])
async def test_cancel_mid_query_kills_it_on_the_server_and_keeps_the_pool_full(
    url: str, inside_block: bool
) -> None:
    async with Database(url, min_size=0, max_size=3, acquire_timeout=10) as db:

        async def sleeper() -> Any:
            if inside_block:
                async with db.connection() as connection:
                    return await connection.fetch_val(_LONG_SLEEP)
            return await db.fetch_val(_LONG_SLEEP)

        tasks = [asyncio.create_task(sleeper()) for _ in range(3)]
        await until(3, lambda: server_sleepers(url))
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task
        await until(0, lambda: server_sleepers(url))
        # Full strength: max_size connections usable at the same time.
        assert len(await distinct_connections_at_once(db, 3, "SELECT CONNECTION_ID()")) == 3
        assert await db.fetch_val("SELECT 1") == 1


async def test_cancelled_bare_write_does_not_happen_and_the_next_answer_is_its_own(
    notes: str,
) -> None:
    # One pooled connection: whatever serves the next statements must not be
    # the one whose reply was half read when the write was cancelled.
    async with Database(notes, min_size=1, max_size=1, acquire_timeout=10) as db:
        await db.execute(INSERT, {"text": "kept", "completed": False})
        slow_update = f"UPDATE notes SET text = 'changed' WHERE ({_LONG_SLEEP}) = 0"
        task = asyncio.create_task(db.execute(slow_update))
        await until(1, lambda: server_sleepers(notes, slow_update))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [await db.fetch_val("SELECT :n", {"n": n}) for n in range(5)] == list(range(5))
        await until(0, lambda: server_sleepers(notes, slow_update))
        assert await texts(db) == ["kept"]
        assert await committed(notes) == ["kept"]


async def test_cancel_mid_query_on_the_force_rollback_connection(notes: str) -> None:
    async with Database(notes, force_rollback=True, acquire_timeout=10) as db:
        await db.execute(INSERT, {"text": "before", "completed": False})
        task = asyncio.create_task(db.fetch_val(_LONG_SLEEP))
        await until(1, lambda: server_sleepers(notes))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(0, lambda: server_sleepers(notes))
        await db.execute(INSERT, {"text": "after", "completed": False})
        assert await texts(db) == ["before", "after"]
    assert await committed(notes) == []


async def test_a_statement_cancelled_as_it_ends_cannot_stop_the_next_one(notes: str) -> None:
    # Regression: the KILL QUERY sent for the cancelled statement (which
    # needs a new connection first) could arrive after that statement had
    # ended on its own, and stop the next statement on the connection:
    # another task's write, which was not cancelled.
    async with Database(notes) as db:
        for _ in range(10):
            async with db.connection() as connection:
                ending = asyncio.create_task(connection.fetch_val("SELECT SLEEP(0.2)"))
                await asyncio.sleep(0.2)
                ending.cancel()
                write = asyncio.create_task(
                    connection.execute(
                        "INSERT INTO notes (text) SELECT CONCAT('w', SLEEP(0.2))"
                    )
                )
                await asyncio.gather(ending, return_exceptions=True)
                await write
        assert await db.fetch_val(COUNT) == 10


def _asyncio_run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def _runner_with_a_loop_factory(main: Callable[[], Awaitable[None]]) -> None:
    # As uvloop.run() and asyncio.run(loop_factory=...) run: no "current" loop.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(main())  # type: ignore[arg-type]


@pytest.mark.parametrize("run", [_asyncio_run, _runner_with_a_loop_factory])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["block", "transaction"])
def test_a_loop_that_ends_while_a_statement_is_killed_ends_at_once(
    url: str,
    run: Callable[[Callable[[], Awaitable[None]]], None],
    in_transaction: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: asyncio.run's shutdown cancelled the task sending KILL
    # QUERY, so the statement ran to its own end (here 60 s) before the loop
    # could close, and its "interrupted" error was reported as unhandled;
    # with a loop factory the KILL task was made for no loop at all.
    async def main() -> None:
        db = Database(url)
        await db.connect()

        async def sleeper() -> None:
            async with db.connection() as connection:
                if in_transaction:
                    async with connection.transaction():
                        await connection.fetch_val("SELECT SLEEP(60)")
                else:
                    await connection.fetch_val("SELECT SLEEP(60)")

        task = asyncio.create_task(sleeper())
        await until(1, lambda: server_sleepers(url, "SELECT SLEEP(60)"))
        if not in_transaction:
            task.cancel()  # cancelled, or (below) left running: the loop's end cancels it

    outcome: list[BaseException | None] = []

    def thread() -> None:
        try:
            run(main)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    caplog.set_level(logging.ERROR, logger="asyncio")
    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    worker.join(30)
    assert outcome == [None], "the loop did not end at once, or ended with an error"
    assert asyncio.run(server_sleepers(url, "SELECT SLEEP(60)")) == 0
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


async def test_an_iteration_cancelled_as_its_cursor_opens_leaves_the_connection_usable(
    url: str,
) -> None:
    # Regression: the opened cursor (an unbuffered result, its socket paused)
    # was lost to the cancellation; the shared connection's next statement
    # then waited for ever.
    rows = (
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000) "
        "SELECT i, REPEAT('x', 100) FROM c"
    )

    async def consume(db: Database) -> None:
        async for _ in db.iterate(rows):
            await asyncio.sleep(10)

    async with Database(url, force_rollback=True, acquire_timeout=20) as db:
        for attempt in range(24):
            task = asyncio.create_task(consume(db))
            for _ in range(attempt % 8):
                await asyncio.sleep(0)
            if attempt >= 8:
                await asyncio.sleep(0.0005 * (attempt - 8))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await asyncio.wait_for(db.fetch_val("SELECT :n", {"n": attempt}), 10) == attempt


# --- iterate -------------------------------------------------------------------------------


async def test_iterate_streams_with_bounded_memory(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction():
            await db.execute_many(
                "INSERT INTO notes (text) VALUES (:text)",
                [{"text": "x" * 90} for _ in range(20_000)],
            )

        async def peak_of(read: Callable[[], Awaitable[int]]) -> int:
            gc.collect()
            tracemalloc.start()
            try:
                assert await read() == 20_000
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        async def iterate() -> int:
            count = 0
            async for _ in db.iterate("SELECT id, text FROM notes"):
                count += 1
            return count

        async def fetch_all() -> int:
            return len(await db.fetch_all("SELECT id, text FROM notes"))

        streamed, everything = await peak_of(iterate), await peak_of(fetch_all)
        assert streamed < everything / 4, (streamed, everything)


async def test_statement_on_the_iterating_connection_fails_at_once(notes: str) -> None:
    async with Database(notes, acquire_timeout=10) as db:
        await db.execute_many(INSERT, [{"text": str(i), "completed": False} for i in range(600)])
        async with db.connection() as connection:
            seen = 0
            async for _ in connection.iterate("SELECT id FROM notes"):
                seen += 1
                if seen in (1, 550):  # in the first batch and in a later one
                    # wait_for: a hang would be a failure here, not a stuck suite.
                    with pytest.raises(InterleaveError, match="iterate"):
                        await asyncio.wait_for(connection.fetch_val("SELECT 1"), 5)
            assert seen == 600
            assert await connection.fetch_val(COUNT) == 600


async def test_query_on_another_connection_inside_iterate_works(notes: str) -> None:
    async with Database(notes, acquire_timeout=10) as db:
        await db.execute_many(INSERT, [{"text": str(i), "completed": False} for i in range(600)])
        total = 0
        async for row in db.iterate("SELECT id, text FROM notes ORDER BY id"):
            text = await db.fetch_val("SELECT text FROM notes WHERE id = :id", {"id": row["id"]})
            assert text == row["text"]
            total += 1
        assert total == 600


async def test_interleave_error_inside_a_transaction_leaves_nothing_open(notes: str) -> None:
    """The error propagates out of ``async for``; the transaction still ends
    (rolled back), its connection goes back clean and holds no lock on the table."""
    async with Database(notes, acquire_timeout=3) as db:
        await db.execute_many(INSERT, [{"text": str(i), "completed": False} for i in range(10)])
        with pytest.raises(InterleaveError):  # noqa: PT012
            async with db.transaction():
                await db.execute(INSERT, {"text": "rolled back", "completed": False})
                async for row in db.iterate("SELECT id FROM notes"):
                    await db.execute(
                        "UPDATE notes SET completed = 1 WHERE id = :id", {"id": row[0]}
                    )
        assert await db.fetch_val(COUNT) == 10
    # Nothing of that transaction may still hold the table (a metadata lock).
    async with Database(notes, init_command="SET SESSION lock_wait_timeout=3") as other:
        await other.execute("ALTER TABLE notes ADD COLUMN extra INTEGER")
        assert await other.fetch_val(COUNT) == 10


# --- DDL: implicit commit ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE scratch (x INTEGER)",
        "/* leading comment */ ALTER TABLE notes ADD COLUMN extra INTEGER",
        "TRUNCATE TABLE notes",
    ],
    ids=["create", "alter-after-comment", "truncate"],
)
async def test_ddl_inside_force_rollback_warns_about_the_implicit_commit(
    notes: str, ddl: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database(notes, force_rollback=True) as db:
        await db.execute(INSERT, {"text": "before the DDL", "completed": False})
        with caplog.at_level(logging.WARNING, logger="aiodatabases"):
            await db.execute(ddl)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert "implicit" in message
        assert "commit" in message
        assert ddl[:30] in message
        caplog.clear()
        # From here on the library keeps isolating: a later write is rolled back.
        await db.execute(INSERT, {"text": "after the DDL", "completed": False})
    expected = [] if ddl.startswith("TRUNCATE") else ["before the DDL"]
    assert await committed(notes) == expected  # the DDL committed what ran before it
    await drop_table(notes, "scratch")


async def test_ddl_inside_a_nested_transaction_ends_it_cleanly(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The DDL's implicit commit also dropped the savepoint of the inner transaction:
    ending it must not fail with the driver's "SAVEPOINT ... does not exist"."""
    async with Database(notes, force_rollback=True) as db:
        raised: Exception | None = None
        try:
            async with db.transaction():
                await db.execute(INSERT, {"text": "inner", "completed": False})
                with caplog.at_level(logging.WARNING, logger="aiodatabases"):
                    await db.execute("CREATE TABLE scratch (x INTEGER)")
        except Exception as exc:
            raised = exc
        # An error is acceptable only as the library's own, saying what happened.
        assert raised is None or isinstance(raised, AiodatabasesError), repr(raised)
        assert any("implicit" in r.getMessage() for r in caplog.records)
        await db.execute(INSERT, {"text": "after", "completed": False})
        assert await db.fetch_val("SELECT 1") == 1
    assert await committed(notes) == ["inner"]  # committed by the DDL; "after" rolled back
    await drop_table(notes, "scratch")


async def test_dml_and_temporary_tables_inside_force_rollback_do_not_warn(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiodatabases"):
        async with Database(notes, force_rollback=True) as db:
            await db.execute("CREATE TEMPORARY TABLE scratch (x INTEGER)")
            await db.execute("INSERT INTO scratch VALUES (1)")
            await db.execute(INSERT, {"text": "a", "completed": False})
            await db.execute("UPDATE notes SET text = 'created' WHERE text = 'a'")
            await db.execute("DROP TEMPORARY TABLE scratch")
            assert await texts(db) == ["created"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await committed(notes) == []


# --- transactions --------------------------------------------------------------------------


async def repeated_read_sees_a_new_commit(db: Database, other: Database) -> bool:
    """Inside ``db``'s transaction: does a second read see another connection's commit?"""
    before = await db.fetch_val(COUNT)
    await other.execute(INSERT, {"text": "other", "completed": False})
    return bool(await db.fetch_val(COUNT) > before)


# MySQL's SET TRANSACTION applies to the next transaction only, and neither
# @@transaction_isolation nor (MariaDB) @@tx_isolation shows that one-shot level:
# the level is observed by its behaviour instead.
@pytest.mark.parametrize(
    ("isolation", "sees_commit"),
    [
        ("read_committed", True),
        ("READ COMMITTED", True),
        ("repeatable_read", False),
        (None, False),  # the server default, REPEATABLE READ
        ("read_uncommitted", True),
    ],
)
async def test_isolation_levels(notes: str, isolation: str | None, sees_commit: bool) -> None:
    options = {} if isolation is None else {"isolation": isolation}
    async with Database(notes, max_size=1) as db, helper_database(notes) as other:
        async with db.transaction(**options):
            assert await repeated_read_sees_a_new_commit(db, other) is sees_commit
        # One-shot: the next transaction on the same connection is back at the default.
        async with db.transaction():
            assert await repeated_read_sees_a_new_commit(db, other) is False


async def test_read_uncommitted_sees_uncommitted_writes(notes: str) -> None:
    async with Database(notes) as db, Database(notes) as writer, writer.transaction():
        await writer.execute(INSERT, {"text": "uncommitted", "completed": False})
        async with db.transaction(isolation="read_uncommitted"):
            assert await db.fetch_val(COUNT) == 1
        async with db.transaction(isolation="read_committed"):
            assert await db.fetch_val(COUNT) == 0


async def test_serializable_reads_take_shared_locks(notes: str) -> None:
    async with (
        Database(notes) as db,
        Database(notes, init_command="SET SESSION innodb_lock_wait_timeout=1") as other,
    ):
        await db.execute(INSERT, {"text": "a", "completed": False})
        async with db.transaction(isolation="serializable"):
            assert await db.fetch_val(COUNT) == 1
            with pytest.raises(Exception, match="Lock wait timeout") as info:
                await other.execute("UPDATE notes SET text = 'b'")
            assert info.value.args[0] == 1205
        await other.execute("UPDATE notes SET text = 'b'")  # the lock went with the transaction


async def test_readonly_transaction_rejects_writes(notes: str) -> None:
    async with Database(notes, max_size=1) as db:
        with pytest.raises(Exception, match="READ ONLY") as info:  # noqa: PT012
            async with db.transaction(readonly=True):
                assert await db.fetch_val(COUNT) == 0
                await db.execute(INSERT, {"text": "a", "completed": False})
        assert info.value.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        await db.execute(INSERT, {"text": "b", "completed": False})
        assert await texts(db) == ["b"]


def test_unknown_isolation_level_is_rejected(url: str) -> None:
    db = Database(url)
    with pytest.raises(ConfigurationError, match="snapshot"):
        db.transaction(isolation="snapshot")
    with pytest.raises(ConfigurationError, match="deferrable"):
        db.transaction(deferrable=True)


async def test_a_mysql_time_outside_one_day_stays_a_timedelta(url: str) -> None:
    # MySQL TIME is a duration (-838:59:59 to 838:59:59): only values within one
    # day can be a datetime.time; the others keep the drivers' timedelta.
    async with Database(url) as db:
        row = await db.fetch_one(
            "SELECT CAST('25:00:00' AS TIME) AS late, CAST('-01:30:00' AS TIME) AS negative,"
            " CAST('23:59:59' AS TIME) AS last"
        )
    assert row is not None
    assert row["late"] == datetime.timedelta(hours=25)
    assert row["negative"] == -datetime.timedelta(hours=1, minutes=30)
    assert row["last"] == datetime.time(23, 59, 59)
