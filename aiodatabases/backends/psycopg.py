"""PostgreSQL through psycopg 3 (``postgresql+psycopg://``).

The SQL is PostgreSQL's as on asyncpg (``backends/postgres``): the same
transactions, isolation options, ``execute()`` results, streaming cursors
and ``reset``, and the same types (JSON as text, ``NUMERIC`` as
``Decimal``). psycopg's own: ``%s`` placeholders (``format_pg``), its
errors, ``executemany`` as one pipeline, statements prepared after
``prepare_threshold`` runs, and a cancelled statement cancelled on the
server by psycopg itself, which waits for its end before the caller's
``CancelledError`` goes on. ``pgbouncer=true`` means what it means there:
no prepared statements (``prepare_threshold=None`` unless given), cursors
pinned in their transaction, a reset that only rolls back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import traceback
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from .._bounded import within
from .._query import ParamStyle
from .._url import DatabaseURL
from ._common import (
    connect_timed_out,
    postgres_begin,
    statement_timed_out,
)
from ._psycopg_connection import PsycopgConnection
from .base import (
    Capabilities,
    KeepsNothing,
    OptionSpec,
    SQLAlchemyDialect,
    passthrough,
    positive_seconds,
    to_bool,
    to_float,
)

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _sslmode(value: Any) -> str:
    """``ssl``/``sslmode``: a libpq sslmode name, or a bool (require / disable)."""
    text = str(value).strip().lower()
    if text not in _SSL_MODES:
        return "require" if to_bool(value) else "disable"  # ValueError for anything else
    return text


def _prepare_threshold(value: Any) -> int | None:
    """Runs of a statement before psycopg prepares it; ``None``/``"none"``: never."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected an integer or None, got {value!r}")
    threshold = int(value)
    if threshold < 0:
        raise ValueError(f"expected an integer of 0 or more, or None, got {value!r}")
    return threshold


