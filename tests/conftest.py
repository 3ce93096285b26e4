"""The one place tests learn which real database servers to use.

``TEST_DATABASE_URLS`` (comma separated) names them. Without it the suite uses
SQLite (a temporary file) plus every local server that answers a TCP probe at
collection. A URL that is named but does not answer fails its tests: it is
never skipped.

Tests are parametrized at collection by backend (ids ``sqlite``,
``postgresql``, ``postgresql+psycopg``, ``mysql``, ``mysql+asyncmy``). Each server URL points at a
database of this run's own, which the session fixture ``private_databases``
creates before the first test and drops after the last: collecting
(``pytest --collect-only``) creates nothing, and concurrent runs never share
tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from aiodatabases import Database, DatabaseURL

_SQLITE_FILE = os.path.join(tempfile.mkdtemp(prefix="aiodatabases-tests-"), "test.db")
_LOCAL_SERVERS = {
    # Both PostgreSQL drivers: asyncpg (plain `postgresql://`) and psycopg.
    "postgresql": (
        "127.0.0.1",
        5432,
        [
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        ],
    ),
    # Both MySQL drivers, so every shared test runs on aiomysql (plain `mysql://`,
    # as in databases) and on asyncmy.
    "mysql": (
        "127.0.0.1",
        3306,
        ["mysql://root@127.0.0.1:3306/test", "mysql+asyncmy://root@127.0.0.1:3306/test"],
    ),
}


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on (for a private server of the tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _database_urls() -> list[str]:
    named = os.environ.get("TEST_DATABASE_URLS", "")
    if named.strip():
        return [url.strip() for url in named.split(",") if url.strip()]
    urls = [f"sqlite:///{_SQLITE_FILE}"]
    for host, port, server_urls in _LOCAL_SERVERS.values():
        if answers(host, port):
            urls += server_urls
    return urls


def dialect_of(url: str) -> str:
    return DatabaseURL(url).dialect


_SERVER_ADMIN = {
    # dialect: (database to connect to, CREATE template, DROP template)
    "postgresql": ("postgres", 'CREATE DATABASE "{}"', 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'),
    "mysql": ("", "CREATE DATABASE `{}`", "DROP DATABASE IF EXISTS `{}`"),
}


# MySQL waits a day (lock_wait_timeout) for a metadata lock: a test that leaves a
# connection inside a transaction on a table would hang the helpers' DROP TABLE.
# Bounded, the leak is an error that names the lock and the connections holding it.
_MYSQL_LOCK_WAIT_SECONDS = 10
_MYSQL_HELPER_OPTIONS = {
    "init_command": f"SET SESSION lock_wait_timeout={_MYSQL_LOCK_WAIT_SECONDS}"
}
_MYSQL_LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT


class LeakedTransactionError(AssertionError):
    """A test left a connection inside a transaction (seen by a fixture helper)."""


def helper_database(url: str | DatabaseURL) -> Database:
    """A ``Database`` for fixtures and helpers (setup, teardown, server inspection)."""
    options = _MYSQL_HELPER_OPTIONS if dialect_of(str(url)) == "mysql" else {}
    return Database(url, **options)


async def _kill_mysql_connections(admin: Database, database_name: str) -> list[str]:
    """Kill the other connections using ``database_name``; describe each one killed."""
    rows = await admin.fetch_all(
        "SELECT p.ID, p.COMMAND, p.TIME, p.INFO, t.trx_state, t.trx_started"
        " FROM information_schema.PROCESSLIST p"
        " LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID"
        " WHERE p.DB = :db AND p.ID <> CONNECTION_ID()",
        {"db": database_name},
    )
    killed = []
    for row in rows:
        transaction = f"transaction {row[4]} since {row[5]}" if row[4] else "no InnoDB transaction"
        killed.append(
            f"connection {row[0]} ({row[1]} for {row[2]}s, {transaction}, info={row[3]!r})"
        )
        with contextlib.suppress(Exception):  # it may have ended meanwhile
            await admin.execute(f"KILL {int(row[0])}")
    return killed


async def drop_table(url: str, table: str) -> None:
    """``DROP TABLE IF EXISTS``; on MySQL a leaked transaction fails it after a bounded wait."""
    async with helper_database(url) as database:
        try:
            await database.execute(f"DROP TABLE IF EXISTS {table}")
        except Exception as exc:
            if dialect_of(url) != "mysql" or exc.args[:1] != (_MYSQL_LOCK_WAIT_TIMEOUT,):
                raise
            # Kill the holders so that the tests after this one start clean.
            holders = await _kill_mysql_connections(database, DatabaseURL(url).database)
            await database.execute(f"DROP TABLE IF EXISTS {table}")
            raise LeakedTransactionError(
                f"DROP TABLE {table} waited {_MYSQL_LOCK_WAIT_SECONDS}s for the table's "
                f"metadata lock: a connection was left inside a transaction on it. "
                f"Killed: {'; '.join(holders) or 'none (it ended meanwhile)'}"
            ) from exc


def _admin(url: str, template_index: int) -> None:
    """Create (1) or drop (2) the database ``url`` names, from its server's admin database."""
    dialect = dialect_of(url)
    name = DatabaseURL(url).database
    admin_database = _SERVER_ADMIN[dialect][0]
    statement = _SERVER_ADMIN[dialect][template_index].format(name)

    async def run() -> None:
        async with helper_database(DatabaseURL(url).replace(database=admin_database)) as admin:
            if dialect == "mysql" and template_index == 2:
                # What PostgreSQL's DROP DATABASE ... WITH (FORCE) does.
                await _kill_mysql_connections(admin, name)
            await admin.execute(statement)

    asyncio.run(run())


