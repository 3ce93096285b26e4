"""Issue 15 item 2: the server restarts under a connected Database.

During the outage statements fail, never hang (each bounded here by an outer
``wait_for`` whose expiry fails the test); once the server is back they
succeed with no reconnect by hand. The idle health check
(``health_check_after``) is what makes a caller's first statement after a
restart succeed when the client has not yet seen its connections end.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import until
from private_servers import Target

from aiodatabases import Database

#: What the drivers say when a statement went into a connection the server had closed.
GONE = re.compile(
    "closed in the middle|connection is closed|Lost connection|gone away"
    "|server closed the connection",  # psycopg's (libpq's)
    re.I,
)
#: ... and when it could not connect (the server is down).
DOWN = re.compile(
    r"Connect call failed|Can't connect to MySQL server at 127\.0\.0\.1:\d+"
    r'|connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused'
)
BOUND = 60  # seconds: far beyond any timeout involved; reaching it means a hang


async def test_statements_during_an_outage_fail_and_work_once_it_is_back(target: Target) -> None:
    async with Database(target.url, min_size=2, max_size=2, acquire_timeout=10) as db:
        assert await db.fetch_val("SELECT 1") == 1
        await target.server.stop()
        for _ in range(3):
            with pytest.raises(Exception, match=DOWN):  # never asyncio.TimeoutError: no hang
                await asyncio.wait_for(db.fetch_val("SELECT 1"), BOUND)
        await target.server.start()
        results = await asyncio.wait_for(
            asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(4))), BOUND
        )
        assert results == [1, 1, 1, 1]
        await until(2, target.sessions)  # back to min_size
    await until(0, target.sessions)


def _restart_unseen(target: Target) -> None:
    """Restart without letting the loop run: the client has not read its connections' end
    yet (a busy loop, or a network that drops idle connections without a word)."""
    target.server.stop_now()
    target.server.start_now()


async def test_after_a_restart_every_callers_first_statement_succeeds(target: Target) -> None:
    async with Database(target.url, min_size=3, max_size=3, health_check_after=0.001) as db:
        assert await target.sessions() == 3
        _restart_unseen(target)
        results = await asyncio.wait_for(
            asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(3))), BOUND
        )
        assert results == [1, 1, 1]
        await until(3, target.sessions)
    await until(0, target.sessions)


async def test_without_the_health_check_the_first_statement_after_a_restart_fails(
    target: Target,
) -> None:
    async with Database(target.url, min_size=1, max_size=1, health_check_after=None) as db:
        assert await db.fetch_val("SELECT 1") == 1
        _restart_unseen(target)
        if target.url.startswith("postgresql+psycopg:"):
            # psycopg's backend reads what an idle connection's socket holds when
            # the pool takes it (the server's goodbye): it is found dead first.
            assert await asyncio.wait_for(db.fetch_val("SELECT 1"), BOUND) == 1
            return
        with pytest.raises(Exception, match=GONE):
            await asyncio.wait_for(db.fetch_val("SELECT 1"), BOUND)
        assert await db.fetch_val("SELECT 1") == 1  # the dead one was discarded
