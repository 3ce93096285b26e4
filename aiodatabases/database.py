"""``Database``: the object an application creates once, at import time.

It is inert until ``connect()``: the URL and options are checked at once, but
no I/O happens and nothing bound to an event loop exists before ``connect()``
builds the ``Runtime`` in the running loop (or, with ``force_rollback=True``,
in a private loop thread, so that every loop and thread can use it).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._gate import refuse_lost
from ._kinds import KIND_EXECUTE, KIND_EXECUTE_MANY, KIND_FETCH_ALL, KIND_FETCH_ONE, Kind
from ._lifecycle import DatabaseState, Lifecycle
from ._observe import Observers
from ._opening import Opened, open_all
from ._options import take_settings
from ._pool_stats import PoolStats
from ._prepare import Query, Values
from ._records import Record
from ._replica_options import take_routing
from ._replicas import ON_PRIMARY, Replicas, ReplicaStats
from ._runtime import Runtime
from ._tasks import TaskConnections
from ._url import DatabaseURL
from .backends import create_backend
from .backends.base import Capabilities
from .connection import Connection, is_held, transactions_of
from .exceptions import ConfigurationError, NotConnectedError, TransactionError
from .hooks import Hook
from .transaction import Isolation, Transaction


class Database:
    """A database: a pool of connections, or one rolled-back connection.

    ``Database(url, force_rollback=False, **options)``. Options (keywords or
    URL query) are ``min_size``, ``max_size``, ``acquire_timeout`` (seconds
    to wait for a pooled or shared connection; ``None`` waits forever),
    ``pool_recycle`` (seconds after which an idle connection is replaced),
    ``health_check_after`` (seconds of idling after which a pooled connection
    is pinged before use; default 5, ``None`` or 0: never), plus
    the driver's own (see the README). Unknown options raise
    ``UnknownOptionError``.

    With ``force_rollback=True`` every task, loop and thread shares one
    connection inside a transaction that ``disconnect()`` rolls back.
    ``replicas=[url, ...]``, ``read_your_writes``, ``replica_retry_after``: read
    replicas for bare reads (see the README); unused with ``force_rollback``.
    """

    def __init__(
        self, url: str | DatabaseURL, *, force_rollback: bool = False, **options: Any
    ) -> None:
        self.url = DatabaseURL(url)
        self.options = options
        url_options = dict(self.url.options)
        kwargs = dict(options)
        routing = take_routing(url_options, kwargs)
        shared = dict(kwargs)  # what applies to the replicas too
        self._settings = take_settings(url_options, kwargs)
        self._backend = create_backend(self.url, url_options, kwargs)
        slow = self._settings.slow_statement_threshold
        self._observers = Observers(self.url, self._settings.log_values, slow)
        self._replicas = (
            Replicas(routing, shared, self._backend, self._observers) if routing.urls else None
        )
        self._routing: Replicas | None = None  # the replicas, while connected with them
        self._force_rollback = force_rollback
        # What is open, while connected (``_publish``): read by every statement.
        self._runtime: Runtime | None = None
        self._shared: Connection | None = None
        self._life = Lifecycle(self.url.obscure_password, self._open_all, self._publish)
        self._task_connections = TaskConnections(str(id(self)))

    def __repr__(self) -> str:
        return f"<Database {self.url!r} {self._life.state.value}>"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def dialect(self) -> Any:
        """The SQLAlchemy dialect this database's statements are compiled with.

        For libraries built on top (query builders, ORMs) that compile their
        own statements or quote identifiers (``dialect.identifier_preparer``).
        ``database._backend._dialect`` is the same object (the ``databases``
        path). Needs SQLAlchemy (``pip install 'aiodatabases[sqlalchemy]'``).
        """
        return self._backend._dialect  # type: ignore[attr-defined]

    @property
    def is_connected(self) -> bool:
        return self._life.state is DatabaseState.CONNECTED

    def pool_stats(self) -> PoolStats:
        """The pool now: size, idle, in use, waiting, opened and closed totals.

        Readable from any loop or thread (a snapshot, no I/O). With
        ``force_rollback=True`` it describes the pool of the one shared
        connection. ``NotConnectedError`` when not connected.
        """
        return self._require_runtime().pool.stats()

    def replica_stats(self) -> list[ReplicaStats]:
        """Each read replica now (none with ``force_rollback``); as ``pool_stats()``."""
        self._require_runtime()
        return [] if self._routing is None else self._routing.stats()

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook`` (``aiodatabases.hooks.Hook``) around each statement and transaction."""
        self._observers.add(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop running ``hook``; ``ValueError`` if it was not added."""
        self._observers.remove(hook)

    async def connect(self) -> None:
        """Connect, or count one more user if already connected.

        Calls nest: only the ``disconnect()`` that balances the first
        ``connect()`` closes anything.

        Cancellation: a connect cancelled half way leaves the database
        disconnected, with nothing open.
        """
        await self._life.connect()

    def _open_all(self) -> Awaitable[Opened]:
        force_rollback = self._force_rollback  # read at connect(): see force_rollback()
        return open_all(
            self._backend, self._settings, self.url, force_rollback, self._observers, self._replicas
        )

    def _publish(self, opened: Opened | None) -> None:
        """What is open now (``Lifecycle``, under its lock)."""
        self._runtime, self._shared, self._routing = opened or (None, None, None)

    async def disconnect(self) -> None:
        """Balance one ``connect()``; the last one closes the pool. Extra calls do nothing.

        With ``force_rollback=True`` the last one rolls everything back.
        Cancellation: the close runs to completion all the same.
        """
        await self._life.disconnect()

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    @contextlib.contextmanager
    def force_rollback(self) -> Iterator[None]:
        """Within the block, a ``connect()`` makes a force_rollback database."""
        if self._life.state is not DatabaseState.DISCONNECTED:
            raise ConfigurationError(
                "force_rollback() must be entered before connect(): the mode of a "
                "connected database cannot change"
            )
        initial = self._force_rollback
        self._force_rollback = True
        try:
            yield
        finally:
            self._force_rollback = initial

    # -- connections and transactions -----------------------------------------------------------

    def _require_runtime(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            raise NotConnectedError(
                f"database {self.url.obscure_password} is not connected; "
                "call 'await database.connect()' (or use 'async with database:') first"
            )
        return runtime

    def connection(self) -> Connection:
        """The current task's connection (the shared one with force_rollback).

        A task that continues an ended task's context (a pytest-asyncio test
        after its fixture) takes that task's connection over; see ``_tasks``.
        """
        runtime = self._require_runtime()
        refuse_lost()
        if self._shared is not None:
            return self._shared
        return self._task_connections.get_or_create(runtime)

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on the current task's connection, resolved when it starts.

        Usable as ``async with``, as a decorator, or ``await``-ed (then call
        ``commit()``/``rollback()``). ``force_rollback=True`` rolls back at the
        end even without an error. Options: ``isolation`` (every backend with
        levels; SQLite: ``deferred``, ``immediate``, ``exclusive``),
        ``readonly`` and ``deferrable`` (PostgreSQL); ``retry`` (a number of
        runs or a ``Retry``, decorator form only) runs the function again when
        the transaction loses a conflict.
        """
        if options.keys() - {"retry"}:  # reject unknown options now, not at start
            self._backend.begin_sql({k: v for k, v in options.items() if k != "retry"})
        return Transaction(
            lambda: transactions_of(self.connection()), force_rollback=force_rollback, **options
        )

    def isolated(self) -> Isolation:
        """A rollback point: everything written inside it is undone at its end.

        Only on a connected ``force_rollback=True`` database: its one shared
        connection is where every task, loop and thread writes. This is the
        per-test isolation of the pytest plugin (a savepoint, not a reconnect).
        """
        self._require_runtime()
        if self._shared is None:
            raise TransactionError(
                "isolated() needs a database connected with force_rollback=True "
                "(the writes to undo must all go through its one shared connection)"
            )
        return Isolation(transactions_of(self._shared))

    def _current(self) -> Connection | None:
        """The connection a statement must use, or None to borrow one for it."""
        runtime = self._require_runtime()
        refuse_lost()
        if self._shared is not None:
            return self._shared
        runtime.check_reachable()
        return self._task_connections.current(runtime)

    # -- statements -----------------------------------------------------------------------------

    async def fetch_all(self, query: Query, values: Values = None) -> list[Record]:
        """All rows of a query. Cancellation: see ``Connection.fetch_all``."""
        result: list[Record] = await self._statement(KIND_FETCH_ALL, query, values)
        return result

    async def fetch_one(self, query: Query, values: Values = None) -> Record | None:
        """The first row, or None."""
        result: Record | None = await self._statement(KIND_FETCH_ONE, query, values)
        return result

    async def fetch_val(self, query: Query, values: Values = None, column: Any = 0) -> Any:
        """A value of the first row (``column`` by index or name), or None."""
        row: Record | None = await self._statement(KIND_FETCH_ONE, query, values)
        return None if row is None else row[column]

    async def execute(self, query: Query, values: Values = None) -> Any:
        """Run a statement; see ``Connection.execute`` for the return value."""
        return await self._statement(KIND_EXECUTE, query, values)

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per mapping, as one driver batch."""
        await self._statement(KIND_EXECUTE_MANY, query, values)

    async def _statement(self, kind: Kind, query: Query, values: Any) -> Any:
        """The one path of a statement method: on the current task's connection
        (or the shared one) if it has one, else on a connection borrowed for it;
        with replicas, a read outside any block may go to one (``_replicas``)."""
        # ``_current()`` written out: this is every statement's path.
        runtime = self._runtime
        if runtime is None:
            runtime = self._require_runtime()  # raises NotConnectedError
        refuse_lost()
        connection = self._shared
        if connection is None:
            runtime.check_reachable()
            connection = self._task_connections.current(runtime)
        routing = self._routing
        if connection is not None and (routing is None or not kind.reads or is_held(connection)):
            return await kind.on_connection(connection, query, values)
        sql, args, meta = kind.prepare(query, values, self._backend)
        if routing is not None and kind.reads:
            replica = routing.route(sql)
            if replica is not None:
                result = await routing.read(replica, kind.op, sql, args)
                if result is not ON_PRIMARY:
                    return result if kind.shape is None else kind.shape(result, meta)
        hooks = self._observers.hooks()
        if hooks:
            run = runtime.run_borrowed, kind.op, sql, args
            result = await self._observers.statement(hooks, kind.op, sql, args, runtime.call, *run)
        else:
            result = await runtime.call(runtime.run_borrowed, kind.op, sql, args)
        return result if kind.shape is None else kind.shape(result, meta)

    def iterate(self, query: Query, values: Values = None) -> AsyncIterator[Record]:
        """Stream rows in batches. Other queries may run inside the loop.

        The iteration holds the current task's connection; statements of the
        same task in the loop body run on it between batches. (On MySQL, whose
        drivers cannot interleave, and on PostgreSQL with ``pgbouncer=true``,
        whose cursor keeps its transaction open until the iteration ends, it
        holds a pooled connection of its own outside a block.)

        Returns the connection's async generator itself, not a wrapper: a loop
        left by ``break`` then closes the cursor as soon as the loop allows.
        (A bare read on a replica is wrapped: it may go on to the primary.)
        """
        # The task's own connection: statements in the loop body (same task)
        # run on it between batches instead of waiting for another one.
        connection = self._current()
        if self._routing is not None and (connection is None or not is_held(connection)):
            on_primary = functools.partial(self._iterate, query, values, connection)
            rows = self._routing.iterate(query, values, self._backend, on_primary)
            if rows is not None:
                return rows
        return self._iterate(query, values, connection)

    def _iterate(
        self, query: Query, values: Values, connection: Connection | None
    ) -> AsyncIterator[Record]:
        if connection is None or not is_held(connection):
            # Unless the pool has only one (the body's statements would wait for it forever).
            runtime = self._require_runtime()
            own = _iterates_apart(self._backend.capabilities) and runtime.pool.max_size > 1
            connection = Connection(runtime) if own else self.connection()
        return connection.iterate(query, values)


def _iterates_apart(capabilities: Capabilities) -> bool:
    """Whether ``iterate()`` outside a block takes a connection of its own.

    A driver that streams over the connection (MySQL) could not run the loop
    body's statements on it, and a cursor pinned in its transaction
    (PgBouncer) would run them inside it.
    """
    return capabilities.cursor_blocks_connection or capabilities.iteration_keeps_transaction
