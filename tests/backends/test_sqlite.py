"""SQLite (aiosqlite): pooling, options, ``:memory:``, concurrency, savepoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite
import pytest
from conftest import dialect_of, urls_for

from aiodatabases import ConfigurationError, Database, UnknownOptionError

pytestmark = pytest.mark.skipif(not urls_for("sqlite"), reason="no SQLite URL configured")


def file_url(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


async def make_table(url: str) -> None:
    async with Database(url) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")


# --- the pool ------------------------------------------------------------------------


@pytest.mark.parametrize("url", urls_for("sqlite"), ids=dialect_of)
async def test_pooled_connection_is_reused(url: str) -> None:
    async with Database(url, max_size=1) as db:
        await db.execute("CREATE TEMP TABLE scratch (x INTEGER)")
        await db.execute("INSERT INTO scratch VALUES (1)")
        assert await db.fetch_val("SELECT COUNT(*) FROM scratch") == 1
        await db.execute("DROP TABLE scratch")


async def test_pragmas_from_the_url_apply_to_every_pooled_connection(tmp_path: Path) -> None:
    url = file_url(tmp_path / "pragmas.db", "foreign_keys=true&journal_mode=wal")
    async with Database(url, max_size=3) as db:

        async def held() -> tuple[int, Any, Any]:
            async with db.connection() as connection:
                await asyncio.sleep(0.01)  # keep it while the others take theirs
                return (
                    id(connection.raw_connection),
                    await connection.fetch_val("PRAGMA foreign_keys"),
                    await connection.fetch_val("PRAGMA journal_mode"),
                )

        results = await asyncio.gather(*(held() for _ in range(12)))
        assert len({raw for raw, _, _ in results}) == 3
        assert {(fk, mode) for _, fk, mode in results} == {(1, "wal")}
        bare = await asyncio.gather(*(db.fetch_val("PRAGMA foreign_keys") for _ in range(20)))
        assert bare == [1] * 20

        await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await db.execute("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id))")

        async def orphan() -> None:
            await db.execute("INSERT INTO child VALUES (42)")

        outcomes = await asyncio.gather(*(orphan() for _ in range(6)), return_exceptions=True)
        assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes)


async def test_pragma_option_as_keyword(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "kw.db"), foreign_keys=True, cache_size=-4000) as db:
        assert await db.fetch_val("PRAGMA foreign_keys") == 1
        assert await db.fetch_val("PRAGMA cache_size") == -4000


# --- sqlite3.connect options -----------------------------------------------------------


async def test_timeout_option_sets_the_busy_timeout(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "a.db", "timeout=0.25")) as db:
        assert await db.fetch_val("PRAGMA busy_timeout") == 250
    async with Database(file_url(tmp_path / "a.db"), timeout=1.5) as db:
        assert await db.fetch_val("PRAGMA busy_timeout") == 1500


async def test_uri_option_opens_a_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "uri.db"
    with sqlite3.connect(path) as plain:
        plain.execute("CREATE TABLE t (x INTEGER)")
        plain.execute("INSERT INTO t VALUES (7)")
    plain.close()
    async with Database(f"sqlite:///file:{path}?uri=true") as db:
        assert await db.fetch_val("SELECT x FROM t") == 7
    async with Database(f"sqlite:///file:{path}%3Fmode%3Dro?uri=true") as db:
        assert await db.fetch_val("SELECT x FROM t") == 7
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.execute("INSERT INTO t VALUES (8)")


async def test_check_same_thread_option_is_accepted(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "c.db", "check_same_thread=false")) as db:
        assert await db.fetch_val("SELECT 1") == 1
    async with Database(file_url(tmp_path / "c.db"), check_same_thread=False) as db:
        assert await db.fetch_val("SELECT 1") == 1


class AnsweringConnection(sqlite3.Connection):
    """A connection factory whose connections know one extra SQL function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.create_function("answer", 0, lambda: 42)


async def test_factory_option_is_used_for_every_connection(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "f.db"), factory=AnsweringConnection, max_size=2) as db:

        async def ask() -> Any:
            async with db.connection() as connection:
                await asyncio.sleep(0.01)
                return await connection.fetch_val("SELECT answer()")

        assert await asyncio.gather(*(ask() for _ in range(4))) == [42] * 4


