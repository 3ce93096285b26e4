"""OpenTelemetry for a ``Database``: a span per statement and transaction, and pool metrics.

``pip install 'aiodatabases[otel]'`` (it needs ``opentelemetry-api`` only; the
SDK and exporters are the application's choice):

    from aiodatabases.otel import instrument

    database = Database(url)
    instrument(database)  # the global tracer and meter providers, or pass your own

Spans follow OpenTelemetry's database semantic conventions: a ``CLIENT``
span per statement named ``"{operation} {database}"`` with ``db.system``
(and its newer name ``db.system.name``), ``db.namespace``,
``db.operation.name``, ``db.query.text`` (the SQL with its placeholders,
never the values), ``server.address`` and ``server.port`` (a read
replica's, for a statement it ran); a failure sets
the span's status to error, records the exception and sets ``error.type``.
A statement span is a child of the caller's current span, wherever the
statement runs (the ``force_rollback`` connection's loop thread, another
event loop): it is built on ``aiodatabases.hooks``, which run in the
caller's context. A transaction is an ``INTERNAL`` span ``"transaction"``
with its outcome in ``aiodatabases.transaction.outcome``; the statements
(and transactions) of its task inside it are its children, unless a span of
the caller's own was made current inside it (then theirs). It is never made
the current span: nothing is left current when a transaction ends out of
order or in another task. A failure's message (which drivers write values
into) is recorded only with the database's ``log_values=True``; else the
exception's class and the server's code.

Pool metrics (meter ``aiodatabases``): ``db.client.connection.count``
(attribute ``db.client.connection.state``: ``idle`` or ``used``),
``db.client.connection.max``, ``db.client.connection.pending_requests`` and
the histogram ``db.client.connection.wait_time`` (seconds each acquire
waited, for each acquire that got a connection), each with
``db.client.connection.pool.name`` (``host:port/database``; SQLite: the file).
"""

from __future__ import annotations

import contextvars
import re
import traceback
import weakref
from collections.abc import Iterable
from typing import Any

from ._error_codes import error_code
from ._observe import Observers
from ._pool_stats import PoolStats
from ._statement_log import error_text
from .database import Database
from .exceptions import MissingDriverError, NotConnectedError
from .hooks import DatabaseInfo, Hook, StatementEvent, TransactionEvent

try:
    from opentelemetry import context, metrics, trace
except ImportError as exc:  # pragma: no cover - tested with the module hidden
    error = MissingDriverError(
        "aiodatabases.otel needs the OpenTelemetry API, which is not installed; "
        "install it with: pip install 'aiodatabases[otel]'"
    )
    error.name = "opentelemetry"
    raise error from exc

__all__ = ["Instrumentation", "instrument"]

#: The instrumentation scope's name (tracer and meter).
SCOPE = "aiodatabases"

_FIRST_WORD = re.compile(r"\s*\(*\s*([A-Za-z]+)")


class _Open:
    """An open transaction's span, the span that was current at its start, and
    the transaction it is inside (its task's innermost one when it began)."""

    __slots__ = ("below", "ended", "outer", "span")

    def __init__(self, span: trace.Span, outer: trace.Span, below: _Open | None) -> None:
        self.span, self.outer, self.below, self.ended = span, outer, below, False


#: The innermost transaction of this task's context (see ``_parent``).
_INSIDE: contextvars.ContextVar[_Open | None] = contextvars.ContextVar(
    "aiodatabases_otel_inside", default=None
)


def _innermost() -> _Open | None:
    """The innermost transaction still open here (one ended out of order, or by
    another task, is skipped)."""
    entry = _INSIDE.get()
    while entry is not None and entry.ended:
        entry = entry.below
    return entry


def _parent() -> context.Context | None:
    """Where a new span starts: in the innermost open transaction's span while
    the span current here is still the one that was current when it began;
    else (None) in the current context (the caller's own span, inside it)."""
    entry = _innermost()
    if entry is None or trace.get_current_span() is not entry.outer:
        return None
    return trace.set_span_in_context(entry.span)

