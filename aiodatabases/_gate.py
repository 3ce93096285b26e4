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
import contextvars
import time
from typing import Final

from ._waits import Line, TimedOut, deadline_after
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
    __slots__ = ("_busy", "_holder", "_owner", "_waiters", "deadline")

    def __init__(self) -> None:
        self._busy = False
        self._holder: Who = None
        self._owner: Scope | None = None
        # Handed the turn: None. A turn handed over to a waiter gone is passed on.
        self._waiters: Line[None, Scopes] = Line(lambda _: self.release())
        # The deadline of the holder's statement if it had to wait here (None
        # if it did not): what is left of it bounds its wait for the pool.
        self.deadline: float | None = None

    def _may_pass(self, scopes: Scopes) -> bool:
        return self._owner is None or self._owner in scopes or EVERY_OWNER in scopes

    async def acquire(self, scopes: Scopes, timeout: float | None, who: Who) -> None:
        """Wait for the turn of a statement from ``scopes``.

        ``timeout`` bounds the statement's whole wait (``_waits.deadline_after``).
        Cancellation: the caller holds nothing; a turn handed over at the
        moment of cancellation is passed on to the next waiter.
        """
        # Critical section: pass at once only if nobody eligible is queued ahead.
        may_pass = self._may_pass
        if not self._busy and may_pass(scopes) and not self._waiters.any_where(may_pass):
            self._busy = True
            self._holder = who
            return
        deadline = deadline_after(timeout)
        started = time.monotonic()
        try:
            await self._waiters.wait(scopes, deadline)
        except TimedOut:
            raise ConnectionBusyError(self._busy_message(timeout, started, deadline)) from None
        self._holder = who
        self.deadline = deadline

    def release(self) -> None:
        self._busy = False
        self._holder = None
        self.deadline = None
        self._wake()

    def set_owner(self, scope: Scope | None) -> None:
        """Admit only ``scope`` from now on (everybody when None)."""
        self._owner = scope
        self._wake()

    def _wake(self) -> None:
        if not self._busy:
            self._busy = self._waiters.serve_first_where(self._may_pass, None)

    def _busy_message(self, timeout: float | None, started: float, deadline: float | None) -> str:
        waited = time.monotonic() - started
        # A carried call may have spent part of the bound waiting for its loop.
        before = 0.0 if deadline is None or timeout is None else started - (deadline - timeout)
        left = ""
        if before > 0.001:
            left = f" (what was left of it after {before:.2f}s waiting before)"
        if self._owner is not None:
            holder = f"a transaction started by task {self._owner.description}"
        else:
            holder = f"a statement of task {describe(self._holder)}"
        return (
            f"waited {waited:.2f}s for a shared connection held by {holder}; that task "
            "never ended its transaction, or it waits for this one (a deadlock). "
            "Run the waiting work inside the transaction (create the task inside it) "
            f"or end the transaction first; the wait is bounded by acquire_timeout={timeout}s"
            f"{left}: the whole wait of one statement, for the pool too."
        )
