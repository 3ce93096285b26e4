"""A TCP fault proxy: it sits between a client and a server and makes network faults on command.

``FaultProxy(host, port)`` listens on a free loopback port and forwards every
connection made to it to ``host:port``, in the event loop that started it.
On command it:

- **passes** traffic both ways (the default, and after ``resume()``);
- **stalls** (``stall()``): forwards no byte in either direction, on the
  connections open now and on new ones, and keeps every socket open (a
  network that stopped delivering: nobody sees an error, nothing arrives);
- **stalls new connections at accept** (``stall_new()``): a new connection
  is accepted and held, with nothing connected behind it (a connect that
  never gets an answer), while the connections already open pass;
- **resets** (``reset()``): aborts every connection open now, client side and
  server side, with a TCP RST (``SO_LINGER`` 0), and keeps accepting;
  ``reset_after(n)`` does it once ``n`` more bytes went to the clients (in
  the middle of a reply, exactly: no race with a reply that is quicker).

Bytes read before a stall are held and delivered after ``resume()``, as a
network delivers them once it is back. ``close()`` (or leaving ``async
with``) closes the listening socket and every connection, and waits for
its tasks, so that nothing is left for the garbage collector to warn about.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

#: Bytes read at a time from either side.
_CHUNK = 64 * 1024
#: SO_LINGER on, 0 seconds: closing the socket sends RST instead of FIN.
_LINGER_ZERO = struct.pack("ii", 1, 0)


class _Link:
    """One client connection and, once connected, its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]

    def abort_with_reset(self) -> None:
        for writer in self.writers():
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            writer.transport.abort()

    def abort(self) -> None:
        for writer in self.writers():
            writer.transport.abort()


class FaultProxy:
    """See the module docstring. Use ``async with FaultProxy(host, port) as proxy:``."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.host = "127.0.0.1"
        self.port = 0  # known once started
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._admitting = asyncio.Event()
        self._admitting.set()
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False
        #: Totals, for tests that wait for traffic before making a fault.
        self.accepted = 0
        self.bytes_to_client = 0
        self._reset_at: int | None = None  # bytes_to_client at which to reset

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop accepting, close every connection, wait for every task of the proxy."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- faults ------------------------------------------------------------------------

    def stall(self) -> None:
        """Forward nothing, either way, on every connection (open now or new)."""
        self._flowing.clear()

    def stall_new(self) -> None:
        """Hold new connections at accept: connected to nothing, never answered."""
        self._admitting.clear()

    def resume(self) -> None:
        """Pass traffic again (what was held is delivered), and admit new connections."""
        self._flowing.set()
        self._admitting.set()

    def reset(self) -> int:
        """Abort every open connection with RST, both sides; returns how many."""
        self._reset_at = None
        links = list(self._links)
        for link in links:
            link.abort_with_reset()
        return len(links)

    def reset_after(self, count: int) -> None:
        """``reset()`` as soon as ``count`` more bytes have been forwarded to the clients."""
        self._reset_at = self.bytes_to_client + count

    @property
    def connections(self) -> int:
        """Connections open through the proxy now (accepted, not yet ended)."""
        return len(self._links)

    # -- forwarding --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        link = _Link(writer)
        self._links.add(link)
        self.accepted += 1
        try:
            await self._admitting.wait()
            server_reader, link.server = await asyncio.open_connection(*self.upstream)
            await self._forward_both(reader, writer, server_reader, link.server)
        except (OSError, asyncio.IncompleteReadError):
            pass  # a reset, or the server went away: the link is aborted below
        except asyncio.CancelledError:
            # close(): end normally (asyncio's stream server, before Python
            # 3.12, reports a handler task that ends cancelled as an error).
            if not self._closing:
                raise
        finally:
            self._links.discard(link)
            link.abort()
            self._handlers.discard(task)

    async def _forward_both(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        server_reader: asyncio.StreamReader,
        server_writer: asyncio.StreamWriter,
    ) -> None:
        pumps = {
            asyncio.ensure_future(self._pump(client_reader, server_writer, to_client=False)),
            asyncio.ensure_future(self._pump(server_reader, client_writer, to_client=True)),
        }
        try:
            # Both directions until each saw its end of stream; a failure of
            # one (a reset) ends the link.
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for pump in done:
                pump.result()
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, to_client: bool
    ) -> None:
        while True:
            await self._flowing.wait()
            data = await source.read(_CHUNK)
            if not data:
                break
            await self._flowing.wait()  # a stall that began during the read holds it
            if to_client:
                self.bytes_to_client += len(data)
                if self._reset_at is not None and self.bytes_to_client >= self._reset_at:
                    self.reset()  # this link's too: the data read stays undelivered
                    return
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()


@dataclass(frozen=True)
class Proxied:
    """A database reached through a ``FaultProxy`` (the ``proxied`` fixture)."""

    #: The database's URL through the proxy.
    url: str
    #: The same database, straight to the server (to watch it while the proxy stalls).
    direct_url: str
    proxy: FaultProxy
