"""The SQLite backend: what a URL configures, opening connections, the BEGIN of a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import aiosqlite

from ..._compat import SQLitePaths
from ..._query import ParamStyle
from ..._records import record_type
from ..._url import DatabaseURL
from ...exceptions import ConfigurationError, UnknownOptionError
from .._common import refuse_unknown_options
from ..base import Capabilities
from .connection import SQLiteConnection
from .here import SlowReads
from .options import (
    BEGIN,
    CONNECT_OPTIONS,
    OPTIONS,
    PRAGMAS,
    URI_PARAMETERS,
    Target,
    cannot_open_error,
    database_target,
    isolation_mode,
)
from .worker import worker_ended, worker_thread

#: sqlite3 builds every row as this type in C: a Record without a wrapper.
SQLiteRecord = record_type(sqlite3.Row, name_misses=IndexError)


class SQLiteBackend(SQLitePaths):
    dialect_name = "sqlite"
    paramstyle: ParamStyle = "qmark"
    # SQLite undoes only the failed statement, and stops a cancelled one
    # itself; only ``single_connection`` depends on the URL (``_open_target``).
    capabilities: Capabilities

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        self.url = self.target_url = url
        self._open_target(
            database_target(url, {k: v for k, v in options.items() if k in URI_PARAMETERS})
        )
        #: The ``sqlite3.connect`` keywords given (keyword or URL), read at every connect.
        self.connect_options: dict[str, Any] = {
            k: v for k, v in options.items() if k in CONNECT_OPTIONS
        }
        # The connection that keeps a shared in-memory database alive while connected.
        self._keeper: sqlite3.Connection | None = None
        self._slow_reads = SlowReads()
        self._pragmas = [
            f"PRAGMA {name} = {PRAGMAS[name](value)}"
            for name, value in options.items()
            if name in PRAGMAS
        ]
        self._isolation = options.get("isolation", "deferred")

    def _open_target(self, target: Target) -> None:
        """Open later connections to ``target``, with the capabilities it implies."""
        self._target = target
        # Each connection to ":memory:" is its own database: keep exactly one.
        # A shared in-memory one too: shared-cache connections lock each other's
        # tables without waiting (SQLITE_LOCKED), so one Database uses one.
        single = target.private_memory or target.shared_memory
        self.capabilities = Capabilities(single_connection=single)

    def use_target(self, url: DatabaseURL, connect_options: dict[str, Any]) -> None:
        """Open later connections to ``url`` with these ``sqlite3.connect`` keywords
        (the dict itself is kept: changes to it apply to later connections)."""
        unknown = sorted(set(connect_options) - set(CONNECT_OPTIONS))
        if unknown:
            raise UnknownOptionError(
                f"unknown sqlite3.connect option(s) {', '.join(map(repr, unknown))}; "
                f"supported: {', '.join(sorted(CONNECT_OPTIONS))}"
            )
        # The URL's PRAGMAs and isolation were applied when the backend was built.
        options = OPTIONS.parse(url.options, {})
        self._open_target(
            database_target(url, {k: v for k, v in options.items() if k in URI_PARAMETERS})
        )
        for name, value in options.items():  # the URL's own, as at construction
            if name in CONNECT_OPTIONS:
                connect_options.setdefault(name, value)
        self.target_url = url
        self.connect_options = connect_options

    def _connect_kwargs(self) -> tuple[dict[str, Any], bool]:
        """The keywords for ``sqlite3.connect``, and whether brief reads may run inline."""
        kwargs = dict(self.connect_options)
        if self._target.is_uri:
            kwargs.setdefault("uri", True)
        # Brief reads run on the calling thread (see SQLiteConnection), which
        # needs this; with check_same_thread=True everything runs on the worker,
        # as it does with a factory (its connections may run Python of their own).
        kwargs.setdefault("check_same_thread", False)
        inline = not (kwargs["check_same_thread"] or "factory" in kwargs)
        return kwargs, inline

    def open_kept(self) -> None:
        """Connecting: keep a shared in-memory database alive until ``close_kept()``."""
        self._keep_shared_memory(self._connect_kwargs()[0])

    def _keep_shared_memory(self, kwargs: Mapping[str, Any]) -> None:
        if self._target.shared_memory and self._keeper is None:
            # In memory: no I/O to wait for. Never used for statements.
            self._keeper = sqlite3.connect(
                self._target.path, uri=bool(kwargs.get("uri")), check_same_thread=False
            )

    def close_kept(self) -> None:
        """The database disconnected: let a shared in-memory database go."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    async def connect(self) -> SQLiteConnection:
        kwargs, inline = self._connect_kwargs()
        self._keep_shared_memory(kwargs)
        raw = aiosqlite.connect(self._target.path, isolation_level=None, **kwargs)
        # aiosqlite's worker thread is not a daemon: a script that ends without
        # disconnect() would hang at exit. Flag it before it starts.
        worker_thread(raw).daemon = True
        try:
            await raw
        except sqlite3.OperationalError as exc:
            await worker_ended(raw)
            explained = cannot_open_error(exc, self._target)
            if explained is exc:
                raise
            raise explained from exc
        except BaseException:
            await worker_ended(raw)
            raise
        raw.row_factory = SQLiteRecord
        connection = SQLiteConnection(raw, here=inline, slow=self._slow_reads)
        try:
            await connection.run_control(self._pragmas)
        except BaseException:
            await raw.close()
            raise
        return connection

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        refuse_unknown_options(options, ("isolation",), "SQLite")
        # DEFERRED by default, as sqlite3 (and so ``databases``) begins: a
        # transaction takes the write lock at its first write, so readers
        # never wait for each other. The price, two transactions that both
        # read and then write, is explained by ``_explain_busy``.
        level = options.get("isolation") or self._isolation
        try:
            return [BEGIN[isolation_mode(level)]]
        except ValueError:
            raise ConfigurationError(
                f"unknown isolation level {level!r} for SQLite; supported: {', '.join(BEGIN)}"
            ) from None

    def is_disconnect(self, exc: BaseException) -> bool:
        return False

    def is_stale(self, exc: BaseException) -> bool:
        return False
