"""MySQL/MariaDB through aiomysql (``mysql://`` and ``mysql+aiomysql://``, as in databases)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiomysql

from .._url import DatabaseURL
from ._mysql import OPTIONS, MySQLBackend

__all__ = ["OPTIONS", "AiomysqlBackend"]


# Server warnings cost the drivers an extra SHOW WARNINGS round trip per
# statement that has any, and become Python warnings; leave them to the server.
class _Cursor(aiomysql.Cursor):  # type: ignore[misc]
    async def _show_warnings(self, conn: Any) -> None:
        return None


class _SSCursor(aiomysql.SSCursor):  # type: ignore[misc]
    async def _show_warnings(self, conn: Any) -> None:
        return None


class _Aiomysql:
    @staticmethod
    async def connect(**kwargs: Any) -> Any:
        if "database" in kwargs:
            kwargs["db"] = kwargs.pop("database")
        return await aiomysql.connect(**kwargs)

    @staticmethod
    async def cursor(raw: Any, unbuffered: bool) -> Any:
        return await raw.cursor(_SSCursor if unbuffered else _Cursor)

    @staticmethod
    def is_closed(raw: Any) -> bool:
        # Also when the server closed it while idle (KILL, wait_timeout, restart):
        # the reader saw the end of the stream, or a reset (RST: an error, not
        # the end); aiomysql notices only at its next use.
        reader = raw._reader
        return (
            bool(raw.closed) or reader is None or reader.at_eof() or reader.exception() is not None
        )

    @staticmethod
    def abort(raw: Any) -> None:
        writer = raw._writer
        if writer is not None:
            writer.transport.abort()  # close() would first wait to send what is queued
        raw.close()

    # aiomysql's stream reader already stops reading when its buffer is full.
    @staticmethod
    def pause(raw: Any) -> None:
        return None

    @staticmethod
    def resume(raw: Any) -> None:
        return None


class AiomysqlBackend(MySQLBackend):
    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        super().__init__(url, options, _Aiomysql())
