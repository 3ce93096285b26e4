"""Running a ``Database``'s hooks around its statements and transactions.

One ``Observers`` per ``Database`` holds the hooks added to it and the
statement log (``_statement_log``), which joins them only while it has
something to write: when the logger ``aiodatabases`` is enabled for DEBUG, or
a slow-statement threshold is set. ``hooks()`` is all a statement pays when
nobody observes: an empty tuple, and the statement runs as before.

Everything here runs in the caller's task, around the call that carries the
statement to the owning loop, so that hooks see the caller's context.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._statement_log import StatementLog
from ._statement_log import logger as _statements
from ._statements import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Operation
from ._url import DatabaseURL
from .hooks import DatabaseInfo, Hook, StatementEvent, TransactionEvent

logger = logging.getLogger("aiodatabases")

_OPERATIONS: dict[Operation, str] = {
    FETCH_ALL: "fetch_all",
    FETCH_ONE: "fetch_one",
    EXECUTE: "execute",
    EXECUTE_MANY: "execute_many",
}

_DRIVERS = {"postgresql": "asyncpg", "mysql": "aiomysql", "sqlite": "aiosqlite"}
_PORTS = {"postgresql": 5432, "mysql": 3306}


def describe(url: DatabaseURL) -> DatabaseInfo:
    """The ``DatabaseInfo`` of a database URL (a Unix socket is the host, without a port)."""
    system = url.dialect
    if system == "postgres":
        system = "postgresql"
    driver = url.driver or _DRIVERS.get(system, "")
    shown = url.obscure_password
    if system == "sqlite":
        return DatabaseInfo(system, driver, url.database, None, None, shown)
    options = url.options
    socket = options.get("unix_socket") or options.get("host", "")
    if socket.startswith("/"):
        return DatabaseInfo(system, driver, url.database, socket, None, shown)
    host, port = url.hostname or "localhost", url.port or _PORTS.get(system)
    return DatabaseInfo(system, driver, url.database, host, port, shown)


class Observers:
    """The hooks of one ``Database`` (see the module docstring)."""

    def __init__(self, url: DatabaseURL, log_values: bool, slow_after: float | None) -> None:
        self.info = describe(url)
        #: Values may be shown (the log, error messages in spans): ``log_values``.
        self.log_values = log_values
        self._log = log = StatementLog(log_values=log_values, slow_after=slow_after)
        self._log_always = log.always
        self._added: tuple[Hook, ...] = ()  # add_hook()'s
        self._own: tuple[Hook, ...] = ()  # the library's (read-your-writes), run first
        self._active: tuple[Hook, ...] = ()  # both: what a statement runs
        self._with_log: tuple[Hook, ...] = (log,)
        self._derived: list[Observers] = []
        #: Called with the seconds each pool acquire waited (``aiodatabases.otel``);
        #: the pool reads this list, so it is changed in place.
        self.acquire_listeners: list[Callable[[float], None]] = []

    def derive(self, url: DatabaseURL) -> Observers:
        """The observers of another server of this database (a read replica): its
        own ``DatabaseInfo``, the same added hooks and statement log, from now on."""
        derived = Observers(url, self.log_values, None)
        derived._log, derived._log_always = self._log, self._log_always
        self._derived.append(derived)
        derived._set(self._added)
        return derived

    def add_own(self, hook: Hook) -> None:
        """A hook of the library's own, for this server only (never derived)."""
        self._own = (*self._own, hook)
        self._set(self._added)

    def add(self, hook: Hook) -> None:
        if not isinstance(hook, Hook):
            raise TypeError(
                f"a hook must be an instance of aiodatabases.hooks.Hook (a subclass "
                f"overriding the methods it needs), not {type(hook).__name__}"
            )
        for method in _METHODS:
            if inspect.iscoroutinefunction(getattr(hook, method)):
                raise TypeError(
                    f"{type(hook).__name__}.{method} is async: hook methods are plain "
                    "functions, called without being awaited"
                )
        if any(hook is added for added in self._added):
            return
        self._set((*self._added, hook))

    def remove(self, hook: Hook) -> None:
        """Remove ``hook``; ``ValueError`` if it was not added."""
        if not any(hook is added for added in self._added):
            raise ValueError(f"{hook!r} is not a hook of this database")
        self._set(tuple(added for added in self._added if added is not hook))

    def _set(self, hooks: tuple[Hook, ...]) -> None:
        # Replaced, never changed in place: a statement keeps the tuple it began with.
        # The log comes first: its after runs last (afters run in reverse).
        self._added = hooks
        self._active = (*self._own, *hooks)
        self._with_log = (self._log, *self._active)
        for derived in self._derived:
            derived._set(hooks)

    def hooks(self) -> tuple[Hook, ...]:
        """The hooks a statement starting now runs (empty: nobody observes)."""
        if self._log_always or _statements.isEnabledFor(logging.DEBUG):
            return self._with_log
        return self._active

    # -- statements ---------------------------------------------------------------------

    async def statement(
        self,
        hooks: tuple[Hook, ...],
        op: Operation,
        sql: str,
        args: Any,
        call: Callable[..., Awaitable[Any]],
        *call_args: Any,
    ) -> Any:
        """Await ``call(*call_args)`` (the statement, carried to its loop) between the
        hooks' before and after."""
        event = StatementEvent(self.info, _OPERATIONS[op], sql, args)
        _each(hooks, "before_statement", event)
        started = time.perf_counter()
        try:
            result = await call(*call_args)
        except BaseException as exc:
            event.duration = time.perf_counter() - started
            event.error = exc
            _each(hooks, "after_statement", event)
            raise
        event.duration = time.perf_counter() - started
        if op is FETCH_ALL:
            event.rows = len(result)
        elif op is FETCH_ONE:
            event.rows = 0 if result is None else 1
        _each(hooks, "after_statement", event)
        return result

    def iteration(self, hooks: tuple[Hook, ...], sql: str, args: Any) -> Iteration:
        """An ``iterate()`` observed: ``before_statement`` now, ``end()`` at its end."""
        event = StatementEvent(self.info, "iterate", sql, args, rows=0)
        _each(hooks, "before_statement", event)
        return Iteration(hooks, event)  # timing from here: the cursor opens

    # -- transactions -------------------------------------------------------------------

    def transaction(
        self, hooks: tuple[Hook, ...], options: dict[str, Any], force_rollback: bool
    ) -> TransactionWatch:
        """A transaction observed: ``before_transaction`` now."""
        event = TransactionEvent(self.info, options, force_rollback)
        _each(hooks, "before_transaction", event)
        return TransactionWatch(hooks, event)


