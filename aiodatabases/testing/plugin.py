"""pytest plugin: each test gets a database whose changes vanish after it.

Registered through the ``pytest11`` entry point and inert until a test asks
for its fixtures. Configure the URL with ``--aiodatabases-url`` or the ini
option ``aiodatabases_url``; apps that build their own ``Database`` override
the ``aiodatabases_database`` fixture to return it (so the app's own object
is the isolated one):

    @pytest.fixture(scope="session")
    def aiodatabases_database():
        from myapp.db import database
        return database

The database is connected once per session with ``force_rollback=True`` (a
private loop thread owns its one connection, so every event loop and thread
can use it: pytest-asyncio at any loop scope, AnyIO, Starlette's TestClient,
httpx's ASGI transport). Each test runs inside ``Database.isolated()``: a
savepoint, rolled back after the test, whoever wrote.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from .._url import DatabaseURL
from ..database import Database

T = TypeVar("T")

_ADMIN_DATABASE = {"postgresql": "postgres", "mysql": ""}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiodatabases", "aiodatabases test database")
    group.addoption(
        "--aiodatabases-url",
        dest="aiodatabases_url",
        default=None,
        help="database URL for the aiodatabases_db fixture (overrides the ini option)",
    )
    group.addoption(
        "--aiodatabases-drop",
        dest="aiodatabases_drop",
        action="store_true",
        default=None,
        help="drop the test database at the end of the session",
    )
    parser.addini("aiodatabases_url", "database URL for the aiodatabases_db fixture")
    parser.addini(
        "aiodatabases_drop", "drop the test database at the end of the session", type="bool"
    )


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous fixture code, in a loop of its own.

    A force_rollback database works from any loop, so a short-lived one is
    fine; if this thread already runs a loop, a helper thread runs it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, asyncio.run(coroutine)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def aiodatabases_url(pytestconfig: pytest.Config) -> str:
    """The test database URL (``--aiodatabases-url`` or ini ``aiodatabases_url``)."""
    url = pytestconfig.getoption("aiodatabases_url") or pytestconfig.getini("aiodatabases_url")
    if not url:
        raise pytest.UsageError(
            "aiodatabases: no test database URL; pass --aiodatabases-url=URL or set "
            "aiodatabases_url in the ini file (or override the aiodatabases_database fixture)"
        )
    return str(url)


@pytest.fixture(scope="session")
def aiodatabases_database(aiodatabases_url: str) -> Database:
    """The ``Database`` to isolate. Override it to return your app's own object
    (not connected yet: the plugin connects it with force_rollback)."""
    return Database(aiodatabases_url)


@pytest.fixture(scope="session")
def aiodatabases_schema() -> Any:
    """Override to build the schema once per session: a SQLAlchemy ``MetaData``
    (its tables are created if missing), or an async callable taking a
    connected ``Database``. Built outside the rolled-back transaction."""
    return None


async def _create_database_if_missing(url: DatabaseURL) -> None:
    admin_name = _ADMIN_DATABASE.get(url.dialect)
    if admin_name is None or not url.database:
        return  # SQLite creates its file on connect
    async with Database(url.replace(database=admin_name)) as admin:
        if url.dialect == "postgresql":
            exists = await admin.fetch_val(
                "SELECT 1 FROM pg_database WHERE datname = :name", {"name": url.database}
            )
            if not exists:
                await admin.execute(f'CREATE DATABASE "{url.database}"')
        else:
            await admin.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")


async def _drop_database(url: DatabaseURL) -> None:
    admin_name = _ADMIN_DATABASE.get(url.dialect)
    if admin_name is None or not url.database:
        return
    async with Database(url.replace(database=admin_name)) as admin:
        if url.dialect == "postgresql":
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        else:
            await admin.execute(f"DROP DATABASE IF EXISTS `{url.database}`")


async def _build_schema(url: DatabaseURL, schema: Any) -> None:
    if schema is None:
        return
    async with Database(url) as plain:
        if callable(schema):
            builder: Callable[[Database], Awaitable[Any]] = schema
            await builder(plain)
            return
        from sqlalchemy.schema import CreateTable

        for table in schema.sorted_tables:
            await plain.execute(CreateTable(table, if_not_exists=True))


@pytest.fixture(scope="session")
def aiodatabases_session(
    pytestconfig: pytest.Config, aiodatabases_database: Database, aiodatabases_schema: Any
) -> Iterator[Database]:
    """The session's database: created if missing, schema built once, connected
    once with force_rollback (everything is rolled back at the end)."""
    database = aiodatabases_database
    if database.is_connected:
        raise pytest.UsageError(
            "aiodatabases: the database to isolate is already connected; the plugin "
            "connects it itself, with force_rollback=True"
        )
    _run(_create_database_if_missing(database.url))
    _run(_build_schema(database.url, aiodatabases_schema))
    with database.force_rollback():
        _run(database.connect())
    try:
        yield database
    finally:
        _run(database.disconnect())
        drop = pytestconfig.getoption("aiodatabases_drop") or pytestconfig.getini(
            "aiodatabases_drop"
        )
        if drop:
            _run(_drop_database(database.url))


@pytest.fixture
def aiodatabases_db(aiodatabases_session: Database) -> Iterator[Database]:
    """A database for this test: what the test (and the app under test) write is
    visible to both during the test and gone after it. Costs one savepoint."""
    isolation = aiodatabases_session.isolated()
    _run(isolation.start())
    try:
        yield aiodatabases_session
    finally:
        _run(isolation.rollback())
