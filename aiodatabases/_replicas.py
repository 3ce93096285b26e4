"""Read replicas: which server a bare read goes to, and the replicas' pools.

``Database(url, replicas=[...])`` keeps one ``Replica`` per URL, each with a
pool of its own (a ``Runtime`` in the connecting loop, opened and closed with
the primary's). A statement outside any connection block or transaction
that only reads (``_query.is_replica_read``; ``fetch_*`` and ``iterate()``)
goes to the next replica in turn, unless the caller's context wrote within
the last ``read_your_writes`` seconds: a contextvar holds the time of its
last write, set by a hook on the primary (``WriteMarker``) after every
statement that may write and at the start and end of every transaction, so
it covers writes made through a ``Connection`` too. Everything else runs on
the primary, as without replicas.

A replica whose connect fails (``ReplicaUnavailableError``, raised before
anything was sent) is skipped for ``replica_retry_after`` seconds with a
WARNING on ``aiodatabases.replicas``, and the read goes to another replica or
the primary; after that time one read tries it again. A read that fails on a
replica with a disconnect error may have run: it is the caller's error (never
run again elsewhere), and the replica is skipped all the same.

Routing state (the turn, the marks) may be touched from several threads
(calls carried from other loops): a race costs at most an uneven turn or a
second probe, never a wrong server, since every choice is checked alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._background import shielded
from ._observe import Observers
from ._options import take_settings
from ._pool_stats import PoolStats
from ._prepare import Query, Values, prepare
from ._query import is_read_only, is_replica_read
from ._records import Record
from ._replica_options import Routing
from ._runtime import Runtime, Settings
from ._statements import Operation
from ._url import DatabaseURL
from .backends import create_backend
from .backends.base import Backend, DriverConnection
from .connection import Connection
from .exceptions import ConfigurationError, ReplicaUnavailableError
from .hooks import Hook, StatementEvent, TransactionEvent

logger = logging.getLogger("aiodatabases.replicas")

#: What a read returns when no replica could take it: run it on the primary.
ON_PRIMARY: Any = object()


@dataclass(frozen=True)
class ReplicaStats:
    """One read replica now (``Database.replica_stats()``).

    ``url`` has its password masked; ``available`` is False while the
    replica is skipped after a failure; ``reads`` counts the reads it served
    and ``failures`` the times it was found unavailable since ``connect()``;
    ``pool`` is its pool.
    """

    url: str
    available: bool
    reads: int
    failures: int
    pool: PoolStats


class Replica:
    """One read replica: its backend, options and hooks; its pool while connected."""

    def __init__(
        self, url: DatabaseURL, backend: Backend, settings: Settings, observers: Observers
    ):
        self.url = url
        self.name = url.obscure_password
        self.backend = backend
        self.settings = settings
        self.observers = observers
        self.runtime: Runtime | None = None
        self.available = True
        self.retry_at = 0.0  # while unavailable: when one read may try it again
        self.reads = 0
        self.failures = 0

    async def connect(self) -> DriverConnection:
        """The pool's connect: a failure says the replica is unavailable (nothing was sent)."""
        try:
            return await self.backend.connect()
        except Exception as exc:
            raise ReplicaUnavailableError(
                f"replica {self.name} could not be reached: {exc}"
            ) from exc

    def new_runtime(self, settings: Settings) -> Runtime:
        """A pool for this replica in the running loop (not open yet)."""
        loop = asyncio.get_running_loop()
        return Runtime(self.backend, settings, loop, None, self.observers, self.connect)

    def run(self, runtime: Runtime, op: Operation, sql: str, args: Any) -> Awaitable[Any]:
        """One statement on a connection borrowed from this replica's pool, observed."""
        observers = self.observers
        hooks = observers.hooks()
        if hooks:
            run = runtime.run_borrowed, op, sql, args
            return observers.statement(hooks, op, sql, args, runtime.call, *run)
        return runtime.call(runtime.run_borrowed, op, sql, args)


