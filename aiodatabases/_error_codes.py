"""The server's code in a driver's exception, and which codes mean "run the transaction again"."""

from __future__ import annotations

#: Codes after which the whole transaction may run again and succeed:
#: PostgreSQL's serialization failure and deadlock, MySQL's deadlock (1213;
#: its SQLSTATE is 40001 too), and SQLite's busy database (a deferred
#: transaction that cannot take the write lock without a deadlock is refused
#: at once, whatever the busy timeout).
RETRYABLE = frozenset({"40001", "40P01", "1213", "SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT"})


def error_code(error: BaseException) -> str | None:
    """The server's code for ``error``: PostgreSQL's SQLSTATE (asyncpg, psycopg),
    MySQL's error number (PyMySQL, asyncmy), SQLite's error name; None if none."""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        return name
    args = getattr(error, "args", ())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return str(args[0])
    return None


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` says the transaction lost a conflict (see ``RETRYABLE``)."""
    return error_code(error) in RETRYABLE
