"""A PgBouncer of our own in transaction mode, in front of the session's PostgreSQL.

Started from Debian's ``pgbouncer`` binary (``apt-get install pgbouncer``;
``.ci/run`` installs it) with a configuration written to a temporary
directory: ``pool_mode = transaction``, listening on a free loopback port,
trust authentication (the server trusts loopback clients too), any database
name passed through to the server. Never the system's pgbouncer service.
PgBouncer refuses to run as root: as root it runs as the ``postgres`` user.

Its pool is small (``POOL_SIZE`` server connections per database and user),
so that the clients of a test share server sessions, which is what
transaction mode does under load and what makes its failures show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from conftest import answers, free_port

from aiodatabases import Connection, Database, DatabaseURL
from aiodatabases.backends import SUPPORTED_SCHEMES

#: ``TEST_FAULT_SERVERS=required`` (``.ci/run``): a missing binary fails, never skips.
REQUIRED = os.environ.get("TEST_FAULT_SERVERS", "").strip().lower() == "required"
POOL_SIZE = 4
#: The PostgreSQL drivers' schemes that the bounced tests run on.
DRIVERS = [scheme for scheme in ("postgresql", "postgresql+psycopg") if scheme in SUPPORTED_SCHEMES]
_START_TIMEOUT = 30.0


class BouncerUnavailable(Exception):
    """The ``pgbouncer`` binary is not installed here."""


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise BouncerUnavailable(
            "the pgbouncer binary is not installed (Debian: apt-get install pgbouncer)"
        )
    return found


class PgBouncer:
    """One pgbouncer process in transaction mode; ``start()``, then ``stop()``."""

    user = "postgres"  # who runs it when we are root

    def __init__(self, server_host: str, server_port: int, pool_size: int = POOL_SIZE) -> None:
        self._binary = pgbouncer_binary()
        self.server = (server_host, server_port)
        self.pool_size = pool_size
        self.host = "127.0.0.1"
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aiodatabases-pgbouncer-"))
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        host, port = self.server
        return "\n".join(
            [
                "[databases]",
                f"* = host={host} port={port}",
                "[pgbouncer]",
                f"listen_addr = {self.host}",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {self.root / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                "max_client_conn = 500",
                # A test that waits for a server session fails in seconds, not minutes.
                "query_wait_timeout = 30",
                f"logfile = {self.root / 'pgbouncer.log'}",
                f"pidfile = {self.root / 'pgbouncer.pid'}",
                "admin_users = postgres",
                "",
            ]
        )

    def start(self) -> None:
        (self.root / "pgbouncer.ini").write_text(self.config())
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        uid = gid = groups = None
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            owner = pwd.getpwnam(self.user)
            uid, gid, groups = owner.pw_uid, owner.pw_gid, []
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, uid, gid)
        process = subprocess.Popen(
            [self._binary, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not answers(self.host, self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"pgbouncer did not start on port {self.port}: {self.log()}")
            time.sleep(0.05)
        self._process = process

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        """Stop it (SIGTERM: at once, its clients' connections cut) and delete its files."""
        process, self._process = self._process, None
        try:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(_START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def through(bouncer: PgBouncer, url: str, scheme: str = "postgresql", **options: str) -> str:
    """``url``'s database through ``bouncer``, with ``scheme`` and URL ``options``."""
    parsed = DatabaseURL(url)
    return str(
        parsed.replace(
            scheme=scheme,
            hostname=bouncer.host,
            port=bouncer.port,
            options={**parsed.options, **options},
        )
    )


Work = Callable[[Connection], Awaitable[Any]]


async def _select_one(connection: Connection) -> Any:
    return await connection.fetch_val("SELECT 1")


@contextlib.asynccontextmanager
async def session_taken(
    db: Database, before: Work = _select_one, after: Work = _select_one
) -> AsyncIterator[Any]:
    """Another task's transaction holds the server session released last, until
    the end; it runs ``before`` (whose result is yielded) and, at the end, ``after``."""
    begun, done = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []

    async def hold() -> None:
        async with db.connection() as connection, connection.transaction():
            seen.append(await before(connection))
            begun.set()
            await done.wait()
            await after(connection)

    task = asyncio.create_task(hold())
    waiting = asyncio.create_task(begun.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not seen:
        await task  # it failed: raise why
    try:
        yield seen[0]
    finally:
        done.set()
        await task


@contextlib.contextmanager
def raises_sqlstate(sqlstate: str) -> Iterator[None]:
    """Expect the driver's error for the server's ``sqlstate`` (asyncpg's and
    psycopg's errors both carry it), whichever driver runs the test."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != sqlstate:
            raise
    else:
        raise AssertionError(f"no error with SQLSTATE {sqlstate} was raised")
