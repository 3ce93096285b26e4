"""The seam between the core and a driver.

A backend module knows its driver and nothing of tasks, loops, pools or
transaction stacks: the core calls these methods one at a time per
connection (it serializes them) and decides when to begin, commit or reset.
Rows are returned as ``Record`` objects, built by the driver where it can
(``_records.record_type`` of its row type) so that raw SQL costs no Python
work per row. What a driver does differently, that the core must work
around, is one ``Capabilities`` record per backend (and, per connection,
``ran_inline`` and ``stream_in_transaction`` for what its last call did).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from .._compat import BackendPaths
from .._query import ParamStyle
from .._url import DatabaseURL
from ..exceptions import ConfigurationError, UnknownOptionError

Row: TypeAlias = Any
"""A result row: a ``Record`` (by position, by name, ``keys()``, the mapping API)."""

Args: TypeAlias = Sequence[Any]


class Cursor(Protocol):
    """A server-side (or streaming) cursor opened by ``DriverConnection.open_cursor``."""

    #: True while the cursor streams inside a transaction of its own
    #: (PostgreSQL outside a transaction) that ``keep()`` ends (False for one
    #: whose transaction lasts until it is closed: ``pgbouncer``).
    in_own_transaction: bool

    async def fetch(self, count: int) -> list[Row]:
        """Up to ``count`` more rows; an empty list once exhausted."""

    async def keep(self) -> None:
        """End the cursor's own transaction now; the server keeps the rest of
        its rows for it (a failure there is raised by the next ``fetch``)."""

    async def close(self) -> None:
        """Release the cursor (and anything the backend opened for it)."""


class DriverConnection(Protocol):
    """One open driver connection."""

    #: True when the last statement finished (or failed) on the calling thread
    #: without suspending its caller (SQLite's brief reads): the core then lets
    #: the loop's other tasks run once, as after a statement that waited for I/O.
    ran_inline: bool
    #: True while a cursor streams in a transaction of its own that the next
    #: other statement ends first, making the server keep the rest of the
    #: cursor's rows (PostgreSQL): the core then first lets the queued close
    #: of an iteration left by ``break`` run.
    stream_in_transaction: bool

    @property
    def raw(self) -> Any:
        """The driver's own connection object."""

    def is_closed(self) -> bool: ...

    # These may be plain functions returning the driver's awaitable (no frame).
    def fetch_all(self, sql: str, args: Args) -> Awaitable[list[Row]]: ...

    def fetch_one(self, sql: str, args: Args) -> Awaitable[Row | None]: ...

    def execute(self, sql: str, args: Args) -> Awaitable[Any]:
        """Run one statement; return what ``databases`` returns for this backend."""

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        """Run one statement for every argument tuple, as one driver batch."""

    async def open_cursor(self, sql: str, args: Args) -> Cursor: ...

    async def run_control(self, statements: Sequence[str]) -> None:
        """Run parameterless control statements (BEGIN, SAVEPOINT, ...) in order."""

    async def control_now(self, statements: Sequence[str]) -> bool:
        """Run control statements that are all or nothing without a trip to the
        driver (SQLite's BEGIN): True if they ran; False (nothing ran) and the
        core uses ``run_control``. A cancellation meanwhile leaves nothing run;
        errors are raised."""

    def stop_waiting(self) -> None:
        """The caller of a ``BEGIN`` running through ``run_control`` was
        cancelled: if it waits for another connection's lock, let it fail
        now (nothing begun). Called from the caller's thread."""

    async def interrupt(self, read_only: bool) -> None:
        """The caller of the running statement was cancelled: stop it on the server.

        Called only where ``capabilities.cancel_waits_for_statement`` is True
        (the other drivers stop a cancelled statement themselves);
        ``read_only`` says the statement writes nothing.
        """

    async def ping(self) -> None:
        """The cheapest round trip to the server, or raise (the pool's idle check).

        Called only on an idle connection, outside any transaction, before the
        pool hands it out (``health_check_after``); a failure discards it.
        """

    async def reset(self) -> None:
        """Make the connection clean after an interrupted use, or raise.

        Called on a connection whose statement was cancelled or whose owner
        ended without closing its transaction: roll back whatever is open and
        wait for any in-flight server-side cancellation.
        """

    async def close(self) -> None: ...

    def terminate(self) -> None:
        """Close at once, without awaiting anything (the loop may be gone)."""


