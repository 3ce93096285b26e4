"""What owns one connection now: its transaction frames and its streaming iterations.

The frames are the transactions open on the connection, outermost first:
``BEGIN`` for the first, a savepoint for each one inside it. This module
holds them with their SQL, the innermost-only rule for ending one, the
force_rollback statement guards (``_guard``) and the repair after MySQL's
implicit commit. Beside them, the iterations whose cursor blocks the
connection (MySQL). The innermost of all these owns the connection: the
``Gate`` admits only its scope. Nothing here waits for the gate; the
caller (``_session``, ``_host``) holds the turn.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._background import ended_well
from ._gate import Gate, Scope, Scopes
from ._guard import StatementGuards
from ._query import is_ddl
from ._statements import to_its_end
from .backends.base import Backend, Cursor, DriverConnection
from .exceptions import TransactionOrderError

logger = logging.getLogger("aiodatabases")

#: The force_rollback transaction: the outermost frame of the shared connection.
BASE = Scope("force_rollback")


@dataclass
class Frame:
    """One open transaction (or savepoint) on the connection."""

    scope: Scope  # who owns the connection while it is open
    savepoint: str | None  # None: the outermost BEGIN
    owns: bool = True  # False: force_rollback's own frames, which admit everybody
    gone: bool = False  # ended by the server (MySQL DDL): nothing to send at its end


class Frames:
    """The frame stack and the blocking iterations of one connection (owning loop)."""

    def __init__(self, backend: Backend, gate: Gate) -> None:
        self._backend = backend
        self._gate = gate
        self.stack: list[Frame] = []
        self._savepoint_ids = itertools.count(1)
        # True while the guard savepoint exists with no write after it.
        self.guards = StatementGuards()
        # Open cursors that block the connection (MySQL), each with its scope.
        self.streams: list[tuple[Cursor, Scope]] = []

    # -- who owns the connection -----------------------------------------------------------

    def update_owner(self) -> None:
        """The innermost open transaction (or streaming iteration) owns the connection."""
        if self.streams:
            self._gate.set_owner(self.streams[-1][1])
            return
        for frame in reversed(self.stack):
            if frame.owns:
                self._gate.set_owner(frame.scope)
                return
        self._gate.set_owner(None)

    def scopes(self) -> Scopes:
        """The scopes of every open frame: what passes whoever owns the connection."""
        return tuple(f.scope for f in self.stack)

    def inside_stream(self, scopes: Scopes) -> bool:
        return any(stream in scopes for _, stream in self.streams)

    def mark_lost(self) -> None:
        """The connection was closed under its transactions: their tasks must not
        go on without them (see ``_gate.refuse_lost``)."""
        for frame in self.stack:
            if frame.owns:
                frame.scope.lost = True

    def forget(self) -> None:
        """Drop every frame and iteration: the connection is closed."""
        self.mark_lost()
        self.stack.clear()
        self.guards.forget()
        self.streams = []
        self.update_owner()

    # -- which frame ---------------------------------------------------------------------------

    def index(self, scope: Scope) -> int:
        for index, frame in enumerate(self.stack):
            if frame.scope is scope:
                return index
        raise TransactionOrderError("this transaction is not open on this connection")

    def check_innermost(self, scope: Scope) -> None:
        if self.index(scope) != len(self.stack) - 1:
            raise TransactionOrderError(
                "cannot end this transaction: a transaction nested inside it is still "
                "open; end the inner one first"
            )

    def is_top(self, scope: Scope) -> bool:
        return bool(self.stack) and self.stack[-1].scope is scope

    # -- BEGIN / SAVEPOINT / RELEASE -------------------------------------------------------------

    async def push(
        self,
        driver: DriverConnection,
        scope: Scope,
        options: Mapping[str, Any],
        *,
        owns: bool = True,
    ) -> None:
        """Begin (or take a savepoint); the frame is pushed once the statement ran,
        even if the caller was cancelled meanwhile (it must then roll it back)."""
        savepoint: str | None = None
        if self.stack:
            savepoint = f"aiodatabases_sp_{next(self._savepoint_ids)}"
            statements = [f"SAVEPOINT {savepoint}"]
        else:
            statements = self._backend.begin_sql(options)
        # Where the driver runs it at once (SQLite), it is all or nothing.
        control = None
        if not await driver.control_now(statements):
            control = to_its_end(driver.run_control(statements), on_cancel=driver.stop_waiting)
        try:
            if control is not None:
                await control
        finally:
            if control is None or ended_well(control):
                self.stack.append(Frame(scope, savepoint, owns=owns))
                self.update_owner()

    async def pop(
        self, driver: DriverConnection | None, commit: bool, *, now: bool = False
    ) -> None:
        """End the innermost frame; it is gone even if the statement fails.

        ``now``: nobody may see it open any more, not even while its end runs
        (a caller that gave up: the end is not interruptible either).
        """
        frame = self.stack.pop()
        self.guards.depth_changed(len(self.stack))
        if now:
            self.update_owner()
            await to_its_end(self._end_statement(driver, frame, commit))
            return
        try:
            await self._end_statement(driver, frame, commit)
        finally:
            self.update_owner()

    async def _end_statement(
        self, driver: DriverConnection | None, frame: Frame, commit: bool
    ) -> None:
        if driver is None or frame.gone:
            return
        if frame.savepoint is None:
            await driver.run_control(["COMMIT" if commit else "ROLLBACK"])
        elif commit:
            await driver.run_control([f"RELEASE SAVEPOINT {frame.savepoint}"])
        else:
            await driver.run_control(
                [f"ROLLBACK TO SAVEPOINT {frame.savepoint}", f"RELEASE SAVEPOINT {frame.savepoint}"]
            )

    def drop(self, index: int) -> None:
        """Forget the frames from ``index`` up (the server rolls them back)."""
        del self.stack[index:]
        self.guards.depth_changed(index)
        self.update_owner()

    # -- force_rollback guards and MySQL's implicit commit ---------------------------------------

    def needs_guard(self) -> bool:
        """Bare statements on the force_rollback transaction need a savepoint guard.

        On PostgreSQL a failed statement aborts the whole transaction; rolling
        back to a savepoint taken after the last write undoes only the failure.
        """
        return (
            self._backend.capabilities.failed_statement_aborts_transaction
            and bool(self.stack)
            and not any(frame.owns for frame in self.stack)
        )

    def commits_implicitly(self, sql: str) -> bool:
        """Whether ``sql`` ends every open transaction (DDL on MySQL); warns if so."""
        if not (self._backend.capabilities.ddl_commits_transaction and self.stack and is_ddl(sql)):
            return False
        logger.warning(
            "DDL inside a transaction on %s commits it implicitly (MySQL): what ran "
            "before is no longer rolled back; run DDL before connecting with "
            "force_rollback, or use TEMPORARY tables. Statement: %.80s",
            type(self._backend).__name__,
            sql,
        )
        return True

    async def restart_after_implicit_commit(self, driver: DriverConnection) -> None:
        """The server ended every open transaction: keep force_rollback isolation
        from here on by beginning again, and forget savepoints that are gone."""
        for frame in self.stack:
            if frame.savepoint is not None:
                frame.gone = True  # ending it sends nothing: it no longer exists
        if self.stack and self.stack[0].scope is BASE:
            await driver.run_control(self._backend.begin_sql({}))
            # Rollback points (Database.isolated(): a test's) must still undo
            # what comes after: take them again in the new transaction.
            for frame in self.stack[1:]:
                if not frame.owns and frame.savepoint is not None:
                    await driver.run_control([f"SAVEPOINT {frame.savepoint}"])
                    frame.gone = False
        self.guards.forget()
