"""The one place tests learn which real database servers to use.

``TEST_DATABASE_URLS`` (comma separated) names them. Without it the suite uses
SQLite (a temporary file) plus every local server that answers. A URL that is
named but does not answer fails its tests: it is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator

import pytest

from aiodatabases import Database, DatabaseURL

_SQLITE_FILE = os.path.join(tempfile.mkdtemp(prefix="aiodatabases-tests-"), "test.db")
_LOCAL_SERVERS = {
    "postgresql": ("127.0.0.1", 5432, ["postgresql://postgres@127.0.0.1:5432/test"]),
}
# MySQL joins the default servers once the shared suite is adapted to it:
_MYSQL_SERVER = (
    "127.0.0.1",
    3306,
    ["mysql://root@127.0.0.1:3306/test", "mysql+aiomysql://root@127.0.0.1:3306/test"],
)


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _database_urls() -> list[str]:
    named = os.environ.get("TEST_DATABASE_URLS", "")
    if named.strip():
        return [url.strip() for url in named.split(",") if url.strip()]
    urls = [f"sqlite:///{_SQLITE_FILE}"]
    for host, port, server_urls in _LOCAL_SERVERS.values():
        if _answers(host, port):
            urls += server_urls
    return urls


def dialect_of(url: str) -> str:
    return DatabaseURL(url).dialect


_SERVER_ADMIN = {
    # dialect: (database to connect to, CREATE template, DROP template)
    "postgresql": ("postgres", 'CREATE DATABASE "{}"', 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'),
    "mysql": ("", "CREATE DATABASE `{}`", "DROP DATABASE IF EXISTS `{}`"),
}


def _admin(url: str, template_index: int, name: str) -> None:
    dialect = dialect_of(url)
    admin_database = _SERVER_ADMIN[dialect][0]
    statement = _SERVER_ADMIN[dialect][template_index].format(name)

    async def run() -> None:
        async with Database(DatabaseURL(url).replace(database=admin_database)) as admin:
            await admin.execute(statement)

    asyncio.run(run())


def _private_database(url: str) -> str:
    """A fresh database on the same server, so concurrent runs never share tables."""
    if dialect_of(url) not in _SERVER_ADMIN:
        return url
    name = f"aiodatabases_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(url, 1, name)
    _CREATED.append((url, name))
    return str(DatabaseURL(url).replace(database=name))


def _drop_private_databases() -> None:
    for url, name in _CREATED:
        _admin(url, 2, name)


_CREATED: list[tuple[str, str]] = []
DATABASE_URLS = [_private_database(url) for url in _database_urls()]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _drop_private_databases()


def urls_for(*dialects: str) -> list[str]:
    """The configured URLs of the given dialects (for backend-specific tests)."""
    return [url for url in DATABASE_URLS if dialect_of(url) in dialects]


def scheme_of(url: str) -> str:
    return DatabaseURL(url).scheme


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
    async with Database(url) as database:
        await database.execute("DROP TABLE IF EXISTS notes")
        await database.execute(notes_ddl(url))


async def drop_notes(url: str) -> None:
    async with Database(url) as database:
        await database.execute("DROP TABLE IF EXISTS notes")


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
