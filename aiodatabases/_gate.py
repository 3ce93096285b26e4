"""Who may use a connection now: statements one at a time, transactions own it.

Every statement on a ``Connection`` passes the connection's ``Gate``. The
gate lets one statement run at a time, in arrival order. While a transaction
is open on the connection, only its *scope* may pass: the task that started
it and tasks created inside it (they inherit the context, hence the scope).
Everybody else waits for the transaction to end, so a rollback never discards
their writes and a commit never publishes them.

A gate lives in the loop that owns its connection; callers from other loops
are carried there first (``_loops``), bringing their scopes with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from typing import Final

from ._waits import Deadlines, TimedOut, served
from .exceptions import ConnectionBusyError, NotConnectedError


class Scope:
    """Identity of one open transaction, inherited by tasks created inside it."""

    __slots__ = ("description", "lost")

    def __init__(self, description: str) -> None:
        self.description = description
        # Set by disconnect(), which rolled the transaction back: a task still
        # inside it must not run statements outside it on a reconnected database.
        self.lost = False

    def __repr__(self) -> str:
        return f"<Scope {self.description}>"


Scopes = tuple[Scope, ...]

#: In a caller's scopes, passes whoever owns the connection (``disconnect()``
#: closing it: a transaction begun while it waited must not keep it out).
EVERY_OWNER = Scope("(disconnect)")

# The transactions the current context is inside, innermost last. Child tasks
# copy the context when they are created, and with it this tuple.
_scopes: Final = contextvars.ContextVar[Scopes]("aiodatabases_scopes", default=())


def current_scopes() -> Scopes:
    return _scopes.get()


def enter_scope(scope: Scope) -> None:
    _scopes.set((*_scopes.get(), scope))


def refuse_lost() -> None:
    """Refuse a statement from inside a transaction that ``disconnect()`` rolled back."""
    for scope in _scopes.get():  # usually empty: outside any transaction
        if scope.lost:
            raise NotConnectedError(
                "this task is inside a transaction that disconnect() rolled back "
                f"(started by task {scope.description}); nothing of it was committed, "
                "and its statements cannot run outside it: end the transaction block"
            )


def leave_scope(scope: Scope) -> None:
    # Not ContextVar.reset(): a transaction may be ended from another context.
    scopes = _scopes.get()
    if scope in scopes:
        _scopes.set(tuple(s for s in scopes if s is not scope))


Who = object  # the calling task, or a label such as "(cleanup)"


def caller() -> Who:
    """The current task: named only if a message needs it (off the hot path)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def describe(who: Who) -> str:
    if isinstance(who, asyncio.Task):
        return repr(who.get_name())
    return "(no task)" if who is None else str(who)


def task_name() -> str:
    return describe(caller())


class Gate:
    __slots__ = ("_busy", "_deadlines", "_holder", "_owner", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._holder: Who = None
        self._owner: Scope | None = None
        self._waiters: deque[tuple[asyncio.Future[None], Scopes]] = deque()
        self._deadlines = Deadlines()

    def _may_pass(self, scopes: Scopes) -> bool:
        return self._owner is None or self._owner in scopes or EVERY_OWNER in scopes

    async def acquire(self, scopes: Scopes, timeout: float | None, who: Who) -> None:
        """Wait for the turn of a statement from ``scopes``.

        Cancellation: the caller holds nothing; a turn handed over at the
        moment of cancellation is passed on to the next waiter.
        """
        # Critical section: pass at once only if nobody eligible is queued ahead.
        if not self._busy and self._may_pass(scopes) and not self._eligible_waiter():
            self._busy = True
            self._holder = who
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (future, scopes)
        self._waiters.append(entry)
        self._deadlines.add(future, timeout)
        try:
            await future
        except TimedOut:
            self._remove(entry)
            raise ConnectionBusyError(self._busy_message(timeout)) from None
        except BaseException:
            if served(future):
                # We were handed the turn as we gave up: hand it on.
                self.release()
            else:
                future.cancel()
                self._remove(entry)
            raise
        self._holder = who

    def release(self) -> None:
        self._busy = False
        self._holder = None
        self._wake()

    def set_owner(self, scope: Scope | None) -> None:
        """Admit only ``scope`` from now on (everybody when None)."""
        self._owner = scope
        self._wake()

    def _eligible_waiter(self) -> bool:
        return any(not f.done() and self._may_pass(s) for f, s in self._waiters)

    def _wake(self) -> None:
        if self._busy:
            return
        for entry in self._waiters:
            future, scopes = entry
            if not future.done() and self._may_pass(scopes):
                self._remove(entry)
                self._busy = True
                future.set_result(None)
                return

    def _remove(self, entry: tuple[asyncio.Future[None], Scopes]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        if not self._waiters:
            self._deadlines.clear()

    def _busy_message(self, timeout: float | None) -> str:
        if self._owner is not None:
            holder = f"a transaction started by task {self._owner.description}"
        else:
            holder = f"a statement of task {describe(self._holder)}"
        return (
            f"waited {timeout}s for a shared connection held by {holder}; that task "
            "never ended its transaction, or it waits for this one (a deadlock). "
            "Run the waiting work inside the transaction (create the task inside it) "
            "or end the transaction first; the wait is bounded by the 'acquire_timeout' option."
        )
