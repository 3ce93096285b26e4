"""Beginning and ending the transactions of one connection: ``Transaction``'s ``Host``.

``Transaction`` and ``Isolation`` (``transaction.py``) call these from the
caller's loop; each carries its work to the owning loop, takes the turn
(``Session.turn``) and pushes or pops a frame (``_frames``). A ``BEGIN`` or
``COMMIT`` once sent runs to its end whatever happens to its caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ._frames import BASE
from ._gate import Scope, Scopes, Who, caller, current_scopes
from ._observe import Observers
from ._session import CLOSED, Session
from ._statements import to_its_end
from .exceptions import NotConnectedError, TransactionOrderError

logger = logging.getLogger("aiodatabases")


class Transactions:
    """The transactions of the connection whose ``Session`` this is.

    ``owner`` is that ``Connection``: kept alive while one of its transactions
    is, so that a task continuing this task's context takes the connection
    over (``_tasks``) instead of a new one running outside the transaction.
    """

    __slots__ = ("_owner", "_runtime", "_session")

    def __init__(self, session: Session, owner: object) -> None:
        self._session = session
        self._runtime = session.runtime
        self._owner = owner

    @property
    def closed(self) -> bool:
        """Whether ``disconnect()`` closed the connection (it refuses everything now)."""
        return self._session.closed

    @property
    def loop_closed(self) -> bool:
        """Whether the loop that owns the connection is closed (nothing runs there)."""
        return self._runtime.loop.is_closed()

    @property
    def observers(self) -> Observers:
        """The database's hooks (``Transaction`` runs them in the caller's task)."""
        return self._runtime.observers

    def encloses(self, scopes: Scopes) -> bool:
        """Whether one of ``scopes`` is a transaction open on this connection (a
        snapshot of its frames: read from the caller's thread, it may be a turn old)."""
        open_here = self._session.frames.scopes()
        return any(scope in open_here for scope in scopes)

    # -- caller's loop ---------------------------------------------------------------------

    async def begin_frame(self, scope: Scope, options: Mapping[str, Any]) -> None:
        """Open ``scope``'s transaction (BEGIN, or a savepoint inside one).

        Cancellation: waiting for the connection stops at once; a BEGIN
        already sent runs to its end and is rolled back before anything else
        runs on the connection, so the caller holds no transaction.
        """
        if self._session.closed:
            raise NotConnectedError(CLOSED)
        await self._runtime.call_keeping(
            lambda _: self.abandon_frame(scope),  # begun in the owning loop, too late
            self._begin,
            scope,
            options,
            current_scopes(),
            caller(),
        )

    def end_frame(self, scope: Scope, commit: bool) -> asyncio.Task[None]:
        """End ``scope``'s transaction: a task that runs to its end even if the
        caller is cancelled meanwhile (which then waits for it; see ``to_its_end``)."""
        if self._session.closed:  # disconnect() rolled it back; its loop may be gone too
            return to_its_end(_ended_by_disconnect(commit))
        return to_its_end(self._runtime.call(self._end, scope, commit, (*current_scopes(), scope)))

    def abandon_frame(self, scope: Scope) -> None:
        """Roll back ``scope``'s transaction because its task ended (from any thread)."""
        self._runtime.spawn(lambda: self._abandon(scope))

    async def begin_isolation(self, scope: Scope) -> None:
        """Open a savepoint that admits every task (see ``Database.isolated``)."""
        if self._session.closed:
            raise NotConnectedError(CLOSED)
        await self._runtime.call(self._begin_isolation, scope)

    async def end_isolation(self, scope: Scope) -> None:
        """Roll back to that savepoint, with everything opened above it."""
        if self._session.closed:
            return  # disconnect() rolled everything back
        await self._runtime.call(self._end_isolation, scope)

    # -- owning loop -------------------------------------------------------------------------

    async def open_base(self) -> None:
        """Hold a connection and begin the force_rollback transaction on it."""
        driver = await self._session.hold()
        # It admits every task: force_rollback shares the connection.
        await self._session.frames.push(driver, BASE, {}, owns=False)

    async def _begin(
        self, scope: Scope, options: Mapping[str, Any], scopes: Scopes, who: Who
    ) -> None:
        session = self._session
        driver = None
        try:
            async with session.turn(scopes, who):
                driver = await session.hold()  # until the transaction ends
                try:
                    await session.frames.push(driver, scope, options)
                except BaseException:
                    if session.frames.is_top(scope):
                        # Begun, but the caller was cancelled meanwhile: roll it back
                        # before anything else runs here (the enclosing transaction's
                        # end, for one).
                        await self._undo_top()
                    session.let_go()
                    raise
        except BaseException:
            await session.pause_if_inline(driver)  # a failed BEGIN may not have suspended
            raise

    async def _undo_top(self) -> None:
        """Roll back the innermost frame for a caller that gave up; a failure
        (or a second cancellation) leaves the connection to be reset."""
        session = self._session
        try:
            await session.frames.pop(session.driver, commit=False, now=True)
        except (Exception, asyncio.CancelledError) as exc:
            session.dirty = True
            logger.debug("rolling back a transaction begun for a cancelled caller: %r", exc)

    async def _end(self, scope: Scope, commit: bool, scopes: Scopes) -> None:
        session = self._session
        if session.closed:
            await _ended_by_disconnect(commit)
            return
        frames = session.frames
        frames.check_innermost(scope)  # at once: waiting would not make it innermost
        async with session.turn_ending(scopes, caller()) as streams_failed:
            if session.closed:  # while it waited for the turn
                await _ended_by_disconnect(commit)
                return
            # Again with the turn: a rollback point (it owns nothing, so it
            # passes) may have been taken on top of it meanwhile.
            frames.check_innermost(scope)
            try:
                if streams_failed is not None:
                    # Closing an iteration inside it was cancelled: not committed.
                    await self._pop(commit=False)
                    raise streams_failed
                await self._pop(commit)
            finally:
                session.let_go()  # the hold its begin took

    async def _pop(self, commit: bool) -> None:
        """End the innermost frame (with the turn); a failure leaves the connection
        to be reset (a failed COMMIT may leave it open: SQLite "database is locked")."""
        session = self._session
        try:
            await session.frames.pop(session.driver, commit)
        except BaseException:
            session.dirty = True
            raise

    async def _abandon(self, scope: Scope) -> None:
        try:
            self._session.frames.index(scope)
        except TransactionOrderError:
            return  # ended meanwhile
        logger.warning(
            "a task ended without ending its transaction (%s); rolling it back", scope.description
        )
        await self._roll_back_to(scope)

    async def _roll_back_to(self, scope: Scope) -> None:
        """Roll back ``scope``'s frame and the frames above it, whoever opened them."""
        session = self._session
        frames = session.frames
        async with session.turn_ending(frames.scopes(), "(cleanup)"):
            # Found with the turn: frames below it may have ended while it waited,
            # and others taken their places.
            try:
                index = frames.index(scope)
            except TransactionOrderError:
                return  # ended meanwhile (with a frame below it)
            while len(frames.stack) > index:
                holds = frames.stack[-1].owns  # transactions hold the driver; isolation does not
                try:
                    await self._pop(commit=False)
                finally:
                    if holds:
                        session.let_go()

    async def _begin_isolation(self, scope: Scope) -> None:
        session = self._session
        async with session.turn_streaming(session.frames.scopes(), "(isolation)"):
            driver = await session.ensure_driver()
            await session.frames.push(driver, scope, {}, owns=False)

    async def _end_isolation(self, scope: Scope) -> None:
        frames = self._session.frames
        try:
            index = frames.index(scope)
        except TransactionOrderError:
            return
        if len(frames.stack) > index + 1:
            logger.warning(
                "%d transaction(s) left open inside an isolated block were rolled back",
                len(frames.stack) - index - 1,
            )
        await self._roll_back_to(scope)


async def _ended_by_disconnect(commit: bool) -> None:
    """A transaction whose connection ``disconnect()`` closed: rolled back then."""
    if commit:
        raise NotConnectedError(
            "cannot commit: the database was disconnected while this transaction was "
            "open, and disconnect() rolled it back; nothing of it was committed"
        )
