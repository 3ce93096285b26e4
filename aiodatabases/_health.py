"""The pool's idle health check: which idle connections to ping before use, and the ping.

A connection that idled longer than ``health_check_after`` seconds may have
been closed by the server meanwhile (a restart, a kill, ``wait_timeout``):
it is pinged before it is handed out. One used more recently costs a clock
read and nothing else (no round trip on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .backends.base import DriverConnection

logger = logging.getLogger("aiodatabases.pool")

PING_TIMEOUT = 5.0  # a ping that takes longer than this finds the connection unusable


class IdleClock:
    """When each idle connection went idle; whether it needs a ping before use."""

    __slots__ = ("_after", "_since")

    def __init__(self, after: float | None) -> None:
        self._after = after  # None: never check
        self._since: dict[DriverConnection, float] = {}

    def went_idle(self, conn: DriverConnection) -> None:
        if self._after is not None:
            self._since[conn] = time.monotonic()

    def needs_check(self, conn: DriverConnection) -> bool:
        if self._after is None:
            return False
        return time.monotonic() - self._since.get(conn, 0.0) > self._after

    def forget(self, conn: DriverConnection) -> None:
        self._since.pop(conn, None)


async def answers(conn: DriverConnection) -> bool:
    """Whether ``conn`` answers a ping within ``PING_TIMEOUT``.

    Cancellation: the connection, its ping half done, is terminated.
    """
    try:
        await asyncio.wait_for(conn.ping(), PING_TIMEOUT)
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except Exception as exc:
        logger.info("discarding a pooled connection that failed its health check: %r", exc)
        return False
    return True
