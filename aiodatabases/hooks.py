"""Hooks: the public API to observe what a ``Database`` runs (statements, transactions).

Subclass ``Hook``, override the methods you need and add it with
``database.add_hook(hook)``:

    class Timing(Hook):
        def after_statement(self, event: StatementEvent) -> None:
            print(f"{event.duration * 1000:.1f} ms  {event.sql}")

    database.add_hook(Timing())

Each method runs in the caller's task and context (the task that awaited the
statement), whichever loop or thread runs the statement itself: a
``contextvars`` value, or the current OpenTelemetry span, read in a hook is
the caller's. Two ends have no caller to run in: a transaction whose task
was collected with it open ends in the garbage collector, and an iteration
collected without being closed ends in the loop's task that closes it.
Befores run in the order the hooks were added, afters in reverse. Hooks are
plain functions (an ``async def`` method is refused); one that raises is
logged (logger ``aiodatabases``) and skipped, and never changes the
statement's outcome. The statement logging and the OpenTelemetry support
(``aiodatabases.otel``) are built on this API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DatabaseInfo", "Hook", "StatementEvent", "TransactionEvent"]


@dataclass(frozen=True)
class DatabaseInfo:
    """Where a ``Database`` connects, as hooks see it (never its password).

    ``system`` is the dialect (``"postgresql"``, ``"mysql"``, ``"sqlite"``),
    ``driver`` the Python driver (``"asyncpg"``, ``"aiomysql"``, ``"asyncmy"``,
    ``"aiosqlite"``), ``name`` the database (for SQLite the file, or
    ``":memory:"``), ``host`` and ``port`` the server's (None for SQLite),
    ``url`` the URL with its password masked.
    """

    system: str
    driver: str
    name: str
    host: str | None
    port: int | None
    url: str


@dataclass(eq=False)
class StatementEvent:
    """One statement: what ``before_statement`` and then ``after_statement`` receive.

    The same object is passed to both. ``operation`` is the method that ran it
    (``"fetch_all"``, ``"fetch_one"``, ``"execute"``, ``"execute_many"``,
    ``"iterate"``; ``fetch_val`` is a ``"fetch_one"``), ``sql`` the SQL sent
    to the driver (placeholders, never the values inlined), ``values`` the
    values bound to it, as the driver gets them (for ``execute_many`` one set
    per row). Filled in before ``after_statement``: ``duration`` (seconds,
    from the call until its result or error, waiting for a connection
    included; for ``iterate`` the time of its calls to the database, opening,
    each batch and closing, not the loop body's), ``rows`` (rows returned by
    ``fetch_all``, ``fetch_one`` and ``iterate``; None for ``execute`` and
    ``execute_many``) and ``error``
    (the exception the caller gets, ``asyncio.CancelledError`` included;
    None on success). ``state`` is for the hooks themselves: keep what you
    need between before and after there, under a key of your own (the hook
    object, say).
    """

    database: DatabaseInfo
    operation: str
    sql: str
    values: Any
    duration: float | None = None
    rows: int | None = None
    error: BaseException | None = None
    state: dict[Any, Any] = field(default_factory=dict)


@dataclass(eq=False)
class TransactionEvent:
    """One transaction (or savepoint, when nested): ``before_transaction``, then
    ``after_transaction``.

    ``options`` are the ones given to ``transaction()`` (``isolation`` ...),
    ``force_rollback`` whether it rolls back at the end of its block.
    ``before_transaction`` runs before the ``BEGIN`` is sent; the ``BEGIN``,
    ``COMMIT`` and ``ROLLBACK`` are not statement events of their own.
    Filled in before ``after_transaction``: ``outcome`` (``"commit"``,
    ``"rollback"`` (also when ``disconnect()`` rolled it back), or
    ``"abandoned"`` for one rolled back without being ended: its task was
    collected, or its loop was gone), ``duration``
    (seconds from the start until it ended) and ``error`` (the exception of
    a ``BEGIN``, ``COMMIT`` or ``ROLLBACK`` that failed; an exception that
    made the block roll back is not the transaction's error).
    """

    database: DatabaseInfo
    options: dict[str, Any]
    force_rollback: bool
    outcome: str | None = None
    duration: float | None = None
    error: BaseException | None = None
    state: dict[Any, Any] = field(default_factory=dict)


class Hook:
    """Observe statements and transactions: override the methods you need.

    Every method does nothing by default. See the module docstring for where
    they run and what happens when one raises.
    """

    def before_statement(self, event: StatementEvent) -> None:
        """A statement is about to run (``event.duration`` and the rest are None)."""

    def after_statement(self, event: StatementEvent) -> None:
        """The statement ended: ``event.duration``, ``rows`` and ``error`` are set."""

    def before_transaction(self, event: TransactionEvent) -> None:
        """A transaction is about to begin."""

    def after_transaction(self, event: TransactionEvent) -> None:
        """The transaction ended: ``event.outcome``, ``duration`` and ``error`` are set."""