_instrumented: weakref.WeakKeyDictionary[Database, Instrumentation] = weakref.WeakKeyDictionary()


def instrument(
    database: Database,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """Trace ``database``'s statements and transactions and measure its pool.

    Connected or not; it holds across ``connect()``/``disconnect()``. Called
    again for the same database, returns the instrumentation it already has.
    ``Instrumentation.uninstrument()`` stops it.
    """
    existing = _instrumented.get(database)
    if existing is not None:
        if not existing.uses(tracer_provider, meter_provider):
            raise ValueError(
                "this database is instrumented already, with other providers; "
                "call uninstrument() on what instrument() returned first"
            )
        return existing
    instrumentation = Instrumentation(database, tracer_provider, meter_provider)
    _instrumented[database] = instrumentation
    return instrumentation


def _operation(sql: str) -> str | None:
    """The statement's first keyword (``SELECT``...); None for a ``WITH`` query or none."""
    match = _FIRST_WORD.match(sql)
    if match is None:
        return None
    word = match.group(1).upper()
    return None if word == "WITH" else word


def _common(info: DatabaseInfo) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "db.system": info.system,
        "db.system.name": info.system,
        "db.namespace": info.name,
    }
    if info.host is not None:
        attributes["server.address"] = info.host
    if info.port is not None:
        attributes["server.port"] = info.port
    return attributes


def _record_error(span: trace.Span, error: BaseException, with_message: bool) -> None:
    kind = type(error)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    span.set_attribute("error.type", module + kind.__qualname__)
    code = error_code(error)
    if code is not None:
        span.set_attribute("db.response.status_code", code)
    text = error_text(error, with_message)
    if with_message:
        span.record_exception(error)
    else:
        # The message, and the traceback's last line that repeats it, left out.
        frames = "".join(traceback.format_tb(error.__traceback__))
        span.record_exception(
            error,
            attributes={
                "exception.message": text,
                "exception.stacktrace": f"Traceback (most recent call last):\n{frames}{text}",
            },
        )
    span.set_status(trace.Status(trace.StatusCode.ERROR, text))


class _Tracing(Hook):
    """The spans (see the module docstring)."""

    def __init__(self, tracer: trace.Tracer, info: DatabaseInfo, with_messages: bool) -> None:
        self._tracer = tracer
        self._info = info
        self._common = _common(info)
        self._with_messages = with_messages
        self._replicas: dict[DatabaseInfo, dict[str, Any]] = {}  # a read replica's attributes

    def before_statement(self, event: StatementEvent) -> None:
        info = event.database  # the primary's, or the read replica's that ran it
        common = self._common if info is self._info else self._replicas.get(info)
        if common is None:
            common = self._replicas[info] = _common(info)
        attributes = dict(common)
        attributes["db.query.text"] = event.sql
        operation = _operation(event.sql)
        if operation is not None:
            attributes["db.operation.name"] = operation
        if event.operation == "execute_many":
            attributes["db.operation.batch.size"] = len(event.values)
        name = f"{operation or event.operation} {info.name}"
        event.state[self] = self._tracer.start_span(
            name, context=_parent(), kind=trace.SpanKind.CLIENT, attributes=attributes
        )

    def after_statement(self, event: StatementEvent) -> None:
        span: trace.Span | None = event.state.pop(self, None)
        if span is None:
            return
        if event.rows is not None:
            span.set_attribute("db.response.returned_rows", event.rows)
        if event.error is not None:
            _record_error(span, event.error, self._with_messages)
        span.end()

    def before_transaction(self, event: TransactionEvent) -> None:
        attributes = dict(self._common)
        for key, value in event.options.items():
            attributes[f"aiodatabases.transaction.{key}"] = str(value)
        span = self._tracer.start_span(
            "transaction", context=_parent(), kind=trace.SpanKind.INTERNAL, attributes=attributes
        )
        entry = _Open(span, trace.get_current_span(), _innermost())
        _INSIDE.set(entry)  # the task's context: the block's statements see it
        event.state[self] = entry

    def after_transaction(self, event: TransactionEvent) -> None:
        entry: _Open | None = event.state.pop(self, None)
        if entry is None:
            return
        entry.ended = True
        if _INSIDE.get() is entry:
            _INSIDE.set(_innermost())  # else ended elsewhere: skipped from now on
        span = entry.span
        span.set_attribute("aiodatabases.transaction.outcome", event.outcome or "")
        if event.error is not None:
            _record_error(span, event.error, self._with_messages)
        span.end()