class Iteration:
    """An observed ``iterate()``: its time in the database (opening, each batch,
    closing; not the loop body's) and its rows, added up; ended once."""

    __slots__ = ("_ended", "_hooks", "_since", "_spent", "event")

    def __init__(self, hooks: tuple[Hook, ...], event: StatementEvent) -> None:
        self._hooks = hooks
        self.event = event
        self._spent = 0.0
        self._since: float | None = time.perf_counter()
        self._ended = False

    def resume(self) -> None:
        """A call to the database starts."""
        self._since = time.perf_counter()

    def pause(self, rows: int = 0) -> None:
        """It ended, with ``rows`` more rows."""
        if self._since is not None:
            self._spent += time.perf_counter() - self._since
            self._since = None
        self.event.rows = (self.event.rows or 0) + rows

    def end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.pause()
        event = self.event
        event.duration = self._spent
        # A loop left by ``break`` closes the generator: not an error.
        event.error = None if isinstance(error, GeneratorExit) else error
        _each(self._hooks, "after_statement", event)


class TransactionWatch:
    """An observed transaction, from its start until ``end()`` (once)."""

    __slots__ = ("_ended", "_hooks", "_started", "event")

    def __init__(self, hooks: tuple[Hook, ...], event: TransactionEvent) -> None:
        self._hooks = hooks
        self.event = event
        self._started = time.perf_counter()
        self._ended = False

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        event = self.event
        event.outcome = outcome
        event.duration = time.perf_counter() - self._started
        event.error = error
        _each(self._hooks, "after_transaction", event)


_METHODS = ("before_statement", "after_statement", "before_transaction", "after_transaction")


def _each(hooks: tuple[Hook, ...], method: str, event: Any) -> None:
    """Call ``method`` of each hook; the afters in reverse order (the first
    before is the last after, as with nested context managers)."""
    for hook in reversed(hooks) if method.startswith("after") else hooks:
        try:
            getattr(hook, method)(event)
        except Exception:
            logger.exception("aiodatabases hook %r failed in %s; ignored", hook, method)
