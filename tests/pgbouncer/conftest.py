"""The PgBouncer fixtures: one bouncer per session, started when a test first asks for it.

``pgbouncer`` runs a ``bouncer.PgBouncer`` in transaction mode in front of
the session's PostgreSQL (the first PostgreSQL URL of ``TEST_DATABASE_URLS``,
or the local server), stopped and deleted at the end of the session
(``atexit`` as a last resort). Without the ``pgbouncer`` binary these tests
are skipped, unless ``TEST_FAULT_SERVERS=required`` (``.ci/run`` sets it),
where they fail.

``bounced_url`` is this run's PostgreSQL database through the bouncer, with
``pgbouncer=true``, for every PostgreSQL driver the package has (a driver
added to ``bouncer.DRIVERS`` runs every test written on it); ``direct_url`` is the
same database straight on the server, for watching it and for setup.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from bouncer import DRIVERS, REQUIRED, BouncerUnavailable, PgBouncer, through
from conftest import helper_database, urls_for

from aiodatabases import DatabaseURL

DIRECT_URLS = urls_for("postgresql")


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    if not DIRECT_URLS:
        pytest.skip("no PostgreSQL URL configured (the PgBouncer tests need one)")
    server = DatabaseURL(DIRECT_URLS[0])
    try:
        bouncer = PgBouncer(server.hostname or "127.0.0.1", server.port or 5432)
    except BouncerUnavailable as exc:
        if REQUIRED:
            pytest.fail(f"TEST_FAULT_SERVERS=required but {exc}", pytrace=False)
        pytest.skip(f"{exc} (CI requires it)")
    atexit.register(bouncer.stop)  # if the session is killed before its finally
    try:
        started = time.monotonic()
        bouncer.start()
        took = time.monotonic() - started
        print(f"\nprivate PgBouncer on port {bouncer.port}: up in {took:.1f}s")
        yield bouncer
    finally:
        bouncer.stop()
        atexit.unregister(bouncer.stop)


@pytest.fixture
def direct_url(pgbouncer: PgBouncer) -> str:
    """This run's PostgreSQL database, straight on the server."""
    return DIRECT_URLS[0]


@pytest.fixture(params=DRIVERS)
def bounced_url(request: pytest.FixtureRequest, pgbouncer: PgBouncer, direct_url: str) -> str:
    """The same database through the bouncer, with ``pgbouncer=true``."""
    return through(pgbouncer, direct_url, request.param, pgbouncer="true")


@pytest.fixture
async def rows(direct_url: str) -> AsyncIterator[str]:
    """Tables ``bounce_rows`` (1..1200) and ``bounce_written`` (empty); yields the direct URL."""
    async with helper_database(direct_url) as db:
        await db.execute("DROP TABLE IF EXISTS bounce_rows, bounce_written")
        await db.execute("CREATE TABLE bounce_rows (n integer PRIMARY KEY)")
        await db.execute("INSERT INTO bounce_rows SELECT generate_series(1, 1200)")
        await db.execute("CREATE TABLE bounce_written (n integer)")
    yield direct_url
    async with helper_database(direct_url) as db:
        await db.execute("DROP TABLE IF EXISTS bounce_rows, bounce_written")
