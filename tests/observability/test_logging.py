"""Logging (issue 16 item 1): statements at DEBUG, slow ones at WARNING, pool events."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import dialect_of, sleep_query

from aiodatabases import ConfigurationError, Database, PoolTimeoutError, StatementEvent

STATEMENTS = "aiodatabases.statements"
POOL = "aiodatabases.pool"


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


async def test_each_statement_is_logged_at_debug_without_its_values(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(notes) as database:
            await database.execute(
                "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
                {"text": "private-value", "completed": True},
            )
            await database.fetch_all("SELECT text FROM notes")
            async with database.transaction():
                await database.fetch_val("SELECT count(*) FROM notes")
    logged = _messages(caplog, STATEMENTS)
    assert len(logged) == 4, logged
    insert, fetch, count, transaction = logged
    assert insert.startswith("execute in ")
    assert "INSERT INTO notes" in insert
    assert fetch.startswith("fetch_all in ")
    assert ", 1 row(s): SELECT text FROM notes" in fetch
    assert count.startswith("fetch_one in ")
    assert transaction.startswith("transaction commit after ")
    assert not any("private-value" in message for message in logged)
    # Each record carries the event for structured handlers.
    record = next(r for r in caplog.records if r.name == STATEMENTS)
    event = record.aiodatabases  # type: ignore[attr-defined]
    assert isinstance(event, StatementEvent)
    assert event.operation == "execute"
    assert record.levelno == logging.DEBUG


async def test_values_are_logged_only_when_asked(
    notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(notes, log_values=True) as database:
            await database.execute(
                "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
                {"text": "shown-value", "completed": True},
            )
            await database.execute_many(
                "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
                [{"text": "x" * 100, "completed": True}] * 50,
            )
    insert, bulk = _messages(caplog, STATEMENTS)
    assert "values: " in insert
    assert "shown-value" in insert
    # A bulk statement's values are cut short.
    assert "more characters)" in bulk
    assert len(bulk) < 3000


async def test_a_failed_statement_is_logged_with_its_error(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(database_url) as database:
            with pytest.raises(Exception, match="no_such_table"):
                await database.fetch_all("SELECT * FROM no_such_table")
    [message] = _messages(caplog, STATEMENTS)
    assert message.startswith("fetch_all in ")
    assert " failed: " in message
    # The error's class and code; not its message (drivers quote values there).
    assert "does not exist" not in message
    assert "doesn't exist" not in message
    assert "no such table" not in message


async def test_a_failed_statements_message_is_logged_with_log_values(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(database_url, log_values=True) as database:
            with pytest.raises(Exception, match="no_such_table") as raised:
                await database.fetch_all("SELECT * FROM no_such_table")
    [message] = _messages(caplog, STATEMENTS)
    assert f"failed: {type(raised.value).__name__}" in message
    assert str(raised.value) in message
    if dialect_of(database_url) == "postgresql":
        assert "(42P01)" in message


async def test_a_slow_statement_is_a_warning_whatever_the_level(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiodatabases"):
        async with Database(database_url, slow_statement_threshold=0.1) as database:
            await database.fetch_val("SELECT 1")
            await database.fetch_val(sleep_query(database_url, 0.3))
    [record] = [r for r in caplog.records if r.name == STATEMENTS]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("slow statement (slow_statement_threshold=0.1s): fetch_one in ")
    assert sleep_query(database_url, 0.3) in message


async def test_a_slow_loop_body_is_not_a_slow_iteration(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An iteration's duration is its time in the database, not the loop body's."""
    with caplog.at_level(logging.WARNING, logger="aiodatabases"):
        async with Database(database_url, slow_statement_threshold=0.2) as database:
            async for _ in database.iterate("SELECT 1 UNION ALL SELECT 2"):
                await asyncio.sleep(0.3)
            async for _ in database.iterate(sleep_query(database_url, 0.4)):
                pass
    [slow] = _messages(caplog, STATEMENTS)
    assert slow.startswith("slow statement (slow_statement_threshold=0.2s): iterate in ")


async def test_nothing_is_logged_and_nothing_observed_when_debug_is_off(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiodatabases"):
        async with Database(database_url) as database:
            assert database._observers.hooks() == ()
            await database.fetch_val("SELECT 1")
    assert _messages(caplog, STATEMENTS) == []


async def test_pool_events_are_logged_without_the_password(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = database_url
    secret = "not-a-real-secret"
    if dialect_of(url) == "postgresql":
        # Trust authentication on the test server: a password is accepted, unused.
        url = url.replace("postgres@", f"postgres:{secret}@")
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(url, min_size=1, max_size=1, acquire_timeout=0.2) as database:
            async with database.connection() as connection:
                await connection.fetch_val("SELECT 1")
                # Another task: the pool's one connection is held here.
                with pytest.raises(PoolTimeoutError):
                    await asyncio.create_task(database.fetch_val("SELECT 1"))
            async with database.connection() as connection:
                with pytest.raises(Exception, match="no_such"):
                    await connection.fetch_all("SELECT * FROM no_such")
    pool = _messages(caplog, POOL)
    assert any(m.startswith("connected to ") and "pool open" in m for m in pool), pool
    assert any(m.startswith("opened a connection to ") for m in pool), pool
    assert any(m.startswith("acquiring a connection to ") and "timed out" in m for m in pool)
    assert any(m.startswith("disconnected from ") and "pool closed" in m for m in pool), pool
    levels = {r.getMessage().split(" ")[0]: r.levelno for r in caplog.records if r.name == POOL}
    assert levels["connected"] == logging.INFO
    assert levels["disconnected"] == logging.INFO
    assert levels["opened"] == logging.DEBUG
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in everything


async def test_a_discarded_connection_is_logged_with_why(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        async with Database(database_url, pool_recycle=0.05) as database:
            await database.fetch_val("SELECT 1")
            await asyncio.sleep(0.1)
            await database.fetch_val("SELECT 1")
    discarded = [m for m in _messages(caplog, POOL) if m.startswith("discarding a connection")]
    assert any("pool_recycle" in m for m in discarded), discarded


def test_force_rollback_connect_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        async with Database("sqlite:///:memory:", force_rollback=True) as database:
            await database.fetch_val("SELECT 1")

    with caplog.at_level(logging.INFO, logger="aiodatabases"):
        asyncio.run(run())
    pool = _messages(caplog, POOL)
    assert any("with force_rollback" in m for m in pool), pool


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"log_values": "maybe"}, "boolean"),
        ({"slow_statement_threshold": -1}, "positive"),
        ({"slow_statement_threshold": "soon"}, "float"),
    ],
)
def test_bad_log_options_are_refused(options: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Database("sqlite:///:memory:", **options)


def test_log_options_from_the_url() -> None:
    database = Database("sqlite:///:memory:?log_values=true&slow_statement_threshold=0.5")
    assert database._settings.log_values is True
    assert database._settings.slow_statement_threshold == 0.5
    off = Database("sqlite:///:memory:?slow_statement_threshold=0")
    assert off._settings.slow_statement_threshold is None
