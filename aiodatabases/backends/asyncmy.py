"""MySQL/MariaDB through asyncmy (``mysql+asyncmy://``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncmy
from asyncmy.cursors import Cursor as _BaseCursor
from asyncmy.cursors import SSCursor as _BaseSSCursor

from .._url import DatabaseURL
from ._mysql import OPTIONS, MySQLBackend

__all__ = ["OPTIONS", "AsyncmyBackend"]


# Server warnings cost the drivers an extra SHOW WARNINGS round trip per
# statement that has any, and end up as log lines; leave them to the server.
class _Cursor(_BaseCursor):
    async def _show_warnings(self, conn: Any) -> None:
        return None


class _SSCursor(_BaseSSCursor):
    async def _show_warnings(self, conn: Any) -> None:
        return None


class _Asyncmy:
    @staticmethod
    async def connect(**kwargs: Any) -> Any:
        return await asyncmy.connect(**kwargs)

    @staticmethod
    async def cursor(raw: Any, unbuffered: bool) -> Any:
        return raw.cursor(_SSCursor if unbuffered else _Cursor)

    @staticmethod
    def is_closed(raw: Any) -> bool:
        # Also when the server closed it while idle (KILL, wait_timeout, restart):
        # the transport is closing; asyncmy notices only at its next use.
        if not raw.connected:
            return True
        transport = getattr(raw, "_transport", None)
        return transport is None or bool(transport.is_closing())

    @staticmethod
    def abort(raw: Any) -> None:
        transport = getattr(raw, "_transport", None)
        if transport is not None:
            transport.abort()  # close() would first wait to send what is queued
        raw.close()

    # asyncmy reads the socket into an ever growing buffer, with no back
    # pressure: without a pause between batches an unbuffered result would
    # end up in memory whole.
    @staticmethod
    def pause(raw: Any) -> None:
        transport = getattr(raw, "_transport", None)
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    @staticmethod
    def resume(raw: Any) -> None:
        transport = getattr(raw, "_transport", None)
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


class AsyncmyBackend(MySQLBackend):
    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        super().__init__(url, options, _Asyncmy())
