"""Secrets (issue 15 item 8): a password in the URL never shows.

Not in ``repr()`` of ``Database``, ``DatabaseURL``, ``Connection`` or
``Transaction``; not in the message, ``repr()``, chained cause or context, or
formatted traceback of a failed connect (a wrong password, a server that is
down, a database that does not exist) or of a failed statement; not in any log
record of any logger at DEBUG. Checked for a plain password and for one with
URL escapes, whose decoded form must not show either. ``str(database.url)``
stays the caller's own string, as in ``databases``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import Iterator
from types import SimpleNamespace

import asyncpg
import psycopg
import pytest
from conftest import DATABASE_URLS, postgres_driver_of, scheme_of, urls_for

from aiodatabases import Database, DatabaseURL

# (as written in the URL, every form that must never show)
PASSWORDS = [
    ("s3cr3t-P4ss", ("s3cr3t-P4ss",)),
    ("p%40ss%3Aword", ("p%40ss%3Aword", "p@ss:word")),
]
SERVER_URLS = urls_for("postgresql", "mysql")


class _Everything(logging.Handler):
    """Every record of every logger, as text: the message and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[list[str]]:
    root = logging.getLogger()
    handler, level = _Everything(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.texts
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def exception_texts(exc: BaseException) -> list[str]:
    """What a program could show of ``exc``: its text, repr, args and whole chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += [repr(value) for value in vars(current).values()]
        current = current.__cause__ or current.__context__
    return texts


def assert_hidden(texts: list[str], secrets: tuple[str, ...]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{secret!r} shown in: {text[:2000]}"


def with_password(url: str, password: str) -> str:
    parts = DatabaseURL(url)
    user = parts.username or ("postgres" if parts.dialect == "postgresql" else "root")
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return str(parts.replace(netloc=netloc))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("password", "secrets"), PASSWORDS, ids=["plain", "escaped"])
@pytest.mark.parametrize("url", DATABASE_URLS, ids=scheme_of)
def test_reprs_hide_the_password(url: str, password: str, secrets: tuple[str, ...]) -> None:
    parts = DatabaseURL(url)
    written = f"{parts.scheme}://user:{password}@db.example:5432/app?sslmode=require"
    shown = DatabaseURL(written)
    assert_hidden([repr(shown), shown.obscure_password], secrets)
    assert str(shown) == written  # the caller's own string, as in databases
    assert shown.password == secrets[-1]


async def _connect_and_fail(db: Database) -> BaseException:
    try:
        await asyncio.wait_for(db.connect(), 30)
    except Exception as exc:
        return exc
    finally:
        await db.disconnect()
    pytest.fail("connect() succeeded")


@pytest.mark.parametrize(("password", "secrets"), PASSWORDS, ids=["plain", "escaped"])
@pytest.mark.parametrize("url", SERVER_URLS, ids=scheme_of)
async def test_a_connect_to_a_closed_port_hides_the_password(
    url: str, password: str, secrets: tuple[str, ...], logs: list[str]
) -> None:
    target = str(DatabaseURL(with_password(url, password)).replace(port=closed_port()))
    db = Database(target)
    texts = [repr(db), repr(db.url), *exception_texts(await _connect_and_fail(db))]
    assert str(db.url) == target
    assert_hidden(texts + logs, secrets)


@pytest.mark.parametrize(("password", "secrets"), PASSWORDS, ids=["plain", "escaped"])
@pytest.mark.parametrize("url", urls_for("mysql"), ids=scheme_of)
async def test_a_wrong_password_hides_the_password(
    url: str, password: str, secrets: tuple[str, ...], logs: list[str]
) -> None:
    # MySQL checks the password (the test server's root has none, so any is wrong).
    db = Database(with_password(url, password))
    texts = exception_texts(await _connect_and_fail(db))
    assert "Access denied" in texts[0]
    assert_hidden(texts + logs, secrets)


@pytest.mark.parametrize(("password", "secrets"), PASSWORDS, ids=["plain", "escaped"])
@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_a_missing_database_hides_the_password(
    url: str, password: str, secrets: tuple[str, ...], logs: list[str]
) -> None:
    # The test server trusts every password: a refused connect is a missing database.
    db = Database(str(DatabaseURL(with_password(url, password)).replace(database="no_such_db")))
    texts = exception_texts(await _connect_and_fail(db))
    assert "no_such_db" in texts[0]
    assert_hidden(texts + logs, secrets)


@pytest.mark.parametrize(("password", "secrets"), PASSWORDS, ids=["plain", "escaped"])
@pytest.mark.parametrize("url", urls_for("postgresql"), ids=scheme_of)
async def test_connected_objects_and_failed_statements_hide_the_password(
    url: str, password: str, secrets: tuple[str, ...], logs: list[str]
) -> None:
    target = with_password(url, password)
    texts: list[str] = []
    errors = SimpleNamespace(
        UndefinedTable=asyncpg.UndefinedTableError, DataError=asyncpg.DataError
    )
    if postgres_driver_of(url) == "psycopg":
        errors = SimpleNamespace(
            UndefinedTable=psycopg.errors.UndefinedTable, DataError=psycopg.DataError
        )
    async with Database(target) as db:
        texts += [repr(db), repr(db.url)]
        async with db.connection() as connection:
            texts.append(repr(connection))
            async with connection.transaction() as transaction:
                texts.append(repr(transaction))
            with pytest.raises(errors.UndefinedTable) as failed:
                await connection.execute("SELECT no_such_column FROM no_such_table")
            texts += exception_texts(failed.value)
        with pytest.raises(errors.DataError) as failed:
            await db.fetch_one("SELECT :v::int", {"v": "not a number"})
        texts += exception_texts(failed.value)
        assert str(db.url) == target
    assert_hidden(texts + logs, secrets)
