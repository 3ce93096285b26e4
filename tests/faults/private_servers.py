"""Private database servers for destructive tests: a PostgreSQL and a MariaDB of our own.

Each runs from a temporary directory on a free loopback port, started by
a session fixture (``tests/faults/conftest.py``) only when a test asks for
it, and stopped and deleted at the end of the session. Tests may stop,
restart and kill sessions of these freely: the shared servers are never
touched. Admin work goes through the raw drivers (asyncpg, aiomysql) on a
connection of its own, so that what is counted is never the library's.

When the server binaries are missing the tests that need them are skipped,
unless ``TEST_FAULT_SERVERS=required`` (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiomysql
import asyncpg
from conftest import answers, free_port

T = TypeVar("T")
REQUIRED = os.environ.get("TEST_FAULT_SERVERS", "").strip().lower() == "required"
_START_TIMEOUT = 30.0


class ServersUnavailable(Exception):
    """The binaries to run a private server are not installed here."""


def _as_owner(user: str, argv: list[str]) -> list[str]:
    """Run as ``user`` when we are root (initdb and mariadbd refuse to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *argv]
    return argv


def _owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end from sync code, even called inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result(_START_TIMEOUT)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_START_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's binaries (``initdb``, ``pg_ctl``)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for found in reversed(candidates):
        if (Path(found) / "initdb").exists():
            return Path(found)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(bindir) / "initdb").exists():
            return Path(bindir)
    raise ServersUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) are installed")


