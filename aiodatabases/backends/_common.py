"""What more than one driver module says the same way: transaction options and isolation levels."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..exceptions import ConfigurationError

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
            f"supported: {', '.join(supported)}"
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
