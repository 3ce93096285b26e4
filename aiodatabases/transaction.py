"""``Transaction``: ``async with``, decorator, or ``await`` then commit/rollback.

The outermost transaction on a connection is ``BEGIN``; nested ones are
savepoints on every backend. While a transaction is open on a connection it
owns it: only its task and tasks created inside it run statements there (see
``_gate``). Beginning and ending run to completion even if the caller is
cancelled, so the connection never stays half inside a transaction.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from ._background import ended_well, shielded
from ._gate import Scope, Scopes, current_scopes, enter_scope, leave_scope, task_name
from ._observe import Observers, TransactionWatch
from ._retry import Retry, retry_policy
from .exceptions import TransactionError, TransactionOrderError


class Host(Protocol):
    """What a transaction needs of the connection it runs on (``_transactions.Transactions``)."""

    @property
    def closed(self) -> bool: ...

    @property
    def loop_closed(self) -> bool: ...

    @property
    def observers(self) -> Observers: ...

    def encloses(self, scopes: Scopes) -> bool:
        """Whether one of ``scopes`` (a task's) is a transaction open on this connection."""

    async def begin_frame(self, scope: Scope, options: Mapping[str, Any]) -> None: ...

    def end_frame(self, scope: Scope, commit: bool) -> asyncio.Task[None]: ...

    def abandon_frame(self, scope: Scope) -> None: ...

    async def begin_isolation(self, scope: Scope) -> None: ...

    async def end_isolation(self, scope: Scope) -> None: ...

logger = logging.getLogger("aiodatabases")

P = ParamSpec("P")
T = TypeVar("T")


class TransactionState(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"


class Transaction:
    """A transaction on the connection that ``connection_factory`` returns at start.

    ``force_rollback=True`` rolls back at the end of ``async with`` even
    without an error. ``retry`` (a number of runs, or a ``Retry``; decorator
    form only) runs the decorated function again in a new transaction when
    the transaction loses a conflict (see ``_retry``). ``options`` go to the
    backend (``isolation=...``).
    """

    def __init__(
        self,
        connection_factory: Callable[[], Host],
        *,
        force_rollback: bool = False,
        retry: Retry | int | None = None,
        **options: Any,
    ) -> None:
        self._connection_factory = connection_factory
        self._force_rollback = force_rollback
        self._options = options
        self._state = TransactionState.NEW
        self._connection: Host | None = None
        self._scope: Scope | None = None
        self._watch: TransactionWatch | None = None  # the hooks' view, while observed
        self._retry = retry_policy(retry)  # last: a bad value raises with the rest set

    @property
    def state(self) -> TransactionState:
        return self._state

    # -- the three ways to use it ----------------------------------------------------------

    async def __aenter__(self) -> Transaction:
        self._refuse_retry()
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not TransactionState.ACTIVE:
            return  # ended explicitly inside the block
        commit = exc_type is None and not self._force_rollback
        connection = self._connection
        if connection is not None and connection.closed and not commit:
            self._give_up()  # disconnect() rolled it back: nothing to do or say
            return
        if not _loop_running() or (
            exc_type is GeneratorExit and connection is not None and connection.loop_closed
        ):
            # A coroutine closed with no loop to run in (collected after its loop
            # stopped): nothing may be awaited here.
            self._give_up()
            return
        if commit:
            await self.commit()
            return
        try:
            await self.rollback()
        except TransactionOrderError:
            raise
        except Exception:
            # Never hide the exception that made us roll back.
            if exc is None:
                raise
            logger.exception("rolling back a transaction after an error failed")

    def __await__(self) -> Generator[Any, None, Transaction]:
        self._refuse_retry()
        return self.start().__await__()

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an async function: each call runs in its own transaction
        (again, in a new one, as ``retry`` says, when it loses a conflict)."""
        factory, force_rollback = self._connection_factory, self._force_rollback
        options, retry = self._options, self._retry

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            # Inside another transaction a conflict is that one's: never rerun here.
            again = retry is not None and not factory().encloses(current_scopes())
            failed = 0
            while True:
                try:
                    async with Transaction(factory, force_rollback=force_rollback, **options):
                        return await func(*args, **kwargs)
                except Exception as exc:
                    failed += 1
                    if not again or retry is None or not retry.again(exc, failed):
                        raise
                await asyncio.sleep(retry.delay(failed))

        return wrapper

    def _refuse_retry(self) -> None:
        if self._retry is not None:
            raise TransactionError(
                "transaction(retry=...) reruns a function, which a with-block or an awaited "
                "transaction cannot be: decorate the function instead "
                "(@database.transaction(retry=5)), or call database.transaction(retry=5)(func)()"
            )

    # -- explicit control --------------------------------------------------------------------

    async def start(self) -> Transaction:
        """Begin (or take a savepoint if one is open on the connection).

        Cancellation: waiting for the connection stops at once; a BEGIN
        already sent completes and is rolled back. The caller gets
        ``CancelledError`` and holds no transaction.
        """
        if self._state is not TransactionState.NEW:
            raise TransactionError(f"this transaction was already started ({self._state.value})")
        connection = self._connection_factory()
        scope = Scope(task_name())
        observers = connection.observers
        hooks = observers.hooks()
        watch = None
        if hooks:
            watch = observers.transaction(hooks, self._options, self._force_rollback)
        try:
            await connection.begin_frame(scope, self._options)
        except BaseException as exc:
            if watch is not None:
                watch.end("rollback", exc)
            raise
        self._connection, self._scope, self._watch = connection, scope, watch
        self._state = TransactionState.ACTIVE
        enter_scope(scope)
        return self

    async def commit(self) -> None:
        """Commit (or release the savepoint).

        Cancellation: the commit completes first (the caller waits for it),
        then the caller gets ``CancelledError``.
        """
        await self._end(commit=True)

    async def rollback(self) -> None:
        """Roll back (to the savepoint). Cancellation: as ``commit``."""
        await self._end(commit=False)

    async def _end(self, *, commit: bool) -> None:
        if self._state is not TransactionState.ACTIVE:
            action = "commit" if commit else "roll back"
            raise TransactionError(f"cannot {action} a transaction that is {self._state.value}")
        connection, scope = self._connection, self._scope
        if connection is None or scope is None:  # pragma: no cover - ACTIVE implies both
            raise TransactionError("this transaction has no connection")
        end = connection.end_frame(scope, commit)
        try:
            await end  # to its end: a cancelled caller waits for it
        except TransactionOrderError:
            raise  # still open, stack intact
        except asyncio.CancelledError:
            # The end has run to its end: its outcome is the transaction's
            # (one that was itself cancelled committed nothing we know of).
            if _failed_with(end, TransactionOrderError):
                raise  # still open, stack intact
            committed = commit and ended_well(end)
            self._state = TransactionState.COMMITTED if committed else TransactionState.ROLLED_BACK
            leave_scope(scope)
            self._observed_end(end)
            raise
        except BaseException as exc:
            # COMMIT failed (e.g. a serialization failure): it is over all the same.
            self._state = TransactionState.ROLLED_BACK
            leave_scope(scope)
            self._observed_end(end, exc)
            raise
        self._state = TransactionState.COMMITTED if commit else TransactionState.ROLLED_BACK
        leave_scope(scope)
        self._observed_end(end)

    def _observed_end(
        self, end: asyncio.Future[None] | None = None, error: BaseException | None = None
    ) -> None:
        """Tell the hooks how it ended (if they watch): the state says the outcome;
        without an ``end`` it was abandoned (or rolled back by ``disconnect()``)."""
        watch, self._watch = self._watch, None
        if watch is None:
            return
        if error is None and end is not None and end.done() and not end.cancelled():
            error = end.exception()  # the end's own failure, under a cancelled caller
        connection = self._connection
        if self._state is TransactionState.COMMITTED:
            watch.end("commit", error)
        elif end is not None or (connection is not None and connection.closed):
            watch.end("rollback", error)
        else:
            watch.end("abandoned", error)

    def _give_up(self) -> None:
        """End without awaiting: rolled back in the owning loop if it still runs
        (already, if ``disconnect()`` closed the connection)."""
        connection, scope = self._connection, self._scope
        self._state = TransactionState.ROLLED_BACK
        self._observed_end()
        if connection is not None and scope is not None:
            leave_scope(scope)
            if not connection.closed:
                connection.abandon_frame(scope)

    def __del__(self) -> None:
        # A transaction nobody can end any more: roll it back so the connection
        # (and, when shared, every task waiting for it) is not held forever.
        connection, scope = self._connection, self._scope
        if self._state is TransactionState.ACTIVE and connection is not None and scope is not None:
            connection.abandon_frame(scope)
            self._observed_end()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _failed_with(task: asyncio.Future[None], error: type[BaseException]) -> bool:
    return task.done() and not task.cancelled() and isinstance(task.exception(), error)


class Isolation:
    """A rollback point on a force_rollback database (``Database.isolated()``).

    Everything written on the shared connection between ``start()`` and
    ``rollback()`` is undone, by whichever task, loop or thread wrote it. It
    owns nothing: every task keeps using the connection meanwhile, and
    transactions inside it work as usual. It is what a test framework wants
    around each test; ``async with database.isolated():`` or, from
    synchronous code, ``asyncio.run(isolation.start())`` and later
    ``asyncio.run(isolation.rollback())``.
    """

    def __init__(self, connection: Host) -> None:
        self._connection = connection
        self._scope = Scope("isolation")
        self._started = False

    async def start(self) -> Isolation:
        if self._started:
            raise TransactionError("this isolation was already started")
        await shielded(self._connection.begin_isolation(self._scope))
        self._started = True
        return self

    async def rollback(self) -> None:
        """Undo everything since ``start()`` (transactions left open included)."""
        if not self._started:
            raise TransactionError("this isolation was not started")
        self._started = False
        await shielded(self._connection.end_isolation(self._scope))

    async def __aenter__(self) -> Isolation:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.rollback()
