"""``connect()``/``disconnect()`` of a ``Database``: nesting by count, one opening at a time.

Any loop or thread may call them. ``connect()`` counts one more user of what
is open; or opens it (``_opening.open_all``) while concurrent callers, maybe
in other loops, wait for that opening; or, when what is open belongs to an
event loop that has closed, drops it and opens again in this loop. Only the
``disconnect()`` that balances the first ``connect()`` closes anything. What
is open is handed to the ``Database`` (``publish``) under the same lock: its
statement path reads plain attributes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import threading
from collections.abc import Awaitable, Callable

from ._background import shielded
from ._opening import Opened, close_all, terminate_all

logger = logging.getLogger("aiodatabases")


class DatabaseState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class Lifecycle:
    """The connected state of one ``Database`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        open_all: Callable[[], Awaitable[Opened]],
        publish: Callable[[Opened | None], None],
    ) -> None:
        self.state = DatabaseState.DISCONNECTED
        self._name = name  # the URL, its password masked
        self._open_all = open_all
        self._publish = publish
        self._opened: Opened | None = None
        self._count = 0
        self._connecting: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()  # guards the fields above across threads

    async def connect(self) -> None:
        """See ``Database.connect``."""
        while True:
            with self._lock:
                opened, connecting = self._opened, self._connecting
                if (
                    connecting is None
                    and opened is not None
                    and not opened.runtime.loop.is_closed()
                ):
                    self._count += 1
                    return
                if connecting is None:
                    if opened is not None:
                        self._forget_dead(opened)
                    mine: concurrent.futures.Future[None] = concurrent.futures.Future()
                    self._connecting = mine
                    self.state = DatabaseState.CONNECTING
                    break
            # Someone else (maybe in another loop) is connecting: wait for them.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(connecting)
        await self._open(mine)

    def _forget_dead(self, opened: Opened) -> None:
        logger.warning(
            "database %s was still connected in an event loop that is closed; "
            "dropping that connection and connecting again in this loop",
            self._name,
        )
        terminate_all(opened)
        self._opened, self._count = None, 0
        self._publish(None)

    async def _open(self, connecting: concurrent.futures.Future[None]) -> None:
        """Open; ``connecting`` tells concurrent connect() calls how it went."""
        try:
            opened = await self._open_all()
        except BaseException as exc:
            with self._lock:
                self._connecting = None
                self.state = DatabaseState.DISCONNECTED
            connecting.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            raise
        with self._lock:
            self._opened, self._count = opened, 1
            self._publish(opened)
            self._connecting = None
            self.state = DatabaseState.CONNECTED
        connecting.set_result(None)

    async def disconnect(self) -> None:
        """See ``Database.disconnect``."""
        with self._lock:
            opened = self._opened
            if self._count == 0 or opened is None:
                return
            self._count -= 1
            if self._count > 0:
                return
            self._opened = None
            self._publish(None)
            self.state = DatabaseState.DISCONNECTED
        await shielded(close_all(opened))
