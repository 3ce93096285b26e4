"""What asyncmy and aiomysql share: the MySQL/MariaDB backend and a connection wrapper.

The two drivers have the same shape (both descend from PyMySQL): cursors,
``%s`` parameters escaped by the driver, ``lastrowid``, unbuffered cursors
for streaming. Each driver module passes its package and cursor classes in;
the rows are ``_mysql_rows``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from .._bounded import within
from .._query import ParamStyle
from .._url import DatabaseURL
from ._common import connect_timed_out, isolation_sql, refuse_unknown_options, statement_timed_out
from ._deadline import NO_DEADLINE, Deadline
from ._mysql_rows import shaper_for
from ._mysql_values import bindable
from .base import (
    Args,
    Capabilities,
    Cursor,
    KeepsNothing,
    OptionSpec,
    Row,
    SQLAlchemyDialect,
    positive_seconds,
    to_bool,
    to_float,
)

logger = logging.getLogger("aiodatabases")


def _ssl_option(value: Any) -> Any:
    """``ssl``: an ``SSLContext`` (verify as it says), or true (encrypt, like
    libpq's ``sslmode=require``: no certificate check), or false."""
    if isinstance(value, ssl.SSLContext):
        return value
    if not to_bool(value):
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


OPTIONS = OptionSpec(
    scheme="mysql",
    options={
        "ssl": _ssl_option,
        "unix_socket": str,
        "charset": str,
        "connect_timeout": to_float,
        # Ours: the drivers have no statement timeout (see _deadline).
        "command_timeout": positive_seconds,
        "init_command": str,
        "sql_mode": str,
    },
)


#: Seconds; aiomysql's own default waits for ever (asyncmy's and PyMySQL's: 10).
DEFAULT_CONNECT_TIMEOUT = 10.0
_CANT_CONNECT = 2003  # CR_CONN_HOST_ERROR


def _execute_result(cursor: Any) -> Any:
    """What databases (aiomysql) returns from ``execute()``, whichever the driver.

    The new ``AUTO_INCREMENT`` id; where there is none (``UPDATE``, ``DELETE``,
    an ``INSERT`` into a table without one) the number of rows changed; None for
    a statement that returns rows (aiomysql's ``lastrowid`` there; asyncmy's is 0).
    """
    if cursor.description is not None:
        return None
    if cursor.lastrowid == 0:
        return cursor.rowcount
    return cursor.lastrowid


class _MySQLCursor:
    """An unbuffered cursor: rows stream from the server as they are fetched.

    Between batches the socket is not read (``flow``), so the server waits
    instead of the client buffering the rest of the result.
    """

    in_own_transaction = False  # the connection streams it: nothing else runs meanwhile

    def __init__(self, cursor: Any, conn: MySQLConnection, flow: Any) -> None:
        self._cursor = cursor
        self._conn = conn
        self._raw = conn.raw
        self._flow = flow
        self._shaper = shaper_for(tuple(cursor.description or ()))
        flow.pause(self._raw)

    async def keep(self) -> None:
        return None

    async def fetch(self, count: int) -> list[Row]:
        self._flow.resume(self._raw)
        try:
            with self._conn.deadline():  # each batch is a round trip of its own
                return self._shaper.rows(await self._cursor.fetchmany(count))
        finally:
            self._flow.pause(self._raw)

    async def close(self) -> None:
        self._flow.resume(self._raw)
        with self._conn.deadline():
            await self._cursor.close()  # reads and drops the rest of the result


class MySQLConnection:
    """One asyncmy or aiomysql connection, in autocommit mode (the core opens transactions)."""

    __slots__ = ("_backend", "_raw", "_timeout", "timed_out")
    ran_inline = False  # the drivers always wait for the server
    stream_in_transaction = False

    def __init__(self, raw: Any, backend: MySQLBackend, timeout: float | None = None) -> None:
        self._raw = raw
        self._backend = backend
        self._timeout = timeout  # command_timeout
        #: The command timeout closed this connection's socket under a statement.
        self.timed_out = False

    @property
    def raw(self) -> Any:
        return self._raw

    def is_closed(self) -> bool:
        return bool(self._backend.driver_is_closed(self._raw))

    def deadline(self) -> contextlib.AbstractContextManager[None]:
        """``with``: the ``command_timeout`` of one round trip, from now (``_deadline``)."""
        if self._timeout is None:
            return NO_DEADLINE
        return Deadline(self._timeout, self.time_out, self.timed_out_error)

    def time_out(self) -> None:
        """The command timeout ran out: close the socket now (the statement's read fails)."""
        self.timed_out = True
        self._backend.abort(self._raw)

    def timed_out_error(self) -> Exception:
        return self._backend.timed_out(self._timeout or 0.0)

    async def _run(self, sql: str, args: Args) -> Any:
        values = bindable(args)  # refused before anything is sent
        cursor = await self._backend.new_cursor(self._raw)
        # Always a tuple, even empty: the SQL's literal % are doubled for it.
        await cursor.execute(sql, values)
        return cursor

    async def fetch_all(self, sql: str, args: Args) -> list[Row]:
        with self.deadline():
            cursor = await self._run(sql, args)
            try:
                return shaper_for(tuple(cursor.description or ())).rows(await cursor.fetchall())
            finally:
                await cursor.close()

    async def fetch_one(self, sql: str, args: Args) -> Row | None:
        with self.deadline():
            cursor = await self._run(sql, args)
            try:
                values = await cursor.fetchone()
                if values is None:
                    return None
                return shaper_for(tuple(cursor.description or ())).rows([values])[0]
            finally:
                await cursor.close()

    async def execute(self, sql: str, args: Args) -> Any:
        with self.deadline():
            cursor = await self._run(sql, args)
            try:
                return _execute_result(cursor)
            finally:
                await cursor.close()

    async def execute_many(self, sql: str, args_list: Sequence[Args]) -> None:
        values_list = [bindable(args) for args in args_list]
        with self.deadline():
            cursor = await self._backend.new_cursor(self._raw)
            try:
                # The drivers send an INSERT ... VALUES as one multi-row statement.
                await cursor.executemany(sql, values_list)
            finally:
                await cursor.close()

    async def open_cursor(self, sql: str, args: Args) -> Cursor:
        values = bindable(args)
        with self.deadline():
            cursor = await self._backend.new_cursor(self._raw, unbuffered=True)
            await cursor.execute(sql, values)
        return _MySQLCursor(cursor, self, self._backend.flow)

    async def run_control(self, statements: Sequence[str]) -> None:
        with self.deadline():  # all of them: one BEGIN, COMMIT, ROLLBACK, SAVEPOINT ...
            cursor = await self._backend.new_cursor(self._raw)
            try:
                for sql in statements:
                    await cursor.execute(sql)
            finally:
                await cursor.close()

    async def control_now(self, statements: Sequence[str]) -> bool:
        return False  # every statement is a round trip to the server

    def stop_waiting(self) -> None:
        return None  # a BEGIN waits for no lock here

    async def interrupt(self, read_only: bool) -> None:
        # The drivers cannot cancel: ask the server to kill the statement from
        # a second connection; the statement then ends with an error.
        await self._backend.kill_query(self._raw)

    async def ping(self) -> None:
        await self._raw.ping(reconnect=False)  # COM_PING: the protocol's own round trip

    async def reset(self) -> None:
        await self.run_control(["ROLLBACK"])

    async def close(self) -> None:
        if self.timed_out:
            # Its closed socket does not stop its statement (its locks, its
            # transaction) on the server: end the session from another connection.
            await self._backend.kill_session(self._raw)
        await self.quit()

    async def quit(self) -> None:
        """Close: say goodbye (COM_QUIT), and drop the socket whatever happens."""
        try:
            await self._raw.ensure_closed()
        finally:
            _close_raw(self._raw)  # the goodbye failed or was cancelled: close all the same

    def terminate(self) -> None:
        _close_raw(self._raw)


def _close_raw(raw: Any) -> None:
    """Drop a driver connection's socket without a goodbye to the server."""
    # If its loop is closed this raises; the garbage collector closes the socket.
    with contextlib.suppress(RuntimeError):
        raw.close()


class MySQLBackend(SQLAlchemyDialect, KeepsNothing):
    """MySQL/MariaDB; ``driver`` supplies the package-specific pieces."""

    dialect_name = "mysql"
    paramstyle: ParamStyle = "format"
    capabilities = Capabilities(
        cursor_blocks_connection=True, cancel_waits_for_statement=True, ddl_commits_transaction=True
    )

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any], driver: Any) -> None:
        self._driver = driver
        kwargs: dict[str, Any] = {
            "host": url.hostname or "localhost",
            "port": url.port or 3306,
            "user": url.username,
            "password": url.password or "",
            "database": url.database or None,
            "autocommit": True,
            "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        }
        kwargs.update(options)
        if kwargs.get("ssl") is False:
            kwargs.pop("ssl")
        self._command_timeout: float | None = kwargs.pop("command_timeout", None)
        self._connect_kwargs = kwargs

    async def connect(self) -> MySQLConnection:
        connection = MySQLConnection(await self._open(), self, self._command_timeout)
        if self._connect_kwargs.get("ssl"):
            await self._require_encryption(connection)
        return connection

    async def _open(self) -> Any:
        """A driver connection, the whole handshake within ``connect_timeout``."""
        kwargs = self._connect_kwargs
        try:
            # The drivers bound only the TCP connect by connect_timeout, not the
            # handshake after it: a server that accepts and never answers hung.
            return await within(
                self._driver.connect(**kwargs), kwargs["connect_timeout"], drop=_close_raw
            )
        except asyncio.TimeoutError as exc:
            where = (kwargs["host"], kwargs["port"])
            raise connect_timed_out(
                "MySQL", *where, kwargs["connect_timeout"], "connect_timeout"
            ) from exc
        except Exception as exc:
            if not exc.args or exc.args[0] != _CANT_CONNECT:
                raise
            raise self._cannot_connect(exc) from exc

    def _cannot_connect(self, exc: Exception) -> Exception:
        """The driver's own error, saying where (aiomysql names no port) and why."""
        kwargs = self._connect_kwargs
        where = f"{kwargs['host']}:{kwargs['port']}"
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
            why = f"timed out after {kwargs['connect_timeout']:g}s (the 'connect_timeout' option)"
        else:
            why = str(cause) if cause is not None else str(exc.args[1:])
        try:
            return type(exc)(_CANT_CONNECT, f"Can't connect to MySQL server at {where}: {why}")
        except Exception:  # a driver error type built otherwise: keep the driver's
            return exc

    async def _require_encryption(self, connection: MySQLConnection) -> None:
        # aiomysql quietly goes on in plain text when the server offers no TLS.
        try:
            row = await connection.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'", ())
            encrypted = row is not None and bool(row[1])
        except BaseException:
            await connection.close()
            raise
        if not encrypted:
            await connection.close()
            raise ConnectionError(
                "ssl was requested but the MySQL server did not encrypt the connection "
                "(it offers no TLS); refusing to continue in plain text"
            )

    @property
    def flow(self) -> Any:
        """Pauses and resumes reading a connection's socket (see ``_MySQLCursor``)."""
        return self._driver

    async def new_cursor(self, raw: Any, *, unbuffered: bool = False) -> Any:
        return await self._driver.cursor(raw, unbuffered)

    def driver_is_closed(self, raw: Any) -> bool:
        return bool(self._driver.is_closed(raw))

    def abort(self, raw: Any) -> None:
        """Close ``raw``'s socket at once, unsent bytes dropped (a stall cannot hold it up)."""
        self._driver.abort(raw)

    def timed_out(self, timeout: float) -> Exception:
        host, port = self._connect_kwargs["host"], self._connect_kwargs["port"]
        return statement_timed_out("MySQL", host, port, timeout)

    async def kill_query(self, raw: Any) -> None:
        await self._kill(f"KILL QUERY {int(raw.thread_id())}")

    async def kill_session(self, raw: Any) -> None:
        """End ``raw``'s session on the server (its statement, its transaction); a
        failure (the server unreachable, the session gone already) is logged."""
        try:
            await self._kill(f"KILL CONNECTION {int(raw.thread_id())}")
        except Exception as exc:
            logger.info("could not end a timed-out connection's session: %r", exc)

    async def _kill(self, sql: str) -> None:
        timeout = self._command_timeout or self._connect_kwargs["connect_timeout"]
        killer = MySQLConnection(await self._open(), self, timeout)  # the network may be at fault
        try:
            await killer.run_control([sql])
        finally:
            await killer.quit()  # a killer that timed out has no session worth a KILL

    def begin_sql(self, options: Mapping[str, Any]) -> list[str]:
        refuse_unknown_options(options, ("isolation", "readonly"), "MySQL")
        isolation = options.get("isolation")
        statements = []
        if isolation is not None:
            # MySQL sets the level for the next transaction with its own statement.
            statements.append(
                f"SET TRANSACTION ISOLATION LEVEL {isolation_sql(isolation, 'MySQL')}"
            )
        statements.append("START TRANSACTION READ ONLY" if options.get("readonly") else "BEGIN")
        return statements

    def is_disconnect(self, exc: BaseException) -> bool:
        if isinstance(exc, (OSError, ConnectionError)):
            return True
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        # 2006 server has gone away, 2013 lost connection, 2055 lost (system error)
        return code in (2006, 2013, 2055)

    def is_stale(self, exc: BaseException) -> bool:
        return False
