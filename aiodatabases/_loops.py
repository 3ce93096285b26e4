"""Event loops: carrying a call to the loop that owns a connection.

A driver connection belongs to the loop it was opened in. A call from any
other loop is carried to the owning loop (``carry``: a task there, a future
here, wake-ups shared through a per-loop mailbox) and its result or
exception brought back; cancelling the caller cancels the carried call. If
the owning loop cannot run it (closed, or not running while the caller waits
in the same thread), ``WrongEventLoopError`` says so at once instead of
hanging; so it does if the owning loop stops while the call runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

from ._background import ended_well, keep
from ._mailbox import mailbox_of, post, post_via
from ._waits import context_for_carried
from .exceptions import WrongEventLoopError

T = TypeVar("T")
P = ParamSpec("P")


def check_can_carry(owner: asyncio.AbstractEventLoop) -> None:
    """Raise ``WrongEventLoopError`` if a call cannot be carried to ``owner``."""
    if owner.is_closed():
        raise WrongEventLoopError(
            "the database was connected in an event loop that is now closed; "
            "call 'await database.connect()' in the running loop (connect once per loop, "
            "e.g. in a fixture with the same loop scope as the test), "
            "or use force_rollback=True, which works from any loop"
        )
    if not owner.is_running():
        raise WrongEventLoopError(
            "the database was connected in another event loop, which is not running now "
            "(it cannot run the query while this loop waits for it); connect the database "
            "in the loop that uses it, or use force_rollback=True, which works from any loop"
        )


async def carry(
    owner: asyncio.AbstractEventLoop,
    start_timeout: float | None,
    func: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``func(*args)`` in ``owner`` and await its outcome from the current loop.

    ``start_timeout`` bounds the wait for ``owner`` to *start* the call (a
    loop that is running but blocked in synchronous code never would) and,
    with it, the waits of the call there: what is left of it bounds them.

    Cancellation: cancelling the caller cancels the call in ``owner``; the
    caller gets ``CancelledError`` without waiting for the owner's cleanup.

    The call is one task in ``owner`` (created in a copy of the caller's
    context, so context variables carry over) and one future here; each
    side wakes the other once (no ``concurrent.futures`` future, no lock
    held across the call).
    """
    return await carry_call(owner, start_timeout, None, lambda: func(*args, **kwargs))


async def carry_call(
    owner: asyncio.AbstractEventLoop,
    start_timeout: float | None,
    on_lost: Callable[[Any], None] | None,
    make: Callable[[], Awaitable[T]],
) -> T:
    """``carry()`` of ``make()``; ``on_lost(result)`` runs (in the caller's
    loop) if the call succeeded after its caller gave up, for work whose
    result must be given back (a hold on a connection, an open cursor)."""
    check_can_carry(owner)
    call = _Carried(asyncio.get_running_loop(), owner, make, on_lost)
    mailbox = mailbox_of(owner)
    # In flight until it is settled here: failed if its owner (a LoopThread) ends first.
    in_flight = None if mailbox is None else mailbox.in_flight
    if in_flight is not None:
        in_flight.add(call)
    try:
        # Its waits in the owner (a shared connection's turn, the pool) get what is
        # left of start_timeout: one bound for the whole wait of the statement.
        deadline = None if start_timeout is None else time.monotonic() + start_timeout
        post_via(owner, mailbox, context_for_carried(deadline).run, (call.start,))
        if start_timeout is not None:
            # Checks the owner every start_timeout seconds while the call runs.
            call.timer = call.loop.call_later(start_timeout, call.watch, start_timeout)
        result: T = await call.done
    except asyncio.CancelledError:
        if on_lost is not None and ended_well(call.done):
            on_lost(call.done.result())  # it succeeded just before the caller gave up
        call.abandon()
        raise
    finally:
        if call.timer is not None:
            call.timer.cancel()
        if in_flight is not None:
            in_flight.discard(call)
    return result


_STOPPED = (
    "the event loop that runs this database's calls stopped before this call ended there "
    "(it was stopped or closed, its asyncio.run() ended, or the database was "
    "disconnected meanwhile); whether the call took effect is unknown (a COMMIT may or "
    "may not have been applied). Keep the loop that connected the database running until "
    "the calls carried to it have ended, or connect the database in the loop that uses it"
)