# One name per run (process id and a random part), so that concurrent runs on
# one server never share tables; one database per URL, so the drivers don't either.
_RUN_NAME = f"aiodatabases_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _private_url(url: str, index: int) -> str:
    """The URL of this run's own database on ``url``'s server (created by a fixture)."""
    if dialect_of(url) not in _SERVER_ADMIN:
        return url
    return str(DatabaseURL(url).replace(database=f"{_RUN_NAME}_{index}"))


# Known at collection, so tests can be parametrized by backend; nothing is
# created on import (``pytest --collect-only`` touches no server).
DATABASE_URLS = [_private_url(url, index) for index, url in enumerate(_database_urls())]


@pytest.fixture(scope="session", autouse=True)
def private_databases() -> Iterator[None]:
    """Create this run's server databases before the first test, drop them after the last.

    A server that does not let us create one fails the run (every test errors
    with the reason): a configured or answering server is never skipped.
    """
    created: list[str] = []
    try:
        for url in DATABASE_URLS:
            if dialect_of(url) not in _SERVER_ADMIN:
                continue
            try:
                _admin(url, 1)
            except Exception as exc:
                shown = DatabaseURL(url)
                pytest.fail(
                    f"could not create the test database {shown.database!r} on "
                    f"{shown.scheme}://{shown.hostname}:{shown.port}: {exc!r} "
                    "(set TEST_DATABASE_URLS to choose the servers)",
                    pytrace=False,
                )
            created.append(url)
        yield
    finally:
        for url in created:
            try:
                _admin(url, 2)
            except Exception as exc:  # report it, and still drop the others
                name = DatabaseURL(url).database
                message = f"could not drop test database {name!r}: {exc!r}"
                print(f"\nconftest: {message}", file=sys.stderr)


def urls_for(*dialects: str) -> list[str]:
    """The configured URLs of the given dialects (for backend-specific tests)."""
    return [url for url in DATABASE_URLS if dialect_of(url) in dialects]


def scheme_of(url: str) -> str:
    return DatabaseURL(url).scheme


def asyncpg_dsn(url: str) -> str:
    """A PostgreSQL URL of either driver as asyncpg takes it (for a raw monitor connection)."""
    return str(DatabaseURL(url).replace(driver=""))


def postgres_driver_of(url: str) -> str:
    """The PostgreSQL driver a URL selects: ``postgresql://`` is asyncpg, as in databases."""
    return "psycopg" if DatabaseURL(url).driver == "psycopg" else "asyncpg"


def mysql_driver_of(url: str) -> str:
    """The MySQL driver a URL selects: ``mysql://`` is aiomysql, as in databases."""
    return "asyncmy" if DatabaseURL(url).driver == "asyncmy" else "aiomysql"


