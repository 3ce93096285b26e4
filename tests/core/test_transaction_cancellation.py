"""Cancelling a task while its transaction begins or ends (§3, §4 of the contract).

The driver's ``run_control`` is slowed down to open a window in which the
caller is cancelled while its BEGIN, SAVEPOINT or COMMIT is on its way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import urls_for

from aiodatabases import Database
from aiodatabases._transactions import Transactions


async def _cancel_during_control(
    monkeypatch: pytest.MonkeyPatch, database: Database, prefix: str, skip: int = 0
) -> asyncio.Event:
    """Patch the driver class so the test knows when ``prefix`` was sent."""
    sent = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with database.connection() as c:
        cls = type(c._session.driver)
    original = cls.run_control
    seen = iter(range(1000))

    async def run_control(self: Any, statements: list[str]) -> None:
        if statements and statements[0].startswith(prefix) and next(seen) >= skip:
            loop.call_soon_threadsafe(sent.set)
            await asyncio.sleep(0.2)  # the round trip takes a while
        return await original(self, statements)

    monkeypatch.setattr(cls, "run_control", run_control)

    async def not_now(self: Any, statements: list[str]) -> bool:
        return False  # through run_control, slowed down

    monkeypatch.setattr(cls, "control_now", not_now)
    return sent


async def test_cancel_during_nested_savepoint_outer_rolls_back_cleanly(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task is cancelled while its SAVEPOINT runs: it should see
    # CancelledError, and both transactions should be gone.
    async with Database(database_url, max_size=1, acquire_timeout=3) as database:
        sent = await _cancel_during_control(monkeypatch, database, "SAVEPOINT")

        async def body() -> None:
            async with database.transaction(), database.transaction():
                await asyncio.sleep(10)

        task = asyncio.create_task(body())
        await sent.wait()
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        # The pool's only connection is free again (nothing left open).
        assert await database.fetch_val("SELECT 1") == 1
        assert isinstance(results[0], asyncio.CancelledError), repr(results[0])


async def test_force_rollback_begin_cancelled_as_its_result_arrives_is_rolled_back(
    database_url: str,
) -> None:
    # The carried BEGIN (a savepoint on the shared connection) has succeeded and
    # its result is delivered to the caller's loop; the caller is cancelled
    # before it wakes up. Nothing may stay open for it.
    async with Database(database_url, force_rollback=True, acquire_timeout=3) as database:
        assert await database.fetch_val("SELECT 1") == 1
        loop = asyncio.get_running_loop()

        async def begin() -> None:
            await database.transaction()

        task = asyncio.create_task(begin())
        await asyncio.sleep(0)  # the task has posted the call to the loop thread
        # Blocking this loop meanwhile: the owner runs the SAVEPOINT and posts its result.
        time.sleep(0.5)  # noqa: ASYNC251
        loop.call_soon(task.cancel)  # queued after the result's delivery
        with pytest.raises(asyncio.CancelledError):
            await task
        # Another task must not wait for a transaction nobody holds.
        assert await asyncio.create_task(database.fetch_val("SELECT 2")) == 2


async def test_force_rollback_nested_begin_cancelled_while_its_savepoint_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same on the force_rollback connection (carried to its loop thread):
    # the caller's CancelledError comes at once, the SAVEPOINT is pushed later.
    async with Database(database_url, force_rollback=True, acquire_timeout=3) as database:
        sent = await _cancel_during_control(monkeypatch, database, "SAVEPOINT", skip=1)
        outer_ref = []

        async def body() -> None:
            async with database.transaction() as outer:
                outer_ref.append(outer)
                async with database.transaction():
                    await asyncio.sleep(10)

        task = asyncio.create_task(body())
        await sent.wait()
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.5)  # the savepoint has been pushed (and abandoned)
        state = outer_ref[0].state.value
        # Nothing is left open: another task may use the shared connection.
        assert await asyncio.create_task(database.fetch_val("SELECT 1")) == 1, state
        assert isinstance(results[0], asyncio.CancelledError), repr(results[0])


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_a_commit_that_fails_while_its_caller_is_cancelled_is_not_committed(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Database(url) as database:
        await database.execute("DROP TABLE IF EXISTS aiodb_deferred")
        await database.execute(
            "CREATE TABLE aiodb_deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
        )
        try:
            sent = await _cancel_during_control(monkeypatch, database, "COMMIT")
            transaction = await database.transaction()
            await database.execute("INSERT INTO aiodb_deferred VALUES (1), (1)")
            task = asyncio.create_task(transaction.commit())
            await sent.wait()
            task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
            assert isinstance(results[0], asyncio.CancelledError)
            assert await database.fetch_val("SELECT count(*) FROM aiodb_deferred") == 0
            # The COMMIT failed (it had ended when the caller was told): not committed.
            assert transaction.state.value == "rolled back"
        finally:
            await database.execute("DROP TABLE IF EXISTS aiodb_deferred")


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_outer_commit_right_after_a_cancelled_savepoint_is_rolled_back(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: a child task's SAVEPOINT is cancelled; the parent commits the
    # moment the SAVEPOINT returns. The frame begun for the child was popped
    # one loop turn later, so the parent's end saw a transaction nested in its
    # own and raised TransactionOrderError.
    async with Database(url, acquire_timeout=5) as db, db.connection() as conn:
        cls = type(conn._session.driver)
        original = cls.run_control
        sent, returned = asyncio.Event(), asyncio.Event()

        async def run_control(self: Any, statements: list[str]) -> None:
            if statements[0].startswith("SAVEPOINT"):
                sent.set()
                await asyncio.sleep(0.2)
                await original(self, statements)
                returned.set()
                return
            await original(self, statements)

        monkeypatch.setattr(cls, "run_control", run_control)
        outer = await conn.transaction()

        async def child() -> None:
            async with conn.transaction():
                await asyncio.sleep(10)

        task = asyncio.create_task(child())
        await sent.wait()
        task.cancel()
        await returned.wait()
        await outer.commit()  # it raised TransactionOrderError
        assert outer.state.value == "committed"
        results = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)


async def test_a_commit_whose_end_was_cancelled_is_not_reported_committed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: an end that itself ended cancelled (a carried call that the
    # owning loop settled as cancelled) counted as a commit.
    async with Database(database_url) as database:
        transaction = await database.transaction()

        async def cancelled_end(self: Any, scope: Any, commit: bool, scopes: Any) -> None:
            raise asyncio.CancelledError

        monkeypatch.setattr(Transactions, "_end", cancelled_end)
        with pytest.raises(asyncio.CancelledError):
            await transaction.commit()
        assert transaction.state.value == "rolled back"
        monkeypatch.undo()
        # Rolled back before disconnecting:
        transaction._connection.abandon_frame(transaction._scope)
