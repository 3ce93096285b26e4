"""What breaks through PgBouncer in transaction mode without ``pgbouncer=true``: why it exists.

Each test makes the failure happen on purpose: PgBouncer hands a client's
next transaction the server session released last (LIFO), so a server
session one connection used is given to another connection's transaction
(``bouncer.session_taken``), and the first connection's next statement reaches a
different session. What the first connection left in its session (a
prepared statement, a cursor, a setting) is then missing for it, and
present for the other client. Each test puts the shared sessions back as
they were (the bouncer serves the whole test session). Each runs on every
PostgreSQL driver (``bouncer.DRIVERS``), with that driver's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import psycopg
import pytest
from bouncer import DRIVERS, PgBouncer, raises_sqlstate, session_taken, through

from aiodatabases import Connection, Database

INVALID_STATEMENT_NAME, INVALID_CURSOR_NAME = "26000", "34000"

#: Runs of one statement after which each driver, by default, runs it as a named
#: prepared statement: asyncpg's statement cache at once; psycopg runs it
#: ``prepare_threshold`` (5) times unprepared, then prepares it as it runs it.
_PREPARED_AFTER = {"postgresql": 1, "postgresql+psycopg": 6}
#: Each driver's options that prepare nothing (what a cursor test must rule out).
_NOTHING_PREPARED = {
    "postgresql": {"statement_cache_size": "0"},
    "postgresql+psycopg": {"prepare_threshold": "none"},
}
#: The error each driver raises when the bouncer refuses a startup parameter.
_REFUSED_AT_STARTUP: dict[str, type[Exception]] = {
    "postgresql": asyncpg.ProtocolViolationError,
    "postgresql+psycopg": psycopg.OperationalError,
}


@pytest.mark.parametrize("scheme", DRIVERS)
async def test_named_prepared_statements_are_lost(
    pgbouncer: PgBouncer, direct_url: str, scheme: str
) -> None:
    url = through(pgbouncer, direct_url, scheme)  # the driver's defaults
    async with Database(url, min_size=2, max_size=2) as db, db.connection() as connection:
        for n in range(_PREPARED_AFTER[scheme]):
            assert await connection.fetch_val("SELECT :n::int", {"n": n}) == n  # prepared
        async with session_taken(db):
            with raises_sqlstate(INVALID_STATEMENT_NAME):  # prepared statement ... does not exist
                await connection.fetch_val("SELECT :n::int", {"n": 2})


@pytest.mark.parametrize("scheme", DRIVERS)
async def test_a_cursor_held_past_its_transaction_is_lost(
    pgbouncer: PgBouncer, direct_url: str, rows: str, scheme: str
) -> None:
    # No prepared statements is not enough: iterate() outside a transaction
    # declares its cursor WITH HOLD, which stays in the session it began in.
    url = through(pgbouncer, direct_url, scheme, **_NOTHING_PREPARED[scheme])

    async def count_ours(connection: Connection) -> Any:
        return await connection.fetch_val(
            "SELECT count(*) FROM pg_cursors WHERE name LIKE 'aiodatabases%'"
        )

    async def close_ours(connection: Connection) -> None:
        await connection.execute("CLOSE ALL")  # (the session is shared)

    async with Database(url, min_size=2, max_size=2) as db, db.connection() as connection:
        seen = []

        async def iterate(stack: contextlib.AsyncExitStack) -> None:
            async for row in connection.iterate("SELECT n FROM bounce_rows ORDER BY n"):
                seen.append(row["n"])
                if row["n"] == 1:
                    # Commits the cursor's own transaction: the cursor is held in
                    # the session, which the bouncer now gives to another client:
                    # there it is, in that client's transaction ...
                    assert await connection.fetch_val("SELECT 1") == 1
                    taken = session_taken(db, count_ours, close_ours)
                    assert await stack.enter_async_context(taken) == 1

        async with contextlib.AsyncExitStack() as stack:
            # ... and the next batch's FETCH reaches another session.
            with raises_sqlstate(INVALID_CURSOR_NAME):  # cursor ... does not exist
                await iterate(stack)
        assert len(seen) == 500  # the first batch


async def test_a_session_setting_reaches_another_client(bounced_url: str) -> None:
    """Through the bouncer a ``SET`` outside a transaction changes a server session
    that other clients get next, not the client's own next one: aiodatabases
    never issues one (``SET LOCAL`` in a transaction works: test_contract.py)."""

    async def show(connection: Connection) -> Any:
        return await connection.fetch_val("SHOW statement_timeout")

    async def reset(connection: Connection) -> None:
        await connection.execute("RESET statement_timeout")  # (the session is shared)

    async with Database(bounced_url, min_size=2, max_size=2) as db, db.connection() as connection:
        await connection.execute("SET statement_timeout = '7s'")
        async with session_taken(db, show, reset) as seen:
            assert seen == "7s"
            assert await show(connection) == "0"


@pytest.mark.parametrize("scheme", DRIVERS)
async def test_server_settings_pgbouncer_does_not_track_are_refused(
    pgbouncer: PgBouncer, direct_url: str, scheme: str
) -> None:
    """asyncpg sends each setting as a startup parameter; psycopg sends
    ``application_name`` (and ``client_encoding``) so, any other in libpq's
    ``options``, which PgBouncer 1.18 refuses whatever it holds."""
    url = through(pgbouncer, direct_url, scheme, pgbouncer="true")
    async with Database(url, server_settings={"application_name": "bounced"}) as db:
        # PgBouncer sets the parameters it tracks on each session it gives the client.
        names = await asyncio.gather(
            *(db.fetch_val("SELECT current_setting('application_name')") for _ in range(20))
        )
        assert set(names) == {"bounced"}
    db = Database(url, server_settings={"search_path": "public"}, min_size=0)
    with pytest.raises(_REFUSED_AT_STARTUP[scheme], match="unsupported startup parameter"):
        async with db:
            await db.fetch_val("SELECT 1")