@pytest.mark.parametrize("url", urls_for("sqlite"), ids=dialect_of)
@pytest.mark.parametrize(
    "option", ["foo", "command_timeout", "ssl", "server_settings", "statement_cache_size"]
)
def test_other_options_are_rejected(url: str, option: str) -> None:
    with pytest.raises(UnknownOptionError, match=option):
        Database(url, **{option: "1"})
    with pytest.raises(UnknownOptionError, match=option):
        Database(f"{url}?{option}=1")


@pytest.mark.parametrize("url", urls_for("sqlite"), ids=dialect_of)
@pytest.mark.parametrize(
    "query",
    ["timeout=abc", "uri=maybe", "foreign_keys=maybe", "cache_size=big", "journal_mode=wal;x"],
)
def test_bad_option_values_are_rejected(url: str, query: str) -> None:
    with pytest.raises(ConfigurationError):
        Database(f"{url}?{query}")


def test_pragma_value_cannot_inject_sql(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Database(file_url(tmp_path / "i.db"), journal_mode="wal; DROP TABLE t")


# --- :memory: -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///file:private_tasks?mode=memory",
        "sqlite:///file:shared_tasks?mode=memory&cache=shared",
        "sqlite:///file::memory:?cache=shared",
    ],
)
async def test_memory_database_is_shared_by_all_tasks(url: str) -> None:
    async with Database(url) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        await asyncio.gather(
            *(db.execute("INSERT INTO t VALUES (:x)", {"x": i}) for i in range(20))
        )
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 20

        async def in_transaction(i: int) -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (:x)", {"x": i})

        async def in_connection_block() -> int:
            async with db.connection() as connection:
                value: int = await connection.fetch_val("SELECT COUNT(*) FROM t")
                return value

        await asyncio.gather(*(in_transaction(i) for i in range(20, 30)))
        counts = await asyncio.gather(*(in_connection_block() for _ in range(5)))
        assert counts == [30] * 5
        assert await asyncio.create_task(db.fetch_val("SELECT SUM(x) FROM t")) == sum(range(30))


async def test_memory_databases_are_private_to_their_database() -> None:
    async with Database("sqlite:///:memory:") as first, Database("sqlite:///:memory:") as second:
        await first.execute("CREATE TABLE t (x INTEGER)")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await second.fetch_val("SELECT COUNT(*) FROM t")


# --- file: URIs and SQLite's URI parameters ---------------------------------------------


def shared_memory_url(name: str) -> str:
    # The form databases documents for a named in-memory database in shared cache.
    return f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true"


async def test_two_databases_share_a_named_memory_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named after the URI would land here
    url = shared_memory_url("two_databases")
    async with Database(url) as first, Database(url) as second:
        await first.execute("CREATE TABLE t (x INTEGER)")
        await first.execute("INSERT INTO t VALUES (1)")
        assert await second.fetch_val("SELECT x FROM t") == 1
        await second.execute("INSERT INTO t VALUES (2)")
        assert await first.fetch_val("SELECT SUM(x) FROM t") == 3
    assert names_in(tmp_path) == []


def names_in(directory: Path) -> list[str]:
    return [entry.name for entry in directory.iterdir()]


async def test_a_shared_memory_database_lives_while_a_database_is_connected() -> None:
    # SQLite drops a memory database with its last connection; a pool may
    # hold none for a while (min_size=0, a connection discarded and replaced).
    url = shared_memory_url("kept_alive")
    async with Database(url, min_size=0) as idle:
        async with Database(url) as writer:
            await writer.execute("CREATE TABLE t (x INTEGER)")
            await writer.execute("INSERT INTO t VALUES (1)")
        assert await idle.fetch_val("SELECT x FROM t") == 1
    # Every Database disconnected: nothing keeps it any more.
    async with Database(url) as db:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.fetch_val("SELECT x FROM t")


async def test_a_shared_memory_database_with_force_rollback(tmp_path: Path) -> None:
    url = shared_memory_url("rolled_back")
    async with Database(url) as keeper:
        await keeper.execute("CREATE TABLE t (x INTEGER)")
        async with Database(url, force_rollback=True) as db:
            await db.execute("INSERT INTO t VALUES (1)")
            assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1
        assert await keeper.fetch_val("SELECT COUNT(*) FROM t") == 0


