"""OpenTelemetry (issue 16 item 2): spans with the database conventions, parents, pool metrics."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from conftest import LoopInThread, dialect_of, until, urls_for
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiodatabases import Database, MissingDriverError
from aiodatabases.otel import instrument


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("the application")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        [span] = [span for span in self.spans() if span.name == name]
        return span

    def statements(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind is SpanKind.CLIENT]


@pytest.fixture
def traces() -> Iterator[Traces]:
    traces = Traces()
    yield traces
    traces.provider.shutdown()


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_a_statement_span_follows_the_database_conventions(
    notes: str, traces: Traces
) -> None:
    database = Database(notes)
    instrument(database, tracer_provider=traces.provider)
    async with database:
        with traces.tracer.start_as_current_span("request"):
            await database.execute(
                "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
                {"text": "private-value", "completed": True},
            )
            rows = await database.fetch_all("SELECT * FROM notes")
    assert len(rows) == 1
    request = traces.named("request")
    insert, select = traces.statements()
    for span in (insert, select):
        assert span.kind is SpanKind.CLIENT
        assert _parent_id(span) == _id(request)
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == dialect_of(notes)
        assert attributes["db.system.name"] == dialect_of(notes)
        assert attributes["db.namespace"] == database._observers.info.name
        if dialect_of(notes) == "sqlite":
            assert "server.address" not in attributes
        else:
            assert attributes["server.address"] == "127.0.0.1"
            default = {"postgresql": 5432, "mysql": 3306}[dialect_of(notes)]
            assert attributes["server.port"] == (database.url.port or default)
        assert not any("private-value" in str(value) for value in attributes.values())
        assert span.status.status_code is StatusCode.UNSET
    assert insert.attributes is not None
    assert select.attributes is not None
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert str(insert.attributes["db.query.text"]).startswith("INSERT INTO notes")
    assert select.attributes["db.operation.name"] == "SELECT"
    assert select.attributes["db.response.returned_rows"] == 1
    assert select.name == f"SELECT {database._observers.info.name}"


async def test_a_failed_statement_records_its_error(database_url: str, traces: Traces) -> None:
    database = Database(database_url)
    instrument(database, tracer_provider=traces.provider)
    async with database:
        with pytest.raises(Exception, match="no_such_table") as raised:
            await database.fetch_all("SELECT * FROM no_such_table")
    [span] = traces.statements()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    kind = type(raised.value)
    assert span.attributes["error.type"] == f"{kind.__module__}.{kind.__qualname__}"
    assert [event.name for event in span.events] == ["exception"]
    if dialect_of(database_url) == "postgresql":
        assert span.attributes["db.response.status_code"] == "42P01"


async def test_statements_in_a_transaction_are_its_children(
    database_url: str, traces: Traces
) -> None:
    database = Database(database_url)
    instrument(database, tracer_provider=traces.provider)
    async with database:
        with traces.tracer.start_as_current_span("request"):
            async with database.transaction():
                await database.fetch_val("SELECT 1")
                async with database.transaction():
                    await database.fetch_val("SELECT 2")
            await database.fetch_val("SELECT 3")
            with pytest.raises(ZeroDivisionError):
                async with database.transaction():
                    raise ZeroDivisionError
    request = traces.named("request")
    outer, inner, failed = sorted(
        (span for span in traces.spans() if span.name == "transaction"),
        key=lambda span: span.start_time or 0,
    )
    first, second, third = sorted(traces.statements(), key=lambda span: span.start_time or 0)
    assert _parent_id(outer) == _id(request)
    assert _parent_id(first) == _id(outer)
    assert _parent_id(inner) == _id(outer)
    assert _parent_id(second) == _id(inner)
    assert _parent_id(third) == _id(request)  # the transaction is no longer current
    assert _parent_id(failed) == _id(request)
    assert outer.kind is SpanKind.INTERNAL
    assert outer.attributes is not None
    assert failed.attributes is not None
    assert outer.attributes["aiodatabases.transaction.outcome"] == "commit"
    assert failed.attributes["aiodatabases.transaction.outcome"] == "rollback"


async def test_spans_are_children_of_the_callers_span_with_force_rollback(
    database_url: str, traces: Traces
) -> None:
    """The one connection lives in a loop thread of its own: the parent is still the caller's."""
    database = Database(database_url, force_rollback=True)
    instrument(database, tracer_provider=traces.provider)
    async with database:
        with traces.tracer.start_as_current_span("request"):
            await database.fetch_val("SELECT 1")
            async with database.transaction():
                await database.fetch_all("SELECT 2")
            rows = [row async for row in database.iterate("SELECT 3")]
    assert len(rows) == 1
    request = traces.named("request")
    transaction = traces.named("transaction")
    one, two, three = sorted(traces.statements(), key=lambda span: span.start_time or 0)
    assert _parent_id(one) == _id(request)
    assert _parent_id(transaction) == _id(request)
    assert _parent_id(two) == _id(transaction)
    assert _parent_id(three) == _id(request)
    assert request.context is not None
    assert {span.context.trace_id for span in traces.spans() if span.context} == {
        request.context.trace_id
    }


async def test_spans_are_children_of_the_callers_span_from_another_loop(
    database_url: str, traces: Traces, loop_thread: LoopInThread
) -> None:
    """Connected in another loop: each call is carried there; the span's parent is here."""
    database = Database(database_url)
    instrument(database, tracer_provider=traces.provider)
    loop_thread.run(database.connect())
    try:
        with traces.tracer.start_as_current_span("request"):
            await database.fetch_val("SELECT 1")
            async with database.connection() as connection:
                await connection.fetch_all("SELECT 2")
    finally:
        loop_thread.run(database.disconnect())
    request = traces.named("request")
    statements = traces.statements()
    assert len(statements) == 2
    assert {_parent_id(span) for span in statements} == {_id(request)}


