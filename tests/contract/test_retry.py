"""Retries (issue 17 item 4): a transaction that loses a conflict runs again, whole.

Real conflicts on every backend: two SERIALIZABLE read-modify-write
transactions on one row (PostgreSQL: serialization failure 40001; MariaDB:
its serializable reads lock, so a deadlock 1213; SQLite: the second writer
of two deferred transactions is refused, SQLITE_BUSY), and on PostgreSQL a
deadlock (40P01).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import dialect_of, urls_for

from aiodatabases import ConfigurationError, Database, Retry, TransactionError


async def _counter(database: Database) -> None:
    await database.execute("DROP TABLE IF EXISTS counters")
    await database.execute("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)")
    await database.execute("INSERT INTO counters (id, n) VALUES (1, 0), (2, 0)")


def _options(url: str) -> dict[str, Any]:
    # SQLite's transactions are serializable; deferred ones take the write lock late.
    return {} if dialect_of(url) == "sqlite" else {"isolation": "serializable"}


def _url(url: str) -> str:
    # SQLite: the refused writer must not wait for the lock the other one holds.
    return url + "?timeout=5" if dialect_of(url) == "sqlite" else url


async def test_two_conflicting_serializable_transactions_both_succeed(database_url: str) -> None:
    database = Database(_url(database_url), min_size=2, max_size=4)
    runs: list[str] = []
    both_read = asyncio.Event()
    read = 0

    @database.transaction(retry=Retry(attempts=5, backoff=0.01), **_options(database_url))
    async def increment(name: str) -> None:
        nonlocal read
        runs.append(name)
        n = await database.fetch_val("SELECT n FROM counters WHERE id = 1")
        if len(runs) <= 2:  # the first run of each: both read before either writes
            read += 1
            if read == 2:
                both_read.set()
            await both_read.wait()
        await database.execute("UPDATE counters SET n = :n WHERE id = 1", {"n": n + 1})

    async with database:
        await _counter(database)
        await asyncio.gather(increment("a"), increment("b"))
        # Both increments count: the loser ran again, on a fresh snapshot.
        assert await database.fetch_val("SELECT n FROM counters WHERE id = 1") == 2
        await database.execute("DROP TABLE counters")
    assert len(runs) >= 3
    assert sorted(set(runs)) == ["a", "b"]


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_a_deadlock_is_run_again(url: str) -> None:
    database = Database(url, min_size=2, max_size=4)
    runs: list[str] = []
    locked = {"a": asyncio.Event(), "b": asyncio.Event()}

    @database.transaction(retry=3)
    async def lock_both(name: str, first: int, second: int) -> None:
        runs.append(name)
        await database.execute("SET LOCAL deadlock_timeout = '50ms'")
        await database.execute("UPDATE counters SET n = n + 1 WHERE id = :id", {"id": first})
        if runs.count(name) == 1:
            locked[name].set()
            await locked["b" if name == "a" else "a"].wait()
        await database.execute("UPDATE counters SET n = n + 1 WHERE id = :id", {"id": second})

    async with database:
        await _counter(database)
        await asyncio.gather(lock_both("a", 1, 2), lock_both("b", 2, 1))
        rows = await database.fetch_all("SELECT n FROM counters ORDER BY id")
        assert [row[0] for row in rows] == [2, 2]
        await database.execute("DROP TABLE counters")
    assert len(runs) == 3


def _lost_conflict(url: str) -> str:
    """A statement the server fails as a lost conflict (a real error with that code)."""
    if dialect_of(url) == "postgresql":
        return "DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '40001'; END $$"
    return "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'lost'"


@pytest.mark.parametrize("url", urls_for("postgresql", "mysql"))
async def test_runs_are_bounded_and_the_last_error_is_raised(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0
    async with Database(url) as database:

        @database.transaction(retry=Retry(attempts=3, backoff=0.001))
        async def always_loses() -> None:
            nonlocal runs
            runs += 1
            await database.execute(_lost_conflict(url))

        with caplog.at_level(logging.INFO, logger="aiodatabases"), pytest.raises(
            Exception, match="lost"
        ):
            await always_loses()
        # Nothing is left open: the connection works outside any transaction.
        assert await database.fetch_val("SELECT 1") == 1
    assert runs == 3
    again = [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()]
    assert len(again) == 2
    assert "(run 2 of at most 3)" in again[0]


async def test_a_busy_sqlite_database_is_retried_until_the_bound(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/busy.db"
    runs = 0
    holder, contender = Database(url), Database(url + "?timeout=0")
    async with holder, contender:
        await holder.execute("CREATE TABLE t (x INTEGER)")

        @contender.transaction(retry=Retry(attempts=4, backoff=0.001))
        async def write() -> None:
            nonlocal runs
            runs += 1
            await contender.execute("INSERT INTO t VALUES (2)")

        async with holder.transaction(isolation="immediate"):
            await holder.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(Exception, match="locked"):
                await write()
        assert runs == 4
        await write()  # the lock is free: one run
        assert runs == 5
        assert await contender.fetch_val("SELECT count(*) FROM t") == 2


async def test_an_ordinary_error_is_not_retried(database_url: str) -> None:
    runs = 0
    async with Database(database_url) as database:

        @database.transaction(retry=5)
        async def fails() -> None:
            nonlocal runs
            runs += 1
            await database.fetch_all("SELECT * FROM no_such_table_for_retry")

        with pytest.raises(Exception, match="no_such_table_for_retry"):
            await fails()

        @database.transaction(retry=5)
        async def raises() -> None:
            nonlocal runs
            runs += 1
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await raises()
    assert runs == 2


@pytest.mark.parametrize("url", urls_for("postgresql", "mysql"))
async def test_a_transaction_inside_another_is_never_run_again(url: str) -> None:
    """The enclosing transaction is lost with it: the error goes to where it began."""
    runs = 0
    async with Database(url) as database:

        @database.transaction(retry=5)
        async def inner() -> None:
            nonlocal runs
            runs += 1
            await database.execute(_lost_conflict(url))

        with pytest.raises(Exception, match="lost"):
            async with database.transaction():
                await inner()
    assert runs == 1


async def test_the_outer_retry_reruns_the_whole_of_it(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/outer.db"
    runs: list[str] = []
    holder, contender = Database(url), Database(url + "?timeout=0")
    async with holder, contender:
        await holder.execute("CREATE TABLE t (x INTEGER)")
        release = asyncio.Event()

        @contender.transaction(retry=5)
        async def inner() -> None:
            runs.append("inner")
            await contender.execute("INSERT INTO t VALUES (2)")

        @contender.transaction(retry=Retry(attempts=20, backoff=0.01, max_backoff=0.05))
        async def outer() -> None:
            runs.append("outer")
            await contender.execute("SELECT count(*) FROM t")
            await inner()

        async def hold_then_let_go() -> None:
            async with holder.transaction(isolation="immediate"):
                await holder.execute("INSERT INTO t VALUES (1)")
                await release.wait()

        holding = asyncio.create_task(hold_then_let_go())
        await asyncio.sleep(0.05)
        attempt = asyncio.create_task(outer())
        await asyncio.sleep(0.1)
        release.set()
        await holding
        await attempt
        assert await contender.fetch_val("SELECT count(*) FROM t") == 2
    # Each failed run was the outer one's, whole: as many inner runs as outer runs.
    assert runs.count("outer") == runs.count("inner")
    assert runs.count("outer") >= 2


def test_retry_needs_the_decorator_form() -> None:
    database = Database("sqlite:///:memory:")
    transaction = database.transaction(retry=3)
    with pytest.raises(TransactionError, match="decorate the function"):
        transaction.__await__()


async def test_retry_in_a_with_block_is_refused() -> None:
    async with Database("sqlite:///:memory:") as database:
        with pytest.raises(TransactionError, match="decorate the function"):
            async with database.transaction(retry=3):
                pass
        connection = database.connection()
        with pytest.raises(TransactionError, match="decorate the function"):
            async with connection.transaction(retry=Retry()):
                pass


@pytest.mark.parametrize(
    ("retry", "complaint"),
    [
        (0, "at least 1"),
        (-2, "at least 1"),
        (True, "number of attempts"),
        ("3", "number of attempts"),
        (2.5, "number of attempts"),
    ],
)
def test_bad_retry_values_are_refused(retry: Any, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Database("sqlite:///:memory:").transaction(retry=retry)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"attempts": 0}, "at least 1"),
        ({"attempts": 1.5}, "must be an int"),
        ({"backoff": -1}, "seconds >= 0"),
        ({"max_backoff": float("nan")}, "seconds >= 0"),
    ],
)
def test_bad_retry_policies_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Retry(**options)


def test_the_backoff_is_jittered_and_bounded() -> None:
    policy = Retry(attempts=10, backoff=0.01, max_backoff=0.05)
    for failed, cap in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (9, 0.05)]:
        delays = {policy.delay(failed) for _ in range(200)}
        assert all(0.0 <= delay <= cap for delay in delays)
        assert len(delays) > 100  # random, not one value


def test_a_mistyped_option_is_refused_naming_retry() -> None:
    with pytest.raises(ConfigurationError, match=r"retyr.*supported: isolation.*retry"):
        Database("sqlite:///:memory:").transaction(retyr=3)


@pytest.mark.parametrize("url", urls_for("postgresql", "mysql"))
async def test_retries_under_force_rollback_each_undo_only_their_run(url: str) -> None:
    """With force_rollback (the pytest plugin's mode) each run is a savepoint
    inside the shared connection's transaction: a lost run is undone alone, the
    next run goes on, and everything still rolls back at disconnect()."""
    runs = 0
    async with Database(url) as setup:  # MySQL's CREATE TABLE commits: none left from before
        await setup.execute("DROP TABLE IF EXISTS retry_rollback")
    database = Database(url, force_rollback=True)
    async with database:
        await database.execute("CREATE TABLE retry_rollback (run INTEGER)")

        @database.transaction(retry=Retry(attempts=3, backoff=0.001))
        async def loses_twice() -> None:
            nonlocal runs
            runs += 1
            await database.execute("INSERT INTO retry_rollback (run) VALUES (:run)", {"run": runs})
            if runs < 3:
                await database.execute(_lost_conflict(url))

        await loses_twice()
        # Only the run that won is kept; the lost ones were undone with their savepoint.
        assert [row[0] for row in await database.fetch_all("SELECT run FROM retry_rollback")] == [3]
    assert runs == 3
    async with Database(url) as fresh:
        # The rows are gone with the rollback (MySQL keeps the committed table, empty).
        if dialect_of(url) == "postgresql":
            assert await fresh.fetch_val("SELECT to_regclass('retry_rollback')") is None
        else:
            assert await fresh.fetch_val("SELECT count(*) FROM retry_rollback") == 0
            await fresh.execute("DROP TABLE retry_rollback")
