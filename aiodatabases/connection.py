"""``Connection``: one driver connection, shared safely by the tasks that use it.

This is the public face, the API of ``databases``' ``Connection``. Its methods
run on the caller's loop; each carries its work to the loop that owns the
connection (``Runtime.call``) together with the caller's transaction scopes.
What runs there lives beside it: ``_session`` (the driver connection, the
turn, running a statement), ``_frames`` (the transaction stack),
``_transactions`` (what ``Transaction`` calls) and ``_streams`` (``iterate()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ._background import shielded
from ._gate import caller, current_scopes
from ._prepare import Query, Values, prepare, prepare_many
from ._records import Record, record, records
from ._runtime import Runtime
from ._session import CLOSED, Session
from ._statements import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Operation
from ._streams import iterate
from ._transactions import Transactions
from .exceptions import NotConnectedError
from .transaction import Host, Transaction

__all__ = ["Connection"]


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
        self._session = Session(runtime)  # everything that runs in the owning loop

    # -- public API (caller's loop) ------------------------------------------------------

    async def __aenter__(self) -> Connection:
        """Hold a driver connection until the matching exit.

        Cancellation: nothing is held if cancelled while waiting for the pool.
        """
        self._refuse_if_closed()
        runtime, session = self._runtime, self._session
        await runtime.call_keeping(
            lambda _: runtime.spawn(session.unhold), session.hold_block, current_scopes(), caller()
        )
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        session = self._session
        if session.closed:
            return  # disconnect() took everything back (its loop may be gone too)
        runtime = self._runtime
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # a coroutine collected after its loop stopped
            running = None
        if runtime.loop is running:
            session.let_go()  # synchronous: a cancellation cannot cut it short
            return
        if running is None or exc_type is GeneratorExit:
            # Nothing may be awaited here: let go in the owning loop, if it still runs.
            runtime.spawn(session.unhold)
            return
        # Carried to the owning loop; shielded: a cancelled exit must still let go.
        await shielded(runtime.call(session.unhold))

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

    def iterate(self, query: Query, values: Values = None) -> AsyncIterator[Record]:
        """Stream rows in batches; other statements may run between batches.

        An async generator: nothing runs before the first ``async for`` step.
        Cancellation: the cursor is closed and the connection released; the
        rows already yielded stay valid.
        """
        return iterate(self._session, query, values, self)

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on this connection (see ``Transaction``)."""
        return Transaction(lambda: transactions_of(self), force_rollback=force_rollback, **options)

    @property
    def raw_connection(self) -> Any:
        """The driver's connection object, while this connection is held."""
        driver = self._session.driver
        if driver is None:
            raise NotConnectedError(
                "raw_connection is only available inside 'async with connection:' "
                "(or a transaction) on this connection"
            )
        return driver.raw

    def _refuse_if_closed(self) -> None:
        # Checked before carrying a call: the owning loop (force_rollback's
        # thread) may be gone since disconnect().
        if self._session.closed:
            raise NotConnectedError(CLOSED)

    async def _statement(self, op: Operation, sql: str, args: Any) -> Any:
        self._refuse_if_closed()
        runtime = self._runtime
        hooks = runtime.observers.hooks()
        if hooks:
            run = self._session.run, current_scopes(), caller(), op, sql, args
            return await runtime.observers.statement(hooks, op, sql, args, runtime.call, *run)
        return await runtime.call(self._session.run, current_scopes(), caller(), op, sql, args)


# -- for Database: what it needs of a connection beyond the public face -------------------


async def open_shared(runtime: Runtime) -> Connection:
    """The force_rollback connection: held, inside its base transaction (owning loop)."""
    connection = Connection(runtime)
    await Transactions(connection._session, connection).open_base()
    return connection


def transactions_of(connection: Connection) -> Host:
    """What ``Transaction`` and ``Isolation`` call to begin and end on ``connection``."""
    return Transactions(connection._session, connection)


def is_held(connection: Connection) -> bool:
    """Whether a block, transaction or iteration holds ``connection``'s driver connection."""
    return connection._session.in_use
