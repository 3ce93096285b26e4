"""Issue 15 item 7: the network stalls or resets under a connection (through ``FaultProxy``).

- A statement behind a network that stopped delivering fails within
  ``command_timeout`` with ``CommandTimeoutError``, and the connection it ran
  on is discarded: once the network is back the next statement runs, on a
  new connection. Without the option a bare statement can still be cancelled.
- A connect that stalls (accepted, never answered) is bounded by the
  connect timeout (``timeout`` on PostgreSQL, ``connect_timeout`` on MySQL),
  with an error that names host and port and never the password.
- A reset in the middle of a result (``fetch_all``, ``iterate()``) raises the
  driver's lost-connection error; the next statement works.
- A reset between statements is never seen: the pool finds the connection
  closed when it takes it and opens another.
- ``command_timeout`` that is not a number of seconds above 0 is refused
  when ``Database()`` is built.

Every wait is bounded by ``HANG_GUARD``, far above any timeout the tests set:
its expiry means a hang. Nothing here asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from conftest import (
    dialect_of,
    helper_database,
    scheme_of,
    sleep_query,
    until,
    until_busy,
    urls_for,
)
from fault_proxy import Proxied

from aiodatabases import CommandTimeoutError, ConfigurationError, Database, DatabaseURL

T = TypeVar("T")

#: Seconds; a wait that runs out means the library hung.
HANG_GUARD = 60
#: Seconds the statement that the network stalls under runs on the server,
#: and the command_timeout that must end it: the stall begins while it runs
#: (seen from a direct connection), so its reply is held by the proxy.
STATEMENT_SECONDS = 2
COMMAND_TIMEOUT = 3
#: What the drivers say when the connection went away in the middle of a reply:
#: asyncpg's ConnectionDoesNotExistError, psycopg's OperationalError, the MySQL
#: drivers' OperationalError 2013.
LOST = re.compile(
    "connection was closed in the middle of operation|server closed the connection"
    "|Lost connection to MySQL server during query"
)
#: Each driver's connect timeout option.
CONNECT_TIMEOUT_OPTION = {
    "postgresql": "timeout",
    "postgresql+psycopg": "connect_timeout",
    "mysql": "connect_timeout",
    "mysql+asyncmy": "connect_timeout",
}
PASSWORD = "n3tw0rk-Pa55word"
SERVER_URLS = urls_for("postgresql", "mysql")


def guarded(work: Awaitable[T]) -> Awaitable[T]:
    return asyncio.wait_for(work, HANG_GUARD)


def many_rows(url: str, count: int) -> str:
    """A query whose result is ``count`` rows of about 100 bytes, computed by the server."""
    if dialect_of(url) == "postgresql":
        return f"SELECT n, repeat('x', 100) AS pad FROM generate_series(1, {count}) AS n"
    # MySQL 8 stops a recursive CTE at 1000 levels: a cross join of digits instead.
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    tens = len(str(count - 1))
    joins = ", ".join(f"digits t{i}" for i in range(tens))
    number = " + ".join(f"t{i}.d * {10**i}" for i in range(tens))
    return (
        f"WITH digits AS ({digits}) SELECT {number} AS n, REPEAT('x', 100) AS pad "
        f"FROM {joins} LIMIT {count}"
    )


async def sessions(direct_url: str) -> int:
    """Sessions on the test database now, the counting one left out."""
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
    }[dialect_of(direct_url)]
    async with helper_database(direct_url) as observer:
        return int(await observer.fetch_val(query))


def counter(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def probe() -> T:
        return read()

    return probe


# -- (a) a stall mid-statement, with command_timeout -------------------------------------------


@pytest.mark.parametrize("inside", ["bare", "transaction"])
async def test_a_stall_mid_statement_fails_within_command_timeout_and_discards_the_connection(
    proxied: Proxied, inside: str
) -> None:
    proxy = proxied.proxy
    db = Database(proxied.url, command_timeout=COMMAND_TIMEOUT, min_size=1, max_size=1)
    async with db:
        assert await db.fetch_val("SELECT 1") == 1

        async def statement() -> Any:
            sql = sleep_query(proxied.url, STATEMENT_SECONDS)
            if inside == "bare":
                return await db.fetch_val(sql)
            async with db.transaction():
                return await db.fetch_val(sql)

        async def stall_once_it_runs() -> None:
            await until_busy(proxied.direct_url)  # sent, and running on the server
            proxy.stall()

        stalling = asyncio.create_task(stall_once_it_runs())
        with pytest.raises(CommandTimeoutError, match=f"within {COMMAND_TIMEOUT}s") as caught:
            await guarded(statement())
        await stalling
        assert isinstance(caught.value, asyncio.TimeoutError)
        assert "'command_timeout'" in str(caught.value)
        found = db.pool_stats()
        assert (found.opened, found.closed) == (1, 1)  # the one it ran on, discarded

        proxy.resume()
        assert await guarded(db.fetch_val("SELECT 2")) == 2
        found = db.pool_stats()
        assert (found.opened, found.closed, found.size) == (2, 1, 1)
        # The timed-out session ended on the server too (MySQL: killed, since
        # closing the socket does not stop it; PostgreSQL: cancelled, then closed).
        await until(1, lambda: sessions(proxied.direct_url))
    await until(0, lambda: sessions(proxied.direct_url))


async def test_a_stall_without_command_timeout_can_be_cancelled(proxied: Proxied) -> None:
    proxy = proxied.proxy
    async with Database(proxied.url, min_size=1, max_size=1) as db:
        assert await db.fetch_val("SELECT 1") == 1
        proxy.stall()
        with pytest.raises(asyncio.TimeoutError):
            # Cancelled by wait_for after 0.5 s; the guard is the outer bound.
            await guarded(asyncio.wait_for(db.fetch_val("SELECT 2"), 0.5))
        proxy.resume()
        # Discarded (MySQL) or reset in the background (PostgreSQL, once the
        # network is back): either way the next statement works.
        assert await guarded(db.fetch_val("SELECT 3")) == 3


# -- (b) a connect that stalls -----------------------------------------------------------------


def with_password(url: str) -> str:
    return str(DatabaseURL(url).replace(password=PASSWORD))


def connect_timeout(url: str, seconds: float) -> dict[str, float]:
    return {CONNECT_TIMEOUT_OPTION[scheme_of(url)]: seconds}


def assert_names_the_place_not_the_password(exc: BaseException, proxied: Proxied) -> None:
    text = str(exc)
    assert f"127.0.0.1:{proxied.proxy.port}" in text, text
    assert "timed out after 0.5s" in text, text
    assert CONNECT_TIMEOUT_OPTION[scheme_of(proxied.url)] in text, text
    shown = "".join(traceback.format_exception(exc)) + repr(exc)
    assert PASSWORD not in shown


async def test_a_stalled_connect_is_bounded_by_the_connect_timeout(proxied: Proxied) -> None:
    proxied.proxy.stall_new()
    db = Database(with_password(proxied.url), **connect_timeout(proxied.url, 0.5))
    with pytest.raises(asyncio.TimeoutError) as caught:
        await guarded(db.connect())
    assert_names_the_place_not_the_password(caught.value, proxied)
    assert not db.is_connected
    assert proxied.proxy.accepted == 1  # it got as far as the (stalled) server


async def test_a_stalled_connect_for_the_pool_fails_that_statement_only(proxied: Proxied) -> None:
    proxy = proxied.proxy
    db = Database(proxied.url, min_size=1, max_size=2, **connect_timeout(proxied.url, 0.5))
    async with db, db.connection() as held:
        assert await held.fetch_val("SELECT 1") == 1
        proxy.stall_new()

        async def on_another_connection() -> Any:
            async with db.connection() as other:  # the pool must open a second one
                return await other.fetch_val("SELECT 2")

        with pytest.raises(asyncio.TimeoutError) as caught:
            await guarded(asyncio.create_task(on_another_connection()))
        assert_names_the_place_not_the_password(caught.value, proxied)
        found = db.pool_stats()
        assert (found.size, found.opened, found.closed) == (1, 1, 0)  # nothing half open
        assert await guarded(held.fetch_val("SELECT 3")) == 3  # open connections pass
        proxy.resume()
        assert await guarded(asyncio.create_task(on_another_connection())) == 2


# -- (c) a reset in the middle of a result -----------------------------------------------------


async def test_a_reset_mid_iteration_raises_a_lost_connection_and_the_next_statement_works(
    proxied: Proxied,
) -> None:
    async with Database(proxied.url, min_size=1, max_size=1) as db:
        seen = 0

        async def read_all() -> None:
            nonlocal seen
            async for _ in db.iterate(many_rows(proxied.url, 200_000)):
                seen += 1
                if seen == 1:
                    assert proxied.proxy.reset() == 1

        with pytest.raises(Exception, match=LOST) as caught:  # the driver's own error
            await guarded(read_all())
        assert 0 < seen < 200_000, seen
        assert not isinstance(caught.value, asyncio.TimeoutError)
        assert db.pool_stats().closed == 1
        assert await guarded(db.fetch_val("SELECT 1")) == 1
        assert db.pool_stats().opened == 2


@pytest.mark.parametrize("inside", ["bare", "transaction"])
async def test_a_reset_mid_fetch_all_raises_a_lost_connection_and_the_next_statement_works(
    proxied: Proxied, inside: str
) -> None:
    async with Database(proxied.url, min_size=1, max_size=1) as db:
        assert await db.fetch_val("SELECT 1") == 1

        async def fetch_all() -> Any:
            sql = many_rows(proxied.url, 200_000)  # about 20 MB
            if inside == "bare":
                return await db.fetch_all(sql)
            async with db.transaction():
                return await db.fetch_all(sql)

        proxied.proxy.reset_after(256 * 1024)  # the reply has begun; it is far longer
        with pytest.raises(Exception, match=LOST):  # the driver's own error
            await guarded(fetch_all())
        assert db.pool_stats().closed == 1
        assert await guarded(db.fetch_val("SELECT 2")) == 2
        assert db.pool_stats().opened == 2


# -- (d) a reset between statements ------------------------------------------------------------


async def test_a_reset_between_statements_is_not_seen_by_the_next_statement(
    proxied: Proxied,
) -> None:
    # The health check left at its default: the connection was used just now,
    # so it is not pinged; the pool sees it closed when it takes it.
    async with Database(proxied.url, min_size=2, max_size=2) as db:
        assert await db.fetch_val("SELECT 1") == 1
        assert proxied.proxy.reset() == 2
        await until(0, counter(lambda: proxied.proxy.connections))  # both ends saw it
        assert await guarded(db.fetch_val("SELECT 2")) == 2
        assert await guarded(db.fetch_val("SELECT 3")) == 3
        found = db.pool_stats()
        assert found.closed == 2, found
        await until(2, counter(lambda: db.pool_stats().idle))  # refilled to min_size


# -- (e) command_timeout that is not a number of seconds ---------------------------------------


@pytest.mark.parametrize("url", SERVER_URLS, ids=lambda url: DatabaseURL(url).scheme)
@pytest.mark.parametrize("value", ["soon", "0", "-1", 0, -2.5, "nan", True], ids=repr)
@pytest.mark.parametrize("in_url", [False, True], ids=["keyword", "in-url"])
def test_command_timeout_must_be_seconds_above_zero(url: str, value: object, in_url: bool) -> None:
    if in_url:
        parsed = DatabaseURL(url)
        build = lambda: Database(  # noqa: E731
            parsed.replace(options={**parsed.options, "command_timeout": str(value)})
        )
    else:
        build = lambda: Database(url, command_timeout=value)  # noqa: E731
    with pytest.raises(ConfigurationError, match="command_timeout") as caught:
        build()
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("url", SERVER_URLS, ids=lambda url: DatabaseURL(url).scheme)
@pytest.mark.parametrize("value", [None, "none", "2.5", 1])
def test_command_timeout_may_be_none_or_seconds(url: str, value: object) -> None:
    Database(url, command_timeout=value)
