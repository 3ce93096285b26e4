"""A connect that is cancelled or times out mid-handshake closes its socket at once.

The server here accepts and never answers, so every connect waits in the
handshake. Whether the caller cancels it or the connect timeout ends it, the
server must see the client hang up: a socket left open holds a server session
(and a file descriptor) until the garbage collector finds it, and then warns
"unclosed transport" into whichever test runs next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aiodatabases import Database

BOUND = 30
SCHEMES = ["postgresql", "mysql", "mysql+asyncmy"]
TIMEOUT_OPTION = {
    "postgresql": "timeout",
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
