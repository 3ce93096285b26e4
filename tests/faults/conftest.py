"""The fault harness's fixtures: private servers, started when a test first asks for one.

``private_postgres`` and ``private_mariadb`` are one server each per session
(``private_servers``), made on first use and deleted at the end of the session
(also after a failure or Ctrl-C; ``atexit`` as a last resort). Before each test
that uses one it is running again (a test may have stopped it) and, for
MariaDB, the global ``wait_timeout`` is back at its default. Nothing starts
for a run that asks for neither (``pytest tests/core``).

Missing server binaries skip these tests, unless ``TEST_FAULT_SERVERS=required``
(``.ci/run`` sets it), where they fail.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from private_servers import (
    REQUIRED,
    PrivateMariaDB,
    PrivatePostgres,
    ServersUnavailable,
    Target,
    blocking,
)

Server = TypeVar("Server", PrivatePostgres, PrivateMariaDB)


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


@pytest.fixture(params=["postgresql", "mysql", "mysql+asyncmy"])
def target(request: pytest.FixtureRequest) -> Target:
    """A fresh database on the private server of each backend (asyncpg, aiomysql, asyncmy)."""
    scheme: str = request.param
    if scheme == "postgresql":
        postgres: PrivatePostgres = request.getfixturevalue("private_postgres")
        return Target(postgres, blocking(postgres.new_database()))
    mariadb: PrivateMariaDB = request.getfixturevalue("private_mariadb")
    return Target(mariadb, blocking(mariadb.new_database(scheme)))
