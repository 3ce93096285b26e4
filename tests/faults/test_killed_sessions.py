"""Issue 15 item 1: every pooled session killed on the server (pg_terminate_backend,
KILL CONNECTION), between statements and mid-statement; the Database goes on."""

from __future__ import annotations

import asyncio
import re

from conftest import until
from private_servers import Target

from aiodatabases import Database

#: What the drivers say when the server ended the session under a statement.
KILLED = re.compile(
    "administrator command|closed in the middle|Lost connection|killed|gone away", re.I
)


async def test_every_idle_session_killed_then_the_next_statement_works(target: Target) -> None:
    # The health check off: what finds the dead connections here is the end of
    # stream each one saw, not a ping.
    async with Database(target.url, min_size=3, max_size=3) as db:
        assert await target.sessions() == 3
        assert await target.kill_all() == 3
        await until(0, target.sessions)
        assert await db.fetch_val("SELECT 1") == 1
        await until(3, target.sessions)  # back to min_size
    await until(0, target.sessions)  # nothing leaked


async def test_every_session_killed_mid_statement(target: Target) -> None:
    async with Database(target.url, min_size=2, max_size=2) as db:
        victims = [asyncio.create_task(db.fetch_val(target.sleep_sql)) for _ in range(2)]
        await until(2, target.sleeping)
        assert await target.kill_all() == 2
        results = await asyncio.wait_for(asyncio.gather(*victims, return_exceptions=True), 30)
        for result in results:
            assert isinstance(result, Exception), result
            assert KILLED.search(str(result)), repr(result)
        assert await db.fetch_val("SELECT 1") == 1
        await until(2, target.sessions)  # back to min_size
    await until(0, target.sessions)


async def test_a_held_connection_killed_mid_transaction(target: Target) -> None:
    async with Database(target.url, min_size=1, max_size=1) as db:

        async def victim() -> None:
            async with db.transaction():
                await db.fetch_val(target.sleep_sql)

        task = asyncio.create_task(victim())
        await until(1, target.sleeping)
        await target.kill_all()
        (result,) = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        assert isinstance(result, Exception)
        assert KILLED.search(str(result)), repr(result)
        async with db.transaction():
            assert await db.fetch_val("SELECT 1") == 1
        await until(1, target.sessions)
    await until(0, target.sessions)