class WriteMarker(Hook):
    """A hook on the primary: the caller's context wrote now (read-your-writes)."""

    def __init__(self, wrote: contextvars.ContextVar[float]) -> None:
        self._wrote = wrote

    def after_statement(self, event: StatementEvent) -> None:
        if not is_read_only(event.sql):  # failed too: it may have written
            self._wrote.set(time.monotonic())

    def before_transaction(self, event: TransactionEvent) -> None:
        self._wrote.set(time.monotonic())  # tasks it starts read on the primary too

    def after_transaction(self, event: TransactionEvent) -> None:
        self._wrote.set(time.monotonic())  # the window starts at the commit


class Replicas:
    """The read replicas of one ``Database`` and the routing of its bare reads."""

    def __init__(
        self, routing: Routing, options: Mapping[str, Any], primary: Backend, observers: Observers
    ) -> None:
        if primary.url.dialect == "sqlite":
            raise ConfigurationError("replicas= needs a database server: SQLite has no replicas")
        self._replicas = [_replica(url, options, primary, observers) for url in routing.urls]
        self._window = routing.read_your_writes
        self._retry_after = routing.retry_after
        self._turn = 0
        self._wrote: contextvars.ContextVar[float] = contextvars.ContextVar(
            f"aiodatabases_wrote_{id(self)}", default=float("-inf")
        )
        if self._window:
            observers.add_own(WriteMarker(self._wrote))

    # -- lifecycle (with the primary's connect() and disconnect()) ---------------------

    async def open(self) -> None:
        """Open every replica's pool, in the running loop; one that cannot be
        reached is logged and skipped (its pool opens empty). Cancellation:
        nothing stays open."""
        try:
            await asyncio.gather(*(self._open(replica) for replica in self._replicas))
        except BaseException:
            await shielded(asyncio.gather(*(runtime.close() for runtime in self.detach())))
            raise

    async def _open(self, replica: Replica) -> None:
        replica.available, replica.retry_at = True, 0.0
        replica.reads = replica.failures = 0  # since connect(), as the pool's totals
        runtime = replica.new_runtime(replica.settings)
        try:
            await runtime.open()  # closes what it opened if it fails
        except ReplicaUnavailableError as exc:
            self._unavailable(replica, exc)
            runtime = replica.new_runtime(replace(replica.settings, min_size=0))  # opens nothing
            await runtime.open()
        replica.runtime = runtime
        size = runtime.pool.stats().size
        logger.info("connected to replica %s (%d connection(s))", replica.name, size)

    def detach(self) -> list[Runtime]:
        """The replicas' runtimes, for closing; from now on no read goes to them."""
        runtimes = [replica.runtime for replica in self._replicas if replica.runtime is not None]
        for replica in self._replicas:
            replica.runtime = None
        return runtimes

    def stats(self) -> list[ReplicaStats]:
        return [
            ReplicaStats(
                replica.name,
                replica.available,
                replica.reads,
                replica.failures,
                runtime.pool.stats(),
            )
            for replica in self._replicas
            if (runtime := replica.runtime) is not None
        ]

    # -- routing -----------------------------------------------------------------------

    def route(self, sql: str) -> Replica | None:
        """The replica for a bare read of ``sql``, or None: the primary's."""
        if self._window and time.monotonic() - self._wrote.get() < self._window:
            return None  # this context wrote lately: read it back where it is
        if not is_replica_read(sql):
            return None
        return self._next()

    def _next(self, tried: Sequence[Replica] = ()) -> Replica | None:
        """The next replica in turn that is available, or whose retry time has come
        (the read that gets it is its probe); None if there is none."""
        replicas = self._replicas
        count = len(replicas)
        start = self._turn
        self._turn = start + 1 if start + 1 < count else 0
        now = 0.0
        for step in range(count):
            replica = replicas[(start + step) % count]
            if replica.runtime is None or replica in tried:
                continue
            if replica.available:
                return replica
            now = now or time.monotonic()
            if now >= replica.retry_at:
                replica.retry_at = now + self._retry_after  # the others skip it meanwhile
                return replica
        return None

    async def read(self, replica: Replica, op: Operation, sql: str, args: Any) -> Any:
        """Run a bare read on ``replica`` (or the next, if it cannot be reached);
        ``ON_PRIMARY`` if none could take it."""
        tried: list[Replica] = []
        while True:
            runtime = replica.runtime
            if runtime is None:  # disconnected meanwhile
                return ON_PRIMARY
            try:
                result = await replica.run(runtime, op, sql, args)
            except ReplicaUnavailableError as exc:
                self._unavailable(replica, exc)
                tried.append(replica)
                next_one = self._next(tried)
                if next_one is None:
                    return ON_PRIMARY
                replica = next_one
                continue
            except Exception as exc:
                if replica.backend.is_disconnect(exc):
                    self._unavailable(replica, exc)  # the caller's error: it may have run
                raise
            self._served(replica)
            return result

    def iterate(
        self, query: Query, values: Values, primary: Backend, on_primary: Callable[[], Any]
    ) -> AsyncIterator[Record] | None:
        """A bare ``iterate()`` on a replica, or None: on the primary. Not on a
        replica with a pool of one (the loop body's reads would wait for it)."""
        replica = self.route(prepare(query, values, primary)[0])
        if replica is None or replica.runtime is None or replica.runtime.pool.max_size < 2:
            return None
        return self._iterate(replica, query, values, on_primary)

    async def _iterate(
        self,
        replica: Replica,
        query: Query,
        values: Values,
        on_primary: Callable[[], AsyncIterator[Record]],
    ) -> AsyncIterator[Record]:
        """``iterate()`` on ``replica``; on the primary if it cannot be reached at the
        start (later, rows were yielded: an error is the caller's)."""
        runtime = replica.runtime
        rows = on_primary() if runtime is None else Connection(runtime).iterate(query, values)
        try:
            try:
                first = await _first(rows)
            except ReplicaUnavailableError as exc:
                self._unavailable(replica, exc)
                await _close(rows)
                rows = on_primary()
                first = await _first(rows)
            except Exception as exc:
                if replica.backend.is_disconnect(exc):
                    self._unavailable(replica, exc)
                raise
            else:
                self._served(replica)
            if first is _END:
                return
            yield first
            async for row in rows:
                yield row
        finally:
            await _close(rows)

    # -- availability ----------------------------------------------------------------

    def _unavailable(self, replica: Replica, exc: BaseException) -> None:
        replica.failures += 1
        replica.retry_at = time.monotonic() + self._retry_after
        cause = exc.__cause__ if isinstance(exc, ReplicaUnavailableError) else exc
        if not replica.available:
            logger.info("replica %s is still unavailable (%r)", replica.name, cause)
            return
        replica.available = False
        logger.warning(
            "replica %s is unavailable (%r): its reads go to the other replicas or the "
            "primary; it is tried again in %gs",
            replica.name,
            cause,
            self._retry_after,
        )

    def _served(self, replica: Replica) -> None:
        replica.reads += 1
        if not replica.available:
            replica.available = True
            logger.info("replica %s answers again: reads go to it", replica.name)


_END: Any = object()


async def _first(rows: AsyncIterator[Record]) -> Any:
    """The first row, or ``_END`` (StopAsyncIteration may not cross an async generator)."""
    try:
        return await rows.__anext__()
    except StopAsyncIteration:
        return _END


async def _close(rows: AsyncIterator[Record]) -> None:
    if isinstance(rows, AsyncGenerator):
        await rows.aclose()


def _replica(
    url: DatabaseURL, options: Mapping[str, Any], primary: Backend, observers: Observers
) -> Replica:
    """A replica of ``primary``: the keywords of the ``Database`` apply, then its URL's options."""
    url_options = dict(url.options)
    kwargs = dict(options)
    settings = take_settings(url_options, kwargs)
    backend = create_backend(url, url_options, kwargs)
    if type(backend) is not type(primary):
        raise ConfigurationError(
            f"replica {url.obscure_password} does not use the primary's database and driver "
            f"({primary.url.scheme}): a replica must run the primary's statements as they are"
        )
    return Replica(url, backend, settings, observers.derive(url))
