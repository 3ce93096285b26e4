"""``command_timeout`` for psycopg, which has none: a deadline per statement.

Cancelling psycopg's wait would make it ask the server to cancel and then
wait for the statement's end (seconds more behind a stalled network). So
at the deadline the statement is stopped on the server by a cancel request
(psycopg's ``cancel_safe()``, a connection of its own, in the background)
and the connection's socket is shut down at once (which a stalled network
cannot hold up): psycopg's read or write then ends with its own "server
closed the connection" error, raised instead as ``CommandTimeoutError``.
The connection, closed, is discarded by the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from ._deadline import Deadline

logger = logging.getLogger("aiodatabases")

#: Cancel requests sent in the background (the loop holds tasks weakly).
_sending: set[asyncio.Task[None]] = set()
#: Seconds a cancel request may take.
_CANCEL_TIMEOUT = 10.0


def deadline(raw: Any, timeout: float, error: Callable[[], Exception]) -> Deadline:
    """``with deadline(...):`` one statement on ``raw``, ``timeout`` seconds from now
    (``_deadline``): at the deadline, ``_expire(raw)``."""
    return Deadline(timeout, functools.partial(_expire, raw), error)


def _expire(raw: Any) -> None:
    if raw.closed:
        return
    # The request's first step (taking the session's cancel key) runs before
    # psycopg can see the socket shut below: it runs in the next loop turn,
    # ahead of the I/O callbacks that turn finds.
    task = asyncio.ensure_future(_send_cancel(raw))
    _sending.add(task)
    task.add_done_callback(_sending.discard)
    _shut(raw.pgconn.socket)


async def _send_cancel(raw: Any) -> None:
    try:
        await raw.cancel_safe(timeout=_CANCEL_TIMEOUT)
    except Exception as exc:
        logger.debug("cancelling a statement past command_timeout failed: %r", exc)


def _shut(fd: int) -> None:
    """Shut the socket down for both directions (its file descriptor stays psycopg's)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
