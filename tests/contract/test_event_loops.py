"""Event loops and threads: §1 of the contract, through the public API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from conftest import LoopInThread, drop_notes, reset_notes, sleep_query
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aiodatabases import Database, WrongEventLoopError


def test_two_consecutive_asyncio_runs(database_url: str) -> None:
    for force_rollback in (False, True):
        database = Database(database_url, force_rollback=force_rollback)

        async def use(database: Database = database) -> int:
            async with database:
                values = await asyncio.gather(
                    *(database.fetch_val("SELECT 1 + :n", {"n": n}) for n in range(5))
                )
                return sum(values)

        assert asyncio.run(use()) == 15
        assert asyncio.run(use()) == 15
        assert not database.is_connected


# Closing a loop with connections still open leaves sockets only the garbage
# collector can close; asyncio warns about them, which is the user's signal.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_database_used_after_its_loop_closed_fails_at_once(database_url: str) -> None:
    database = Database(database_url)
    first = asyncio.new_event_loop()
    first.run_until_complete(database.connect())
    first.close()

    async def query() -> object:
        return await database.fetch_all("SELECT 1")

    with pytest.raises(WrongEventLoopError, match="closed"):
        asyncio.run(query())

    async def reconnect_and_query() -> object:
        await database.connect()  # replaces what the dead loop held
        try:
            return await database.fetch_val("SELECT 2")
        finally:
            await database.disconnect()

    assert asyncio.run(reconnect_and_query()) == 2
    gc.collect()


def test_database_of_a_loop_that_is_not_running_fails_at_once(database_url: str) -> None:
    database = Database(database_url)
    idle = asyncio.new_event_loop()
    try:
        idle.run_until_complete(database.connect())

        async def query() -> object:
            return await database.fetch_all("SELECT 1")

        with pytest.raises(WrongEventLoopError, match="not running"):
            asyncio.run(query())
        idle.run_until_complete(database.disconnect())
    finally:
        idle.close()


async def test_call_from_another_loop_is_carried_to_the_owner(
    database_url: str, loop_thread: LoopInThread
) -> None:
    database = Database(database_url)
    loop_thread.run(database.connect())
    try:
        # This test's loop is not the owner: every call is carried over.
        values = await asyncio.gather(
            *(database.fetch_val("SELECT :n", {"n": str(n)}) for n in range(10))
        )
        assert values == [str(n) for n in range(10)]
        async with database.transaction():
            assert await database.fetch_val("SELECT 'inside'") == "inside"
    finally:
        loop_thread.run(database.disconnect())


async def test_force_rollback_from_two_loops_at_once(
    database_url: str, loop_thread: LoopInThread
) -> None:
    await reset_notes(database_url)
    database = Database(database_url, force_rollback=True)
    try:
        async with database:

            async def insert(text: str) -> None:
                await database.execute("INSERT INTO notes (text) VALUES (:t)", {"t": text})

            async def from_other_loop() -> None:
                await asyncio.gather(*(insert(f"other {i}") for i in range(5)))

            other = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(from_other_loop(), loop_thread.loop)
            )
            await asyncio.gather(other, *(insert(f"here {i}") for i in range(5)))
            assert await database.fetch_val("SELECT count(*) FROM notes") == 10
        async with Database(database_url) as plain:
            assert await plain.fetch_val("SELECT count(*) FROM notes") == 0
    finally:
        await drop_notes(database_url)


def _app(database: Database, url: str, *, lifespan: bool = False) -> Starlette:
    async def handler(request: Request) -> JSONResponse:
        async with database.transaction():
            await asyncio.gather(
                *(
                    database.execute("INSERT INTO notes (text) VALUES (:t)", {"t": f"app {i}"})
                    for i in range(3)
                ),
                database.fetch_one(sleep_query(url, 0.01)),
            )
        count = await database.fetch_val("SELECT count(*) FROM notes")
        return JSONResponse({"count": count})

    @contextlib.asynccontextmanager
    async def connected(app: Starlette) -> AsyncIterator[None]:
        async with database:
            yield

    return Starlette(
        routes=[Route("/", handler, methods=["POST"])], lifespan=connected if lifespan else None
    )


async def test_testclient_inside_an_async_test_while_its_loop_is_blocked(
    database_url: str,
) -> None:
    await reset_notes(database_url)
    database = Database(database_url, force_rollback=True)
    try:
        async with database:
            await database.execute("INSERT INTO notes (text) VALUES ('test')")
            # The TestClient call blocks this loop; the app runs on another loop
            # in a portal thread and still reaches the shared connection.
            with TestClient(_app(database, database_url)) as client:
                response = client.post("/")
            assert response.json() == {"count": 4}
            assert await database.fetch_val("SELECT count(*) FROM notes") == 4
        async with Database(database_url) as plain:
            assert await plain.fetch_val("SELECT count(*) FROM notes") == 0
    finally:
        await drop_notes(database_url)


def test_testclient_in_a_sync_test(database_url: str) -> None:
    asyncio.run(reset_notes(database_url))
    database = Database(database_url, force_rollback=True)
    app = _app(database, database_url, lifespan=True)
    try:
        with TestClient(app) as client:
            assert client.post("/").json() == {"count": 3}
            assert client.post("/").json() == {"count": 6}
        with TestClient(app) as client:
            assert client.post("/").json() == {"count": 3}, "rolled back at shutdown"
    finally:
        asyncio.run(drop_notes(database_url))


_SCRIPT = """
import asyncio, sys
from aiodatabases import Database