@dataclass(frozen=True)
class Capabilities:
    """What a driver (or its server) does that the core has to work around.

    One frozen record per backend (``Backend.capabilities``): the core reads
    these flags and nothing else about the driver. Each says which driver or
    server behaviour forces it and what the core does differently. The
    defaults are the plain case; a backend names only its quirks.
    """

    #: PostgreSQL refuses every statement after a failed one inside a
    #: transaction, until ROLLBACK ("current transaction is aborted"); SQLite
    #: and MySQL undo only the failed statement. With True, a bare statement
    #: on the ``force_rollback`` transaction runs behind a savepoint
    #: (``_guard``), rolled back to after a failure, so that the failure
    #: undoes only itself and the connection stays usable (DESIGN §4).
    failed_statement_aborts_transaction: bool = False
    #: Each connection to SQLite's ``:memory:`` is a database of its own, and
    #: the connections to a shared-cache in-memory database lock each other's
    #: tables without waiting (SQLITE_LOCKED). With True the pool holds at
    #: most one connection, so every task sees the one database and waits
    #: its turn for it. SQLite decides it per URL (the database it opens).
    single_connection: bool = False
    #: The MySQL drivers stream an unbuffered result over the connection
    #: itself: nothing else can be sent on it until the rows are read or the
    #: cursor closed. With True, ``iterate()`` outside a block gets a
    #: connection of its own (when the pool has more than one), and on a
    #: shared connection an iteration owns it like a transaction: its own
    #: task gets ``InterleaveError`` at once, other tasks wait (DESIGN §2).
    cursor_blocks_connection: bool = False
    #: The MySQL drivers cannot abandon a statement half read (the rest of its
    #: result would be left on the socket), and cannot cancel one on the
    #: server themselves. With True, a cancelled statement is stopped with
    #: ``DriverConnection.interrupt`` (``KILL QUERY`` from a second
    #: connection) and awaited to its end before the caller leaves; a
    #: borrowed connection is discarded instead. asyncpg and aiosqlite stop a
    #: cancelled statement themselves: the core just cancels the awaitable.
    cancel_waits_for_statement: bool = False
    #: MySQL commits the open transaction implicitly at DDL (CREATE, ALTER,
    #: DROP ...). With True, DDL inside a transaction logs a warning (what
    #: ran before it is no longer rolled back); afterwards the savepoints the
    #: commit ended are marked gone (ending them sends nothing) and the
    #: ``force_rollback`` transaction is begun again, with its rollback points.
    ddl_commits_transaction: bool = False
    #: Through a pooler in transaction mode (PgBouncer; PostgreSQL's
    #: ``pgbouncer`` option) the server session is handed to other clients
    #: between transactions, so a cursor cannot outlive its transaction: an
    #: iteration outside a transaction keeps its own open until it ends, and
    #: the statements of the loop body on its connection run inside it. With
    #: True, ``iterate()`` outside a block gets a connection of its own (when
    #: the pool has more than one), so that the loop body's statements run
    #: and commit on the task's connection as they would without the pooler.
    iteration_keeps_transaction: bool = False


class Backend(Protocol):
    """What one URL scheme provides: a way to open connections, and its SQL dialect."""

    #: The URL the backend was built for (``create_backend`` sets it).
    url: DatabaseURL
    paramstyle: ParamStyle
    #: The SQLAlchemy dialect Core statements are compiled with: its family
    #: ("postgresql", "sqlite", "mysql"), or "postgresql+psycopg" (the
    #: family's SQL with psycopg's placeholders and types).
    dialect_name: str
    #: What the driver does that the core works around (see ``Capabilities``).
    capabilities: Capabilities

    async def connect(self) -> DriverConnection: ...

    def open_kept(self) -> None:
        """Keep open what must live as long as the database is connected
        (SQLite's shared in-memory database), before the pool opens.

        Called by ``connect()`` (not with ``force_rollback``, whose one
        connection opens at once); a plain function, without I/O to wait for.
        A no-op for most backends (``KeepsNothing``).
        """

    def close_kept(self) -> None:
        """Let go of what ``open_kept()`` (or the first connection) kept, once the
        pool has closed (the last ``disconnect()``). A plain function, no I/O."""

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        """The statements that open an outermost transaction with these options.

        Raises ``ConfigurationError`` for an option or level the backend lacks.
        """

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone (discard it)."""

    def is_stale(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection was dead before the statement was sent.

        Such a statement never reached the server, so the core may run it once
        more on another connection (the pool's health check).
        """


class KeepsNothing:
    """``open_kept()`` and ``close_kept()`` for a backend that keeps nothing open."""

    def open_kept(self) -> None:
        return None

    def close_kept(self) -> None:
        return None


#: Mixed into backends: the private paths ``databases`` code uses, such as
#: ``backend._dialect`` (``Database.dialect`` is its public name); see
#: ``aiodatabases._compat``.
SQLAlchemyDialect = BackendPaths


# -- options -------------------------------------------------------------------------

Converter: TypeAlias = Callable[[Any], Any]


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def to_float(value: Any) -> float:
    return float(value)


def positive_seconds(value: Any) -> float | None:
    """Seconds, more than 0 (``command_timeout``); ``None`` or ``"none"``: no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    seconds = float(value)
    if not 0 < seconds < math.inf:  # NaN too
        raise ValueError(f"expected a number of seconds greater than 0, got {value!r}")
    return seconds


def passthrough(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class OptionSpec:
    """The options one backend accepts, each with the converter for URL strings."""

    scheme: str
    options: Mapping[str, Converter] = field(default_factory=dict)

    def parse(self, url_options: Mapping[str, str], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Merge URL query options and keyword options (keywords win), converted."""
        merged: dict[str, Any] = {**url_options, **kwargs}
        unknown = sorted(set(merged) - set(self.options))
        if unknown:
            raise UnknownOptionError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for {self.scheme!r} URLs; "
                f"supported: {', '.join(sorted(self.options))}"
            )
        parsed: dict[str, Any] = {}
        for name, value in merged.items():
            try:
                parsed[name] = self.options[name](value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"option {name!r}={value!r} is invalid: {exc}") from exc
        return parsed
