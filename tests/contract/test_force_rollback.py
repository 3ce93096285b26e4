"""force_rollback=True: one shared connection, rolled back at disconnect.

The module-level ``DATABASES`` are built at import time, before any event
loop exists, and used by consecutive tests that each run in their own
pytest-asyncio function-scoped loop: the case users of ``databases`` hit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import DATABASE_URLS, busy_query, dialect_of, reset_notes, sleep_query, until_busy

from aiodatabases import ConnectionBusyError, Database

# Built at import time: inert, no loop needed.
DATABASES = {url: Database(url, force_rollback=True) for url in DATABASE_URLS}


@pytest.fixture(scope="module", autouse=True)
def notes_tables(notes_for_module: None) -> None:
    """One ``notes`` table for the module's module-level databases."""


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = DATABASES[database_url]
    await db.connect()
    yield db
    await db.disconnect()


async def _count(db: Database) -> int:
    value = await db.fetch_val("SELECT count(*) FROM notes")
    return int(value)


async def _insert(db: Database, text: str) -> None:
    await db.execute(
        "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
        {"text": text, "completed": False},
    )


# The same three tests run in order, each in a fresh loop, on the same objects.
@pytest.mark.parametrize("round_", [1, 2, 3])
async def test_module_level_database_in_consecutive_loops(
    database: Database, database_url: str, round_: int
) -> None:
    assert await _count(database) == 0, "each test starts from an empty table"
    sleeper = sleep_query(database_url, 0.05)
    results = await asyncio.gather(
        database.fetch_one(sleeper),
        database.fetch_one(sleeper),
        *(_insert(database, f"round {round_} note {i}") for i in range(10)),
    )
    assert results[0] is not None
    assert results[1] is not None
    assert await _count(database) == 10


async def test_gather_of_transactions_and_plain_writes(database: Database) -> None:
    async def failing_transaction() -> None:
        async with database.transaction():
            await _insert(database, "rolled back")
            await asyncio.sleep(0.01)
            raise LookupError("roll back")

    async def committing_transaction() -> None:
        async with database.transaction():
            await _insert(database, "committed")
            await asyncio.sleep(0.01)

    outcomes = await asyncio.gather(
        failing_transaction(),
        _insert(database, "plain 1"),
        committing_transaction(),
        _insert(database, "plain 2"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], LookupError)
    texts = sorted(r["text"] for r in await database.fetch_all("SELECT text FROM notes"))
    assert texts == ["committed", "plain 1", "plain 2"]


async def test_plain_write_survives_a_concurrent_rollback(database: Database) -> None:
    events: list[str] = []
    in_transaction = asyncio.Event()

    async def rolls_back() -> None:
        try:
            async with database.transaction():
                await _insert(database, "inside")
                in_transaction.set()
                await asyncio.sleep(0.05)
                events.append("transaction ends")
                raise LookupError
        except LookupError:
            pass

    async def sibling() -> None:
        await in_transaction.wait()
        await _insert(database, "sibling")
        events.append("sibling wrote")

    await asyncio.gather(rolls_back(), sibling())
    # The sibling had to wait for the transaction: its write is outside it.
    assert events == ["transaction ends", "sibling wrote"]
    rows = await database.fetch_all("SELECT text FROM notes")
    assert [r["text"] for r in rows] == ["sibling"]


async def test_child_tasks_run_inside_the_transaction(database: Database) -> None:
    async with database.transaction(force_rollback=True):
        await _insert(database, "parent")
        counts = await asyncio.gather(_count(database), _count(database))
        assert counts == [1, 1], "children see the parent's uncommitted row"
        await asyncio.gather(*(_insert(database, f"child {i}") for i in range(5)))
        assert await _count(database) == 6
    assert await _count(database) == 0, "children's writes were inside the transaction"


async def test_sibling_started_before_the_transaction_waits(database: Database) -> None:
    order: list[str] = []
    opened = asyncio.Event()

    async def owner() -> None:
        async with database.transaction():
            opened.set()
            await asyncio.sleep(0.05)
            order.append("owner commits")

    async def sibling() -> None:
        await opened.wait()
        await database.fetch_all("SELECT 1")
        order.append("sibling ran")

    await asyncio.gather(owner(), sibling())
    assert order == ["owner commits", "sibling ran"]


async def test_concurrent_transactions_keep_their_own_outcome(database: Database) -> None:
    async def transaction(text: str, commit: bool) -> None:
        tx = await database.transaction()
        await _insert(database, text)
        await asyncio.sleep(0)
        if commit:
            await tx.commit()
        else:
            await tx.rollback()

    await asyncio.gather(*(transaction(f"t{i}", i % 2 == 0) for i in range(6)))
    rows = await database.fetch_all("SELECT text FROM notes ORDER BY text")
    assert [r["text"] for r in rows] == ["t0", "t2", "t4"]


async def test_failed_statement_keeps_earlier_writes(database: Database) -> None:
    await _insert(database, "kept")
    with pytest.raises(Exception, match=r"(?i)syntax"):
        await database.execute("SELEC nonsense")
    await _insert(database, "after")
    assert await _count(database) == 2


async def test_unique_violation_keeps_earlier_writes(database: Database) -> None:
    await database.execute("INSERT INTO notes (id, text) VALUES (1000, 'first')")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await database.execute("INSERT INTO notes (id, text) VALUES (1000, 'again')")
    assert await database.fetch_val("SELECT text FROM notes WHERE id = 1000") == "first"


