"""``Connection``: one driver connection, shared safely by the tasks that use it.

Public methods run on the caller's loop; each carries its work to the loop
that owns the connection (``Runtime.call``) together with the caller's
transaction scopes. Everything below the line "runs in the owning loop" only
ever runs there, so it needs no locks beyond the ``Gate``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._background import ended_well, shielded
from ._gate import (
    EVERY_OWNER,
    Gate,
    Scope,
    Scopes,
    Who,
    caller,
    current_scopes,
    describe,
    enter_scope,
    leave_scope,
)
from ._guard import StatementGuards
from ._prepare import Query, Values, prepare, prepare_many
from ._query import is_ddl, is_read_only
from ._records import Record, record, records
from ._runtime import Runtime
from ._statements import (
    EXECUTE,
    EXECUTE_MANY,
    FETCH_ALL,
    FETCH_ONE,
    Operation,
    pause_if_inline,
    run_statement,
    to_its_end,
)
from .backends.base import Cursor, DriverConnection
from .exceptions import (
    ConnectionBusyError,
    InterleaveError,
    NotConnectedError,
    TransactionOrderError,
)
from .transaction import Transaction

logger = logging.getLogger("aiodatabases")

#: Rows fetched per round trip by ``iterate()``; other statements may run between batches.
ITERATE_BATCH_SIZE = 500

#: A cursor streaming in a transaction of its own (PostgreSQL) whose loop body
#: has not asked for the next batch for this long ends that transaction (the
#: server keeps the rest of the rows): a slow body must not leave the session
#: idle in a transaction (servers end such sessions) holding locks (DDL on the
#: table, even one the body waits for, would wait for the iteration).
KEEP_STREAM_AFTER = 0.05


@dataclass
class _Frame:
    """One open transaction (or savepoint) on the connection."""

    scope: Scope  # who owns the connection while it is open
    savepoint: str | None  # None: the outermost BEGIN
    owns: bool = True  # False: force_rollback's own frames, which admit everybody
    gone: bool = False  # ended by the server (MySQL DDL): nothing to send at its end


class Connection:
    """A connection of a ``Database``: the current task's, or the shared one.

    ``async with connection:`` keeps the same driver connection until the
    block ends. Statements from several tasks on one ``Connection`` run one
    at a time in arrival order; a transaction open on it admits only its own
    task and the tasks created inside it until it ends.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._backend = runtime.backend
        self._driver: DriverConnection | None = None
        self._holds = 0
        self._dirty = False
        self._gate = Gate()
        self._frames: list[_Frame] = []
        self._savepoint_ids = itertools.count(1)
        # True while the guard savepoint exists with no write after it.
        self._guards = StatementGuards()
        self._closed = False
        self._broken = False  # the driver connection is gone: discard, never reuse
        self._recovering = False  # a background recovery holds the gate
        # Open cursors that block the connection (MySQL), each with its scope.
        self._blocks = self._backend.capabilities.cursor_blocks_connection
        self._streams: list[tuple[Cursor, Scope]] = []

    # -- public API (caller's loop) ------------------------------------------------------

    async def __aenter__(self) -> Connection:
        """Hold a driver connection until the matching exit.

        Cancellation: nothing is held if cancelled while waiting for the pool.
        """
        self._refuse_if_closed()
        runtime = self._runtime
        await runtime.call_keeping(
            lambda _: runtime.spawn(self._unhold), self._hold, current_scopes(), caller()
        )
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        if self._closed:
            return  # disconnect() took everything back (its loop may be gone too)
        runtime = self._runtime
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # a coroutine collected after its loop stopped
            running = None
        if runtime.loop is running:
            self._let_go()  # synchronous: a cancellation cannot cut it short
            return
        if running is None or exc_type is GeneratorExit:
            # Nothing may be awaited here: let go in the owning loop, if it still runs.
            runtime.spawn(self._unhold)
            return
        # Carried to the owning loop; shielded: a cancelled exit must still let go.
        await shielded(runtime.call(self._unhold))

    async def fetch_all(self, query: Query, values: Values = None) -> list[Record]:
        """All rows.

        Cancellation: the statement is cancelled on the server; the connection
        is usable again before anyone else's statement runs on it.
        """
        sql, args, meta = prepare(query, values, self._backend)
        return records(await self._statement(FETCH_ALL, sql, args), meta)

    async def fetch_one(self, query: Query, values: Values = None) -> Record | None:
        """The first row, or None. Cancellation: as ``fetch_all``."""
        sql, args, meta = prepare(query, values, self._backend)
        row = await self._statement(FETCH_ONE, sql, args)
        return None if row is None else record(row, meta)

    async def fetch_val(self, query: Query, values: Values = None, column: Any = 0) -> Any:
        """One value of the first row (``column`` by index or name), or None."""
        row = await self.fetch_one(query, values)
        return None if row is None else row[column]

    async def execute(self, query: Query, values: Values = None) -> Any:
        """Run a statement; PostgreSQL returns the first column of the first row
        (``RETURNING id``) or None; MySQL the ``lastrowid`` or, where it is 0,
        the number of rows changed; SQLite the new rowid if the statement
        inserted, else its ``rowcount``.
        Cancellation: as ``fetch_all``."""
        sql, args, _ = prepare(query, values, self._backend)
        return await self._statement(EXECUTE, sql, args)

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per mapping in ``values``, as one driver batch."""
        sql, args_list, _ = prepare_many(query, values, self._backend)
        await self._statement(EXECUTE_MANY, sql, args_list)

    async def iterate(self, query: Query, values: Values = None) -> AsyncIterator[Record]:
        """Stream rows in batches; other statements may run between batches.

        Cancellation: the cursor is closed and the connection released; the
        rows already yielded stay valid.
        """
        self._refuse_if_closed()
        sql, args, meta = prepare(query, values, self._backend)
        call = self._runtime.call
        # Where the driver cannot interleave, the iteration owns the connection
        # like a transaction: its own task (and tasks it creates) get
        # InterleaveError at once, others wait until the iteration ends.
        stream = Scope(f"iteration of task {describe(caller())}") if self._blocks else None
        cursor = await self._runtime.call_keeping(
            lambda lost: self._runtime.spawn(lambda: self._close_lost(lost, stream)),
            self._open_cursor,
            current_scopes(),
            caller(),
            sql,
            args,
            stream,
        )
        if stream is not None:
            enter_scope(stream)
        try:
            while True:
                # Scopes are read per batch: the loop body may open or end transactions.
                self._refuse_if_closed()
                rows = await call(self._fetch_batch, current_scopes(), caller(), cursor)
                if not rows:
                    break
                keeper = None
                if cursor.in_own_transaction:
                    keeper = asyncio.get_running_loop().call_later(
                        KEEP_STREAM_AFTER, self._runtime.spawn, lambda: self._keep_stream(cursor)
                    )
                try:
                    for row in records(rows, meta):
                        yield row
                finally:
                    if keeper is not None:
                        keeper.cancel()
        finally:
            if not self._closed:  # else closed with the connection
                await shielded(call(self._close_cursor, current_scopes(), caller(), cursor))
            if stream is not None:
                leave_scope(stream)

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on this connection (see ``Transaction``)."""
        return Transaction(lambda: self, force_rollback=force_rollback, **options)

    @property
    def closed(self) -> bool:
        """Whether ``disconnect()`` closed this connection (it refuses everything now)."""
        return self._closed

    @property
    def loop_closed(self) -> bool:
        """Whether the loop that owns this connection is closed (nothing runs there)."""
        return self._runtime.loop.is_closed()

    @property
    def in_use(self) -> bool:
        """Whether a block, transaction or iteration holds a driver connection now."""
        return self._holds > 0

    @property
    def raw_connection(self) -> Any:
        """The driver's connection object, while this connection is held."""
        if self._driver is None:
            raise NotConnectedError(
                "raw_connection is only available inside 'async with connection:' "
                "(or a transaction) on this connection"
            )
        return self._driver.raw

    # -- used by Transaction (caller's loop) --------------------------------------------

    async def begin_frame(self, scope: Scope, options: Mapping[str, Any]) -> None:
        """Open ``scope``'s transaction (BEGIN, or a savepoint inside one).

        Cancellation: waiting for the connection stops at once; a BEGIN
        already sent runs to its end and is rolled back before anything else
        runs on the connection, so the caller holds no transaction.
        """
        self._refuse_if_closed()
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
        if self._closed:  # disconnect() rolled it back; its loop may be gone too
            return to_its_end(_ended_by_disconnect(commit))
        return to_its_end(self._runtime.call(self._end, scope, commit, (*current_scopes(), scope)))

    async def begin_isolation(self, scope: Scope) -> None:
        """Open a savepoint that admits every task (see ``Database.isolated``)."""
        self._refuse_if_closed()
        await self._runtime.call(self._begin_isolation, scope)

    async def end_isolation(self, scope: Scope) -> None:
        """Roll back to that savepoint, with everything opened above it."""
        if self._closed:
            return  # disconnect() rolled everything back
        await self._runtime.call(self._end_isolation, scope)

    def _refuse_if_closed(self) -> None:
        # Checked before carrying a call: the owning loop (force_rollback's
        # thread) may be gone since disconnect().
        if self._closed:
            raise NotConnectedError(_CLOSED)

    def abandon_frame(self, scope: Scope) -> None:
        """Roll back ``scope``'s transaction because its task ended (from any thread)."""
        self._runtime.spawn(lambda: self._abandon_frame(scope))

    def __del__(self) -> None:
        # The last reference is gone (its task ended without closing its block):
        # give the driver connection back, reset, so nothing is kept for it.
        driver = self._driver
        if driver is not None and not self._closed:
            self._runtime.release_orphan(driver)

    async def _statement(self, op: Operation, sql: str, args: Any) -> Any:
        self._refuse_if_closed()
        return await self._runtime.call(self._run, current_scopes(), caller(), op, sql, args)

    # -- runs in the owning loop ----------------------------------------------------------

    async def _hold(self, scopes: Scopes, who: Who) -> None:
        if self._driver is None:
            await self._pass_gate(scopes, who)
            try:
                await self._ensure_driver()
            finally:
                self._gate.release()
        self._holds += 1

    async def _unhold(self) -> None:
        self._let_go()

    def _let_go(self) -> None:
        """End one hold; the last gives the driver connection back."""
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0:
            self._release_driver()

    async def _ensure_driver(self) -> DriverConnection:
        if self._closed:
            raise NotConnectedError(_CLOSED)
        if self._driver is None:
            driver = await self._runtime.pool.acquire()
            if self._closed:  # disconnect() came while the pool opened it
                self._runtime.pool.discard(driver)
                raise NotConnectedError(_CLOSED)
            self._driver = driver
            self._runtime.holders.add(self)  # disconnect() closes it from here on
        return self._driver

    def _release_driver(self) -> None:
        driver, self._driver = self._driver, None
        if driver is None:
            return
        self._runtime.holders.discard(self)
        dirty = self._dirty or bool(self._frames)
        if self._frames:
            logger.warning(
                "a connection was released with %d transaction(s) still open; rolled back",
                len(self._frames),
            )
            self._drop_frames(0)
        broken, self._broken = self._broken, False
        self._dirty = False
        self._guards.forget()
        self._runtime.pool.release(driver, dirty=dirty, broken=broken)

    async def _pass_gate(self, scopes: Scopes, who: Who) -> None:
        driver = self._driver
        if self._inside_stream(scopes) or (driver is not None and driver.stream_in_transaction):
            # An iteration left by ``break`` is closed by a task the loop has
            # queued (the generator's finalizer): give it its turn first
            # (MySQL: else it blocks the connection; PostgreSQL: else this
            # statement makes the server keep the rest of its rows).
            for _ in range(5):
                await asyncio.sleep(0)
        if self._inside_stream(scopes):
            # Waiting would never end: the caller is inside the iteration.
            raise InterleaveError(
                "this connection is streaming the rows of an iterate() and its driver "
                "(MySQL) cannot run another statement until the iteration ends; fetch the "
                "rows with fetch_all() first, or run the statement on another connection"
            )
        await self._gate.acquire(scopes, self._runtime.settings.acquire_timeout, who)

    def _leave_gate(self) -> None:
        """Let the next statement in, unless a recovery after a cancel took the
        turn over (it lets the next one in when it is done)."""
        if self._recovering:
            self._recovering = False
        else:
            self._gate.release()

    def _inside_stream(self, scopes: Scopes) -> bool:
        return any(stream in scopes for _, stream in self._streams)

    async def _pass_gate_streaming(self, scopes: Scopes, who: Who) -> None:
        """The gate for the statements of the iteration itself."""
        await self._gate.acquire(scopes, self._runtime.settings.acquire_timeout, who)

    async def _pass_gate_ending(self, scopes: Scopes, who: Who) -> None:
        """The gate for ending a transaction: a streaming cursor is ended first.

        The ``async with`` of a transaction exits before the iteration inside it
        is closed (an async generator is closed later); its end must not fail.
        """
        streams, stream_scopes = self._streams, tuple(stream for _, stream in self._streams)
        await self._pass_gate_streaming((*scopes, *stream_scopes), who)
        self._streams = []
        self._update_owner()
        for cursor, _ in streams:
            try:
                await cursor.close()
            except Exception as exc:
                logger.debug("closing a streaming cursor failed: %r", exc)

    async def _run(self, scopes: Scopes, who: Who, op: Operation, sql: str, args: Any) -> Any:
        await self._pass_gate(scopes, who)
        driver: DriverConnection | None = None
        try:
            fresh = self._driver is None
            driver = await self._ensure_driver()
            self._holds += 1
            try:
                try:
                    return await self._execute(driver, op, sql, args)
                except Exception as exc:
                    if not (fresh and self._holds == 1 and self._backend.is_stale(exc)):
                        raise
                # Taken from the pool dead, statement never sent: the health check.
                self._release_driver()
                driver = await self._ensure_driver()
                return await self._execute(driver, op, sql, args)
            finally:
                self._let_go()  # (nothing left to let go if disconnect() closed it meanwhile)
        finally:
            self._leave_gate()
            await self._pause_if_inline(driver)  # after the gate, failed or not

    async def _pause_if_inline(self, driver: DriverConnection | None) -> None:
        """``pause_if_inline`` in an application loop (a private loop thread's
        callers wait in their own loops)."""
        if driver is not None and self._runtime.thread is None:
            await pause_if_inline(driver)

    async def _execute(
        self,
        driver: DriverConnection,
        op: Operation,
        sql: str,
        args: Any,
        on_lost: Callable[[Any], Awaitable[None]] | None = None,
    ) -> Any:
        guard = self._needs_guard()
        depth = len(self._frames)
        if guard:
            renew = self._guards.before(depth)
            if renew:
                # Not interruptible: half done, it would leave no guard to roll back to.
                await to_its_end(driver.run_control(renew))
        ddl_commits = (
            self._backend.capabilities.ddl_commits_transaction
            and bool(self._frames)
            and is_ddl(sql)
        )
        if ddl_commits:
            logger.warning(
                "DDL inside a transaction on %s commits it implicitly (MySQL): what ran "
                "before is no longer rolled back; run DDL before connecting with "
                "force_rollback, or use TEMPORARY tables. Statement: %.80s",
                type(self._backend).__name__,
                sql,
            )
        try:
            result = await run_statement(self._backend, driver, op, sql, args, on_lost)
        except asyncio.CancelledError:
            if guard:
                # The cancel aborted the force_rollback transaction: undo this
                # statement in the background; the gate stays closed until then.
                self._recovering = True
                self._runtime.spawn(lambda: self._recover(driver, depth))
            else:
                self._dirty = True
            raise
        except BaseException as exc:
            broken = self._runtime.classify_failure(driver, exc)[1]
            self._broken = self._broken or broken
            if guard and not broken:
                await driver.run_control(self._guards.undo(depth))
            raise
        if guard and not is_read_only(sql):
            self._guards.wrote(depth)
        if ddl_commits:
            await self._restart_after_implicit_commit(driver)
        return result

    async def _restart_after_implicit_commit(self, driver: DriverConnection) -> None:
        """The server ended every open transaction: keep force_rollback isolation
        from here on by beginning again, and forget savepoints that are gone."""
        for frame in self._frames:
            if frame.savepoint is not None:
                frame.gone = True  # ending it sends nothing: it no longer exists
        if self._frames and self._frames[0].scope is _BASE:
            await driver.run_control(self._backend.begin_sql({}))
            # Rollback points (Database.isolated(): a test's) must still undo
            # what comes after: take them again in the new transaction.
            for frame in self._frames[1:]:
                if not frame.owns and frame.savepoint is not None:
                    await driver.run_control([f"SAVEPOINT {frame.savepoint}"])
                    frame.gone = False
        self._guards.forget()

    async def _recover(self, driver: DriverConnection, depth: int) -> None:
        try:
            await driver.run_control(self._guards.undo(depth))
        finally:
            self._gate.release()

    def _needs_guard(self) -> bool:
        """Bare statements on the force_rollback transaction need a savepoint guard.

        On PostgreSQL a failed statement aborts the whole transaction; rolling
        back to a savepoint taken after the last write undoes only the failure.
        """
        return (
            self._backend.capabilities.failed_statement_aborts_transaction
            and bool(self._frames)
            and not any(frame.owns for frame in self._frames)
        )

    # -- transactions (owning loop) ---------------------------------------------------------

    async def _begin(
        self, scope: Scope, options: Mapping[str, Any], scopes: Scopes, who: Who
    ) -> None:
        await self._pass_gate(scopes, who)
        driver: DriverConnection | None = None
        try:
            driver = await self._ensure_driver()
            self._holds += 1
            try:
                await self._push_frame(driver, scope, options)
            except BaseException:
                if self._frames and self._frames[-1].scope is scope:
                    # Begun, but the caller was cancelled meanwhile: roll it back
                    # before anything else runs here (the enclosing transaction's
                    # end, for one).
                    await self._undo_frame()
                self._let_go()
                raise
        except BaseException:
            self._gate.release()
            await self._pause_if_inline(driver)  # a failed BEGIN may not have suspended
            raise
        self._gate.release()

    async def _push_frame(
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
        if self._frames:
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
                self._frames.append(_Frame(scope, savepoint, owns=owns))
                self._update_owner()

    async def _undo_frame(self) -> None:
        """Roll back the innermost frame for a caller that gave up; a failure
        (or a second cancellation) leaves the connection to be reset."""
        frame = self._frames.pop()  # at once: nobody may see it open any more
        self._guards.depth_changed(len(self._frames))
        self._update_owner()
        try:
            await to_its_end(self._end_statement(frame, commit=False))
        except (Exception, asyncio.CancelledError) as exc:
            self._dirty = True
            logger.debug("rolling back a transaction begun for a cancelled caller: %r", exc)

    def _update_owner(self) -> None:
        """The innermost open transaction (or streaming iteration) owns the connection."""
        if self._streams:
            self._gate.set_owner(self._streams[-1][1])
            return
        for frame in reversed(self._frames):
            if frame.owns:
                self._gate.set_owner(frame.scope)
                return
        self._gate.set_owner(None)

    async def _end(self, scope: Scope, commit: bool, scopes: Scopes) -> None:
        if self._closed:
            await _ended_by_disconnect(commit)
            return
        self._check_innermost(scope)  # at once: waiting would not make it innermost
        await self._pass_gate_ending(scopes, caller())
        try:
            if self._closed:  # while it waited for the turn
                self._gate.release()
                await _ended_by_disconnect(commit)
                return
            # Again with the turn: a rollback point (it owns nothing, so it
            # passes) may have been taken on top of it meanwhile.
            self._check_innermost(scope)
        except (NotConnectedError, TransactionOrderError):
            self._gate.release()
            raise
        try:
            await self._pop_frame(commit)
        finally:
            self._gate.release()
            await self._unhold()

    def _check_innermost(self, scope: Scope) -> None:
        if self._frame_index(scope) != len(self._frames) - 1:
            raise TransactionOrderError(
                "cannot end this transaction: a transaction nested inside it is still "
                "open; end the inner one first"
            )

    def _frame_index(self, scope: Scope) -> int:
        for index, frame in enumerate(self._frames):
            if frame.scope is scope:
                return index
        raise TransactionOrderError("this transaction is not open on this connection")

    async def _pop_frame(self, commit: bool) -> None:
        """End the innermost frame; it is gone even if the statement fails."""
        frame = self._frames.pop()
        self._guards.depth_changed(len(self._frames))
        try:
            await self._end_statement(frame, commit)
        except BaseException:
            # A failed COMMIT may leave the transaction open (SQLite "database is
            # locked"): reset the connection before it is used again.
            self._dirty = True
            raise
        finally:
            self._update_owner()

    async def _end_statement(self, frame: _Frame, commit: bool) -> None:
        driver = self._driver
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

    def _drop_frames(self, index: int) -> None:
        del self._frames[index:]
        self._guards.depth_changed(index)
        self._update_owner()

    async def _abandon_frame(self, scope: Scope) -> None:
        try:
            self._frame_index(scope)
        except TransactionOrderError:
            return  # ended meanwhile
        logger.warning(
            "a task ended without ending its transaction (%s); rolling it back", scope.description
        )
        await self._roll_back_to(scope)

    async def _roll_back_to(self, scope: Scope) -> None:
        """Roll back ``scope``'s frame and the frames above it, whoever opened them."""
        await self._pass_gate_ending(tuple(f.scope for f in self._frames), "(cleanup)")
        try:
            # Found with the turn: frames below it may have ended while it waited,
            # and others taken their places.
            try:
                index = self._frame_index(scope)
            except TransactionOrderError:
                return  # ended meanwhile (with a frame below it)
            while len(self._frames) > index:
                holds = self._frames[-1].owns  # transactions hold the driver; isolation does not
                try:
                    await self._pop_frame(commit=False)
                finally:
                    if holds:
                        await self._unhold()
        finally:
            self._gate.release()

    async def _begin_isolation(self, scope: Scope) -> None:
        await self._pass_gate_streaming(tuple(f.scope for f in self._frames), "(isolation)")
        try:
            driver = await self._ensure_driver()
            await self._push_frame(driver, scope, {}, owns=False)
        finally:
            self._gate.release()

    async def _end_isolation(self, scope: Scope) -> None:
        try:
            index = self._frame_index(scope)
        except TransactionOrderError:
            return
        if len(self._frames) > index + 1:
            logger.warning(
                "%d transaction(s) left open inside an isolated block were rolled back",
                len(self._frames) - index - 1,
            )
        await self._roll_back_to(scope)

    # -- cursors (owning loop) -------------------------------------------------------------

    async def _open_cursor(
        self, scopes: Scopes, who: Who, sql: str, args: Any, stream: Scope | None
    ) -> Cursor:
        """Open a cursor; like a statement, but the connection stays held until closed."""
        await self._pass_gate(scopes, who)
        try:
            driver = await self._ensure_driver()
            self._holds += 1
            try:
                cursor: Cursor = await self._execute(
                    driver, _open_cursor, sql, args, on_lost=_close_lost_cursor
                )
            except BaseException:
                self._let_go()
                raise
            # A later guard must be taken after the cursor: rolling back to a
            # savepoint older than the cursor would close it.
            self._guards.wrote(len(self._frames))
            if stream is not None:
                self._streams.append((cursor, stream))
                self._update_owner()
            return cursor
        finally:
            self._leave_gate()

    async def _fetch_batch(self, scopes: Scopes, who: Who, cursor: Cursor) -> list[Any]:
        await self._pass_gate_streaming(scopes, who)
        try:
            if self._closed:
                raise NotConnectedError(
                    "the database was disconnected during this iteration; disconnect() "
                    "closed its cursor and connection"
                )
            if self._blocks and not any(cursor is c for c, _ in self._streams):
                raise InterleaveError(
                    "this iteration was ended early: the transaction around it ended (or "
                    "the database disconnected) while its rows were still streaming"
                )
            rows: list[Any] = await self._execute(
                await self._ensure_driver(), _fetch_batch, "FETCH", cursor
            )
            return rows
        finally:
            self._leave_gate()

    async def _keep_stream(self, cursor: Cursor) -> None:
        """The loop body is slow: end the cursor's own transaction (``KEEP_STREAM_AFTER``)."""
        if not cursor.in_own_transaction:
            return  # ended meanwhile (by a statement, or closed)
        try:
            await self._pass_gate_streaming((), "(iteration)")
        except ConnectionBusyError:
            return  # a statement held the connection all along: it ended the transaction
        try:
            await cursor.keep()  # a failure goes to the iteration's next fetch
        finally:
            self._leave_gate()

    async def _close_lost(self, cursor: Cursor, stream: Scope | None) -> None:
        """Close a cursor opened for an iteration whose caller gave up meanwhile."""
        scopes = tuple(f.scope for f in self._frames)
        if stream is not None:
            scopes = (*scopes, stream)
        await self._close_cursor(scopes, "(cleanup)", cursor)

    async def _close_cursor(self, scopes: Scopes, who: Who, cursor: Cursor) -> None:
        """Close the cursor and let the connection go; never raises over the loop's error."""
        await self._pass_gate_streaming(scopes, who)
        try:
            if self._closed:
                return  # closed with its connection by disconnect()
            if self._blocks:
                streams = [entry for entry in self._streams if entry[0] is not cursor]
                if len(streams) == len(self._streams):
                    return  # already ended with its transaction
                self._streams = streams
                self._update_owner()
            await cursor.close()
        except Exception as exc:
            # The iteration's own error (or a rollback) may already have ended it.
            logger.debug("closing a cursor failed: %r", exc)
        finally:
            self._gate.release()
            await self._unhold()

    # -- lifecycle (owning loop) -------------------------------------------------------------

    async def open_base_transaction(self) -> None:
        """Hold a connection and begin the force_rollback transaction on it."""
        driver = await self._ensure_driver()
        self._holds += 1
        # It admits every task: force_rollback shares the connection.
        await self._push_frame(driver, _BASE, {}, owns=False)

    async def close_for_disconnect(self) -> None:
        """``disconnect()``: wait for the running statement, then close the driver
        connection (the server rolls back what it had open).

        Whoever still uses this connection then gets ``NotConnectedError``:
        statements waiting for their turn, and a task parked inside a
        transaction when it resumes (the end of its block says nothing: its
        rollback is done). The wait is bounded by ``acquire_timeout``.
        """
        if self._closed:
            return
        self._closed = True  # from here on nothing new starts here
        try:
            # Whoever owns it by the time the running statement ends (a BEGIN
            # in flight now, an iteration opening its cursor) lets it in.
            await self._pass_gate_ending((EVERY_OWNER,), "(disconnect)")
        except ConnectionBusyError:
            logger.warning(
                "disconnect() waited %ss for a statement to end; closing its connection anyway",
                self._runtime.settings.acquire_timeout,
            )
            passed = False
        else:
            passed = True
        try:
            driver = self._forget_everything()
            if driver is not None:
                # Closing ends the session and its transaction; nothing is reused.
                self._runtime.pool.discard(driver)
        finally:
            # Only now: what waited for the turn must find the connection closed.
            if passed:
                self._gate.release()

    def close_at_terminate(self) -> None:
        """``close_for_disconnect()`` when the owning loop is gone: nothing can run
        there any more (the pool drops the socket); only refuse what comes later."""
        self._closed = True
        self._mark_transactions_lost()

    def _mark_transactions_lost(self) -> None:
        # Their tasks must not go on without them (see ``_gate.refuse_lost``).
        for frame in self._frames:
            if frame.owns:
                frame.scope.lost = True

    def _forget_everything(self) -> DriverConnection | None:
        """Drop frames, iterations and holds; return the driver connection, now nobody's."""
        self._mark_transactions_lost()
        self._frames.clear()
        self._guards.forget()
        self._streams = []
        self._holds = 0
        self._update_owner()
        self._runtime.holders.discard(self)
        driver, self._driver = self._driver, None
        return driver


async def _ended_by_disconnect(commit: bool) -> None:
    """A transaction whose connection ``disconnect()`` closed: rolled back then."""
    if commit:
        raise NotConnectedError(
            "cannot commit: the database was disconnected while this transaction was "
            "open, and disconnect() rolled it back; nothing of it was committed"
        )


def _open_cursor(driver: DriverConnection, sql: str, args: Any) -> Awaitable[Cursor]:
    """An ``Operation`` that opens a cursor for ``sql``."""
    return driver.open_cursor(sql, args)


def _close_lost_cursor(cursor: Cursor) -> Awaitable[None]:
    """A cursor opened for a caller that was cancelled meanwhile (MySQL: its
    result must be read to the end before the connection runs anything else)."""
    return cursor.close()


def _fetch_batch(driver: DriverConnection, sql: str, cursor: Cursor) -> Awaitable[list[Any]]:
    """An ``Operation`` that reads the next batch of an open cursor."""
    return cursor.fetch(ITERATE_BATCH_SIZE)


_BASE = Scope("force_rollback")

_CLOSED = (
    "the database was disconnected: disconnect() closed this connection and rolled "
    "back what was open on it; connect() again and use a new connection"
)