async def test_a_concurrent_gather_keeps_each_callers_parent(
    database_url: str, traces: Traces
) -> None:
    database = Database(database_url)
    instrument(database, tracer_provider=traces.provider)

    async def request(n: int) -> None:
        with traces.tracer.start_as_current_span(f"request {n}"):
            async with database.transaction():
                await database.fetch_val(f"SELECT {n}")

    async with database:
        await asyncio.gather(*(request(n) for n in range(5)))
    for n in range(5):
        parent = traces.named(f"request {n}")
        [statement] = [
            span
            for span in traces.statements()
            if span.attributes and span.attributes["db.query.text"] == f"SELECT {n}"
        ]
        [transaction] = [
            span
            for span in traces.spans()
            if span.name == "transaction" and _parent_id(span) == _id(parent)
        ]
        assert _parent_id(statement) == _id(transaction)


def _now(read: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def probe() -> object:
        return read()

    return probe


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


async def test_pool_metrics(database_url: str) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    database = Database(database_url, min_size=1, max_size=2)
    instrument(database, meter_provider=provider)
    try:
        async with database:
            await database.fetch_val("SELECT 1")
            held = asyncio.Event()
            release = asyncio.Event()

            async def hold() -> None:
                async with database.connection() as connection:
                    await connection.fetch_val("SELECT 1")
                    held.set()
                    await release.wait()

            holders = [asyncio.create_task(hold()) for _ in range(2)]
            await held.wait()
            await until(2, _now(lambda: database.pool_stats().in_use))
            waiter = asyncio.create_task(database.fetch_val("SELECT 1"))
            await until(1, _now(lambda: database.pool_stats().waiting))
            points = _points(reader)
            release.set()
            await asyncio.gather(*holders, waiter)
        info = database._observers.info
        name = info.name if info.host is None else f"{info.host}:{info.port}/{info.name}"
        assert "//" not in name  # host:port/database, never the URL
        states = {
            point.attributes["db.client.connection.state"]: point.value
            for point in points["db.client.connection.count"]
            if point.attributes["db.client.connection.pool.name"] == name
        }
        assert states == {"idle": 0, "used": 2}
        [pending] = points["db.client.connection.pending_requests"]
        assert pending.value == 1
        [most] = points["db.client.connection.max"]
        assert most.value == 2
        after = _points(reader)
        [waits] = after["db.client.connection.wait_time"]
        assert waits.count >= 4  # the first statement, two holders, the waiter
        assert waits.max > 0
        # Disconnected: no pool to report.
        assert "db.client.connection.count" not in after or all(
            point.value == 0 for point in after["db.client.connection.count"]
        )
    finally:
        provider.shutdown()


async def test_instrument_once_and_uninstrument(database_url: str, traces: Traces) -> None:
    database = Database(database_url)
    first = instrument(database, tracer_provider=traces.provider)
    assert instrument(database, tracer_provider=traces.provider) is first
    async with database:
        await database.fetch_val("SELECT 1")
        first.uninstrument()
        first.uninstrument()
        await database.fetch_val("SELECT 1")
    assert len(traces.statements()) == 1
    assert database._observers.acquire_listeners == []
    assert database._observers.hooks() == ()
    again = instrument(database, tracer_provider=traces.provider)
    assert again is not first
    with pytest.raises(ValueError, match="other providers"):
        instrument(database, tracer_provider=TracerProvider())
    assert instrument(database) is again  # None: whatever it was set up with


async def test_metrics_stop_with_uninstrument(database_url: str) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    database = Database(database_url)
    instrumentation = instrument(database, meter_provider=provider)
    try:
        async with database:
            await database.fetch_val("SELECT 1")
            assert "db.client.connection.count" in _points(reader)
            instrumentation.uninstrument()
            await database.fetch_val("SELECT 1")
            assert _points(reader).get("db.client.connection.count", []) == []
    finally:
        provider.shutdown()


async def test_the_callers_own_span_inside_a_transaction_is_the_parent(
    database_url: str, traces: Traces
) -> None:
    database = Database(database_url)
    instrument(database, tracer_provider=traces.provider)
    async with database:
        with traces.tracer.start_as_current_span("request"):
            async with database.transaction():
                with traces.tracer.start_as_current_span("work"):
                    await database.fetch_val("SELECT 1")
                    async with database.transaction():
                        await database.fetch_val("SELECT 2")
                await database.fetch_val("SELECT 3")
    work = traces.named("work")
    outer, inner = sorted(
        (span for span in traces.spans() if span.name == "transaction"),
        key=lambda span: span.start_time or 0,
    )
    one, two, three = sorted(traces.statements(), key=lambda span: span.start_time or 0)
    assert _parent_id(one) == _id(work)
    assert _parent_id(inner) == _id(work)
    assert _parent_id(two) == _id(inner)
    assert _parent_id(three) == _id(outer)  # "work" ended: the transaction's again


def test_without_the_api_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "aiodatabases.otel")
    with pytest.raises(MissingDriverError, match=r"pip install 'aiodatabases\[otel\]'"):
        importlib.import_module("aiodatabases.otel")
    monkeypatch.undo()
    importlib.import_module("aiodatabases.otel")


@pytest.mark.parametrize("url", urls_for("postgresql"))
async def test_the_server_port_is_the_default_when_the_url_has_none(
    url: str, traces: Traces
) -> None:
    database = Database(url.replace(":5432", ""))
    instrument(database, tracer_provider=traces.provider)
    async with database:
        await database.fetch_val("SELECT 1")
    [span] = traces.statements()
    assert span.attributes is not None
    assert span.attributes["server.port"] == 5432
