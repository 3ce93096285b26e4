"""Hooks (issue 16 item 3): before/after each statement and transaction, in the caller's context."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import threading
from typing import Any

import pytest
from conftest import LoopInThread, dialect_of, sleep_query

from aiodatabases import (
    Database,
    DatabaseInfo,
    Hook,
    StatementEvent,
    TransactionEvent,
)

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


class Recorder(Hook):
    """Every call, with what the hook saw at that moment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def _note(self, method: str, event: Any) -> None:
        seen = {
            "request": REQUEST.get(),
            "thread": threading.get_ident(),
            "duration": event.duration,
            "error": event.error,
        }
        self.calls.append((method, event, seen))

    def before_statement(self, event: StatementEvent) -> None:
        self._note("before_statement", event)

    def after_statement(self, event: StatementEvent) -> None:
        self._note("after_statement", event)

    def before_transaction(self, event: TransactionEvent) -> None:
        self._note("before_transaction", event)

    def after_transaction(self, event: TransactionEvent) -> None:
        self._note("after_transaction", event)

    def statements(self) -> list[StatementEvent]:
        return [event for method, event, _ in self.calls if method == "after_statement"]

    def transactions(self) -> list[TransactionEvent]:
        return [event for method, event, _ in self.calls if method == "after_transaction"]

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.calls]


def _insert(url: str) -> str:
    return "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


async def test_each_statement_method_is_seen_with_its_sql_rows_and_duration(notes: str) -> None:
    recorder = Recorder()
    database = Database(notes)
    database.add_hook(recorder)
    async with database:
        await database.execute(_insert(notes), {"text": "secret-value", "completed": True})
        await database.execute_many(
            _insert(notes), [{"text": "b", "completed": False}, {"text": "c", "completed": True}]
        )
        rows = await database.fetch_all("SELECT text FROM notes ORDER BY id")
        one = await database.fetch_one("SELECT text FROM notes WHERE text = :t", {"t": "nope"})
        count = await database.fetch_val("SELECT count(*) FROM notes")
        streamed = [row async for row in database.iterate("SELECT id FROM notes")]
    assert [len(rows), one, count, len(streamed)] == [3, None, 3, 3]
    events = recorder.statements()
    assert [e.operation for e in events] == [
        "execute",
        "execute_many",
        "fetch_all",
        "fetch_one",
        "fetch_one",
        "iterate",
    ]
    assert [e.rows for e in events] == [None, None, 3, 0, 1, 3]
    assert all(e.error is None and e.duration is not None and e.duration > 0 for e in events)
    # The SQL as sent, with placeholders; the values apart.
    assert "secret-value" not in events[0].sql
    assert "secret-value" in repr(events[0].values)
    assert "INSERT INTO notes" in events[0].sql
    assert len(list(events[1].values)) == 2
    # before, then after, with the same event (not yet filled in before).
    before = [(event, seen) for method, event, seen in recorder.calls if method.startswith("bef")]
    assert [event for event, _ in before] == events
    assert all(seen["duration"] is None for _, seen in before)
    assert recorder.methods() == ["before_statement", "after_statement"] * 6
    info = events[0].database
    assert isinstance(info, DatabaseInfo)
    assert info.system == dialect_of(notes)


async def test_statements_on_a_connection_and_in_a_transaction_are_seen(notes: str) -> None:
    recorder = Recorder()
    async with Database(notes) as database:
        database.add_hook(recorder)
        async with database.connection() as connection:
            await connection.execute(_insert(notes), {"text": "a", "completed": True})
            async with connection.transaction():
                await connection.fetch_all("SELECT * FROM notes")
        async with database.transaction():
            await database.fetch_val("SELECT count(*) FROM notes")
    assert [e.operation for e in recorder.statements()] == ["execute", "fetch_all", "fetch_one"]
    assert [t.outcome for t in recorder.transactions()] == ["commit", "commit"]


