"""Ending a transaction while other tasks change the connection's transaction stack (§2, §3).

What the innermost open transaction is must hold when the end has the
connection's turn, not only when the end was asked for: meanwhile a task
created inside the transaction may have opened a nested one, or a test
harness a rollback point (``Database.isolated()``) on the shared connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import sleep_query

from aiodatabases import Connection, Database, NotConnectedError, TransactionOrderError

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


async def _slow_savepoint(monkeypatch: pytest.MonkeyPatch, database: Database) -> asyncio.Event:
    """Make the driver's SAVEPOINT take a while; the event says it was sent."""
    sent = asyncio.Event()
    async with database.connection() as c:
        cls = type(c._session.driver)
    original = cls.run_control

    async def run_control(self: Any, statements: list[str]) -> None:
        if statements and statements[0].startswith("SAVEPOINT"):
            sent.set()
            await asyncio.sleep(0.2)  # the round trip takes a while
        return await original(self, statements)

    async def not_now(self: Any, statements: list[str]) -> bool:
        return False  # through run_control, slowed down

    monkeypatch.setattr(cls, "run_control", run_control)
    monkeypatch.setattr(cls, "control_now", not_now)
    return sent


async def _until_waiting(connection: Connection, n: int, within: float = 10) -> None:
    """Until ``n`` calls wait for the connection's turn (it lives in another thread)."""
    deadline = time.monotonic() + within
    while sum(not f.done() for f, _ in list(connection._session.gate._waiters)) < n:
        assert time.monotonic() < deadline, f"{n} waiter(s) never queued"
        await asyncio.sleep(0.01)


async def test_commit_waiting_behind_a_nested_begin_waits_for_the_nested_transaction(
    notes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child task's SAVEPOINT holds the connection when the parent commits:
    # the child's transaction then owns the connection, so the parent's commit
    # runs after it ended (not in its place).
    async with Database(notes, acquire_timeout=5) as db, db.connection() as conn:
        sent = await _slow_savepoint(monkeypatch, db)
        outer = await conn.transaction()
        await conn.execute(INSERT, {"text": "outer", "completed": False})

        async def child() -> None:
            async with conn.transaction():
                await conn.execute(INSERT, {"text": "inner", "completed": False})

        task = asyncio.create_task(child())
        await sent.wait()  # the child's SAVEPOINT is running
        await outer.commit()
        assert outer.state.value == "committed"
        assert await asyncio.gather(task, return_exceptions=True) == [None]
    async with Database(notes) as other:
        rows = await other.fetch_all("SELECT text FROM notes ORDER BY id")
    assert [row["text"] for row in rows] == ["outer", "inner"]


async def test_commit_waiting_while_a_rollback_point_is_taken_does_not_end_it(
    notes: str,
) -> None:
    # force_rollback: a task's transaction is open and busy (a slow statement of
    # a task created inside it); a rollback point is asked for (it admits
    # everybody, so it is queued), then the transaction's commit. The rollback
    # point is taken first, on top of the transaction: the commit is then the
    # end of a transaction that is not the innermost one, which fails and leaves
    # the stack intact. It released the rollback point in the transaction's
    # place: the transaction stayed open, owning the shared connection, and the
    # rollback point was gone (its rollback undid nothing).
    async with Database(notes, force_rollback=True, acquire_timeout=3) as db:
        shared = db.connection()
        tx_open, isolation_queued = asyncio.Event(), asyncio.Event()
        transactions = []

        async def transaction_task() -> None:
            tx = await db.transaction()
            transactions.append(tx)
            slow = asyncio.create_task(db.fetch_val(sleep_query(notes, 0.5)))
            await _until_busy(shared)
            tx_open.set()
            await isolation_queued.wait()
            try:
                await tx.commit()
            finally:
                await slow

        task = asyncio.create_task(transaction_task())
        await tx_open.wait()
        isolation = db.isolated()
        start = asyncio.create_task(isolation.start())
        await _until_waiting(shared, 1)  # the rollback point is queued
        isolation_queued.set()
        [outcome] = await asyncio.gather(task, return_exceptions=True)
        await start
        assert isinstance(outcome, TransactionOrderError), repr(outcome)
        # The stack is intact: the rollback point, then the transaction, end.
        await isolation.rollback()
        [tx] = transactions
        await tx.commit()
        assert tx.state.value == "committed"
        # Nothing owns the shared connection any more.
        await asyncio.create_task(db.execute(INSERT, {"text": "after", "completed": False}))
        rows = await db.fetch_all("SELECT text FROM notes")
        assert [row["text"] for row in rows] == ["after"]


async def test_a_rollback_point_ended_while_its_place_is_taken_ends_nothing_else(
    notes: str,
) -> None:
    # force_rollback, rollback points started and ended from several tasks at
    # once while the connection is busy: A and B are open (B inside A); A's end,
    # then C's and D's starts, then B's end are queued. A's end undoes B too;
    # C and D then take B's former place. B's end must find B gone and end
    # nothing: it rolled back D, the frame now at B's former index.
    async with Database(notes, force_rollback=True, acquire_timeout=3) as db:
        shared = db.connection()
        a, b, c, d = (db.isolated() for _ in range(4))
        await a.start()
        await b.start()
        slow = asyncio.create_task(db.fetch_val(sleep_query(notes, 0.5)))
        await _until_busy(shared)
        queued = []
        for n, call in enumerate([a.rollback, c.start, d.start, b.rollback], start=1):
            queued.append(asyncio.create_task(call()))
            await _until_waiting(shared, n)
        await asyncio.gather(slow, *queued)
        await db.execute(INSERT, {"text": "inside d", "completed": False})
        await d.rollback()
        rows = await db.fetch_all("SELECT text FROM notes")
        assert [row["text"] for row in rows] == [], "d's rollback undid nothing"
        await c.rollback()


async def _until_busy(connection: Connection, within: float = 10) -> None:
    """Until a statement holds the connection's turn."""
    deadline = time.monotonic() + within
    while not connection._session.gate._busy:
        assert time.monotonic() < deadline, "no statement ever held the connection"
        await asyncio.sleep(0.01)


async def test_a_commit_waiting_as_disconnect_rolls_back_does_not_run_beside_it(
    notes: str,
) -> None:
    # disconnect() of a force_rollback database waits for the running
    # statement, then rolls everything back. A commit that queued behind it
    # ran its RELEASE/COMMIT while that ROLLBACK was still on the connection
    # (the driver's "another operation is in progress"): it must find the
    # database disconnected instead.
    database = Database(notes, force_rollback=True, acquire_timeout=5)
    await database.connect()
    connection = database.connection()
    transaction = await database.transaction()
    started = asyncio.Event()

    async def busy() -> None:  # created inside the transaction: runs in it
        started.set()
        await database.fetch_val(sleep_query(notes, 0.3))

    child = asyncio.create_task(busy())
    await started.wait()
    await _until_busy(connection)
    disconnecting = asyncio.create_task(database.disconnect())
    await _until_waiting(connection, 1)
    with pytest.raises(NotConnectedError):
        await transaction.commit()
    await child
    await disconnecting
