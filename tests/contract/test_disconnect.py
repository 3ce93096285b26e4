"""``disconnect()`` leaves nothing behind (issue 13 item 2).

When tasks still hold connections at ``disconnect()`` (a task parked inside a
transaction or a connection block, an unfinished ``iterate()``, the branch of a
``gather`` whose other branch failed), ``disconnect()`` rolls back and closes
every driver connection: no SQLite lock and no server session survives it, so
another ``Database`` can drop the table at once. The parked task, when it
resumes, gets ``NotConnectedError``; the rollback its block then asks for is
already done and says nothing. A coroutine collected after its loop closed logs
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from conftest import dialect_of, helper_database, sleep_query, until, until_busy, urls_for

from aiodatabases import Database, DatabaseURL, NotConnectedError

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


def _others_query(url: str) -> str | None:
    """Sessions on this test's database other than the asking one."""
    if dialect_of(url) == "postgresql":
        return (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    if dialect_of(url) == "mysql":
        return (
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
        )
    return None


async def _other_sessions(url: str) -> int:
    query = _others_query(url)
    if query is None:
        return 0
    async with helper_database(url) as admin:
        return int(await admin.fetch_val(query))


def _sqlite_is_unlocked(url: str) -> bool:
    """True if nobody holds any lock on the SQLite file (no reader, no writer)."""
    probe = sqlite3.connect(DatabaseURL(url).database, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN EXCLUSIVE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


async def _nothing_survives(url: str, sessions_before: int) -> None:
    if dialect_of(url) == "sqlite":
        assert _sqlite_is_unlocked(url), "a SQLite lock survived disconnect()"
    else:
        # A closed session leaves the server's list as soon as its process exits.
        await until(sessions_before, lambda: _other_sessions(url), within=5)


async def _drop_notes_at_once(url: str) -> None:
    """DROP TABLE from a second Database, failing fast (not hanging) on a lock."""
    options: dict[str, Any] = {}
    if dialect_of(url) == "sqlite":
        options["timeout"] = 0.5
    async with Database(url, **options) as other:
        if dialect_of(url) == "postgresql":
            async with other.connection() as connection:
                await connection.execute("SET lock_timeout = '2s'")
                await connection.execute("DROP TABLE notes")
            return
        if dialect_of(url) == "mysql":
            async with other.connection() as connection:
                await connection.execute("SET SESSION lock_wait_timeout = 2")
                await connection.execute("DROP TABLE notes")
            return
        await other.execute("DROP TABLE notes")


async def _count_notes(url: str) -> int:
    async with helper_database(url) as check:
        return int(await check.fetch_val("SELECT count(*) FROM notes"))


class _Parked:
    """A task that holds something open and waits to be let go."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.resume = asyncio.Event()
        self.outcome: BaseException | None = None


def _start(parked: _Parked, body: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    async def run() -> None:
        try:
            await body()
        except BaseException as exc:
            parked.outcome = exc
            if isinstance(exc, asyncio.CancelledError):
                raise

    return asyncio.create_task(run())


def _park_in_transaction(
    db: Database, *, write_first: bool = True
) -> tuple[_Parked, asyncio.Task[None]]:
    """A task inside a transaction (after a write), parked until ``resume``;
    then it writes again."""
    parked = _Parked()

    async def body() -> None:
        async with db.transaction():
            if write_first:
                await db.execute(INSERT, {"text": "before disconnect", "completed": False})
            parked.holding.set()
            await parked.resume.wait()
            await db.execute(INSERT, {"text": "after disconnect", "completed": False})

    return parked, _start(parked, body)


async def test_disconnect_rolls_back_and_closes_a_parked_transaction(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    sessions_before = await _other_sessions(notes)
    db = Database(notes)
    await db.connect()
    parked, task = _park_in_transaction(db)
    await parked.holding.wait()
    await db.disconnect()
    await _nothing_survives(notes, sessions_before)
    assert await _count_notes(notes) == 0

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        parked.resume.set()
        await task
    assert isinstance(parked.outcome, NotConnectedError)
    # Its block's rollback was done by disconnect(): nothing to report.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    await _drop_notes_at_once(notes)


async def test_parked_connection_block_is_closed_and_its_task_told(notes: str) -> None:
    sessions_before = await _other_sessions(notes)
    db = Database(notes)
    await db.connect()
    parked = _Parked()

    async def body() -> None:
        async with db.connection() as connection:
            await connection.fetch_all("SELECT * FROM notes")
            parked.holding.set()
            await parked.resume.wait()
            await connection.fetch_all("SELECT * FROM notes")

    task = _start(parked, body)
    await parked.holding.wait()
    await db.disconnect()
    await _nothing_survives(notes, sessions_before)
    parked.resume.set()
    await task
    assert isinstance(parked.outcome, NotConnectedError)


async def test_commit_after_disconnect_raises_and_nothing_is_committed(notes: str) -> None:
    db = Database(notes)
    await db.connect()
    transaction = await db.transaction()
    await db.execute(INSERT, {"text": "never committed", "completed": True})
    done = asyncio.Event()

    async def disconnect_elsewhere() -> None:
        await db.disconnect()
        done.set()

    # disconnect() from another task: this one is "parked" in its transaction.
    closer = asyncio.create_task(disconnect_elsewhere())
    await done.wait()
    await closer
    with pytest.raises(NotConnectedError, match="rolled it back; nothing of it was committed"):
        await transaction.commit()
    assert await _count_notes(notes) == 0
    await _drop_notes_at_once(notes)


async def test_rollback_after_disconnect_is_quiet(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(notes)
    await db.connect()
    transaction = await db.transaction()
    await db.execute(INSERT, {"text": "rolled back", "completed": True})
    await asyncio.create_task(db.disconnect())
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        await transaction.rollback()  # already done by disconnect(): nothing to do
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await _count_notes(notes) == 0


async def test_disconnect_closes_an_unfinished_iteration(notes: str) -> None:
    sessions_before = await _other_sessions(notes)
    async with helper_database(notes) as setup:
        await setup.execute_many(
            INSERT, [{"text": f"row {i}", "completed": False} for i in range(1200)]
        )
    db = Database(notes)
    await db.connect()
    parked = _Parked()

    async def body() -> None:
        rows = db.iterate("SELECT * FROM notes ORDER BY id")
        assert isinstance(rows, AsyncIterator)
        try:
            await rows.__anext__()
            parked.holding.set()
            await parked.resume.wait()
            async for _ in rows:
                pass
        finally:
            await rows.aclose()  # type: ignore[attr-defined]

    task = _start(parked, body)
    await parked.holding.wait()
    await db.disconnect()
    await _nothing_survives(notes, sessions_before)
    await _drop_notes_at_once(notes)
    parked.resume.set()
    await task
    assert isinstance(parked.outcome, NotConnectedError)


async def test_failed_gather_then_another_database_drops_the_table_at_once(notes: str) -> None:
    sessions_before = await _other_sessions(notes)
    started = asyncio.Event()
    parked_forever = asyncio.Event()
    branches: list[asyncio.Future[Any]] = []

    async def writer(db: Database) -> None:
        async with db.transaction():
            await db.execute(INSERT, {"text": "from the surviving branch", "completed": False})
            started.set()
            await parked_forever.wait()  # never set: gather does not cancel it

    async def failing() -> None:
        await started.wait()
        raise ValueError("the other branch failed")

    async def app() -> None:
        async with Database(notes) as db:
            surviving = asyncio.ensure_future(writer(db))
            branches.append(surviving)
            await asyncio.gather(surviving, failing())

    with pytest.raises(ValueError, match="other branch"):
        await app()
    await _nothing_survives(notes, sessions_before)
    await _drop_notes_at_once(notes)
    # The surviving branch is still parked; end it (its block's exit is quiet).
    surviving = branches[0]
    surviving.cancel()
    with contextlib.suppress(asyncio.CancelledError, ValueError):
        await surviving


async def test_disconnect_waits_for_a_running_statement_then_closes(
    database_url: str,
) -> None:
    sessions_before = await _other_sessions(database_url)
    db = Database(database_url)
    await db.connect()
    running = asyncio.Event()

    async def slow() -> Any:
        async with db.connection() as connection:
            running.set()
            return await connection.fetch_val(sleep_query(database_url, 0.3))

    task = asyncio.create_task(slow())
    await running.wait()
    if dialect_of(database_url) != "sqlite":  # SQLite's may not have started: asserted below
        await until_busy(database_url)
    await db.disconnect()
    await _nothing_survives(database_url, sessions_before)
    # The statement that was running when disconnect() came finished first.
    assert (await task) is not None or dialect_of(database_url) != "sqlite"


async def test_force_rollback_disconnect_closes_a_parked_transaction(notes: str) -> None:
    sessions_before = await _other_sessions(notes)
    db = Database(notes, force_rollback=True)
    await db.connect()
    parked, task = _park_in_transaction(db)
    await parked.holding.wait()
    await db.disconnect()
    await _nothing_survives(notes, sessions_before)
    parked.resume.set()
    await task
    assert isinstance(parked.outcome, NotConnectedError)
    assert await _count_notes(notes) == 0


async def test_reconnected_database_refuses_a_statement_from_a_rolled_back_transaction(
    notes: str,
) -> None:
    """A task still inside a transaction that disconnect() rolled back must not
    run its next statement outside any transaction once the database is connected
    again: that write would be committed on its own."""
    db = Database(notes)
    await db.connect()
    parked, task = _park_in_transaction(db)
    await parked.holding.wait()
    await db.disconnect()
    await db.connect()
    try:
        parked.resume.set()
        await task
        assert isinstance(parked.outcome, NotConnectedError)
        assert await _count_notes(notes) == 0
        # Other statements of the reconnected database work.
        await db.execute(INSERT, {"text": "fresh", "completed": True})
        assert await _count_notes(notes) == 1
    finally:
        await db.disconnect()


def _run_in_own_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main`` in a new loop that is closed *without* cancelling leftover tasks."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_coroutine_collected_after_its_loop_closed_logs_nothing(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_reset_notes(database_url))
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
            tasks = _run_in_own_loop(lambda: _park_and_disconnect(database_url))
            del tasks
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    ours = [r for r in caplog.records if r.name.startswith("aiodatabases")]
    assert [r for r in ours if r.levelno >= logging.WARNING] == []
    assert [str(u.exc_value) for u in unraisable] == []
    assert asyncio.run(_count_notes(database_url)) == 0
    asyncio.run(_drop_notes_at_once(database_url))


async def _reset_notes(url: str) -> None:
    from conftest import reset_notes

    await reset_notes(url)


async def _park_and_disconnect(url: str) -> list[asyncio.Task[None]]:
    db = Database(url)
    await db.connect()
    holding = asyncio.Event()

    async def in_transaction() -> None:
        async with db.transaction():
            await db.execute(INSERT, {"text": "parked", "completed": False})
            holding.set()
            await asyncio.Event().wait()

    async def in_block() -> None:
        async with db.connection() as connection:
            await connection.fetch_val("SELECT 1")
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(in_transaction()), asyncio.create_task(in_block())]
    await holding.wait()
    await asyncio.sleep(0.01)
    await db.disconnect()
    return tasks


def test_loop_end_without_disconnect_closes_held_connections(database_url: str) -> None:
    """asyncio.run() ends the loop: connections still held then are closed with it."""
    asyncio.run(_reset_notes(database_url))
    sessions_before = asyncio.run(_other_sessions(database_url))
    kept: list[Any] = []  # the held connection outlives the loop: not collected

    async def main() -> None:
        db = Database(database_url)
        await db.connect()
        connection = db.connection()
        await connection.__aenter__()  # never exited
        transaction = await connection.transaction()
        await connection.execute(INSERT, {"text": "held", "completed": False})
        kept.extend([db, connection, transaction])

    asyncio.run(main())
    asyncio.run(_nothing_survives(database_url, sessions_before))
    assert asyncio.run(_count_notes(database_url)) == 0
    asyncio.run(_drop_notes_at_once(database_url))


async def test_disconnect_while_a_begin_is_in_flight_closes_at_once(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction whose BEGIN is still running when disconnect() comes owns the
    connection by the time disconnect() gets its turn: it must not keep it out."""
    for turns in range(6):  # disconnect() after 0..5 loop turns: before, during, after BEGIN
        sessions_before = await _other_sessions(notes)
        db = Database(notes, acquire_timeout=5)
        await db.connect()
        parked, task = _park_in_transaction(db, write_first=False)
        for _ in range(turns):
            await asyncio.sleep(0)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aiodatabases"):
            await db.disconnect()
        assert [r.getMessage() for r in caplog.records] == []
        await _nothing_survives(notes, sessions_before)
        parked.resume.set()
        await task
        assert isinstance(parked.outcome, NotConnectedError)
    assert await _count_notes(notes) == 0


@pytest.mark.parametrize("inside", ["statement", "transaction"])
async def test_a_connection_being_opened_at_disconnect_is_closed_too(
    notes: str, inside: str
) -> None:
    """disconnect() while the pool opens a connection for a task: that connection
    is closed as it arrives and the task's statement never runs."""
    sessions_before = await _other_sessions(notes)
    db = Database(notes, min_size=0)
    await db.connect()

    async def write() -> None:
        if inside == "statement":
            await db.execute(INSERT, {"text": "too late", "completed": False})
            return
        async with db.connection() as connection, connection.transaction():
            await connection.execute(INSERT, {"text": "too late", "completed": False})
            await asyncio.Event().wait()  # parked: only disconnect() ends it

    task = asyncio.create_task(write())
    await asyncio.sleep(0)  # the task is now waiting for its connection to open
    await db.disconnect()
    try:
        with pytest.raises(NotConnectedError):
            await asyncio.wait_for(task, 30)  # (a bound against a hang, not a timing)
        await _nothing_survives(notes, sessions_before)
        assert await _count_notes(notes) == 0
    finally:
        task.cancel()


async def test_closing_an_async_generator_rolls_its_transaction_back_before_aclose_returns(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database(notes) as db:

        async def rows() -> AsyncIterator[int]:
            async with db.transaction():
                await db.execute(INSERT, {"text": "rolled back", "completed": False})
                yield 1

        generator = rows()
        assert await generator.__anext__() == 1
        with caplog.at_level(logging.WARNING, logger="aiodatabases"):
            await generator.aclose()
            # The transaction is over: this insert is committed on its own.
            await db.execute(INSERT, {"text": "committed", "completed": True})
            assert await _count_notes(notes) == 1
        # Rolled back by aclose() itself, not later as an abandoned transaction.
        assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize("block", ["connection", "iterate", "isolated"])
async def test_force_rollback_task_parked_in_a_block_gets_not_connected(
    notes: str, block: str, caplog: pytest.LogCaptureFixture
) -> None:
    """force_rollback: the connection lives in a private loop thread that
    disconnect() stops; a parked task gets NotConnectedError, not a loop error,
    and the end of its block is quiet."""
    sessions_before = await _other_sessions(notes)
    db = Database(notes, force_rollback=True)
    await db.connect()
    await db.execute_many(INSERT, [{"text": f"r{i}", "completed": False} for i in range(1200)])
    parked = _Parked()

    async def body() -> None:
        if block == "connection":
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                parked.holding.set()
                await parked.resume.wait()
                await connection.fetch_val("SELECT 1")
        elif block == "iterate":
            async for _ in db.iterate("SELECT * FROM notes"):
                parked.holding.set()
                await parked.resume.wait()
        else:
            async with db.isolated():
                parked.holding.set()
                await parked.resume.wait()
                await db.fetch_val("SELECT 1")

    task = _start(parked, body)
    await parked.holding.wait()
    await db.disconnect()
    with caplog.at_level(logging.WARNING, logger="aiodatabases"):
        parked.resume.set()
        await task
    assert type(parked.outcome) is NotConnectedError
    assert [r.getMessage() for r in caplog.records] == []
    await _nothing_survives(notes, sessions_before)
    assert await _count_notes(notes) == 0


@pytest.mark.parametrize("url", urls_for("sqlite"))
def test_sqlite_disconnect_from_another_loop_leaves_no_lock_of_an_open_iteration(
    url: str,
) -> None:
    """The owning loop is not running: disconnect() can only drop the connections
    (terminate), and an open cursor must not keep the file locked."""
    asyncio.run(_reset_notes(url))

    async def fill() -> None:
        async with helper_database(url) as setup:
            await setup.execute_many(
                INSERT, [{"text": f"r{i}", "completed": False} for i in range(1200)]
            )

    asyncio.run(fill())
    db = Database(url)
    owning = asyncio.new_event_loop()

    async def park_in_iteration() -> asyncio.Task[None]:
        await db.connect()
        holding = asyncio.Event()

        async def body() -> None:
            async for _ in db.iterate("SELECT * FROM notes"):
                holding.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(body())
        await holding.wait()
        return task

    try:
        task = owning.run_until_complete(park_in_iteration())
        asyncio.run(db.disconnect())  # from another loop: the owning one is stopped
        assert _sqlite_is_unlocked(url), "an open cursor kept the SQLite file locked"
        asyncio.run(_drop_notes_at_once(url))
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            owning.run_until_complete(task)
        owning.close()
