"""Event loops: carrying a call to the loop that owns a connection.

A driver connection belongs to the loop it was opened in. A call from any
other loop is carried to the owning loop (``run_coroutine_threadsafe``) and
its result or exception brought back; cancelling the caller cancels the
carried call. If the owning loop cannot run it (closed, or not running while
the caller waits in the same thread), ``WrongEventLoopError`` says so at once
instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

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

    ``start_timeout`` bounds the wait for ``owner`` to *start* the call: a
    loop that is running but blocked in synchronous code never would.

    Cancellation: cancelling the caller cancels the call in ``owner``; the
    caller gets ``CancelledError`` without waiting for the owner's cleanup.
    """
    check_can_carry(owner)
    started = threading.Event()

    async def run() -> T:
        started.set()
        return await func(*args, **kwargs)

    future: Future[T] = asyncio.run_coroutine_threadsafe(run(), owner)
    result = asyncio.wrap_future(future)
    if start_timeout is not None and not started.is_set():
        await asyncio.wait([result], timeout=start_timeout)
        if not started.is_set():
            future.cancel()
            raise WrongEventLoopError(
                f"the event loop this database was connected in did not run the call "
                f"within {start_timeout}s: it is running but blocked (for example in a "
                "synchronous TestClient call inside an async test); connect the database "
                "in the app's own lifespan, or use force_rollback=True, which works from "
                "any loop"
            )
    return await result


class LoopThread:
    """A daemon thread running an event loop of its own.

    Used for a force_rollback database: its one connection then lives in a
    loop that is always running, so any loop in any thread can use it, even
    while the loop that connected it is blocked in synchronous code.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
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
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

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