@pytest.fixture(params=DATABASE_URLS, ids=scheme_of)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    return url


def notes_ddl(url: str) -> str:
    """A small table that exists on every backend, with an auto-increment id."""
    id_column = {
        "postgresql": "SERIAL PRIMARY KEY",
        "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
    }.get(dialect_of(url), "INTEGER PRIMARY KEY")
    return f"CREATE TABLE notes (id {id_column}, text VARCHAR(100), completed BOOLEAN)"


async def reset_notes(url: str) -> None:
    await drop_table(url, "notes")
    async with helper_database(url) as database:
        await database.execute(notes_ddl(url))


async def drop_notes(url: str) -> None:
    await drop_table(url, "notes")


@pytest.fixture
async def notes(database_url: str) -> AsyncIterator[str]:
    """An empty ``notes`` table, dropped after the test; yields the URL."""
    await reset_notes(database_url)
    yield database_url
    await drop_notes(database_url)


def sleep_query(url: str, seconds: float) -> str:
    """A query that keeps the server busy for about ``seconds``."""
    if dialect_of(url) == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    if dialect_of(url) == "mysql":
        return f"SELECT SLEEP({seconds})"
    # SQLite has no sleep(): count through a recursive CTE instead.
    steps = int(seconds * 6_000_000)
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {steps}) "
        "SELECT count(*) FROM c"
    )


def busy_query(url: str, seconds: float) -> str:
    """Like ``sleep_query``, and ``until_busy`` sees it running (SQLite: it writes ``notes``)."""
    if dialect_of(url) != "sqlite":
        return sleep_query(url, seconds)
    # A write holds SQLite's write lock from its first step, which another
    # connection can see; RETURNING gives the caller a row, as the sleeps do.
    steps = int(seconds * 6_000_000)
    return (
        f"INSERT INTO notes (text) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
        f"SELECT x + 1 FROM c WHERE x < {steps}) SELECT 'busy ' || count(*) FROM c RETURNING id"
    )


async def until_busy(url: str) -> None:
    """Until a ``busy_query`` runs on the server, seen from another connection.

    What a test waits for before acting on a running statement, instead of a
    sleep that guesses how long the statement takes to start. On SQLite the
    sign is the write lock, so no other write may be open on ``url`` meanwhile.
    """
    dialect = dialect_of(url)
    if dialect == "sqlite":

        async def probe() -> bool:
            return await asyncio.to_thread(_sqlite_write_locked, DatabaseURL(url).database)

        return await until(True, probe)
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query LIKE 'SELECT pg_sleep(%'",
        "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND INFO LIKE 'SELECT SLEEP(%'",
    }[dialect]
    async with helper_database(url) as observer:

        async def running() -> bool:
            return bool(await observer.fetch_val(query))

        await until(True, running)


def _sqlite_write_locked(path: str) -> bool:
    import sqlite3

    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()
    return False


@pytest.fixture(scope="module")
def notes_for_module(private_databases: None) -> Iterator[None]:
    """An empty ``notes`` table on every backend, for a module's lifetime.

    For modules whose ``Database`` objects are built at import time and
    connected per test (the tables must exist outside their transactions).
    """
    for url in DATABASE_URLS:
        asyncio.run(reset_notes(url))
    yield
    for url in DATABASE_URLS:
        asyncio.run(drop_notes(url))


async def until(
    expected: object, probe: Callable[[], Awaitable[object]], within: float = 15
) -> None:
    """Poll an eventually-true server condition (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the server never reached {expected!r} (last seen {value!r})")
        await asyncio.sleep(0.05)


async def distinct_connections_at_once(db: Database, n: int, id_query: str) -> set[int]:
    """Hold ``n`` connections at the same time; the server's ids for them."""
    barrier = asyncio.Barrier(n)

    async def hold() -> int:
        async with db.connection() as connection:
            server_id = await connection.fetch_val(id_query)
            await barrier.wait()
            return int(server_id)

    return set(await asyncio.gather(*(hold() for _ in range(n))))


class LoopInThread:
    """An event loop running in a thread of its own (like an app server's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopInThread]:
    runner = LoopInThread()
    yield runner
    runner.close()
