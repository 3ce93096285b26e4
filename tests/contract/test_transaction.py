"""Transactions: every form, nesting, isolation, misuse, visibility to other connections."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import DATABASE_URLS, postgres_driver_of, scheme_of, urls_for

from aiodatabases import (
    ConfigurationError,
    Database,
    Transaction,
    TransactionError,
    TransactionOrderError,
)

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


class Boom(Exception):
    pass


async def add(db: Database, text: str) -> None:
    await db.execute(INSERT, {"text": text, "completed": False})


async def texts(db: Database) -> list[str]:
    return [row["text"] for row in await db.fetch_all("SELECT text FROM notes ORDER BY id")]


async def committed(url: str) -> list[str]:
    """What another connection (a second Database) sees."""
    async with Database(url) as other:
        return await texts(other)


# Decorated at import time, before any event loop exists or any connect().
def _decorated(
    db: Database,
) -> tuple[Callable[..., Awaitable[str]], Callable[..., Awaitable[None]]]:
    @db.transaction()
    async def add_note(text: str, fail: bool = False) -> str:
        await add(db, text)
        if fail:
            raise Boom(text)
        return text

    @db.transaction(force_rollback=True)
    async def add_note_rolled_back(text: str) -> None:
        await add(db, text)
        assert text in await texts(db)

    return add_note, add_note_rolled_back


IMPORT_TIME = {url: (db, *_decorated(db)) for url in DATABASE_URLS for db in [Database(url)]}


# --- the forms -----------------------------------------------------------------------


async def test_async_with_commits(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction() as transaction:
            assert isinstance(transaction, Transaction)
            await add(db, "a")
            await add(db, "b")
            assert await texts(db) == ["a", "b"]
            assert await committed(notes) == []
        assert await committed(notes) == ["a", "b"]


async def test_exception_in_the_block_propagates_and_rolls_back(notes: str) -> None:
    async with Database(notes) as db:
        error = Boom("inside")
        with pytest.raises(Boom) as info:  # noqa: PT012
            async with db.transaction():
                await add(db, "a")
                raise error
        assert info.value is error
        assert await texts(db) == []
        await add(db, "after")
    assert await committed(notes) == ["after"]


async def test_decorator_defined_at_import_time(notes: str) -> None:
    db, add_note, add_note_rolled_back = IMPORT_TIME[notes]
    assert add_note.__name__ == "add_note"
    async with db:
        assert await add_note("a") == "a"
        with pytest.raises(Boom):
            await add_note("b", fail=True)
        assert await add_note("c") == "c"
        await add_note_rolled_back("d")
        assert await committed(notes) == ["a", "c"]


async def test_decorator_gives_each_call_its_own_transaction(notes: str) -> None:
    db, add_note, _ = IMPORT_TIME[notes]
    async with db:
        results = await asyncio.gather(
            add_note("a"), add_note("b", fail=True), add_note("c"), return_exceptions=True
        )
        assert results[0] == "a"
        assert isinstance(results[1], Boom)
        assert results[2] == "c"
        assert sorted(await committed(notes)) == ["a", "c"]


async def test_await_then_commit(notes: str) -> None:
    async with Database(notes) as db:
        transaction = await db.transaction()
        assert isinstance(transaction, Transaction)
        await add(db, "a")
        assert await committed(notes) == []
        await transaction.commit()
        assert await committed(notes) == ["a"]


async def test_await_then_rollback(notes: str) -> None:
    async with Database(notes) as db:
        transaction = await db.transaction()
        await add(db, "a")
        assert await texts(db) == ["a"]
        await transaction.rollback()
        assert await texts(db) == []
        await add(db, "b")
    assert await committed(notes) == ["b"]


async def test_connection_transaction(notes: str) -> None:
    async with Database(notes) as db, db.connection() as connection:
        async with connection.transaction():
            await connection.execute(INSERT, {"text": "a", "completed": True})
        with pytest.raises(Boom):  # noqa: PT012
            async with connection.transaction():
                await connection.execute(INSERT, {"text": "b", "completed": True})
                raise Boom
        transaction = await connection.transaction()
        await connection.execute(INSERT, {"text": "c", "completed": True})
        await transaction.rollback()
        transaction = await connection.transaction()
        await connection.execute(INSERT, {"text": "d", "completed": True})
        await transaction.commit()
    assert await committed(notes) == ["a", "d"]


async def test_force_rollback_transaction_always_rolls_back(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction(force_rollback=True):
            await add(db, "a")
            assert await texts(db) == ["a"]
        assert await texts(db) == []
        async with db.transaction():
            await add(db, "kept")
            async with db.transaction(force_rollback=True):
                await add(db, "inner")
            assert await texts(db) == ["kept"]
    assert await committed(notes) == ["kept"]


# --- nesting -------------------------------------------------------------------------


async def test_inner_rollback_keeps_the_outer_writes(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction():
            await add(db, "outer before")
            with pytest.raises(Boom):  # noqa: PT012
                async with db.transaction():
                    await add(db, "inner")
                    assert await texts(db) == ["outer before", "inner"]
                    raise Boom
            assert await texts(db) == ["outer before"]
            await add(db, "outer after")
        assert await committed(notes) == ["outer before", "outer after"]


async def test_inner_commit_is_undone_by_outer_rollback(notes: str) -> None:
    async with Database(notes) as db:
        with pytest.raises(Boom):  # noqa: PT012
            async with db.transaction():
                await add(db, "outer")
                async with db.transaction():
                    await add(db, "inner")
                raise Boom
        assert await texts(db) == []
    assert await committed(notes) == []


async def test_three_levels(notes: str) -> None:
    async with Database(notes) as db, db.transaction():
        await add(db, "1")
        async with db.transaction():
            await add(db, "2")
            third = await db.transaction()
            await add(db, "3")
            await third.rollback()
            assert await texts(db) == ["1", "2"]
            third = await db.transaction()
            await add(db, "3 again")
            await third.commit()
        async with db.transaction():
            await add(db, "x")
            async with db.transaction():
                await add(db, "y")
                async with db.transaction(force_rollback=True):
                    await add(db, "z")
                assert await texts(db) == ["1", "2", "3 again", "x", "y"]
    assert await committed(notes) == ["1", "2", "3 again", "x", "y"]


async def test_three_levels_rollback_in_the_middle(notes: str) -> None:
    async with Database(notes) as db, db.transaction():
        await add(db, "1")
        with pytest.raises(Boom):  # noqa: PT012
            async with db.transaction():
                await add(db, "2")
                async with db.transaction():
                    await add(db, "3")
                raise Boom
        assert await texts(db) == ["1"]
    assert await committed(notes) == ["1"]


# --- isolation and options -----------------------------------------------------------


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
@pytest.mark.parametrize(
    ("isolation", "shown"),
    [
        ("serializable", "serializable"),
        ("repeatable_read", "repeatable read"),
        ("read_committed", "read committed"),
        ("read_uncommitted", "read uncommitted"),
    ],
)
async def test_postgres_isolation(url: str, isolation: str, shown: str) -> None:
    async with Database(url) as db:
        async with db.transaction(isolation=isolation):
            assert await db.fetch_val("SHOW transaction_isolation") == shown
        tx = await db.transaction(isolation=isolation)
        assert await db.fetch_val("SHOW transaction_isolation") == shown
        await tx.rollback()
        async with db.connection() as connection, connection.transaction(isolation=isolation):
            assert await connection.fetch_val("SHOW transaction_isolation") == shown


@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_postgres_readonly_transaction(url: str) -> None:
    import asyncpg
    import psycopg

    refused = (
        psycopg.errors.ReadOnlySqlTransaction
        if postgres_driver_of(url) == "psycopg"
        else asyncpg.exceptions.ReadOnlySQLTransactionError
    )
    async with Database(url) as db:
        async with db.transaction(readonly=True):
            assert await db.fetch_val("SHOW transaction_read_only") == "on"
            with pytest.raises(refused):
                await db.execute("CREATE TEMP TABLE never (x int)")
        assert await db.fetch_val("SELECT 1") == 1


async def sqlite_pair(path: Path) -> tuple[str, str]:
    """A fresh SQLite file with a table ``t``; the URL, and one with a short busy timeout."""
    url = f"sqlite:///{path}"
    async with Database(url) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
    return url, f"{url}?timeout=0.05"


async def test_sqlite_deferred_takes_no_lock_until_used(tmp_path: Path) -> None:
    url, impatient = await sqlite_pair(tmp_path / "deferred.db")
    async with (
        Database(url) as db,
        Database(impatient) as other,
        db.transaction(isolation="deferred"),
    ):
        await other.execute("INSERT INTO t VALUES (1)")
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1


async def test_sqlite_transactions_are_deferred_by_default_as_in_databases(tmp_path: Path) -> None:
    # Regression: a BEGIN IMMEDIATE by default made the second transaction
    # wait for the first one's write lock until the busy timeout ("database
    # is locked"), though it only reads.
    url, _ = await sqlite_pair(tmp_path / "default.db")
    inserted = asyncio.Event()
    read_done = asyncio.Event()

    async def writer(db: Database) -> None:
        async with db.connection() as connection, connection.transaction():
            await connection.execute("INSERT INTO t VALUES (1)")
            inserted.set()
            await read_done.wait()

    async def reader(db: Database) -> int:
        await inserted.wait()
        async with db.connection() as connection, connection.transaction():
            seen = await connection.fetch_val("SELECT COUNT(*) FROM t")
        read_done.set()
        return int(seen)

    async with Database(url, timeout=30) as db:
        _, seen = await asyncio.wait_for(asyncio.gather(writer(db), reader(db)), 10)
        assert seen == 0  # the uncommitted row is not visible
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda url: (Database(url), {"isolation": "immediate"}),
        lambda url: (Database(url, isolation="immediate"), {}),
        lambda url: (Database(f"{url}?isolation=immediate"), {}),
    ],
    ids=["per_transaction", "keyword", "url_query"],
)
async def test_sqlite_immediate_transactions_take_the_write_lock_at_begin(
    tmp_path: Path, make: Callable[[str], tuple[Database, dict[str, str]]]
) -> None:
    url, impatient = await sqlite_pair(tmp_path / "immediate_option.db")
    db, options = make(url)
    async with db, Database(impatient) as other, db.transaction(**options):
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await other.execute("INSERT INTO t VALUES (1)")


async def test_sqlite_default_isolation_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="isolation"):
        Database(f"sqlite:///{tmp_path / 'x.db'}", isolation="serializable")


async def test_sqlite_deferred_write_that_cannot_take_the_lock_says_why(tmp_path: Path) -> None:
    # Two deferred transactions that both read, then write: SQLite fails the
    # second writer at once (waiting would deadlock); the error says so and
    # names the fix. Both succeed with isolation="immediate".
    url, _ = await sqlite_pair(tmp_path / "upgrade.db")
    a_read, b_read, a_wrote, b_done = (asyncio.Event() for _ in range(4))

    async def first(db: Database) -> None:
        async with db.connection() as connection, connection.transaction():
            await connection.fetch_val("SELECT COUNT(*) FROM t")
            a_read.set()
            await b_read.wait()
            await connection.execute("INSERT INTO t VALUES (1)")
            a_wrote.set()
            await b_done.wait()

    async def second(db: Database) -> None:
        try:
            async with db.connection() as connection, connection.transaction():
                await a_read.wait()
                await connection.fetch_val("SELECT COUNT(*) FROM t")
                b_read.set()
                await a_wrote.wait()
                await connection.execute("INSERT INTO t VALUES (2)")
        finally:
            b_done.set()

    async def read_then_write(db: Database) -> None:
        async with db.transaction(isolation="immediate"):
            await db.fetch_val("SELECT COUNT(*) FROM t")
            await db.execute("INSERT INTO t VALUES (3)")

    async with Database(url, timeout=5) as db:
        results = await asyncio.wait_for(
            asyncio.gather(first(db), second(db), return_exceptions=True), 20
        )
        assert results[0] is None
        error = results[1]
        assert isinstance(error, sqlite3.OperationalError), results
        message = str(error)
        assert message.startswith("database is locked")
        assert "deferred" in message
        assert "isolation='immediate'" in message
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1
        await asyncio.wait_for(asyncio.gather(read_then_write(db), read_then_write(db)), 20)
        assert await db.fetch_val("SELECT COUNT(*) FROM t") == 3


async def test_sqlite_immediate_blocks_other_writers_not_readers(tmp_path: Path) -> None:
    url, impatient = await sqlite_pair(tmp_path / "immediate.db")
    async with Database(url) as db, Database(impatient) as other:
        async with db.transaction(isolation="immediate"):
            assert await other.fetch_val("SELECT COUNT(*) FROM t") == 0
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await other.execute("INSERT INTO t VALUES (1)")
            await db.execute("INSERT INTO t VALUES (2)")
        assert await other.fetch_val("SELECT x FROM t") == 2


async def test_sqlite_exclusive_blocks_other_readers(tmp_path: Path) -> None:
    url, impatient = await sqlite_pair(tmp_path / "exclusive.db")
    async with Database(url) as db, Database(impatient) as other:
        async with db.transaction(isolation="exclusive"):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await other.fetch_val("SELECT COUNT(*) FROM t")
        assert await other.fetch_val("SELECT COUNT(*) FROM t") == 0


@pytest.mark.parametrize(
    "options",
    [{"isolation": "bogus"}, {"isolaton": "serializable"}, {"frobnicate": True}],
    ids=repr,
)
async def test_unknown_isolation_or_option_is_rejected_at_once(
    database_url: str, options: dict[str, object]
) -> None:
    async with Database(database_url) as db:
        with pytest.raises(ConfigurationError):
            db.transaction(**options)
        # Nothing was left open.
        async with db.transaction():
            assert await db.fetch_val("SELECT 1") == 1


async def test_unknown_isolation_on_a_connection_transaction_is_rejected(notes: str) -> None:
    async with Database(notes) as db, db.connection() as connection:
        with pytest.raises(ConfigurationError):
            async with connection.transaction(isolation="bogus"):
                await connection.execute(INSERT, {"text": "never", "completed": True})
        # No transaction was left open: this write is committed at once.
        await connection.execute(INSERT, {"text": "a", "completed": True})
        assert await committed(notes) == ["a"]


# --- explicit ends and misuse --------------------------------------------------------


async def test_explicit_commit_inside_async_with_then_the_exit_does_nothing(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction() as transaction:
            await add(db, "a")
            await transaction.commit()
            assert await committed(notes) == ["a"]
        assert await committed(notes) == ["a"]


async def test_explicit_rollback_inside_async_with_then_the_exit_does_nothing(notes: str) -> None:
    async with Database(notes) as db:
        async with db.transaction() as transaction:
            await add(db, "a")
            await transaction.rollback()
        assert await texts(db) == []
        error = Boom()
        with pytest.raises(Boom) as info:  # noqa: PT012
            async with db.transaction() as transaction:
                await transaction.rollback()
                raise error
        assert info.value is error
        await add(db, "b")
    assert await committed(notes) == ["b"]


async def test_ending_twice_raises(notes: str) -> None:
    async with Database(notes) as db:
        transaction = await db.transaction()
        await add(db, "a")
        await transaction.commit()
        with pytest.raises(TransactionError):
            await transaction.commit()
        with pytest.raises(TransactionError):
            await transaction.rollback()
        transaction = await db.transaction()
        await transaction.rollback()
        with pytest.raises(TransactionError):
            await transaction.rollback()
        with pytest.raises(TransactionError):
            await transaction.commit()
        assert await texts(db) == ["a"]


async def test_ending_a_transaction_that_was_not_started_raises(database_url: str) -> None:
    async with Database(database_url) as db:
        transaction = db.transaction()
        with pytest.raises(TransactionError):
            await transaction.commit()
        with pytest.raises(TransactionError):
            await transaction.rollback()
        assert await db.fetch_val("SELECT 1") == 1


async def test_starting_twice_raises(database_url: str) -> None:
    async with Database(database_url) as db:
        transaction = await db.transaction()
        with pytest.raises(TransactionError):
            await transaction
        await transaction.commit()
        with pytest.raises(TransactionError):
            await transaction.start()


async def test_ending_an_outer_transaction_first_raises_and_keeps_the_stack(notes: str) -> None:
    async with Database(notes) as db:
        outer = await db.transaction()
        await add(db, "outer")
        inner = await db.transaction()
        await add(db, "inner")
        with pytest.raises(TransactionOrderError):
            await outer.commit()
        with pytest.raises(TransactionOrderError):
            await outer.rollback()
        # Still inside the inner transaction: this write is undone with it.
        await add(db, "inner too")
        assert await texts(db) == ["outer", "inner", "inner too"]
        await inner.rollback()
        assert await texts(db) == ["outer"]
        assert await committed(notes) == []
        await outer.commit()
        assert await committed(notes) == ["outer"]


async def test_ending_an_outer_async_with_while_an_inner_is_open(notes: str) -> None:
    async with Database(notes) as db:
        outer = db.transaction()
        with pytest.raises(TransactionOrderError):  # noqa: PT012
            async with outer:
                await add(db, "outer")
                inner = await db.transaction()
                await add(db, "inner")
        # The stack is intact: the inner one, then the outer one, can still be ended.
        await add(db, "inner too")
        await inner.commit()
        await add(db, "outer too")
        assert await committed(notes) == []
        await outer.commit()
    assert await committed(notes) == ["outer", "inner", "inner too", "outer too"]


# --- visibility ------------------------------------------------------------------------


async def test_child_task_uses_its_own_connection(notes: str) -> None:
    """Without force_rollback every task has its own connection (as in databases 0.9)."""
    async with Database(notes) as db:
        async with db.transaction():
            await add(db, "uncommitted")
            seen_by_child = await asyncio.create_task(texts(db))
            assert seen_by_child == []
            assert await texts(db) == ["uncommitted"]
        assert await asyncio.create_task(texts(db)) == ["uncommitted"]


async def test_a_transaction_start_given_up_is_not_lost_to_the_garbage_collector(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (aiomysql): the BEGIN left running after its caller was
    # cancelled was reachable only through the driver's stream, which asyncio
    # holds weakly: a garbage collection destroyed it half read, and the pool
    # lost count of its connections (max_size no longer held).
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with Database(notes, max_size=1, acquire_timeout=10) as db:

        async def transaction() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO notes (text, completed) VALUES ('t', false)")

        for attempt in range(30):
            task = asyncio.create_task(transaction())
            for _ in range(attempt % 6 + 1):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            del task
            gc.collect()
            await asyncio.sleep(0.02)
        assert [await db.fetch_val("SELECT :n", {"n": str(n)}) for n in range(20)] == [
            str(n) for n in range(20)
        ]
        # Still one connection: while a block holds it, a statement waits.
        async with db.connection() as connection:
            assert await connection.fetch_val("SELECT 1") == 1
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.create_task(db.fetch_val("SELECT 2")), 0.5)
    assert "Task was destroyed but it is pending" not in caplog.text