class PrivatePostgres:
    """A PostgreSQL cluster of our own (user ``postgres``, trust auth, database ``test``)."""

    user = "postgres"
    #: ``on`` for a primary with a standby: a commit's WAL is written (and
    #: sent) before it returns, so ``pg_current_wal_lsn()`` covers it.
    synchronous_commit = "off"

    def __init__(self) -> None:
        self._bin = postgres_bindir()
        self.root = _owned_tempdir("aiodatabases-pg-", self.user)
        self.data = self.root / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.running = False

    def url(self, database: str = "test", scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres@{self.host}:{self.port}/{database}"

    # -- lifecycle (blocking: fixtures; tests use the async methods) -----------------

    def create(self) -> None:
        initdb = [str(self._bin / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        _run(_as_owner(self.user, [*initdb, "--no-sync", "-D", str(self.data)]), "initdb")
        self.start_now()
        blocking(self._admin_execute("CREATE DATABASE test"))

    def start_now(self) -> None:
        options = {
            "listen_addresses": self.host,
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": self.synchronous_commit,
            "shared_buffers": "16MB",
            "max_connections": "200",
        }
        settings = " ".join(f"-c {name}={value}" for name, value in options.items())
        argv = [str(self._bin / "pg_ctl"), "-w", "-t", "30", "-D", str(self.data)]
        argv += ["-o", f"-p {self.port} -k {self.root} {settings}"]
        _run(_as_owner(self.user, [*argv, "-l", str(self.root / "log"), "start"]), "pg_ctl start")
        self.running = True

    def stop_now(self) -> None:
        if not self.running:
            return
        argv = [str(self._bin / "pg_ctl"), "-w", "-D", str(self.data), "-m", "immediate", "stop"]
        _run(_as_owner(self.user, argv), "pg_ctl stop")
        self.running = False

    def destroy(self) -> None:
        try:
            self.stop_now()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- what tests do ----------------------------------------------------------------

    async def stop(self) -> None:
        """Stop at once (``-m immediate``: the clients' sockets are cut, as in a crash)."""
        await asyncio.to_thread(self.stop_now)

    async def start(self) -> None:
        await asyncio.to_thread(self.start_now)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        await self._admin_execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def count_sessions(self, database: str) -> int:
        """Client sessions connected to ``database`` (ours not counted)."""
        value = await self._admin_value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type ="
            " 'client backend' AND pid <> pg_backend_pid()",
            database,
        )
        return int(value)

    async def terminate_all_sessions(self, database: str) -> int:
        """``pg_terminate_backend`` every client session of ``database``; how many."""
        value = await self._admin_value(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            database,
        )
        return int(value)

    async def running_statements(self, database: str, like: str) -> int:
        value = await self._admin_value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active'"
            " AND query LIKE $2 AND pid <> pg_backend_pid()",
            database,
            like,
        )
        return int(value)

    async def enable_tls(self, certificates: dict[str, Path]) -> None:
        """Serve TLS with these files (``make_certificates``), plain connections still allowed."""
        await self._admin_execute(f"ALTER SYSTEM SET ssl_cert_file = '{certificates['cert']}'")
        await self._admin_execute(f"ALTER SYSTEM SET ssl_key_file = '{certificates['key']}'")
        await self._admin_execute("ALTER SYSTEM SET ssl = on")
        await self._admin_execute("SELECT pg_reload_conf()")

    async def disable_tls(self) -> None:
        await self._admin_execute("ALTER SYSTEM SET ssl = off")
        await self._admin_execute("SELECT pg_reload_conf()")

    async def _admin_value(self, sql: str, *args: object) -> object:
        admin = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            return await admin.fetchval(sql, *args)
        finally:
            await admin.close()

    async def _admin_execute(self, sql: str) -> None:
        admin = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()


class PrivateStandby(PrivatePostgres):
    """A hot standby of a ``PrivatePostgres``: ``pg_basebackup -R`` of it, streaming its WAL.

    Read-only (``pg_is_in_recovery()``), on a port of its own; the primary's
    ``pg_hba.conf`` (``initdb -A trust``) already admits replication from
    127.0.0.1. ``stop()``/``start()`` take it away and bring it back.
    """

    def __init__(self, primary: PrivatePostgres) -> None:
        super().__init__()
        self.primary = primary

    def create(self) -> None:
        argv = [str(self._bin / "pg_basebackup"), "-R", "-X", "stream", "-c", "fast"]
        argv += ["--no-sync", "-D", str(self.data), "-h", self.primary.host]
        argv += ["-p", str(self.primary.port), "-U", "postgres"]
        _run(_as_owner(self.user, argv), "pg_basebackup")
        self.start_now()
        if blocking(self._admin_value("SELECT pg_is_in_recovery()")) is not True:
            raise RuntimeError(f"the standby on port {self.port} is not in recovery")

    async def wait_for_replay(self, timeout: float = _START_TIMEOUT) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = await self.primary._admin_value("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        sql = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
        while await self._admin_value(sql, target) is not True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay up to {target} in {timeout}s")
            await asyncio.sleep(0.01)


class PrivateReplication:
    """A private primary and its streaming standby (``PrivateStandby``), made together."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if not (bindir / "pg_basebackup").exists():  # checked before any directory is made
            raise ServersUnavailable(f"no pg_basebackup in {bindir}")
        self.primary = PrivatePostgres()
        self.primary.synchronous_commit = "on"
        self.standby = PrivateStandby(self.primary)
        self.port = self.primary.port

    def create(self) -> None:
        self.primary.create()
        self.standby.create()

    def destroy(self) -> None:
        try:
            self.standby.destroy()
        finally:
            self.primary.destroy()


def mariadb_binaries() -> tuple[str, str]:
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    if install is None or server is None:
        raise ServersUnavailable("no MariaDB server binaries (mariadb-install-db, mariadbd)")
    return install, server


class PrivateMariaDB:
    """A MariaDB server of our own (root with an empty password over TCP, database ``test``)."""

    user = "mysql"
    default_wait_timeout = 28800

    def __init__(self) -> None:
        self._install, self._server = mariadb_binaries()
        self.root = _owned_tempdir("aiodatabases-mariadb-", self.user)
        self.data = self.root / "data"
        self.socket = self.root / "mariadb.sock"
        self.port = free_port()
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    def url(self, database: str = "test", scheme: str = "mysql") -> str:
        return f"{scheme}://root@{self.host}:{self.port}/{database}"

    def create(self) -> None:
        argv = [self._install, "--no-defaults", f"--datadir={self.data}", "--skip-test-db"]
        argv += ["--auth-root-authentication-method=normal", f"--user={self.user}"]
        _run([*argv, "--skip-name-resolve"], "mariadb-install-db")
        self.start_now()
        blocking(self._admin_execute("CREATE DATABASE test"))

    def start_now(self) -> None:
        argv = [self._server, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}"]
        argv += [f"--socket={self.socket}", f"--bind-address={self.host}", f"--user={self.user}"]
        argv += ["--skip-log-bin", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"]
        argv += ["--innodb-flush-log-at-trx-commit=0", f"--log-error={self.root / 'log.err'}"]
        argv += [f"--pid-file={self.root / 'mariadb.pid'}", "--max-connections=200"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while not answers(self.host, self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log = (self.root / "log.err").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd did not start on port {self.port}: {log}")
            time.sleep(0.05)
        self._process = process

    def stop_now(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGKILL)  # a crash: the clients' sockets are cut
        process.wait(_START_TIMEOUT)

    def destroy(self) -> None:
        try:
            self.stop_now()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_now)

    async def start(self) -> None:
        await asyncio.to_thread(self.start_now)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def new_database(self, scheme: str = "mysql") -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        await self._admin_execute(f"CREATE DATABASE `{name}`")
        return self.url(name, scheme)

    async def count_sessions(self, database: str) -> int:
        rows = await self._admin_rows(
            "SELECT count(*) FROM information_schema.PROCESSLIST"
            " WHERE DB = %s AND ID <> CONNECTION_ID()",
            (database,),
        )
        return int(rows[0][0])

    async def kill_all_connections(self, database: str) -> int:
        """``KILL CONNECTION`` each client session of ``database`` (not ours); how many."""
        admin = await self._admin()
        try:
            async with admin.cursor() as cursor:
                await cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST"
                    " WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (database,),
                )
                ids = [row[0] for row in await cursor.fetchall()]
                for session in ids:
                    with contextlib.suppress(aiomysql.OperationalError):  # ended meanwhile
                        await cursor.execute(f"KILL CONNECTION {int(session)}")
            return len(ids)
        finally:
            admin.close()

    async def set_global_wait_timeout(self, seconds: int) -> None:
        """For sessions opened from now on (this private server only)."""
        await self._admin_execute(f"SET GLOBAL wait_timeout = {int(seconds)}")

    async def running_statements(self, database: str, like: str) -> int:
        rows = await self._admin_rows(
            "SELECT count(*) FROM information_schema.PROCESSLIST"
            " WHERE DB = %s AND INFO LIKE %s AND ID <> CONNECTION_ID()",
            (database, like),
        )
        return int(rows[0][0])

    async def _admin(self) -> aiomysql.Connection:
        return await aiomysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            autocommit=True,
            connect_timeout=10,
        )

    async def _admin_rows(
        self, sql: str, args: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        admin = await self._admin()
        try:
            async with admin.cursor() as cursor:
                await cursor.execute(sql, args)
                return list(await cursor.fetchall())
        finally:
            admin.close()

    async def _admin_execute(self, sql: str) -> None:
        await self._admin_rows(sql)


class Target:
    """One backend on a private server: a fresh database of its own, and the server."""

    def __init__(self, server: PrivatePostgres | PrivateMariaDB, url: str) -> None:
        self.server = server
        self.url = url
        self.name = url.rsplit("/", 1)[1]
        self.sleep_sql = (
            "SELECT pg_sleep(60)" if isinstance(server, PrivatePostgres) else "SELECT SLEEP(60)"
        )

    async def sessions(self) -> int:
        return await self.server.count_sessions(self.name)

    async def kill_all(self) -> int:
        """pg_terminate_backend / KILL CONNECTION of every session of the database."""
        if isinstance(self.server, PrivatePostgres):
            return await self.server.terminate_all_sessions(self.name)
        return await self.server.kill_all_connections(self.name)

    async def sleeping(self) -> int:
        return await self.server.running_statements(self.name, self.sleep_sql + "%")


def make_certificates(directory: Path, host_names: list[str], owner: str) -> dict[str, Path]:
    """A CA and a server certificate it signed, for ``host_names`` (``openssl``).

    Returns the paths: ``ca``, ``cert``, ``key`` (the key readable only by ``owner``).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServersUnavailable("the openssl command is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, request, cert = (
        directory / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [
            openssl,
            "req",
            "-x509",
            *curve,
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-days",
            "2",
            "-subj",
            "/CN=aiodatabases test CA",
        ],
        "openssl (CA)",
    )
    _run(
        [
            openssl,
            "req",
            *curve,
            "-keyout",
            str(key),
            "-out",
            str(request),
            "-subj",
            f"/CN={host_names[0]}",
        ],
        "openssl (request)",
    )
    names = ",".join(
        f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}" for name in host_names
    )
    extensions = directory / "san.ext"
    extensions.write_text(f"subjectAltName={names}\n")
    _run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(request),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            "2",
            "-extfile",
            str(extensions),
        ],
        "openssl (sign)",
    )
    if os.geteuid() == 0:
        for path in (directory, key, cert, ca):
            shutil.chown(path, owner, owner)
    key.chmod(0o600)
    return {"ca": ca, "cert": cert, "key": key}