def _server_settings(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of setting names to values")
    return {str(name): str(setting) for name, setting in value.items()}


OPTIONS = OptionSpec(
    scheme="postgresql+psycopg",
    options={
        "command_timeout": positive_seconds,
        # Seconds a connect may take (libpq's name; asyncpg's is `timeout`).
        "connect_timeout": to_float,
        "prepare_threshold": _prepare_threshold,
        "sslmode": _sslmode,
        "ssl": _sslmode,  # as on postgresql:// (asyncpg), without SSLContext
        "sslrootcert": str,
        "sslcert": str,
        "sslkey": str,
        # Sent at connect (libpq's `options`, as `-c name=value`).
        "server_settings": _server_settings,
        "application_name": str,
        # A string, or a callable (sync or async) asked for the password at
        # every new connection (rotating tokens); overrides the URL's password.
        "password": passthrough,
        # Read from the URL's query by DatabaseURL (unix socket directory).
        "host": str,
        # Ours, as on postgresql:// (asyncpg): the server is reached through
        # PgBouncer in transaction mode (no prepared statements, cursors
        # pinned in their transaction).
        "pgbouncer": to_bool,
    },
)

_DEFAULT_CONNECT_TIMEOUT = 60.0
#: psycopg's default: a statement run this many times is prepared.
_DEFAULT_PREPARE_THRESHOLD = 5


#: Settings libpq sends as startup parameters of their own (PgBouncer tracks
#: both); any other goes in libpq's ``options`` (``-c name=value``).
_LIBPQ_KEYWORDS = frozenset({"application_name", "client_encoding"})


def _startup_parameters(settings: Mapping[str, str], options: dict[str, Any]) -> None:
    """Put ``server_settings`` into libpq's connect parameters ``options``.

    PgBouncer 1.18 refuses libpq's ``options`` whatever it holds, so a setting
    libpq has a parameter of its own for is sent as that (a keyword option wins).
    """
    rest: dict[str, str] = {}
    for name, value in settings.items():
        keyword = name.lower()
        if keyword in _LIBPQ_KEYWORDS:
            options.setdefault(keyword, value)
        else:
            rest[name] = value
    if rest:
        options["options"] = _libpq_options(rest)


def _libpq_options(settings: Mapping[str, str]) -> str:
    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace(" ", "\\ ")

    return " ".join(f"-c {escaped(name)}={escaped(value)}" for name, value in settings.items())


def _forget_connection_info(exc: BaseException) -> None:
    """Drop what psycopg keeps of a failed connect on its errors (``pgconn``: the
    connection's parameters, the password among them), along the whole chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error) and current.pgconn is not None:
            current._pgconn = None  # no public way; its repr shows the password
        current = current.__cause__ or current.__context__


def _close(raw: Any) -> None:
    raw.pgconn.finish()


class PsycopgBackend(SQLAlchemyDialect, KeepsNothing):
    dialect_name = "postgresql+psycopg"
    paramstyle: ParamStyle = "format_pg"
    # psycopg stops a cancelled statement on the server and waits for its end.
    capabilities = Capabilities(failed_statement_aborts_transaction=True)

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self._host = options.pop("host", None) or url.hostname
        self._port = url.port
        self._password = options.pop("password", url.password)
        self._command_timeout: float | None = options.pop("command_timeout", None)
        self._connect_timeout: float = options.pop("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
        self._pgbouncer = bool(options.pop("pgbouncer", False))
        # A statement prepared by psycopg is a named one of the server session,
        # which the bouncer gives other clients between transactions. (A
        # threshold given explicitly is kept: PgBouncer 1.21+ with
        # max_prepared_statements tracks named statements.)
        default_threshold = None if self._pgbouncer else _DEFAULT_PREPARE_THRESHOLD
        self._prepare_threshold = options.pop("prepare_threshold", default_threshold)
        if self._pgbouncer:
            self.capabilities = _THROUGH_PGBOUNCER
        ssl = options.pop("ssl", None)
        if ssl is not None:
            options.setdefault("sslmode", ssl)
        settings = options.pop("server_settings", None)
        if settings:
            _startup_parameters(settings, options)
        self._params: dict[str, Any] = {
            "host": self._host,
            "port": self._port,
            "user": url.username,
            "dbname": url.database or None,
            **options,
        }
        self._params = {key: value for key, value in self._params.items() if value is not None}

    async def connect(self) -> PsycopgConnection:
        params = dict(self._params)
        password = await self._current_password()
        if password is not None:
            params["password"] = password
        timeout = self._connect_timeout
        try:
            raw = await within(self._connect_now(params), timeout, drop=_close)
        except (asyncio.TimeoutError, psycopg.errors.ConnectionTimeout) as exc:
            _forget_connection_info(exc)
            where = self._where()
            raise connect_timed_out("PostgreSQL", *where, timeout, "connect_timeout") from exc
        except psycopg.Error as exc:
            _forget_connection_info(exc)
            raise
        for name in ("json", "jsonb"):  # as text, as asyncpg returns them
            raw.adapters.register_loader(name, TextLoader)
        return PsycopgConnection(
            raw, self._command_timeout, self._timed_out, pinning=self._pgbouncer
        )

    async def _connect_now(self, params: Mapping[str, Any]) -> Any:
        try:
            return await psycopg.AsyncConnection.connect(
                autocommit=True, prepare_threshold=self._prepare_threshold, **params
            )
        except BaseException as exc:
            # Cancelled or timed out half way: psycopg's half-open connection
            # is closed when nothing refers to it, but the error's frames do.
            traceback.clear_frames(exc.__traceback__)
            raise

    async def _current_password(self) -> Any:
        password = self._password
        if callable(password):
            password = password()
            if inspect.isawaitable(password):
                password = await password
        return password

    def _where(self) -> tuple[str, int]:
        return self._host or "localhost", self._port or 5432

    def _timed_out(self) -> Exception:
        assert self._command_timeout is not None
        return statement_timed_out("PostgreSQL", *self._where(), self._command_timeout)

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        return postgres_begin(options)

    def is_stale(self, exc: BaseException) -> bool:
        # Refused before anything was sent: psycopg found the connection closed.
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and (
            "the connection is closed" in str(exc)
        )

    def is_disconnect(self, exc: BaseException) -> bool:
        if self.is_stale(exc) or isinstance(exc, OSError):
            return True
        if not isinstance(exc, psycopg.OperationalError):
            return False
        sqlstate = exc.sqlstate
        # Client side (the socket closed or reset), a connection exception
        # (class 08), or the server ending the session (57P01-57P03).
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})

#: The capabilities with ``pgbouncer=true`` (see ``Capabilities``).
_THROUGH_PGBOUNCER = dataclasses.replace(
    PsycopgBackend.capabilities, iteration_keeps_transaction=True
)
