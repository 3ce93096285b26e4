"""SQLite (aiosqlite): pooling, options, ``:memory:``, concurrency, savepoints."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
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
    # once instead (tests/test_transaction.py): immediate ones wait at BEGIN.
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
