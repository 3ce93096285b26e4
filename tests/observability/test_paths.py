"""Observed paths that are easy to get wrong: transactions ended out of order, in
another task or by disconnect(), iterations cancelled or collected, secrets."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import dialect_of, urls_for
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiodatabases import Database, Hook, NotConnectedError, StatementEvent, TransactionEvent
from aiodatabases.otel import instrument


class Recorder(Hook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def before_statement(self, event: StatementEvent) -> None:
        self.calls.append(("before_statement", event))

    def after_statement(self, event: StatementEvent) -> None:
        self.calls.append(("after_statement", event))

    def before_transaction(self, event: TransactionEvent) -> None:
        self.calls.append(("before_transaction", event))

    def after_transaction(self, event: TransactionEvent) -> None:
        self.calls.append(("after_transaction", event))

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _current_is_recording() -> bool:
    return trace.get_current_span().is_recording()


async def test_two_transactions_ended_out_of_order_leave_no_ended_span_current(
    tmp_path: Any, provider: Any
) -> None:
    """Two databases, explicit start/commit, not LIFO: the ended span stays current."""
    tracer_provider, exporter = provider
    one = Database(f"sqlite:///{tmp_path}/one.db")
    two = Database(f"sqlite:///{tmp_path}/two.db")
    instrument(one, tracer_provider=tracer_provider)
    instrument(two, tracer_provider=tracer_provider)
    async with one, two:
        first = await one.transaction()
        second = await two.transaction()
        await first.commit()
        await second.commit()
        # Both transactions ended: no span of theirs may be current any more.
        assert not _current_is_recording(), trace.get_current_span()
        await one.fetch_val("SELECT 1")
    statement = [s for s in exporter.get_finished_spans() if s.name.startswith("SELECT")][-1]
    assert statement.parent is None, "a statement after both commits is a child of an ended span"


async def test_a_transaction_committed_by_a_child_task_is_not_current_in_its_task(
    database_url: str, provider: Any
) -> None:
    tracer_provider, exporter = provider
    database = Database(database_url)
    instrument(database, tracer_provider=tracer_provider)
    async with database, database.connection():
        tx = await database.transaction()
        await asyncio.create_task(tx.commit())
        assert tx.state.value == "committed"
        await database.fetch_val("SELECT 1")
    [transaction] = [s for s in exporter.get_finished_spans() if s.name == "transaction"]
    statement = [s for s in exporter.get_finished_spans() if s.name.startswith("SELECT")][-1]
    assert statement.parent is None, (
        "a statement after the commit is a child of the committed transaction"
        if statement.parent.span_id == transaction.context.span_id
        else statement.parent
    )


async def test_a_statement_span_after_a_span_with_block_closed_before_commit(
    database_url: str, provider: Any
) -> None:
    """``with span:`` exits while the transaction is open: nothing of ours is left
    current (the transaction span is never made the current span)."""
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("app")
    database = Database(database_url)
    instrument(database, tracer_provider=tracer_provider)
    async with database:
        with tracer.start_as_current_span("request"):
            tx = await database.transaction()
        await tx.commit()
        await database.fetch_val("SELECT 1")
    statement = [s for s in exporter.get_finished_spans() if s.name.startswith("SELECT")][-1]
    assert statement.parent is None, "a statement after both ended is a child of 'request'"


async def test_an_iteration_cancelled_while_opening_its_cursor_reports_it(
    database_url: str,
) -> None:
    recorder = Recorder()
    database = Database(database_url, max_size=1)
    database.add_hook(recorder)
    async with database, database.connection() as holder:
        async def iterate() -> None:
            async for _ in database.iterate("SELECT 1"):
                pass

        await holder.fetch_val("SELECT 1")
        async with holder.transaction():
            task = asyncio.create_task(iterate())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    iterations = [
        e for m, e in recorder.calls if m == "after_statement" and e.operation == "iterate"
    ]
    assert len(iterations) == 1
    assert isinstance(iterations[0].error, asyncio.CancelledError)


async def test_an_iteration_abandoned_and_collected_is_reported_once(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    async with database:
        await database.execute("SELECT 1")
        database.add_hook(recorder)

        async def leave_it() -> None:
            iteration = database.iterate("SELECT 1 UNION ALL SELECT 2")
            await iteration.__anext__()

        await asyncio.create_task(leave_it())
        for _ in range(50):
            gc.collect()
            await asyncio.sleep(0.02)
            if "after_statement" in recorder.methods():
                break
    assert recorder.methods().count("before_statement") == 1
    assert recorder.methods().count("after_statement") == 1


@pytest.mark.parametrize("fails", [False, True], ids=["block-ends", "block-raises"])
async def test_a_transaction_ended_by_disconnect_reports_a_rollback_once(
    database_url: str, fails: bool
) -> None:
    """disconnect() rolls back a transaction parked in a block; the block then
    ends normally (its commit fails) or with an error of its own."""
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)
    await database.connect()
    inside = asyncio.Event()
    go_on = asyncio.Event()

    async def parked() -> None:
        async with database.transaction():
            await database.fetch_val("SELECT 1")
            inside.set()
            await go_on.wait()
            if fails:
                raise ZeroDivisionError

    task = asyncio.create_task(parked())
    await inside.wait()
    await database.disconnect()
    go_on.set()
    with pytest.raises(ZeroDivisionError if fails else NotConnectedError):
        await task
    [end] = [e for m, e in recorder.calls if m == "after_transaction"]
    assert end.outcome == "rollback"
    if fails:
        assert end.error is None  # the block's error is not the transaction's
    else:
        assert isinstance(end.error, NotConnectedError)  # its commit found it rolled back


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_a_password_in_the_query_never_reaches_the_log_or_metrics(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "not-a-real-secret"
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    database = Database(f"{url}?password={secret}")
    instrument(database, meter_provider=meters)
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with database:
            await database.fetch_val("SELECT 1")
            data = reader.get_metrics_data()
    meters.shutdown()
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in database._observers.info.url
    assert secret not in everything
    assert secret not in str(data.to_json() if data else "")


async def test_values_do_not_reach_the_log_through_an_error_message(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "private-value-42"
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(database_url) as database, database.connection() as connection:
            await _fail_with_the_value_in_the_message(database_url, connection, secret)
    logged = [r.getMessage() for r in caplog.records if r.name == "aiodatabases.statements"]
    assert len(logged) >= 1
    assert not any(secret in m for m in logged), logged


async def _fail_with_the_value_in_the_message(url: str, connection: Any, secret: str) -> None:
    """A statement whose driver error quotes the value bound to it."""
    if dialect_of(url) == "postgresql":
        with pytest.raises(Exception, match=secret):
            await connection.fetch_val("SELECT (:v)::text::integer", {"v": secret})
        return
    await connection.execute("CREATE TEMPORARY TABLE u (x VARCHAR(40) PRIMARY KEY)")
    await connection.execute("INSERT INTO u VALUES (:x)", {"x": secret})
    with pytest.raises(Exception, match=r"(?i)unique|duplicate") as raised:
        await connection.execute("INSERT INTO u VALUES (:x)", {"x": secret})
    if dialect_of(url) == "mysql":
        assert secret in str(raised.value)  # MySQL quotes the value; SQLite names the column


async def test_values_do_not_reach_a_span_through_an_error_message(
    database_url: str, provider: Any
) -> None:
    tracer_provider, exporter = provider
    secret = "private-value-43"
    for log_values in (False, True):
        database = Database(database_url, log_values=log_values)
        instrument(database, tracer_provider=tracer_provider)
        async with database, database.connection() as connection:
            await _fail_with_the_value_in_the_message(database_url, connection, secret)
    failed = [s for s in exporter.get_finished_spans() if s.status.status_code.name == "ERROR"]
    hidden, shown = failed[0], failed[-1]
    seen = str(hidden.attributes) + str(hidden.status.description)
    seen += "".join(str(event.attributes) for event in hidden.events)
    assert secret not in seen
    assert hidden.status.description
    [exception] = hidden.events
    assert exception.attributes is not None
    assert str(exception.attributes["exception.message"]).startswith(
        type_name := str(exception.attributes["exception.type"]).rsplit(".", 1)[-1]
    ), type_name
    if dialect_of(database_url) != "sqlite":
        shown_text = str(shown.status.description)
        assert secret in shown_text  # log_values=True: the driver's message as it is


async def test_a_slow_loop_body_is_not_a_slow_statement(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiodatabases"):
        async with Database(f"sqlite:///{tmp_path}/x.db", slow_statement_threshold=0.1) as db:
            async for _ in db.iterate("SELECT 1"):
                await asyncio.sleep(0.3)  # the application's work, not the database's
    slow = [r.getMessage() for r in caplog.records if r.name == "aiodatabases.statements"]
    assert slow == [], slow


async def test_the_decorator_form_reports_each_call(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url)
    database.add_hook(recorder)

    @database.transaction()
    async def work(fail: bool) -> None:
        await database.fetch_val("SELECT 1")
        if fail:
            raise ZeroDivisionError

    async with database:
        await work(False)
        with pytest.raises(ZeroDivisionError):
            await work(True)
    ends = [e.outcome for m, e in recorder.calls if m == "after_transaction"]
    assert ends == ["commit", "rollback"]


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_a_commit_that_fails_is_recorded_on_the_transaction_span(
    url: str, provider: Any
) -> None:
    tracer_provider, exporter = provider
    recorder = Recorder()
    database = Database(url)
    database.add_hook(recorder)
    instrument(database, tracer_provider=tracer_provider)
    async with database:
        await database.execute("DROP TABLE IF EXISTS deferred_child")
        await database.execute(
            "CREATE TABLE deferred_child (id int PRIMARY KEY, parent int CHECK (parent > 0)"
            " , CONSTRAINT u UNIQUE (parent) DEFERRABLE INITIALLY DEFERRED)"
        )
        try:
            with pytest.raises(Exception, match=r"(?i)unique|duplicate") as raised:
                async with database.transaction():
                    await database.execute("INSERT INTO deferred_child VALUES (1, 1), (2, 1)")
        finally:
            await database.execute("DROP TABLE deferred_child")
    [end] = [e for m, e in recorder.calls if m == "after_transaction"]
    assert (end.outcome, end.error) == ("rollback", raised.value)
    [span] = [s for s in exporter.get_finished_spans() if s.name == "transaction"]
    assert span.status.status_code.name == "ERROR"
