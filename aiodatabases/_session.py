"""The owning-loop half of a ``Connection``: its driver connection, its turn, its statements.

A ``Session`` lives in the loop that owns the connection; only code carried
there (``Runtime.call``) touches it, so it needs no locks beyond its ``Gate``.
The gate is passed and left in one place, ``async with session.turn(...)``,
and the driver connection is held and let go in one place, ``hold()`` and
``let_go()``: the last hold gives it back to the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final

from ._frames import Frames
from ._gate import EVERY_OWNER, Gate, Scopes, Who
from ._query import is_read_only
from ._runtime import Runtime
from ._statements import Operation, may_run_again, pause_if_inline, run_statement, to_its_end
from .backends.base import DriverConnection
from .exceptions import ConnectionBusyError, InterleaveError, NotConnectedError

logger = logging.getLogger("aiodatabases")

CLOSED = (
    "the database was disconnected: disconnect() closed this connection and rolled "
    "back what was open on it; connect() again and use a new connection"
)

# What a turn is for (``_Turn``): it decides what passing the gate involves.
_STATEMENT: Final = 0  # a statement: a blocking iteration of the caller's own refuses it
_STREAMING: Final = 1  # the statements of an iteration itself (and cleanup)
_ENDING: Final = 2  # ending a transaction: a streaming cursor is ended first


class Session:
    """One connection's state in its owning loop (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._backend = runtime.backend
        self.driver: DriverConnection | None = None
        self._holds = 0
        self.dirty = False  # reset the driver connection before the pool reuses it
        self.gate = Gate()
        self.frames = Frames(runtime.backend, self.gate)
        self.closed = False
        self._broken = False  # the driver connection is gone: discard, never reuse
        # A guarded statement was cancelled: the undo it needs takes the turn over.
        self._recovery: tuple[DriverConnection, int] | None = None
        self._ddl_commits = runtime.backend.capabilities.ddl_commits_transaction
        #: Whether an open cursor blocks the connection (MySQL).
        self.blocks = runtime.backend.capabilities.cursor_blocks_connection

    @property
    def in_use(self) -> bool:
        """Whether a block, transaction or iteration holds a driver connection now."""
        return self._holds > 0

    # -- the turn -----------------------------------------------------------------------------

    def turn(self, scopes: Scopes, who: Who) -> _Turn:
        """``async with``: the turn of a statement from ``scopes``."""
        return _Turn(self, scopes, who, _STATEMENT)

    def turn_streaming(self, scopes: Scopes, who: Who) -> _Turn:
        """The turn for the statements of an iteration itself."""
        return _Turn(self, scopes, who, _STREAMING)

    def turn_ending(self, scopes: Scopes, who: Who) -> _Turn:
        """The turn for ending a transaction: a streaming cursor is ended first.

        The ``async with`` of a transaction exits before the iteration inside it
        is closed (an async generator is closed later); its end must not fail.
        """
        return _Turn(self, scopes, who, _ENDING)

    async def _before_statement(self, scopes: Scopes) -> None:
        """A statement while an iteration streams (rare: ``_Turn`` checks first)."""
        driver = self.driver
        if not (
            self.frames.inside_stream(scopes)
            or (driver is not None and driver.stream_in_transaction)
        ):
            return
        # An iteration left by ``break`` is closed by a task the loop has
        # queued (the generator's finalizer): give it its turn first
        # (MySQL: else it blocks the connection; PostgreSQL: else this
        # statement makes the server keep the rest of its rows).
        for _ in range(5):
            await asyncio.sleep(0)
        if self.frames.inside_stream(scopes):
            # Waiting would never end: the caller is inside the iteration.
            raise InterleaveError(
                "this connection is streaming the rows of an iterate() and its driver "
                "(MySQL) cannot run another statement until the iteration ends; fetch the "
                "rows with fetch_all() first, or run the statement on another connection"
            )

    async def _end_streams(self) -> BaseException | None:
        """With the turn: close every blocking iteration (a transaction ends).

        Every cursor is closed, whatever happens to one of them. A close that
        was cancelled leaves the connection's state unknown: it is reset before
        reuse, and the cancellation is returned for the ending to act on (a
        transaction then ends without committing, and says why).
        """
        frames = self.frames
        streams = frames.streams
        frames.streams = []
        frames.update_owner()
        failure: BaseException | None = None
        for cursor, _ in streams:
            try:
                await cursor.close()
            except Exception as exc:
                logger.debug("closing a streaming cursor failed: %r", exc)
            except BaseException as exc:  # CancelledError: the close may be half done
                self.dirty = True
                failure = failure or exc
        return failure

    def _leave(self) -> None:
        """Let the next statement in, or hand the turn to the undo that a
        cancelled guarded statement needs (it leaves when it is done)."""
        recovery, self._recovery = self._recovery, None
        if recovery is None:
            self.gate.release()
        else:
            driver, depth = recovery
            self.runtime.spawn(lambda: self._recover(driver, depth))

    async def _recover(self, driver: DriverConnection, depth: int) -> None:
        # The cancel aborted the force_rollback transaction: undo the statement.
        try:
            await driver.run_control(self.frames.guards.undo(depth))
        finally:
            self._leave()

    # -- holding the driver connection ---------------------------------------------------------

    async def hold(self) -> DriverConnection:
        """One more hold of the driver connection (taken from the pool if needed)."""
        driver = self.driver
        if driver is None or self.closed:
            driver = await self.ensure_driver()
        self._holds += 1
        return driver

    def let_go(self) -> None:
        """End one hold; the last gives the driver connection back."""
        if self._holds == 0:
            return  # disconnect() took everything back meanwhile
        self._holds -= 1
        if self._holds == 0:
            self._release_driver()

    async def unhold(self) -> None:
        """``let_go()`` as a coroutine function (carried or spawned)."""
        self.let_go()

    async def hold_block(self, scopes: Scopes, who: Who) -> None:
        """``async with connection:``: hold the driver connection until its exit."""
        if self.driver is None:
            async with self.turn(scopes, who):  # the pool is not entered beside a statement
                await self.hold()
        else:
            await self.hold()

    async def ensure_driver(self) -> DriverConnection:
        if self.closed:
            raise NotConnectedError(CLOSED)
        if self.driver is None:
            driver = await self.runtime.pool.acquire(self.gate.deadline)  # what is left
            if self.closed:  # disconnect() came while the pool opened it
                self.runtime.pool.discard(driver, why="the database disconnected meanwhile")
                raise NotConnectedError(CLOSED)
            self.driver = driver
            self.runtime.holders.add(self)  # disconnect() closes it from here on
        return self.driver

    def _release_driver(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        self.runtime.holders.discard(self)
        frames = self.frames
        dirty = self.dirty or bool(frames.stack)
        if frames.stack:
            logger.warning(
                "a connection was released with %d transaction(s) still open; rolled back",
                len(frames.stack),
            )
            frames.drop(0)
        broken, self._broken = self._broken, False
        self.dirty = False
        frames.guards.forget()
        self.runtime.pool.release(driver, dirty=dirty, broken=broken)

    def __del__(self) -> None:
        # The last reference is gone (its task ended without closing its block):
        # give the driver connection back, reset, so nothing is kept for it.
        driver = self.driver
        if driver is not None and not self.closed:
            self.runtime.release_orphan(driver)

    # -- statements ----------------------------------------------------------------------------

    async def run(self, scopes: Scopes, who: Who, op: Operation, sql: str, args: Any) -> Any:
        """One statement: wait for the turn, hold the driver connection, run it."""
        driver: DriverConnection | None = None
        try:
            async with _Turn(self, scopes, who, _STATEMENT):
                fresh = self.driver is None
                driver = await self.hold()
                try:
                    try:
                        return await self.execute(driver, op, sql, args)
                    except Exception as exc:
                        if not may_run_again(self._backend, exc, fresh and self._holds == 1):
                            raise
                    # Taken from the pool dead, statement never sent (the health check).
                    self._release_driver()
                    driver = await self.ensure_driver()
                    return await self.execute(driver, op, sql, args)
                finally:
                    self.let_go()
        finally:
            await self.pause_if_inline(driver)  # after the turn, failed or not

    async def pause_if_inline(self, driver: DriverConnection | None) -> None:
        """``pause_if_inline`` in an application loop (a private loop thread's
        callers wait in their own loops)."""
        if driver is not None and self.runtime.thread is None:
            await pause_if_inline(driver)

    async def execute(
        self,
        driver: DriverConnection,
        op: Operation,
        sql: str,
        args: Any,
        on_lost: Callable[[Any], Awaitable[None]] | None = None,
    ) -> Any:
        """Run ``op`` with the turn held: guarded on the force_rollback
        transaction, repaired after MySQL's implicit commit (``_frames``)."""
        frames = self.frames
        guard = frames.needs_guard()
        depth = len(frames.stack)
        if guard:
            renew = frames.guards.before(depth)
            if renew:
                # Not interruptible: half done, it would leave no guard to roll back to.
                await to_its_end(driver.run_control(renew))
        ddl_commits = self._ddl_commits and bool(frames.stack) and frames.commits_implicitly(sql)
        try:
            result = await run_statement(self._backend, driver, op, sql, args, on_lost)
        except asyncio.CancelledError:
            if guard:
                # The undo runs in the background; the turn stays taken until then.
                self._recovery = (driver, depth)
            else:
                self.dirty = True
            raise
        except BaseException as exc:
            broken = self.runtime.classify_failure(driver, exc)[1]
            self._broken = self._broken or broken
            if guard and not broken:
                await driver.run_control(frames.guards.undo(depth))
            raise
        if guard and not is_read_only(sql):
            frames.guards.wrote(depth)
        if ddl_commits:
            await frames.restart_after_implicit_commit(driver)
        return result

    # -- closing (the runtime's ``Holder``) ----------------------------------------------------

    async def close_for_disconnect(self) -> None:
        """``disconnect()``: wait for the running statement, then close the driver
        connection (the server rolls back what it had open).

        Whoever still uses this connection then gets ``NotConnectedError``:
        statements waiting for their turn, and a task parked inside a
        transaction when it resumes (the end of its block says nothing: its
        rollback is done). The wait is bounded by ``acquire_timeout``.
        """
        if self.closed:
            return
        self.closed = True  # from here on nothing new starts here
        try:
            # Whoever owns it by the time the running statement ends (a BEGIN
            # in flight now, an iteration opening its cursor) lets it in.
            # The turn is left only after: what waited must find it closed.
            async with self.turn_ending((EVERY_OWNER,), "(disconnect)"):
                self._discard_driver()
        except ConnectionBusyError:
            logger.warning(
                "disconnect() waited %ss for a statement to end; closing its connection anyway",
                self.runtime.settings.acquire_timeout,
            )
            self._discard_driver()

    def close_at_terminate(self) -> None:
        """``close_for_disconnect()`` when the owning loop is gone: nothing can run
        there any more (the pool drops the socket); only refuse what comes later."""
        self.closed = True
        self.frames.mark_lost()

    def _discard_driver(self) -> None:
        """Drop frames, iterations and holds; close the driver connection, now nobody's."""
        self.frames.forget()
        self._holds = 0
        self.runtime.holders.discard(self)
        driver, self.driver = self.driver, None
        if driver is not None:
            # Closing ends the session and its transaction; nothing is reused.
            self.runtime.pool.discard(driver, why="disconnect() closed it with what it had open")


class _Turn:
    """``async with session.turn(...)``: the one place the gate is passed and left.

    Cheap on the statement path: a slotted object, ``__aenter__`` is the one
    coroutine the wait needs, and ``__aexit__`` leaves synchronously (it
    returns a finished awaitable instead of being a coroutine of its own).
    """

    __slots__ = ("_kind", "_scopes", "_session", "_who")

    def __init__(self, session: Session, scopes: Scopes, who: Who, kind: int) -> None:
        self._session = session
        self._scopes = scopes
        self._who = who
        self._kind = kind

    async def __aenter__(self) -> BaseException | None:
        """Wait for the turn. An ending turn gives what stopped closing its
        iterations, if anything did (see ``Session._end_streams``)."""
        session, scopes, kind = self._session, self._scopes, self._kind
        frames = session.frames
        if kind == _STATEMENT:
            driver = session.driver
            if frames.streams or (driver is not None and driver.stream_in_transaction):
                await session._before_statement(scopes)
        elif kind == _ENDING and frames.streams:
            scopes = (*scopes, *(stream for _, stream in frames.streams))
        timeout = session.runtime.settings.acquire_timeout
        await session.gate.acquire(scopes, timeout, self._who)
        if kind == _ENDING:
            try:
                return await session._end_streams()
            except BaseException:
                session._leave()
                raise
        return None

    def __aexit__(self, *exc_info: object) -> _Done:
        self._session._leave()
        return _DONE


class _Done:
    """An awaitable that is finished at once (what ``_Turn.__aexit__`` returns)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return _ENDED  # type: ignore[return-value]  # an iterator that ends at once


_ENDED: Final = iter(())  # exhausted for good: shared by every await of ``_DONE``
_DONE: Final = _Done()
