"""A transaction ends while an iteration inside it still streams (MySQL), and
closing that iteration's cursor is cancelled (§2, §3, §4 of the contract).

Where an open cursor blocks the connection (MySQL), ending the transaction
closes the iteration's cursor first (``_session._Turn``, the ending turn).
The fault is injected into the backend's cursor: its ``close()`` reads the
rest of the result as usual, then raises ``CancelledError`` (a cancellation
arriving at the end of the close). Statements of tasks created inside the
transaction must then still get their turn, and the transaction, which
tells its caller it is rolled back, must no longer own the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import urls_for

from aiodatabases import Database
from aiodatabases.backends import _mysql

# More rows than one batch (ITERATE_BATCH_SIZE): the cursor is mid-result.
_ROWS_SQL = (
    "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 900) SELECT n FROM r"
)


def _cancel_next_stream_close(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next streaming cursor's close() closes, then raises CancelledError."""
    cancelled: list[int] = []
    original = _mysql._MySQLCursor.close

    async def close(self: Any) -> None:
        await original(self)
        if not cancelled:
            cancelled.append(1)
            raise asyncio.CancelledError

    monkeypatch.setattr(_mysql._MySQLCursor, "close", close)
    return cancelled


@pytest.mark.parametrize("url", urls_for("mysql"))
async def test_turn_is_released_when_closing_a_stream_is_cancelled_at_commit(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """d494c1a: the ending turn was never left, so the task created inside the
    transaction waited for it until ConnectionBusyError."""
    cancelled = _cancel_next_stream_close(monkeypatch)
    database = Database(url, acquire_timeout=1)
    async with database, database.connection() as connection:
        transaction = await connection.transaction()
        rows = connection.iterate(_ROWS_SQL)
        assert (await rows.__anext__())[0] == 1
        go = asyncio.Event()

        async def inside() -> int:
            # Created inside the transaction and the iteration: in both scopes.
            await go.wait()
            value: int = await connection.fetch_val("SELECT 2")
            await rows.aclose()
            return value

        child = asyncio.create_task(inside())
        with pytest.raises(asyncio.CancelledError):
            await transaction.commit()
        assert cancelled == [1]
        go.set()
        assert await asyncio.wait_for(child, 5) == 2


@pytest.mark.parametrize("url", urls_for("mysql"))
async def test_transaction_whose_end_was_cancelled_closing_a_stream_owns_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller is told the transaction is over (rolled back); its frame
    must not stay open and own the connection (nor keep its hold).

    Fails on HEAD and on d494c1a: ``_transactions._end`` never pops the
    frame when the ending turn's cursor close fails, so the connection stays
    owned by a transaction nobody can end (ConnectionBusyError for everyone
    else, the driver connection held until disconnect)."""
    cancelled = _cancel_next_stream_close(monkeypatch)
    database = Database(url, acquire_timeout=1)
    async with database, database.connection() as connection:
        transaction = await connection.transaction()
        rows = connection.iterate(_ROWS_SQL)
        assert (await rows.__anext__())[0] == 1
        with pytest.raises(asyncio.CancelledError):
            await transaction.commit()
        assert cancelled == [1]
        assert transaction.state.value == "rolled back"
        await rows.aclose()  # outside the transaction now
        assert await connection.fetch_val("SELECT 3") == 3
