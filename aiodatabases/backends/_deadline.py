"""A deadline per round trip, for drivers without a statement timeout (MySQL's, psycopg's).

Cancelling a driver's read half way leaves its connection out of step (and
the core declines cancelling a running MySQL statement, see
``_statements``). So at the deadline the driver's own ``expire`` closes
the connection's socket at once (an abort, which a stalled network cannot
hold up, unlike a close that first sends what is queued): the driver's read
or write then ends with its own "lost connection" error, raised instead as
``CommandTimeoutError``. The connection, closed, is discarded by the core
(MySQL: its ``close()`` ends the session on the server, ``_mysql``;
psycopg: a cancel request stops the statement first, ``_psycopg_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

#: What a connection's deadline is without a ``command_timeout``.
NO_DEADLINE = contextlib.nullcontext()


class Deadline:
    """``with Deadline(...):`` one round trip, ``timeout`` seconds from now.

    At the deadline ``expire()`` closes the connection's socket; an error
    raised in the block after that is replaced by ``error()`` (chained to
    it). A block whose whole reply had already been read still ends as it
    would have (its result is returned; the connection is closed all the same).
    """

    __slots__ = ("_error", "_expire", "_fired", "_timer")

    def __init__(
        self, timeout: float, expire: Callable[[], None], error: Callable[[], Exception]
    ) -> None:
        self._expire = expire
        self._error = error
        self._fired = False
        self._timer = asyncio.get_running_loop().call_later(timeout, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._expire()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self._timer.cancel()
        if self._fired and isinstance(exc, Exception):
            raise self._error() from exc
