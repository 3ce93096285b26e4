"""``iterate()``: rows streamed from a cursor, and who owns the connection meanwhile.

Rows come in batches of ``ITERATE_BATCH_SIZE``; the connection is held for
the whole iteration but its turn only per batch, so other statements (the
loop body's among them) run between batches. Where an open cursor blocks
the connection (MySQL), the iteration owns it like a transaction (its scope
is in ``Frames.streams``): its own task gets ``InterleaveError`` at once,
others wait until it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from ._background import shielded
from ._gate import Scope, Scopes, Who, caller, current_scopes, describe, enter_scope, leave_scope
from ._prepare import Query, Values, prepare
from ._records import Record, records
from ._session import CLOSED, Session
from .backends.base import Cursor, DriverConnection
from .exceptions import ConnectionBusyError, InterleaveError, NotConnectedError

logger = logging.getLogger("aiodatabases")

#: Rows fetched per round trip by ``iterate()``; other statements may run between batches.
ITERATE_BATCH_SIZE = 500

#: A cursor streaming in a transaction of its own (PostgreSQL) whose loop body
#: has not asked for the next batch for this long ends that transaction (the
#: server keeps the rest of the rows): a slow body must not leave the session
#: idle in a transaction (servers end such sessions) holding locks (DDL on the
#: table, even one the body waits for, would wait for the iteration).
KEEP_STREAM_AFTER = 0.05


async def iterate(
    session: Session, query: Query, values: Values, owner: object
) -> AsyncIterator[Record]:
    """``Connection.iterate``, run in the caller's loop (see its docstring).

    ``owner``, the ``Connection``, is only referenced: it lives as long as its
    iteration (a task continuing this one's context takes it over, ``_tasks``).
    """
    _refuse_if_closed(session)
    runtime = session.runtime
    sql, args, meta = prepare(query, values, runtime.backend)
    call = runtime.call
    stream = Scope(f"iteration of task {describe(caller())}") if session.blocks else None
    hooks = runtime.observers.hooks()
    watch = runtime.observers.iteration(hooks, sql, args) if hooks else None
    try:
        cursor = await runtime.call_keeping(
            lambda lost: runtime.spawn(lambda: _close_lost(session, lost, stream)),
            _open_cursor,
            session,
            current_scopes(),
            caller(),
            sql,
            args,
            stream,
        )
    except BaseException as exc:
        if watch is not None:
            watch.end(exc)
        raise
    if watch is not None:
        watch.pause()
    if stream is not None:
        enter_scope(stream)
    error: BaseException | None = None
    try:
        while True:
            # Scopes are read per batch: the loop body may open or end transactions.
            _refuse_if_closed(session)
            if watch is not None:
                watch.resume()
            rows = await call(_fetch_batch, session, current_scopes(), caller(), cursor)
            if watch is not None:
                watch.pause(len(rows))
            if not rows:
                break
            keeper = None
            if cursor.in_own_transaction:
                keeper = asyncio.get_running_loop().call_later(
                    KEEP_STREAM_AFTER, runtime.spawn, lambda: _keep_stream(session, cursor)
                )
            try:
                for row in records(rows, meta):
                    yield row
            finally:
                if keeper is not None:
                    keeper.cancel()
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            if not session.closed:  # else closed with the connection
                if watch is not None:
                    watch.resume()
                await shielded(call(_close_cursor, session, current_scopes(), caller(), cursor))
        except BaseException as exc:
            error = error or exc  # the caller gets it: so do the hooks
            raise
        finally:
            if stream is not None:
                leave_scope(stream)
            if watch is not None:
                watch.end(error)


def _refuse_if_closed(session: Session) -> None:
    # Checked before carrying a call: the owning loop may be gone since disconnect().
    if session.closed:
        raise NotConnectedError(CLOSED)


# -- owning loop ------------------------------------------------------------------------------


async def _open_cursor(
    session: Session, scopes: Scopes, who: Who, sql: str, args: Any, stream: Scope | None
) -> Cursor:
    """Open a cursor; like a statement, but the connection stays held until closed."""
    async with session.turn(scopes, who):
        driver = await session.hold()  # until the cursor is closed
        try:
            cursor: Cursor = await session.execute(
                driver, _open, sql, args, on_lost=_close_lost_cursor
            )
        except BaseException:
            session.let_go()
            raise
        # A later guard must be taken after the cursor: rolling back to a
        # savepoint older than the cursor would close it.
        frames = session.frames
        frames.guards.wrote(len(frames.stack))
        if stream is not None:
            frames.streams.append((cursor, stream))
            frames.update_owner()
        return cursor


async def _fetch_batch(session: Session, scopes: Scopes, who: Who, cursor: Cursor) -> list[Any]:
    async with session.turn_streaming(scopes, who):
        if session.closed:
            raise NotConnectedError(
                "the database was disconnected during this iteration; disconnect() "
                "closed its cursor and connection"
            )
        if session.blocks and not any(cursor is c for c, _ in session.frames.streams):
            raise InterleaveError(
                "this iteration was ended early: the transaction around it ended (or "
                "the database disconnected) while its rows were still streaming"
            )
        rows: list[Any] = await session.execute(
            await session.ensure_driver(), _fetch, "FETCH", cursor
        )
        return rows


async def _keep_stream(session: Session, cursor: Cursor) -> None:
    """The loop body is slow: end the cursor's own transaction (``KEEP_STREAM_AFTER``)."""
    if not cursor.in_own_transaction:
        return  # ended meanwhile (by a statement, or closed)
    try:
        async with session.turn_streaming((), "(iteration)"):
            await cursor.keep()  # a failure goes to the iteration's next fetch
    except ConnectionBusyError:
        return  # a statement held the connection all along: it ended the transaction


async def _close_lost(session: Session, cursor: Cursor, stream: Scope | None) -> None:
    """Close a cursor opened for an iteration whose caller gave up meanwhile."""
    scopes = session.frames.scopes()
    if stream is not None:
        scopes = (*scopes, stream)
    await _close_cursor(session, scopes, "(cleanup)", cursor)


async def _close_cursor(session: Session, scopes: Scopes, who: Who, cursor: Cursor) -> None:
    """Close the cursor and let the connection go; never raises over the loop's error."""
    async with session.turn_streaming(scopes, who):
        try:
            if session.closed:
                return  # closed with its connection by disconnect()
            frames = session.frames
            if session.blocks:
                streams = [entry for entry in frames.streams if entry[0] is not cursor]
                if len(streams) == len(frames.streams):
                    return  # already ended with its transaction
                frames.streams = streams
                frames.update_owner()
            await cursor.close()
        except Exception as exc:
            # The iteration's own error (or a rollback) may already have ended it.
            logger.debug("closing a cursor failed: %r", exc)
        finally:
            session.let_go()  # the hold its opening took


def _open(driver: DriverConnection, sql: str, args: Any) -> Awaitable[Cursor]:
    """An ``Operation`` that opens a cursor for ``sql``."""
    return driver.open_cursor(sql, args)


def _close_lost_cursor(cursor: Cursor) -> Awaitable[None]:
    """A cursor opened for a caller that was cancelled meanwhile (MySQL: its
    result must be read to the end before the connection runs anything else)."""
    return cursor.close()


def _fetch(driver: DriverConnection, sql: str, cursor: Cursor) -> Awaitable[list[Any]]:
    """An ``Operation`` that reads the next batch of an open cursor."""
    return cursor.fetch(ITERATE_BATCH_SIZE)
