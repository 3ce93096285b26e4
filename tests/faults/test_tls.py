"""Issue 15 item 11: TLS to PostgreSQL with a certificate this test makes.

The private server serves TLS (a CA and a server certificate for
``localhost``, made with ``openssl``) for these tests only. ``ssl=require``
is encrypted, as the server itself reports (``pg_stat_ssl``); ``verify-full``
with the CA accepts the right host name and refuses a wrong one clearly.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from private_servers import PrivatePostgres, make_certificates

from aiodatabases import Database

ENCRYPTED = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
BOUND = 60


@pytest.fixture
async def tls_postgres(private_postgres: PrivatePostgres) -> AsyncIterator[dict[str, Path]]:
    """The private server with TLS on (plain connections still allowed); off afterwards."""
    certificates = make_certificates(private_postgres.root / "tls", ["localhost"], "postgres")
    await private_postgres.enable_tls(certificates)
    try:
        yield certificates
    finally:
        await private_postgres.disable_tls()


async def test_ssl_require_is_encrypted(
    private_postgres: PrivatePostgres, tls_postgres: dict[str, Path]
) -> None:
    async with Database(private_postgres.url(), ssl="require") as db:
        assert await db.fetch_val(ENCRYPTED) is True
    async with Database(private_postgres.url(), ssl="disable") as db:
        assert await db.fetch_val(ENCRYPTED) is False  # the check can tell


async def test_verify_full_accepts_the_right_host_name(
    private_postgres: PrivatePostgres,
    tls_postgres: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_postgres["ca"]))  # libpq's way, as asyncpg reads it
    url = private_postgres.url().replace("127.0.0.1", "localhost")
    async with Database(url, ssl="verify-full") as db:
        assert await db.fetch_val(ENCRYPTED) is True


async def test_verify_full_refuses_a_wrong_host_name(
    private_postgres: PrivatePostgres,
    tls_postgres: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The certificate is for localhost; the URL says 127.0.0.1.
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_postgres["ca"]))
    database = Database(private_postgres.url(), ssl="verify-full")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch.*127\.0\.0\.1"):
        await asyncio.wait_for(database.connect(), BOUND)


async def test_an_ssl_context_with_the_ca_checks_the_host_name_too(
    private_postgres: PrivatePostgres, tls_postgres: dict[str, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(tls_postgres["ca"]))
    url = private_postgres.url().replace("127.0.0.1", "localhost")
    async with Database(url, ssl=context) as db:
        assert await db.fetch_val(ENCRYPTED) is True
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await asyncio.wait_for(Database(private_postgres.url(), ssl=context).connect(), BOUND)


# --- psycopg (postgresql+psycopg://): libpq's own TLS settings --------------------------


def _psycopg_url(private_postgres: PrivatePostgres, host: str = "127.0.0.1") -> str:
    return private_postgres.url(scheme="postgresql+psycopg").replace("127.0.0.1", host)


async def test_psycopg_ssl_require_is_encrypted(
    private_postgres: PrivatePostgres, tls_postgres: dict[str, Path]
) -> None:
    async with Database(_psycopg_url(private_postgres), ssl="require") as db:
        assert await db.fetch_val(ENCRYPTED) is True
    async with Database(_psycopg_url(private_postgres), sslmode="disable") as db:
        assert await db.fetch_val(ENCRYPTED) is False


async def test_psycopg_verify_full_checks_the_host_name(
    private_postgres: PrivatePostgres, tls_postgres: dict[str, Path]
) -> None:
    ca = str(tls_postgres["ca"])
    url = _psycopg_url(private_postgres, "localhost")
    async with Database(url, sslmode="verify-full", sslrootcert=ca) as db:
        assert await db.fetch_val(ENCRYPTED) is True
    # The certificate is for localhost; the URL says 127.0.0.1: libpq's refusal.
    database = Database(_psycopg_url(private_postgres), sslmode="verify-full", sslrootcert=ca)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        await asyncio.wait_for(database.connect(), BOUND)