async def test_transaction_never_ended_is_diagnosed(database_url: str) -> None:
    db = Database(database_url, force_rollback=True, acquire_timeout=0.3)
    async with db:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def forgetful() -> None:
            tx = await db.transaction()  # started, never committed or rolled back
            holding.set()
            await release.wait()
            assert tx is not None

        holder = asyncio.create_task(forgetful(), name="forgetful-task")
        await holding.wait()
        with pytest.raises(ConnectionBusyError, match="forgetful-task"):
            await db.fetch_all("SELECT 1")
        release.set()
        await holder
        del holder
        # Its Transaction object is gone now: the library rolls it back and
        # the connection is free again.
        import gc

        gc.collect()
        assert [tuple(r.values()) for r in await db.fetch_all("SELECT 1 AS one")] == [(1,)]


async def test_cancelled_statement_keeps_earlier_writes(
    database: Database, database_url: str
) -> None:
    await _insert(database, "before")
    task = asyncio.create_task(database.fetch_one(sleep_query(database_url, 5)))
    if dialect_of(database_url) != "sqlite":  # there "before" holds the write lock already
        await until_busy(database_url)
    else:
        await asyncio.sleep(0.2)  # it started meanwhile, or not: the rule holds either way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _insert(database, "after")
    rows = await database.fetch_all("SELECT text FROM notes ORDER BY id")
    assert [r["text"] for r in rows] == ["before", "after"]


async def test_disconnect_waits_for_a_running_statement(database_url: str) -> None:
    # Regression: the final ROLLBACK ran while another task's statement was on
    # the wire ("another operation is in progress").
    db = Database(database_url, force_rollback=True)
    await db.connect()
    running = asyncio.create_task(db.fetch_one(busy_query(database_url, 0.3)))
    await until_busy(database_url)
    await db.disconnect()
    assert await running is not None


async def test_statement_queued_behind_disconnect_fails_clearly(database_url: str) -> None:
    db = Database(database_url, force_rollback=True)
    await db.connect()
    first = asyncio.create_task(db.fetch_one(busy_query(database_url, 0.3)))
    await until_busy(database_url)
    # Queued behind it or arriving after the disconnect began: either way it
    # must fail clearly, so no wait is needed for its turn in the line.
    queued = asyncio.create_task(db.fetch_val("SELECT 1"))
    await asyncio.sleep(0)
    await db.disconnect()
    assert await first is not None
    from aiodatabases import NotConnectedError

    with pytest.raises(NotConnectedError):
        await queued


async def test_nested_transaction_of_a_child_owns_the_connection(database: Database) -> None:
    # Inside a transaction, a child task's nested transaction owns the
    # connection too: its sibling (created inside the outer transaction, not
    # the inner one) waits, so the inner rollback does not discard its write.
    async with database.transaction(force_rollback=True):
        inner_open = asyncio.Event()
        order: list[str] = []

        async def child_with_savepoint() -> None:
            try:
                async with database.transaction():
                    await _insert(database, "inner")
                    inner_open.set()
                    await asyncio.sleep(0.05)
                    order.append("inner rolls back")
                    raise LookupError
            except LookupError:
                pass

        async def sibling() -> None:
            await inner_open.wait()
            await _insert(database, "sibling")
            order.append("sibling wrote")

        await asyncio.gather(child_with_savepoint(), sibling())
        assert order == ["inner rolls back", "sibling wrote"]
        rows = await database.fetch_all("SELECT text FROM notes")
        assert [r["text"] for r in rows] == ["sibling"]


async def test_busy_error_names_the_task_running_a_long_statement(database_url: str) -> None:
    db = Database(database_url, force_rollback=True, acquire_timeout=0.2)
    async with db:
        slow = asyncio.create_task(db.fetch_one(busy_query(database_url, 1.5)), name="slow-task")
        await until_busy(database_url)
        with pytest.raises(ConnectionBusyError, match="slow-task"):
            await db.fetch_val("SELECT 1")
        assert await slow is not None


async def test_an_iteration_cancelled_as_its_cursor_opens_gives_the_connection_back(
    database_url: str,
) -> None:
    # Regression: the cursor opened in the database's loop thread for a
    # caller cancelled meanwhile was never closed: on MySQL the iteration kept
    # owning the shared connection (every transaction then waited for it).
    await reset_notes(database_url)
    async with Database(database_url) as setup:
        await setup.execute_many(
            "INSERT INTO notes (text, completed) VALUES (:t, false)",
            [{"t": str(n)} for n in range(200)],
        )
    try:
        async with Database(database_url, force_rollback=True, acquire_timeout=5) as db:

            async def consume() -> None:
                async for _ in db.iterate("SELECT text FROM notes"):
                    await asyncio.sleep(30)

            task = asyncio.create_task(consume())
            await asyncio.sleep(0)  # the opening is carried to the loop thread
            time.sleep(0.3)  # noqa: ASYNC251 - which opens the cursor meanwhile
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

            async def write() -> None:
                async with db.transaction():
                    await db.execute("INSERT INTO notes (text, completed) VALUES ('w', false)")

            await asyncio.create_task(write())
            assert await db.fetch_val("SELECT COUNT(*) FROM notes") == 201
    finally:
        await reset_notes(database_url)