database = Database(sys.argv[1], force_rollback=sys.argv[2] == "1")

async def main():
    await database.connect()
    print(await database.fetch_val("SELECT 40 + 2"))
    if sys.argv[3] == "1":
        await database.disconnect()

asyncio.run(main())
"""


@pytest.mark.parametrize("force_rollback", ["0", "1"])
@pytest.mark.parametrize("disconnect", ["0", "1"])
def test_script_exits_on_its_own(database_url: str, force_rollback: str, disconnect: str) -> None:
    # asyncio.run() closes the loop; with or without disconnect() nothing the
    # library started may keep the interpreter alive.
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), database_url, force_rollback, disconnect],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


async def test_call_into_a_blocked_loop_fails_instead_of_hanging(database_url: str) -> None:
    # Regression: the app's query was carried to the test's loop, which was
    # blocked in the synchronous TestClient call: a hang.
    database = Database(database_url, acquire_timeout=0.5)

    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"value": await database.fetch_val("SELECT 1")})

    app = Starlette(routes=[Route("/", handler)])
    async with database:
        with TestClient(app) as client, pytest.raises(WrongEventLoopError, match="blocked"):
            client.get("/")
        assert await database.fetch_val("SELECT 2") == 2


def test_loop_that_ends_without_disconnect_leaves_no_socket(database_url: str) -> None:
    # Regression: the pool's sockets were left to the garbage collector
    # (ResourceWarning, an error under filterwarnings=error) when asyncio.run()
    # or a pytest-asyncio loop ended without disconnect().
    database = Database(database_url)

    async def connect_and_forget() -> object:
        await database.connect()
        return await database.fetch_val("SELECT 1")

    async def connect_again() -> object:
        await database.connect()  # the first loop is closed: replaced, with a warning log
        try:
            return await database.fetch_val("SELECT 2")
        finally:
            await database.disconnect()

    assert asyncio.run(connect_and_forget()) == 1
    gc.collect()
    assert asyncio.run(connect_again()) == 2
    gc.collect()


async def test_a_connection_block_entered_by_a_cancelled_caller_is_given_back(
    database_url: str, loop_thread: LoopInThread
) -> None:
    # Regression: the hold taken for a caller in another loop, which was
    # cancelled as the hold was taken, was kept for ever (the pool shrank).
    database = Database(database_url, max_size=1, acquire_timeout=5)
    loop_thread.run(database.connect())
    try:

        async def enter() -> None:
            async with database.connection():
                await asyncio.sleep(30)

        for _ in range(3):
            task = asyncio.create_task(enter())
            await asyncio.sleep(0)  # the hold is carried to the owner
            time.sleep(0.2)  # noqa: ASYNC251 - the owner takes it meanwhile
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # The one pooled connection is free again (else PoolTimeoutError).
        assert loop_thread.run(database.fetch_val("SELECT 1")) == 1
    finally:
        loop_thread.run(database.disconnect())