class _Carried:
    """One carried call: its task in the owning loop and its future in the caller's."""

    __slots__ = (
        "_lock",
        "_make",
        "_on_lost",
        "_state",
        "_task",
        "done",
        "loop",
        "owner",
        "timer",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        owner: asyncio.AbstractEventLoop,
        make: Callable[[], Awaitable[Any]],
        on_lost: Callable[[Any], None] | None = None,
    ) -> None:
        self.loop = loop
        self.owner = owner
        self.done: asyncio.Future[Any] = loop.create_future()
        self._make: Callable[[], Awaitable[Any]] | None = make
        self._on_lost = on_lost
        self._task: asyncio.Future[Any] | None = None
        self._state = "waiting"  # -> "started" | "abandoned"
        self._lock = threading.Lock()  # the start and the caller giving up race
        self.timer: asyncio.TimerHandle | None = None  # the owner's watch (carry_call)

    # -- in the owning loop --------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "started"
        make, self._make = self._make, None
        assert make is not None
        try:
            task = keep(asyncio.ensure_future(make()))
        except BaseException as exc:  # not even started: the caller must not wait forever
            self._send(("error", exc))
            return
        self._task = task
        # A done callback, not a post at the end of the call: calls that end in
        # one turn of the owner then post together, and wake the caller's loop
        # once (posting each at once wakes it, a thread switch, per call).
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        # The outcome is read here, so a failure is never left "unretrieved".
        if task.cancelled():
            outcome: tuple[str, Any] = ("cancelled", None)
        elif (exc := task.exception()) is not None:
            outcome = ("error", exc)
        else:
            outcome = ("result", task.result())
        self._send(outcome)

    def _send(self, outcome: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed
            post(self.loop, self._settle, outcome)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- in the caller's loop ------------------------------------------------------

    def _settle(self, outcome: tuple[str, Any]) -> None:
        done = self.done
        kind, value = outcome
        if done.done():
            # The caller gave up (cancelled): what the call took is given back.
            if kind == "result" and self._on_lost is not None:
                self._on_lost(value)
            return
        if kind == "result":
            done.set_result(value)
        elif kind == "error":
            done.set_exception(value)
        else:
            # Cancelled in the owner, not by the caller (its future would be
            # done): the owning loop is shutting down (asyncio.run's end).
            done.set_exception(WrongEventLoopError(_STOPPED))

    def watch(self, start_timeout: float) -> None:
        """Every ``start_timeout`` seconds until the call ends (a timer in the
        caller's loop): fail the caller if the owner has not started the call
        (blocked), or has stopped or closed while it ran (it never will end)."""
        self.timer = None
        if self.done.done():
            return
        if self.owner.is_closed() or not self.owner.is_running():
            self.fail_stopped()
            return
        with self._lock:
            waiting = self._state == "waiting"
            if waiting:
                self._state = "abandoned"
        if not waiting:  # running, and its owner too: look again later
            self.timer = self.loop.call_later(start_timeout, self.watch, start_timeout)
            return
        self._make = None
        self.done.set_exception(
            WrongEventLoopError(
                f"the event loop this database was connected in did not run the call "
                f"within {start_timeout}s: it is running but blocked (for example in a "
                "synchronous TestClient call inside an async test); connect the database "
                "in the app's own lifespan, or use force_rollback=True, which works from "
                "any loop"
            )
        )

    def fail_stopped(self) -> None:
        """In the caller's loop: the owner ended before this call was settled."""
        with self._lock:
            if self._state == "waiting":
                self._state = "abandoned"
                self._make = None
        if not self.done.done():
            self.done.set_exception(WrongEventLoopError(_STOPPED))

    def abandon(self) -> None:
        """The caller was cancelled: the call must not start, or is cancelled."""
        with self._lock:
            started = self._state == "started"
            if not started:
                self._state = "abandoned"
        if started:
            with contextlib.suppress(RuntimeError):  # the owning loop is closed
                self.owner.call_soon_threadsafe(self._cancel_task)
        else:
            self._make = None


class LoopThread:
    """A daemon thread running an event loop of its own.

    Used for a force_rollback database: its one connection then lives in a
    loop that is always running, so any loop in any thread can use it, even
    while the loop that connected it is blocked in synchronous code.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        mailbox = mailbox_of(self.loop)
        assert mailbox is not None  # an asyncio loop has weak references
        mailbox.in_flight = set()
        self._mailbox = mailbox
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()
            finally:
                # What was carried here and is not settled never will be.
                calls, self._mailbox.in_flight = self._mailbox.in_flight or set(), None
                for call in list(calls):
                    with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                        post(call.loop, call.fail_stopped)

    def submit(self, func: Callable[[], Awaitable[Any]]) -> Future[Any]:
        async def run() -> Any:
            return await func()

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def stop(self) -> None:
        """Stop the loop and join the thread (from any thread but its own)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()