async def test_a_failing_statement_reports_the_callers_error(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    async with database:
        with pytest.raises(Exception, match="no_such_table_here") as raised:
            await database.fetch_all("SELECT * FROM no_such_table_here")
        with pytest.raises(Exception, match=r"(?i)syntax|SELEC") as raised_on_connection:
            async with database.connection() as connection:
                await connection.execute("SELEC broken")
        with pytest.raises(Exception, match="no_such_table_here") as raised_iterating:
            async for _ in database.iterate("SELECT * FROM no_such_table_here"):
                pass
        assert await database.fetch_val("SELECT 1") == 1
    failed = recorder.statements()
    assert failed[0].error is raised.value
    assert failed[1].error is raised_on_connection.value
    assert failed[2].error is raised_iterating.value
    assert failed[3].error is None
    assert all(e.duration is not None for e in failed)


async def test_a_cancelled_statement_reports_the_cancellation(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    async with database:
        task = asyncio.create_task(database.fetch_all(sleep_query(database_url, 5)))
        await asyncio.sleep(0.3)
        assert recorder.methods() == ["before_statement"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await database.fetch_val("SELECT 2") == 2
    cancelled, after = recorder.statements()
    assert isinstance(cancelled.error, asyncio.CancelledError)
    assert after.error is None


async def test_transactions_report_their_outcome_options_and_errors(notes: str) -> None:
    recorder = Recorder()
    database = Database(notes)
    database.add_hook(recorder)
    async with database:
        # The inner one, a savepoint, is a transaction event too.
        async with database.transaction(), database.transaction():
            await database.execute(_insert(notes), {"text": "a", "completed": True})
        with pytest.raises(ZeroDivisionError):
            async with database.transaction():
                raise ZeroDivisionError
        async with database.transaction(force_rollback=True):
            pass
        transaction = await database.transaction()
        await transaction.rollback()
        options = {"isolation": "serializable"} if dialect_of(notes) != "sqlite" else {}
        async with database.transaction(**options):
            pass
    events = recorder.transactions()
    assert [e.outcome for e in events] == [
        "commit",
        "commit",
        "rollback",
        "rollback",
        "rollback",
        "commit",
    ]
    # The inner one ends first; its block's exception is not the transaction's error.
    assert all(e.error is None for e in events)
    assert [e.force_rollback for e in events] == [False, False, False, True, False, False]
    assert events[-1].options == options
    assert all(e.duration is not None and e.duration >= 0 for e in events)
    # Their BEGIN, COMMIT and ROLLBACK are not statements.
    assert [e.operation for e in recorder.statements()] == ["execute"]


async def test_a_transaction_whose_begin_fails_reports_it(tmp_path: Any) -> None:
    """SQLite's BEGIN IMMEDIATE fails while another connection writes (its busy timeout)."""
    url = f"sqlite:///{tmp_path}/locked.db"
    recorder = Recorder()
    holder, waiting = Database(url), Database(url + "?timeout=0.05")
    waiting.add_hook(recorder)
    async with holder, waiting:
        await holder.execute("CREATE TABLE t (x INTEGER)")
        async with holder.transaction(isolation="immediate"):
            await holder.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(Exception, match="locked") as raised:
                async with waiting.transaction(isolation="immediate"):
                    pass
    [event] = recorder.transactions()
    assert event.outcome == "rollback"
    assert event.error is raised.value
    assert event.options == {"isolation": "immediate"}


async def test_an_abandoned_transaction_is_reported(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    async with database:

        async def leaves_it_open() -> None:
            await database.transaction()

        await asyncio.create_task(leaves_it_open())
        # The task ended with the transaction open: its end of life rolls it back.
        for _ in range(100):
            if recorder.transactions():
                break
            gc.collect()
            await asyncio.sleep(0.01)
        assert await database.fetch_val("SELECT 3") == 3
    assert [e.outcome for e in recorder.transactions()] == ["abandoned"]


async def test_hooks_run_in_the_callers_context_with_force_rollback(database_url: str) -> None:
    """The shared connection lives in a loop thread; hooks run in the caller's task."""
    recorder = Recorder()
    database = Database(database_url, force_rollback=True)
    database.add_hook(recorder)
    async with database:
        token = REQUEST.set("request-1")
        try:
            await database.fetch_val("SELECT 1")
            async with database.transaction():
                await database.fetch_all("SELECT 1")
            rows = [row async for row in database.iterate("SELECT 1")]
        finally:
            REQUEST.reset(token)
    assert len(rows) == 1
    here = threading.get_ident()
    assert len(recorder.calls) == 8
    assert {seen["request"] for _, _, seen in recorder.calls} == {"request-1"}
    assert {seen["thread"] for _, _, seen in recorder.calls} == {here}


async def test_hooks_run_in_the_callers_loop_when_a_call_is_carried(
    database_url: str, loop_thread: LoopInThread
) -> None:
    """A database connected in another loop: the call is carried there, the hooks stay here."""
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    loop_thread.run(database.connect())
    try:
        token = REQUEST.set("request-2")
        try:
            assert await database.fetch_val("SELECT 1") == 1
            async with database.connection() as connection:
                await connection.fetch_all("SELECT 1")
                async with connection.transaction():
                    await connection.execute("SELECT 1")
        finally:
            REQUEST.reset(token)
    finally:
        loop_thread.run(database.disconnect())
    here = threading.get_ident()
    assert recorder.methods().count("after_statement") == 3
    assert {seen["request"] for _, _, seen in recorder.calls} == {"request-2"}
    assert {seen["thread"] for _, _, seen in recorder.calls} == {here}


async def test_an_iteration_left_early_is_one_statement_without_error(notes: str) -> None:
    recorder = Recorder()
    async with Database(notes) as database:
        await database.execute_many(
            _insert(notes), [{"text": str(i), "completed": True} for i in range(10)]
        )
        database.add_hook(recorder)
        iteration = database.iterate("SELECT id FROM notes")
        async with contextlib.aclosing(iteration):
            async for _ in iteration:
                break
        # An error of the loop body is not the iteration's (as with a transaction).
        with contextlib.suppress(ZeroDivisionError):
            async for _ in database.iterate("SELECT id FROM notes"):
                raise ZeroDivisionError
    left, body_failed = recorder.statements()
    assert left.operation == "iterate"
    assert left.error is None
    assert left.rows is not None
    assert left.rows >= 1
    assert body_failed.error is None


async def test_a_hook_that_raises_is_logged_and_changes_nothing(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Hook):
        def before_statement(self, event: StatementEvent) -> None:
            raise RuntimeError("hook broke before")

        def after_statement(self, event: StatementEvent) -> None:
            raise RuntimeError("hook broke after")

    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(Broken())
    database.add_hook(recorder)  # the hooks after a broken one still run
    with caplog.at_level(logging.ERROR, logger="aiodatabases"):
        async with database:
            assert await database.fetch_val("SELECT 5") == 5
    assert [r.exc_info[1].args[0] for r in caplog.records if r.exc_info] == [  # type: ignore[index]
        "hook broke before",
        "hook broke after",
    ]
    assert recorder.methods() == ["before_statement", "after_statement"]


async def test_afters_run_in_reverse_order(database_url: str) -> None:
    order: list[str] = []

    class Named(Hook):
        def __init__(self, name: str) -> None:
            self.name = name

        def before_statement(self, event: StatementEvent) -> None:
            order.append(f"before {self.name}")

        def after_statement(self, event: StatementEvent) -> None:
            order.append(f"after {self.name}")

        def before_transaction(self, event: TransactionEvent) -> None:
            order.append(f"begin {self.name}")

        def after_transaction(self, event: TransactionEvent) -> None:
            order.append(f"end {self.name}")

    database = Database(database_url)
    database.add_hook(Named("a"))
    database.add_hook(Named("b"))
    async with database:
        await database.fetch_val("SELECT 1")
        async with database.transaction():
            pass
    assert order == [
        "before a",
        "before b",
        "after b",
        "after a",
        "begin a",
        "begin b",
        "end b",
        "end a",
    ]


def test_an_async_hook_method_is_refused() -> None:
    class AsyncHook(Hook):
        async def after_statement(self, event: StatementEvent) -> None:  # type: ignore[override]
            pass

    database = Database("sqlite:///:memory:")
    with pytest.raises(TypeError, match=r"AsyncHook\.after_statement is async"):
        database.add_hook(AsyncHook())


async def test_adding_and_removing_hooks(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    database.add_hook(recorder)  # once
    async with database:
        await database.fetch_val("SELECT 1")
        database.remove_hook(recorder)
        await database.fetch_val("SELECT 1")
    assert recorder.methods() == ["before_statement", "after_statement"]
    with pytest.raises(ValueError, match="not a hook of this database"):
        database.remove_hook(recorder)
    with pytest.raises(TypeError, match=r"aiodatabases\.hooks\.Hook"):
        database.add_hook(print)  # type: ignore[arg-type]


def test_database_info_names_the_server_never_the_password() -> None:
    pg = Database("postgresql://app:s3cret@db.example:6543/shop")._observers.info
    assert pg == DatabaseInfo(
        "postgresql", "asyncpg", "shop", "db.example", 6543, "postgresql://app:********@db.example:6543/shop"
    )
    mysql = Database("mysql+asyncmy://root@127.0.0.1/test")._observers.info
    assert (mysql.system, mysql.driver, mysql.port) == ("mysql", "asyncmy", 3306)
    assert mysql.name == "test"
    socket = Database("mysql://root@localhost/app?unix_socket=/run/mysqld/mysqld.sock")
    assert (socket._observers.info.host, socket._observers.info.port) == (
        "/run/mysqld/mysqld.sock",
        None,
    )
    pg_socket = Database("postgresql://app@/shop?host=/var/run/postgresql")._observers.info
    assert (pg_socket.host, pg_socket.port) == ("/var/run/postgresql", None)
    hidden = Database("postgresql://app@db/shop?password=s3cret")._observers.info
    assert "s3cret" not in hidden.url
    lite = Database("sqlite:///./app.db")._observers.info
    assert (lite.system, lite.driver, lite.host, lite.port, lite.name) == (
        "sqlite",
        "aiosqlite",
        None,
        None,
        "./app.db",
    )


def test_nobody_observing_costs_an_empty_tuple(caplog: pytest.LogCaptureFixture) -> None:
    database = Database("sqlite:///:memory:")
    caplog.set_level(logging.INFO, logger="aiodatabases")
    assert not logging.getLogger("aiodatabases.statements").isEnabledFor(logging.DEBUG)
    assert database._observers.hooks() == ()
    recorder = Recorder()
    database.add_hook(recorder)
    assert database._observers.hooks() == (recorder,)
