"""A connect that is cancelled or times out mid-handshake is cancelled and closes its socket.

The first tests use a server that accepts and never answers, so every
connect waits in the handshake. Whether the caller cancels it or the connect
timeout ends it, the server must see the client hang up: a socket left open
holds a server session (and a file descriptor) until the garbage collector
finds it, and then warns "unclosed transport" into whichever test runs next.
The last one cancels connects to the real servers at every moment of their
handshake (``_bounded``).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import pytest
from conftest import DATABASE_URLS, scheme_of

from aiodatabases import Database

BOUND = 30
#: Loop turns a connect may take on a local server before it is done (a
#: connect here takes tens to a few hundred, varying run to run); the scan
#: stops once this many connects in a row finished before their cancel.
MAX_STEPS = 3000
FINISHED_IN_A_ROW = 10
SCHEMES = ["postgresql", "postgresql+psycopg", "mysql", "mysql+asyncmy"]
TIMEOUT_OPTION = {
    "postgresql": "timeout",
    "postgresql+psycopg": "connect_timeout",
    "mysql": "connect_timeout",
    "mysql+asyncmy": "connect_timeout",
}


class SilentServer:
    """Accepts connections, never writes, and notes when each client hangs up."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await self.accepted.put(reader)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            await writer.wait_closed()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def next_client(self) -> asyncio.StreamReader:
        return await asyncio.wait_for(self.accepted.get(), BOUND)


@pytest.fixture
async def silent() -> AsyncIterator[tuple[SilentServer, int]]:
    server = SilentServer()
    port = await server.start()
    yield server, port
    await server.close()


async def hung_up(reader: asyncio.StreamReader) -> bool:
    """True once the client closed its end (the server reads end of stream)."""
    while await reader.read(65536):
        pass  # whatever the client sent first (PostgreSQL's startup packet)
    return True


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_cancelled_connect_closes_its_socket(
    silent: tuple[SilentServer, int], scheme: str
) -> None:
    server, port = silent
    database = Database(f"{scheme}://user@127.0.0.1:{port}/db", min_size=1)
    connecting = asyncio.create_task(database.connect())
    client = await server.next_client()
    await asyncio.sleep(0.05)  # into the handshake's first read
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert not database.is_connected
    assert await asyncio.wait_for(hung_up(client), BOUND)


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_connect_that_timed_out_closes_its_socket(
    silent: tuple[SilentServer, int], scheme: str
) -> None:
    server, port = silent
    options = {TIMEOUT_OPTION[scheme]: 0.5}
    database = Database(f"{scheme}://user@127.0.0.1:{port}/db", min_size=1, **options)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(database.connect(), BOUND)
    client = await server.next_client()
    assert await asyncio.wait_for(hung_up(client), BOUND)


@pytest.mark.parametrize("database_url", DATABASE_URLS, ids=scheme_of)
async def test_a_connect_cancelled_at_any_moment_is_cancelled_and_leaves_no_socket(
    database_url: str,
) -> None:
    """Cancel ``connect()`` after 0, 1, 2, ... loop turns, until connects finish first.

    On every backend (SQLite's opens in a thread, the others over a socket).

    Some drivers' handshakes (and ``asyncio.wait_for`` before Python 3.12)
    swallow a cancellation that meets a step finishing in the same turn: the
    connect then went on, and either returned connected to a caller that had
    cancelled it, or its connection was dropped unclosed (a ResourceWarning,
    and a server session held until the garbage collector came).
    """
    outcomes: list[str] = []
    finished = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for steps in range(MAX_STEPS):
            database = Database(database_url, min_size=1)
            connecting = asyncio.create_task(database.connect())
            for _ in range(steps):
                await asyncio.sleep(0)
            if connecting.done():
                await connecting
                await database.disconnect()
                finished += 1
                if finished == FINISHED_IN_A_ROW:
                    break
                continue
            finished = 0
            connecting.cancel()
            try:
                await connecting
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            else:
                outcomes.append(f"connected although cancelled after {steps} turns")
            if database.is_connected:
                await database.disconnect()
        else:
            pytest.fail(f"connect() never finished within {MAX_STEPS} loop turns")
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    assert outcomes
    assert set(outcomes) == {"cancelled"}
