"""The fault harness's fixtures: private servers, started when a test first asks for one.

``private_postgres`` and ``private_mariadb`` are one server each per session,
``private_replication`` a PostgreSQL primary with a streaming standby
(``private_servers``), each made on first use and deleted at the end of the session
(also after a failure or Ctrl-C; ``atexit`` as a last resort). Before each test
that uses one it is running again (a test may have stopped it) and, for
MariaDB, the global ``wait_timeout`` is back at its default. Nothing starts
for a run that asks for neither (``pytest tests/core``).

Missing server binaries skip these tests, unless ``TEST_FAULT_SERVERS=required``
(``.ci/run`` sets it), where they fail.

``proxied`` puts a ``FaultProxy`` (``fault_proxy``) in front of each server
backend of the session (the ``TEST_DATABASE_URLS``, or the local servers
that answer): the test's database through the proxy, and straight to the
server for watching it. The proxy never touches the server: a fault it
makes is the network's, between this process and the server.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import pytest
from conftest import scheme_of, urls_for
from fault_proxy import FaultProxy, Proxied
from private_servers import (
    REQUIRED,
    PrivateMariaDB,
    PrivatePostgres,
    PrivateReplication,
    ServersUnavailable,
    Target,
    blocking,
)

from aiodatabases import DatabaseURL

Server = TypeVar("Server", PrivatePostgres, PrivateMariaDB, PrivateReplication)


def _session_server(make: Callable[[], Server], name: str) -> Iterator[Server]:
    try:
        server = make()
    except ServersUnavailable as exc:
        if REQUIRED:
            pytest.fail(f"TEST_FAULT_SERVERS=required but {exc}", pytrace=False)
        pytest.skip(f"{exc} (the fault tests need a private {name}; CI requires them)")
    atexit.register(server.destroy)  # if the session is killed before its finally
    try:
        started = time.monotonic()
        server.create()
        print(f"\nprivate {name} on port {server.port}: up in {time.monotonic() - started:.1f}s")
        yield server
    finally:
        server.destroy()
        atexit.unregister(server.destroy)


@pytest.fixture(scope="session")
def _private_postgres_session() -> Iterator[PrivatePostgres]:
    yield from _session_server(PrivatePostgres, "PostgreSQL")


@pytest.fixture(scope="session")
def _private_mariadb_session() -> Iterator[PrivateMariaDB]:
    yield from _session_server(PrivateMariaDB, "MariaDB")


@pytest.fixture(scope="session")
def _private_replication_session() -> Iterator[PrivateReplication]:
    yield from _session_server(PrivateReplication, "PostgreSQL primary and streaming standby")


@pytest.fixture
def private_replication(_private_replication_session: PrivateReplication) -> PrivateReplication:
    """This session's private primary and its hot standby, both running (stop the
    standby freely; the primary is never stopped)."""
    pair = _private_replication_session
    if not pair.standby.running:
        pair.standby.start_now()
    return pair


@pytest.fixture
def private_postgres(_private_postgres_session: PrivatePostgres) -> PrivatePostgres:
    """This session's private PostgreSQL, running (restart, stop, terminate freely)."""
    if not _private_postgres_session.running:
        _private_postgres_session.start_now()
    return _private_postgres_session


@pytest.fixture
def private_mariadb(_private_mariadb_session: PrivateMariaDB) -> PrivateMariaDB:
    """This session's private MariaDB, running, with the default global ``wait_timeout``."""
    server = _private_mariadb_session
    if not server.running:
        server.start_now()
    blocking(server.set_global_wait_timeout(server.default_wait_timeout))
    return server


@pytest.fixture(params=["postgresql", "postgresql+psycopg", "mysql", "mysql+asyncmy"])
def target(request: pytest.FixtureRequest) -> Target:
    """A fresh database on the private server of each backend (asyncpg, psycopg,
    aiomysql, asyncmy)."""
    scheme: str = request.param
    if scheme.startswith("postgresql"):
        postgres: PrivatePostgres = request.getfixturevalue("private_postgres")
        url = blocking(postgres.new_database())
        return Target(postgres, str(DatabaseURL(url).replace(scheme=scheme)))
    mariadb: PrivateMariaDB = request.getfixturevalue("private_mariadb")
    return Target(mariadb, blocking(mariadb.new_database(scheme)))


#: The session's server URLs (each a database of this run's own), by backend.
SERVER_URLS = urls_for("postgresql", "mysql")
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@pytest.fixture(params=SERVER_URLS, ids=scheme_of)
async def proxied(request: pytest.FixtureRequest) -> AsyncIterator[Proxied]:
    """A ``FaultProxy`` in front of the server of each backend (asyncpg, psycopg,
    aiomysql, asyncmy), started in the test's event loop and closed after it."""
    direct_url: str = request.param
    parsed = DatabaseURL(direct_url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or _DEFAULT_PORTS[parsed.dialect]
    async with FaultProxy(host, port) as proxy:
        url = str(parsed.replace(hostname=proxy.host, port=proxy.port))
        yield Proxied(url=url, direct_url=direct_url, proxy=proxy)
