"""The ages of pooled connections: which to replace (recycle), which to ping before use.

A connection opened longer ago than ``pool_recycle`` seconds is replaced
(the server may drop old sessions: MySQL's ``wait_timeout``). A connection
that idled longer than ``health_check_after`` seconds may have
been closed by the server meanwhile (a restart, a kill, ``wait_timeout``):
it is pinged before it is handed out. One used more recently costs a clock
read and nothing else (no round trip on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ._bounded import within
from .backends.base import DriverConnection

logger = logging.getLogger("aiodatabases.pool")

PING_TIMEOUT = 5.0  # a ping that takes longer than this finds the connection unusable


class Ages:
    """When each open connection was opened and last went idle."""

    __slots__ = ("_after", "_born", "_recycle", "_since")

    def __init__(self, recycle: float | None, after: float | None) -> None:
        self._recycle = recycle  # None: never replace for age
        self._after = after  # None: never check
        self._born: dict[DriverConnection, float] = {}  # every open connection
        self._since: dict[DriverConnection, float] = {}

    def opened(self, conn: DriverConnection) -> None:
        self._born[conn] = time.monotonic()

    def open_ones(self) -> list[DriverConnection]:
        return list(self._born)

    def expired(self, conn: DriverConnection) -> bool:
        """Older than ``recycle`` seconds: the server may have dropped it."""
        if self._recycle is None:
            return False
        return time.monotonic() - self._born.get(conn, 0.0) > self._recycle

    def went_idle(self, conn: DriverConnection) -> None:
        if self._after is not None:
            self._since[conn] = time.monotonic()

    def needs_check(self, conn: DriverConnection) -> bool:
        if self._after is None:
            return False
        return time.monotonic() - self._since.get(conn, 0.0) > self._after

    def forget(self, conn: DriverConnection) -> bool:
        """Forget ``conn``; whether it was known (True once per connection)."""
        self._since.pop(conn, None)
        return self._born.pop(conn, None) is not None


async def answers(conn: DriverConnection) -> bool:
    """Whether ``conn`` answers a ping within ``PING_TIMEOUT``.

    Cancellation: the connection, its ping half done, is terminated.
    """
    try:
        await within(conn.ping(), PING_TIMEOUT)
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except Exception as exc:
        logger.info("discarding a pooled connection that failed its health check: %r", exc)
        return False
    return True
