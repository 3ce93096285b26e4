"""One statement on a driver connection (aiodatabases/_statements.py): the
health check's rule, the one place that decides whether a failed statement
runs again."""

from __future__ import annotations

import sqlite3

import asyncpg
import pymysql
import pytest

from aiodatabases._statements import may_run_again
from aiodatabases._url import DatabaseURL
from aiodatabases.backends import create_backend
from aiodatabases.backends.base import Backend


def _backend(url: str) -> Backend:
    return create_backend(DatabaseURL(url), {}, {})


DEAD_BEFORE_SENDING = asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed")


def test_a_connection_found_dead_on_first_use_runs_the_statement_again() -> None:
    backend = _backend("postgresql://localhost/test")
    assert may_run_again(backend, DEAD_BEFORE_SENDING, first_use=True)


def test_a_connection_in_use_before_is_never_retried() -> None:
    # The caller's transaction or session state was on it: running the
    # statement elsewhere would run it outside them.
    backend = _backend("postgresql://localhost/test")
    assert not may_run_again(backend, DEAD_BEFORE_SENDING, first_use=False)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.InterfaceError("another operation is in progress"),
        ConnectionResetError("reset mid-statement"),
    ],
)
def test_a_statement_that_may_have_reached_the_server_is_never_retried(
    error: BaseException,
) -> None:
    backend = _backend("postgresql://localhost/test")
    assert not may_run_again(backend, error, first_use=True)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sqlite:///x.db", sqlite3.OperationalError("database is locked")),
        ("mysql://root@localhost/test", pymysql.err.OperationalError(2013, "Lost connection")),
    ],
)
def test_backends_without_a_stale_signal_never_retry(url: str, error: BaseException) -> None:
    assert not may_run_again(_backend(url), error, first_use=True)
