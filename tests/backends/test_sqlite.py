"""SQLite (aiosqlite): pooling, options, ``:memory:``, concurrency, savepoints."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
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


async def test_concurrent_read_then_write_transactions_on_a_file(tmp_path: Path) -> None:
    url = file_url(tmp_path / "read-then-write.db")
    await make_table(url)
    async with Database(url) as db:

        async def next_number() -> None:
            async with db.transaction():
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


# --- brief reads on the calling thread --------------------------------------------------


def _thread_name() -> str:
    import threading

    return threading.current_thread().name


async def _with_whoami(db: Database) -> None:
    async with db.connection() as connection:
        raw: aiosqlite.Connection = connection.raw_connection
        await raw.create_function("whoami", 0, _thread_name)


_LONG_READ = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
    "SELECT count(*) AS n, whoami() AS thread FROM c"
)


async def test_brief_reads_run_on_the_loop_thread_and_the_rest_on_the_worker(
    tmp_path: Path,
) -> None:
    url = file_url(tmp_path / "inline.db")
    await make_table(url)
    loop_thread = _thread_name()
    async with Database(url, max_size=1) as db:  # one connection: whoami is known to it
        await _with_whoami(db)
        await db.execute("INSERT INTO t (x) SELECT whoami()")
        assert await db.fetch_val("SELECT whoami()") == loop_thread
        async with db.transaction(), db.connection() as connection:
            assert await connection.fetch_val("SELECT whoami()") == loop_thread
        long = await db.fetch_one(_LONG_READ)
        assert long is not None
        assert long["n"] == 300000  # stopped on the loop thread, run again in full
        assert long["thread"] != loop_thread
        assert await db.fetch_val("SELECT x FROM t") != loop_thread  # the write


async def test_a_read_too_long_for_the_loop_thread_goes_to_the_worker_at_once_next_time(
    tmp_path: Path,
) -> None:
    url = file_url(tmp_path / "slow.db")
    threads: list[str] = []
    async with Database(url, max_size=1) as db:
        async with db.connection() as connection:
            raw: aiosqlite.Connection = connection.raw_connection
            await raw.create_function("note", 0, lambda: threads.append(_thread_name()) or 1)
        slow = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
            "SELECT count(*) FROM c WHERE note()"
        )
        assert await db.fetch_val(slow) == 100000
        assert _thread_name() in threads  # tried here first, then stopped
        threads.clear()
        assert await db.fetch_val(slow) == 100000
        assert len(threads) == 100000
        assert _thread_name() not in threads


async def test_with_check_same_thread_every_statement_runs_on_the_worker(tmp_path: Path) -> None:
    url = file_url(tmp_path / "same_thread.db")
    async with Database(url, max_size=1, check_same_thread=True) as db:
        await _with_whoami(db)
        assert await db.fetch_val("SELECT whoami()") != _thread_name()


async def _read_outside_a_transaction(db: Database, lock: Callable[[], None]) -> Any:
    lock()
    return await db.fetch_val("SELECT count(*) FROM t")


async def _read_in_a_deferred_transaction(db: Database, lock: Callable[[], None]) -> Any:
    async with db.transaction(isolation="deferred"):
        lock()
        return await db.fetch_val("SELECT count(*) FROM t")


async def _read_in_a_raw_begin_after_an_immediate_transaction(
    db: Database, lock: Callable[[], None]
) -> Any:
    async with db.connection() as connection:
        async with connection.transaction():  # BEGIN IMMEDIATE: holds the write lock
            await connection.fetch_val("SELECT count(*) FROM t")
        await connection.execute("BEGIN")  # deferred: holds no lock yet
        try:
            lock()
            return await connection.fetch_val("SELECT count(*) FROM t")
        finally:
            await connection.execute("COMMIT")


@pytest.mark.parametrize(
    "read",
    [
        _read_outside_a_transaction,
        _read_in_a_deferred_transaction,
        _read_in_a_raw_begin_after_an_immediate_transaction,
    ],
)
async def test_a_read_that_must_wait_for_a_lock_never_blocks_the_loop(
    tmp_path: Path, read: Any
) -> None:
    # The lock is released by a callback of this loop: a read that waited for
    # it on the loop thread (its busy timeout) would block that callback and
    # fail with "database is locked" when the timeout ends.
    path = tmp_path / "locked.db"
    await make_table(file_url(path))
    blocker = sqlite3.connect(path, isolation_level=None)

    def lock() -> None:
        blocker.execute("BEGIN EXCLUSIVE")
        blocker.execute("INSERT INTO t VALUES (1)")
        asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")

    try:
        async with Database(file_url(path), max_size=1, timeout=3) as db:
            assert await read(db, lambda: None) == 0
            assert await read(db, lock) == 1
            # The configured busy timeout is back after the reads here.
            assert await db.fetch_val("PRAGMA busy_timeout") == 3000
    finally:
        blocker.close()


async def test_a_busy_timeout_set_by_a_statement_stays_after_brief_reads(tmp_path: Path) -> None:
    async with Database(file_url(tmp_path / "busy.db"), max_size=1, timeout=0.25) as db:
        assert await db.fetch_val("SELECT 1") == 1
        await db.execute("PRAGMA busy_timeout = 1234")
        for _ in range(3):
            assert await db.fetch_val("SELECT 1") == 1
        assert await db.fetch_val("PRAGMA busy_timeout") == 1234


async def _reads_until(done: asyncio.Event, read: Any) -> int:
    for count in range(1, 1001):
        if done.is_set():
            return count
        await read("SELECT 1")
    return 0


async def test_a_loop_of_brief_reads_lets_other_tasks_run(tmp_path: Path) -> None:
    # Each read finishes on the loop thread; without a suspension per
    # statement the other task would not run until the loop ended.
    async with Database(file_url(tmp_path / "fair.db")) as db:
        done = asyncio.Event()
        other = asyncio.create_task(asyncio.sleep(0))
        other.add_done_callback(lambda _: done.set())
        assert await _reads_until(done, db.fetch_val) > 0
        done.clear()
        other = asyncio.create_task(asyncio.sleep(0))
        other.add_done_callback(lambda _: done.set())
        async with db.connection() as connection:
            assert await _reads_until(done, connection.fetch_one) > 0


# --- force_rollback: brief reads on the database's own loop thread ---------------------


async def test_force_rollback_runs_brief_reads_itself_and_the_rest_on_the_worker(
    tmp_path: Path,
) -> None:
    url = file_url(tmp_path / "brief.db")
    await make_table(url)
    async with Database(url, force_rollback=True) as db:
        await _with_whoami(db)
        await db.execute("INSERT INTO t (x) SELECT whoami()")  # a write
        writer = await db.fetch_val("SELECT whoami()")  # a brief read
        long = await db.fetch_one(_LONG_READ)
        assert long is not None
        assert long["n"] == 300000  # stopped on the loop thread, run again in full
        assert writer.startswith("aiodatabases")  # the database's own loop thread
        assert not long["thread"].startswith("aiodatabases")  # aiosqlite's worker
        # The stopped read left the transaction and its write as they were.
        assert await db.fetch_val("SELECT count(*) FROM t") == 1
        assert not (await db.fetch_val("SELECT x FROM t")).startswith("aiodatabases")


async def test_force_rollback_brief_read_errors_reach_the_caller(tmp_path: Path) -> None:
    url = file_url(tmp_path / "brief_errors.db")
    await make_table(url)
    async with Database(url, force_rollback=True) as db:
        await db.execute("INSERT INTO t (x) VALUES (1)")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.fetch_all("SELECT * FROM missing")
        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            await db.fetch_one("SELECT missing FROM t")
        assert await db.fetch_val("SELECT sum(x) FROM t") == 1
    async with Database(url) as db:
        assert await db.fetch_val("SELECT count(*) FROM t") == 0  # rolled back


async def test_force_rollback_long_read_can_still_be_interrupted(tmp_path: Path) -> None:
    url = file_url(tmp_path / "brief_cancel.db")
    await make_table(url)
    async with Database(url, force_rollback=True) as db:
        await db.execute("INSERT INTO t (x) VALUES (1)")
        forever = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c"
        )
        task = asyncio.create_task(db.fetch_val(forever))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Only an interrupt ends that read: the next statement gets its turn.
        assert await asyncio.wait_for(db.fetch_val("SELECT sum(x) FROM t"), 30) == 1


async def test_force_rollback_read_waits_for_a_cancelled_write_still_running(
    tmp_path: Path,
) -> None:
    # Regression: a cancelled write goes on running on the worker thread (a
    # write is not interrupted); a brief read then ran on the loop thread at
    # the same time, its budget stopped the write, and SQLite rolled back the
    # whole force_rollback transaction (or the two threads deadlocked).
    path = tmp_path / "cancelled_write.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    setup.executemany("INSERT INTO t (v) VALUES (?)", ((i,) for i in range(400_000)))
    setup.execute("CREATE TABLE marker (x INTEGER)")
    setup.commit()
    setup.close()
    async with Database(file_url(path), force_rollback=True, acquire_timeout=30) as db:
        await db.execute("INSERT INTO marker VALUES (42)")
        writes = []
        for step, running in ((1, 0.02), (2, 0.005)):
            # Each is cancelled while it runs (or waits) on the worker thread.
            writes.append(asyncio.create_task(db.execute(f"UPDATE t SET v = v + {step}")))
            await asyncio.sleep(running)
            writes[-1].cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        for _ in range(50):
            assert len(await db.fetch_all("SELECT id FROM t LIMIT 300")) == 300
        assert await db.fetch_val("SELECT count(*) FROM marker") == 1
        await db.execute("INSERT INTO marker VALUES (7)")
    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT count(*) FROM marker").fetchone() == (0,)
    finally:
        check.close()