class _PoolMetrics:
    """The pool instruments of one meter provider, shared by the databases it measures
    (instruments are created once per name; each callback reports every database)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.members: weakref.WeakSet[Instrumentation] = weakref.WeakSet()
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._count],
            unit="{connection}",
            description="Connections open in the pool, by state (idle or used)",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._max],
            unit="{connection}",
            description="The most connections the pool may open (max_size)",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._pending],
            unit="{request}",
            description="Callers waiting for a connection",
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="How long taking a connection from the pool waited",
        )

    def _each(self) -> Iterable[tuple[PoolStats, dict[str, Any]]]:
        for member in list(self.members):
            stats = member.stats()
            if stats is not None:
                yield stats, member.pool

    def _count(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for stats, pool in self._each():
            yield metrics.Observation(stats.idle, {**pool, "db.client.connection.state": "idle"})
            yield metrics.Observation(stats.in_use, {**pool, "db.client.connection.state": "used"})

    def _max(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for stats, pool in self._each():
            yield metrics.Observation(stats.max_size, pool)

    def _pending(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for stats, pool in self._each():
            yield metrics.Observation(stats.waiting, pool)


_pool_metrics: weakref.WeakKeyDictionary[metrics.MeterProvider, _PoolMetrics] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(provider: metrics.MeterProvider | None) -> _PoolMetrics:
    provider = metrics.get_meter_provider() if provider is None else provider
    found = _pool_metrics.get(provider)
    if found is None:
        found = _pool_metrics[provider] = _PoolMetrics(provider.get_meter(SCOPE))
    return found


class Instrumentation:
    """What ``instrument()`` set up for one database; ``uninstrument()`` undoes it."""

    def __init__(
        self,
        database: Database,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self._database = weakref.ref(database)
        self._providers = (tracer_provider, meter_provider)
        observers: Observers = database._observers
        self._observers = observers
        info = observers.info
        tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self.hook = _Tracing(tracer, info, observers.log_values)
        where = info.name if info.host is None else f"{info.host}:{info.port}/{info.name}"
        if info.host is not None and info.port is None:  # a Unix socket
            where = f"{info.host}/{info.name}"
        #: The attributes of this database's pool metrics.
        self.pool = {"db.client.connection.pool.name": where}
        self._metrics = _metrics_for(meter_provider)
        self._metrics.members.add(self)
        observers.acquire_listeners.append(self._waited)
        observers.add(self.hook)
        self._active = True

    def uses(self, *providers: object) -> bool:
        """Whether it was set up with these providers (the tracer's, the meter's;
        None asks for nothing in particular)."""
        return all(
            given is None or given is used
            for given, used in zip(providers, self._providers, strict=True)
        )

    def uninstrument(self) -> None:
        """Stop the spans and metrics of this database (idempotent)."""
        if not self._active:
            return
        self._active = False
        self._observers.remove(self.hook)
        self._observers.acquire_listeners.remove(self._waited)
        self._metrics.members.discard(self)
        database = self._database()
        if database is not None:
            _instrumented.pop(database, None)

    def _waited(self, seconds: float) -> None:
        self._metrics.wait_time.record(seconds, self.pool)

    def stats(self) -> PoolStats | None:
        """The pool now, or None when the database is not connected (or gone)."""
        database = self._database()
        if database is None:
            return None
        try:
            return database.pool_stats()
        except NotConnectedError:
            return None
