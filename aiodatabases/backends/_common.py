"""What several drivers say alike: transaction options, isolation levels, timeouts, PgBouncer."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from ..exceptions import CommandTimeoutError, ConfigurationError

#: The SQL standard's isolation levels, by the name ``transaction(isolation=...)``
#: takes, as PostgreSQL and MySQL spell them in SQL.
ISOLATION_LEVELS: Mapping[str, str] = {
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
    "read_uncommitted": "READ UNCOMMITTED",
}


def refuse_unknown_options(
    options: Mapping[str, Any], supported: Collection[str], server: str
) -> None:
    """Raise ``ConfigurationError`` naming the transaction options ``server`` lacks."""
    unknown = set(options) - set(supported)
    if unknown:
        raise ConfigurationError(
            f"unknown transaction option(s) {sorted(unknown)} for {server}; "
            f"supported: {', '.join(supported)} (and on every backend force_rollback "
            "and, decorating a function, retry)"
        )


def connect_timed_out(
    server: str, host: str, port: int, timeout: float, option: str
) -> asyncio.TimeoutError:
    """The error for a connect that timed out, naming where (never the credentials)."""
    return asyncio.TimeoutError(
        f"connecting to {server} at {host}:{port} timed out after {timeout:g}s "
        f"(the {option!r} option bounds it)"
    )


def statement_timed_out(server: str, host: str, port: int, timeout: float) -> CommandTimeoutError:
    """The error for a statement past ``command_timeout``, naming where (never the credentials)."""
    return CommandTimeoutError(
        f"the statement did not finish within {timeout:g}s (the 'command_timeout' option) "
        f"on {server} at {host}:{port}; its connection is closed and not reused (the "
        "statement may have run on the server, or may still be stopping there)"
    )


def isolation_sql(level: Any, server: str) -> str:
    """The SQL of isolation ``level``, given in any case, with spaces, dashes or
    underscores (``"Repeatable Read"``, ``"read-committed"``); raises
    ``ConfigurationError`` for a level that is not one of ``ISOLATION_LEVELS``."""
    key = str(level).strip().lower().replace(" ", "_").replace("-", "_")
    sql = ISOLATION_LEVELS.get(key)
    if sql is None:
        raise ConfigurationError(
            f"unknown isolation level {level!r} for {server}; "
            f"supported: {', '.join(ISOLATION_LEVELS)}"
        )
    return sql


#: Why a transaction cannot begin on a connection while a pinned cursor streams
#: (both PostgreSQL drivers, the ``pgbouncer`` option).
PINNED_TRANSACTION = (
    "a transaction cannot begin on this connection while an iterate() outside a "
    "transaction streams on it through PgBouncer (pgbouncer=true): the cursor's own "
    "transaction stays open until the iteration ends (a cursor cannot outlive it there), "
    "and the loop body's statements on this connection run inside it; begin the "
    "transaction around the iteration, or run it on another connection"
)


def postgres_begin(options: Mapping[str, Any]) -> list[str]:
    """PostgreSQL's ``BEGIN`` with ``isolation``, ``readonly`` and ``deferrable``
    (both PostgreSQL drivers)."""
    refuse_unknown_options(options, ("isolation", "readonly", "deferrable"), "PostgreSQL")
    parts = ["BEGIN"]
    isolation = options.get("isolation")
    if isolation is not None:
        parts.append(f"ISOLATION LEVEL {isolation_sql(isolation, 'PostgreSQL')}")
    if options.get("readonly"):
        parts.append("READ ONLY")
    if options.get("deferrable"):
        parts.append("DEFERRABLE")
    return [" ".join(parts)]