async def test_uri_parameters_of_a_plain_path(tmp_path: Path) -> None:
    path = tmp_path / "with space#and?marks.db"
    with sqlite3.connect(path) as plain:
        plain.execute("CREATE TABLE t (x INTEGER)")
        plain.execute("INSERT INTO t VALUES (7)")
    plain.close()
    # The path becomes a file: URI (quoted), opened with uri=True.
    url = f"sqlite:///{quote(str(path))}"
    for query in ("mode=ro", "immutable=1", "mode=ro&cache=private&nolock=1&psow=0"):
        async with Database(f"{url}?{query}") as db:
            assert await db.fetch_val("SELECT x FROM t") == 7
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await db.execute("INSERT INTO t VALUES (8)")
    async with Database(url, mode="ro") as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.execute("INSERT INTO t VALUES (8)")
    with pytest.raises(sqlite3.OperationalError, match="no such vfs"):
        async with Database(f"{url}?vfs=nonesuch"):
            pass
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        async with Database(f"sqlite:///{tmp_path / 'missing.db'}?mode=rw"):
            pass


def aiosqlite_workers() -> int:
    return sum("_connection_worker_thread" in thread.name for thread in threading.enumerate())


async def test_a_connection_that_fails_to_open_leaves_no_worker_thread(tmp_path: Path) -> None:
    # Its worker answers aiosqlite's stop later, in this loop: it must be done
    # before connect() raises (the loop may close at once).
    before = aiosqlite_workers()
    for _ in range(5):
        with pytest.raises(sqlite3.OperationalError, match="unable to open"):
            async with Database(f"sqlite:///{tmp_path / 'none' / 'x.db'}"):
                pass
        assert aiosqlite_workers() == before


async def test_a_file_uri_opens_as_a_uri_without_the_uri_option(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with sqlite3.connect(path) as plain:
        plain.execute("CREATE TABLE t (x INTEGER)")
    plain.close()
    async with Database(f"sqlite:///file:{path}?mode=ro") as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.execute("INSERT INTO t VALUES (8)")


@pytest.mark.parametrize("query", ["bogus=1", "mode=memory&bogus=1", "vfs=unix&Mode=ro"])
def test_unknown_options_among_uri_parameters_are_rejected(query: str) -> None:
    with pytest.raises(UnknownOptionError, match=r"ogus|Mode"):
        Database(f"sqlite:///file:unknown?{query}")


@pytest.mark.parametrize("query", ["mode=fast", "cache=public", "immutable=maybe", "vfs=a;b"])
def test_bad_uri_parameter_values_are_rejected(query: str) -> None:
    with pytest.raises(ConfigurationError):
        Database(f"sqlite:///file:bad?{query}")


# --- concurrency on a file ----------------------------------------------------------


async def test_concurrent_transactions_on_a_file(tmp_path: Path) -> None:
    url = file_url(tmp_path / "concurrent.db")
    await make_table(url)
    async with Database(url) as db:

        async def insert(i: int) -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (:x)", {"x": i})

        await asyncio.gather(*(insert(i) for i in range(20)))
        rows = await db.fetch_all("SELECT x FROM t ORDER BY x")
        assert [row["x"] for row in rows] == list(range(20))


@pytest.mark.parametrize(
    ("database_options", "transaction_options"),
    [({}, {"isolation": "immediate"}), ({"isolation": "immediate"}, {})],
    ids=["per_transaction", "database_default"],
)
async def test_concurrent_read_then_write_immediate_transactions_serialize(
    tmp_path: Path, database_options: dict[str, str], transaction_options: dict[str, str]
) -> None:
    # Deferred transactions (the default) that read and then write fail at
    # once instead (tests/contract/test_transaction.py): immediate ones wait at BEGIN.
    url = file_url(tmp_path / "read-then-write.db")
    await make_table(url)
    async with Database(url, **database_options) as db:

        async def next_number() -> None:
            async with db.transaction(**transaction_options):
                count = await db.fetch_val("SELECT COUNT(*) FROM t")
                await db.execute("INSERT INTO t VALUES (:x)", {"x": count})

        await asyncio.gather(*(next_number() for _ in range(20)))
        rows = await db.fetch_all("SELECT x FROM t ORDER BY x")
        # Serialized: every transaction saw all the ones before it.
        assert [row["x"] for row in rows] == list(range(20))


async def _stop_iterating(db: Database) -> None:
    async for _ in db.iterate("SELECT x FROM t ORDER BY x"):
        break


@pytest.mark.parametrize(
    "read",
    [
        lambda db: db.fetch_one("SELECT x FROM t ORDER BY x"),
        lambda db: db.fetch_val("SELECT x FROM t ORDER BY x"),
        lambda db: db.execute("SELECT x FROM t ORDER BY x"),
        _stop_iterating,
    ],
    ids=["fetch_one", "fetch_val", "execute", "iterate_break"],
)
async def test_a_partly_read_result_does_not_keep_a_read_lock(tmp_path: Path, read: Any) -> None:
    """Rows left unread must not keep the idle connection's SHARED lock: writers wait on it."""
    url = file_url(tmp_path / "lock.db")
    await make_table(url)
    async with Database(url, max_size=1) as db, Database(f"{url}?timeout=0.1") as writer:
        await db.execute_many("INSERT INTO t VALUES (:x)", [{"x": i} for i in range(5)])
        await read(db)
        async with writer.transaction():
            await writer.execute("INSERT INTO t VALUES (99)")
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 6


# --- transactions -------------------------------------------------------------------


@pytest.mark.parametrize("url", urls_for("sqlite"), ids=dialect_of)
async def test_the_library_begins_transactions_itself(url: str) -> None:
    async with Database(url) as db:
        async with db.transaction():
            raw = db.connection().raw_connection
            assert isinstance(raw, aiosqlite.Connection)
            assert raw.in_transaction
        async with db.connection() as connection:
            assert not connection.raw_connection.in_transaction


async def test_savepoints(tmp_path: Path) -> None:
    url = file_url(tmp_path / "savepoints.db")
    await make_table(url)
    async with Database(url) as db:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (1)")
            inner = await db.transaction()
            await db.execute("INSERT INTO t VALUES (2)")
            innermost = await db.transaction()
            await db.execute("INSERT INTO t VALUES (3)")
            await innermost.commit()
            await inner.rollback()
            assert await db.fetch_val("SELECT SUM(x) FROM t") == 1
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (4)")
        async with Database(url) as other:
            assert await other.fetch_val("SELECT SUM(x) FROM t") == 5


# --- what execute() returns ----------------------------------------------------------


async def execute_results(db: Any) -> dict[str, Any]:
    """What databases 0.9 returns for each (its bare execute: lastrowid, or rowcount if 0)."""
    run = db.execute
    return {
        "create": await run("CREATE TABLE r (id INTEGER PRIMARY KEY, y INTEGER UNIQUE)"),
        "insert": await run("INSERT INTO r (y) VALUES (5)"),
        "insert again": await run("INSERT INTO r (y) VALUES (6)"),
        "insert ignored": await run("INSERT OR IGNORE INTO r (y) VALUES (5)"),
        "insert nothing": await run("INSERT INTO r (y) SELECT 1 WHERE 0"),
        "insert two": await run("INSERT INTO r (y) SELECT 10 UNION SELECT 11"),
        "upsert updates": await run(
            "INSERT INTO r (y) VALUES (5) ON CONFLICT (y) DO UPDATE SET y = 50"
        ),
        "update": await run("UPDATE r SET y = y + 100"),
        "update none": await run("UPDATE r SET y = 1 WHERE id = 99"),
        "delete": await run("DELETE FROM r WHERE id = 1"),
        "select": await run("SELECT * FROM r"),
    }


EXPECTED_RESULTS = {
    "create": -1,
    "insert": 1,
    "insert again": 2,
    "insert ignored": 0,
    "insert nothing": 0,
    "insert two": 4,
    "upsert updates": 1,
    "update": 4,
    "update none": 0,
    "delete": 1,
    "select": -1,
}


@pytest.mark.parametrize("where", ["bare", "connection", "transaction", "force_rollback"])
async def test_execute_returns_lastrowid_for_inserts_else_rowcount(
    tmp_path: Path, where: str
) -> None:
    async with Database(
        file_url(tmp_path / "r.db"), force_rollback=where == "force_rollback"
    ) as db:
        if where == "connection":
            async with db.connection() as connection:
                assert await execute_results(connection) == EXPECTED_RESULTS
        elif where == "transaction":
            async with db.transaction():
                assert await execute_results(db) == EXPECTED_RESULTS
        else:
            assert await execute_results(db) == EXPECTED_RESULTS


async def test_execute_after_an_insert_it_did_not_run(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "r.db"), max_size=1) as db:
        await db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, y INTEGER)")
        assert await db.execute("INSERT INTO r (y) VALUES (1)") == 1
        assert await db.fetch_val("INSERT INTO r (y) VALUES (2) RETURNING id") == 2
        assert await db.execute("UPDATE r SET y = 0 WHERE id = 1") == 1
        async with db.connection() as connection:
            await connection.raw_connection.execute("INSERT INTO r (y) VALUES (3)")
            assert await connection.execute("UPDATE r SET y = 0 WHERE id = 3") == 1
            assert await connection.execute("INSERT INTO r (y) VALUES (4)") == 4
