"""PostgreSQL iterate() outside a transaction, on asyncpg and on psycopg (one
design): its cursor's own transaction (BEGIN; DECLARE ... WITH HOLD),
committed before any other statement, ended by CLOSE; COMMIT.

Whatever happens to the iteration (cancelled at any step, failed, abandoned,
interleaved with other cursors), the connection's user must never find
itself inside a transaction it did not begin (§2, §4), and an iteration must
not fail because of another cursor's statement.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import pytest
from conftest import postgres_driver_of, scheme_of, until, urls_for

from aiodatabases import Connection, Database

URLS = urls_for("postgresql")

pytestmark = [
    pytest.mark.skipif(not URLS, reason="no PostgreSQL URL configured"),
    pytest.mark.parametrize("url", URLS, ids=scheme_of),
]


def _in_transaction(connection: Connection) -> bool:
    raw = connection.raw_connection
    if isinstance(raw, psycopg.AsyncConnection):
        return bool(raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
    return bool(raw.is_in_transaction())


def _patch_execute(
    monkeypatch: pytest.MonkeyPatch, connection: Connection | Database, wrap: Any
) -> None:
    """Replace the driver's statement call (asyncpg's Connection.execute,
    psycopg's AsyncCursor.execute) with ``wrap(original)``."""
    url = str(connection.url) if isinstance(connection, Database) else None
    if url is None:
        psycopg_raw = isinstance(connection.raw_connection, psycopg.AsyncConnection)
    else:
        psycopg_raw = postgres_driver_of(url) == "psycopg"
    target: Any = psycopg.AsyncCursor if psycopg_raw else asyncpg.connection.Connection
    monkeypatch.setattr(target, "execute", wrap(target.execute))


@pytest.fixture
async def tables(url: str) -> AsyncIterator[None]:
    async with Database(url) as db:
        await db.execute("DROP TABLE IF EXISTS review_rows")
        await db.execute("DROP TABLE IF EXISTS review_written")
        await db.execute("CREATE TABLE review_rows (n integer PRIMARY KEY)")
        await db.execute("INSERT INTO review_rows SELECT generate_series(1, 1200)")
        await db.execute("CREATE TABLE review_written (n integer)")
    yield
    async with Database(url) as db:
        await db.execute("DROP TABLE review_rows")
        await db.execute("DROP TABLE review_written")


async def _written(url: str) -> list[int]:
    """What another connection sees committed in review_written."""
    async with Database(url) as other:
        rows = await other.fetch_all("SELECT n FROM review_written ORDER BY n")
    return [row["n"] for row in rows]


_CURSORS = "SELECT count(*) FROM pg_cursors WHERE name LIKE 'aiodatabases%'"


async def _clean(connection: Connection) -> None:
    """Not in a transaction, no cursor left over (once a queued close ran), usable."""
    assert not _in_transaction(connection)
    await until(0, lambda: connection.fetch_val(_CURSORS), within=5)
    assert not _in_transaction(connection)
    assert await connection.fetch_val("SELECT 1") == 1


async def _slow_reply_to(
    monkeypatch: pytest.MonkeyPatch, statement: str, source: Database | Connection
) -> asyncio.Event:
    """The server's reply to ``statement`` crosses a slow network: the statement
    has run on the server when its caller is still waiting for the reply."""
    ran = asyncio.Event()

    def wrap(original: Any) -> Any:
        async def execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            result = await original(self, query, *args, **kwargs)
            if query.startswith(statement):
                ran.set()
                await asyncio.sleep(1)
            return result

        return execute

    _patch_execute(monkeypatch, source, wrap)
    return ran


async def _cancel_opening(
    monkeypatch: pytest.MonkeyPatch, statement: str, source: Database | Connection
) -> None:
    """Cancel an iteration of ``source`` once ``statement`` of its opening ran on the server."""
    ran = await _slow_reply_to(monkeypatch, statement, source)

    async def first_row() -> Any:
        async for row in source.iterate("SELECT n FROM review_rows"):
            return row
        return None

    task = asyncio.create_task(first_row())
    await ran.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()


# --- cancelled while the iteration opens its transaction -------------------------------------


async def test_cancelled_while_declare_waits_for_a_lock_leaves_no_transaction(
    url: str, tables: None
) -> None:
    # DECLARE waits for a lock another session holds; a timeout cancels it.
    async with Database(url, max_size=1) as db, Database(url) as other:
        async with other.connection() as locker, locker.transaction(force_rollback=True):
            await locker.execute("LOCK TABLE review_rows IN ACCESS EXCLUSIVE MODE")
            async with db.connection() as connection:

                async def first_row() -> Any:
                    async for row in connection.iterate("SELECT n FROM review_rows"):
                        return row
                    return None

                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(first_row(), 0.5)
                # The task goes on with its connection.
                await connection.execute("INSERT INTO review_written VALUES (1)")
                assert not _in_transaction(connection)
        assert await _written(url) == [1]


async def test_cancelled_after_begin_ran_leaves_no_transaction(
    url: str, tables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The BEGIN has run on the server when the caller's timeout cancels it.
    async with Database(url, max_size=1) as db:
        async with db.connection() as connection:
            await _cancel_opening(monkeypatch, "BEGIN", connection)
            # Committed at once, as any statement outside a transaction.
            await connection.execute("INSERT INTO review_written VALUES (1)")
            assert await _written(url) == [1]
            await _clean(connection)
        assert await _written(url) == [1]


async def test_pool_is_full_and_clean_after_an_iteration_cancelled_while_opening(
    url: str, tables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Database(url, max_size=1) as db:
        await _cancel_opening(monkeypatch, "DECLARE", db)
        await db.execute("INSERT INTO review_written VALUES (1)")
        assert await _written(url) == [1]
        async with db.connection() as connection:
            await _clean(connection)


# --- cancelled mid-stream, at the commit of the hold, at the close ---------------------------


async def test_cancelled_during_a_fetch_inside_a_connection_block(url: str, tables: None) -> None:
    slow = "SELECT n, pg_sleep(0.002) FROM generate_series(1, 2000) AS n"
    async with Database(url, max_size=1) as db, db.connection() as connection:
        seen: list[int] = []

        async def stream() -> None:
            async for row in connection.iterate(slow):
                seen.append(row["n"])

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream(), 1.5)  # inside the second FETCH
        assert seen == list(range(1, 501))
        await connection.execute("INSERT INTO review_written VALUES (1)")
        await _clean(connection)
    assert await _written(url) == [1]


async def test_body_statement_cancelled_while_the_hold_commits(url: str, tables: None) -> None:
    # The body's first statement commits the cursor's transaction, which runs
    # the rest of the query on the server (slow); a timeout cancels it.
    slow = "SELECT n, pg_sleep(0.002) FROM generate_series(1, 2000) AS n"
    async with Database(url, max_size=1) as db, db.connection() as connection:
        seen: list[int] = []
        errors: list[BaseException] = []
        try:
            async for row in connection.iterate(slow):
                seen.append(row["n"])
                if row["n"] == 1:
                    try:
                        await asyncio.wait_for(connection.fetch_val("SELECT 1"), 0.3)
                    except TimeoutError as exc:
                        errors.append(exc)
        except Exception as exc:  # the iteration may fail: its rest was never kept
            errors.append(exc)
        await connection.execute("INSERT INTO review_written VALUES (1)")
        await _clean(connection)
        # Either every row, or a clear error for the iteration: never a silent end.
        assert seen == list(range(1, 2001)) or len(errors) == 2, (seen[-1:], errors)
    assert await _written(url) == [1]


async def test_iteration_closed_by_a_cancelled_caller(url: str, tables: None) -> None:
    async with Database(url, max_size=1) as db, db.connection() as connection:
        iterator = connection.iterate("SELECT n FROM review_rows ORDER BY n").__aiter__()
        assert (await iterator.__anext__())["n"] == 1
        close = asyncio.create_task(iterator.aclose())  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        close.cancel()
        await asyncio.gather(close, return_exceptions=True)
        await connection.execute("INSERT INTO review_written VALUES (1)")
        await _clean(connection)
    assert await _written(url) == [1]


# --- another cursor's statements inside the cursor's own transaction ---------------------------


async def test_closing_a_cursor_its_transaction_ended_does_not_fail_a_later_iteration(
    url: str, tables: None
) -> None:
    # An iteration left inside a transaction is closed late (its generator is
    # still referenced): its cursor ended with the transaction, so its CLOSE
    # fails. It must not fail the iteration streaming at that moment.
    async with Database(url, max_size=1) as db, db.connection() as connection:
        async with connection.transaction():
            rows = connection.iterate("SELECT n FROM review_rows ORDER BY n")
            async for _ in rows:
                break
        rows = connection.iterate("SELECT n FROM review_rows ORDER BY n")  # the old one closes
        seen = [row["n"] async for row in rows]
        assert seen == list(range(1, 1201))
        await _clean(connection)


async def test_another_tasks_failing_iteration_does_not_fail_this_one(
    url: str, tables: None
) -> None:
    # Two tasks iterate on one shared connection; the second's query fails on
    # the server mid-stream (its FETCH), inside the cursor transaction of its own.
    failing = (
        "SELECT n, 1 / (600 - n) AS x, pg_sleep(CASE WHEN n > 500 THEN 0.002 ELSE 0 END)"
        " FROM generate_series(1, 1000) AS n"
    )
    async with Database(url, max_size=1) as db, db.connection() as connection:
        first_batch = asyncio.Event()

        async def good() -> list[int]:
            seen = []
            async for row in connection.iterate("SELECT n FROM review_rows ORDER BY n"):
                seen.append(row["n"])
                if row["n"] == 500:
                    first_batch.set()
                    # The next FETCH waits for the other's, which then fails.
                    await asyncio.sleep(0.1)
            return seen

        async def bad() -> None:
            await first_batch.wait()
            async for _ in connection.iterate(failing):
                pass

        good_rows, bad_error = await asyncio.wait_for(
            asyncio.gather(good(), bad(), return_exceptions=True), 30
        )
        assert isinstance(
            bad_error, (asyncpg.exceptions.DivisionByZeroError, psycopg.errors.DivisionByZero)
        ), bad_error
        assert good_rows == list(range(1, 1201)), good_rows
        await _clean(connection)


async def test_body_waits_for_another_connection_that_alters_the_table(
    url: str, tables: None
) -> None:
    # The body waits for work done on another connection (another task's, or
    # another database's). While the cursor's transaction is open it holds a
    # lock on the table: DDL there waits for the iteration, which waits for it.
    async with Database(url) as db, Database(url) as other:

        async def run() -> list[int]:
            seen = []
            async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
                seen.append(row["n"])
                if row["n"] == 1:
                    await other.execute("ALTER TABLE review_written ADD COLUMN m integer")
                    await other.execute("TRUNCATE review_rows")
            return seen

        assert await asyncio.wait_for(run(), 10) == list(range(1, 1201))


# --- what holds --------------------------------------------------------------------------------


async def test_connection_terminated_mid_iteration(url: str, tables: None) -> None:
    async with Database(url, max_size=2) as db, Database(url) as admin:

        async def stream() -> None:
            async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
                if row["n"] == 1:
                    pid = await db.fetch_val("SELECT pg_backend_pid()")
                    await admin.execute("SELECT pg_terminate_backend(:p)", {"p": pid})

        # asyncpg's error for a connection killed while idle may be
        # InternalClientError ("cannot switch to state"): any error but ours.
        with pytest.raises(Exception) as caught:  # noqa: PT011
            await stream()
        assert not isinstance(caught.value, AssertionError)
        for _ in range(3):
            async with db.connection() as connection:
                await _clean(connection)
        assert db._runtime is not None
        assert db._runtime.pool._size <= 2


async def test_abandoned_iteration_is_collected_and_the_connection_reused(
    url: str, tables: None
) -> None:
    async with Database(url, max_size=1) as db:

        async def abandon() -> None:
            iterator = db.iterate("SELECT n FROM review_rows ORDER BY n").__aiter__()
            assert (await iterator.__anext__())["n"] == 1

        await abandon()
        gc.collect()
        await db.execute("INSERT INTO review_written VALUES (1)")
        assert await _written(url) == [1]
        async with db.connection() as connection:
            await _clean(connection)


async def test_nested_iterations_with_body_statements(url: str, tables: None) -> None:
    async with Database(url, max_size=1) as db:
        pairs = 0
        async for outer in db.iterate("SELECT n FROM review_rows WHERE n <= 3 ORDER BY n"):
            async for inner in db.iterate("SELECT n FROM review_rows ORDER BY n"):
                if inner["n"] % 400 == 0:
                    await db.execute_many(
                        "INSERT INTO review_written VALUES (:n)",
                        [{"n": outer["n"] * 10000 + inner["n"]}, {"n": -1}],
                    )
                pairs += 1
        assert pairs == 3 * 1200
        written = await _written(url)
        assert len(written) == 18
        async with db.connection() as connection:
            await _clean(connection)


async def test_body_raising_and_rolled_back_transaction_in_the_body(url: str, tables: None) -> None:
    async with Database(url, max_size=1) as db, db.connection() as connection:

        async def stream() -> None:
            async for row in connection.iterate("SELECT n FROM review_rows ORDER BY n"):
                if row["n"] == 3:
                    async with connection.transaction(force_rollback=True):
                        await connection.execute("INSERT INTO review_written VALUES (3)")
                if row["n"] == 700:
                    raise LookupError

        with pytest.raises(LookupError):
            await stream()
        await _clean(connection)
    assert await _written(url) == []


async def test_sqlalchemy_core_query_iterates(url: str, tables: None) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    table = sqlalchemy.table("review_rows", sqlalchemy.column("n", sqlalchemy.Integer))
    query = sqlalchemy.select(table.c.n).where(table.c.n > 100).order_by(table.c.n)
    async with Database(url, max_size=1) as db:
        seen = [row[table.c.n] async for row in db.iterate(query)]
        assert seen == list(range(101, 1201))
        async with db.connection() as connection:
            await _clean(connection)


async def test_another_tasks_transaction_while_a_task_iterates(url: str, tables: None) -> None:
    async with Database(url, max_size=1) as db, db.connection() as connection:
        in_transaction = asyncio.Event()

        async def writer() -> None:
            async with connection.transaction():
                await connection.execute("INSERT INTO review_written VALUES (1)")
                in_transaction.set()
                await asyncio.sleep(0.2)  # the reader's next FETCH waits meanwhile
                await connection.execute("DELETE FROM review_rows WHERE n > 1000")

        async def reader() -> list[int]:
            seen = []
            async for row in connection.iterate("SELECT n FROM review_rows ORDER BY n"):
                seen.append(row["n"])
                if row["n"] == 1:
                    tasks.append(asyncio.create_task(writer()))
                    await in_transaction.wait()
            return seen

        tasks: list[asyncio.Task[None]] = []
        seen = await asyncio.wait_for(reader(), 10)
        await asyncio.gather(*tasks)
        assert seen == list(range(1, 1201))  # the rows of the query's start
        await _clean(connection)
    assert await _written(url) == [1]


async def test_force_rollback_and_isolated_iterate(url: str, tables: None) -> None:
    async with Database(url, force_rollback=True) as db:
        async with db.isolated():
            async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
                if row["n"] % 500 == 0:
                    await db.execute("INSERT INTO review_written VALUES (:n)", {"n": row["n"]})
            assert await db.fetch_val("SELECT count(*) FROM review_written") == 2
        assert await db.fetch_val("SELECT count(*) FROM review_written") == 0
        async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
            if row["n"] == 2:
                break
        assert await db.fetch_val("SELECT 1") == 1
    assert await _written(url) == []


async def test_idle_body_with_idle_in_transaction_timeout(url: str, tables: None) -> None:
    # Servers often end sessions idle in a transaction; an iteration whose body
    # does slow work (no statement) used to hold no transaction.
    settings = {"idle_in_transaction_session_timeout": "300"}
    async with Database(url, max_size=1, server_settings=settings) as db:
        seen = []
        async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
            seen.append(row["n"])
            if row["n"] == 1:
                await asyncio.sleep(0.6)  # an HTTP call per row, say
        assert seen == list(range(1, 1201))


async def test_rest_of_the_query_timing_out_as_it_is_kept_fails_the_iteration(
    url: str, tables: None
) -> None:
    # The body's statement first commits the cursor's transaction, which runs
    # the rest of the query (3 s); command_timeout (1 s) stops that COMMIT. It
    # is the iteration's query that timed out: the iteration fails with it,
    # not the body's one-row statement (as for a query failing there).
    slow_rest = (
        "SELECT n, pg_sleep(CASE WHEN n > 500 THEN 0.002 ELSE 0 END)"
        " FROM generate_series(1, 2000) AS n"
    )
    async with Database(url, max_size=1, command_timeout=1) as db, db.connection() as connection:
        seen: list[int] = []

        async def stream() -> None:
            async for row in connection.iterate(slow_rest):
                seen.append(row["n"])
                if row["n"] == 1:
                    assert await connection.fetch_val("SELECT 1") == 1

        with pytest.raises(TimeoutError):
            await stream()
        if isinstance(connection.raw_connection, psycopg.AsyncConnection):
            # psycopg's connection is closed at the timeout: the body's statement
            # cannot run and raises the COMMIT's CommandTimeoutError; the next
            # connection is clean.
            assert seen == [1]
            assert connection.raw_connection.closed
            return
        assert seen == list(range(1, 501))
        await _clean(connection)
    async with Database(url, max_size=1) as db, db.connection() as connection:
        await _clean(connection)


async def test_next_user_of_the_pooled_connection_after_break(url: str, tables: None) -> None:
    async with Database(url, max_size=1) as db:
        for body_statement in (False, True):
            async for row in db.iterate("SELECT n FROM review_rows ORDER BY n"):
                if body_statement:
                    await db.execute("INSERT INTO review_written VALUES (:n)", {"n": row["n"]})
                break
            await until(0, lambda: db.fetch_val(_CURSORS), within=5)  # its close is queued
            async with db.connection() as connection:
                assert not _in_transaction(connection)
    assert await _written(url) == [1]


async def test_a_close_that_times_out_leaves_no_transaction(
    url: str, tables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CLOSE; COMMIT stopped by a timeout (command_timeout): the next user of
    # the connection must not find itself inside the cursor's transaction.

    def wrap(original: Any) -> Any:
        async def execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if query.startswith("CLOSE") and query.endswith("COMMIT"):
                raise asyncio.TimeoutError
            return await original(self, query, *args, **kwargs)

        return execute

    async with Database(url, max_size=1) as db, db.connection() as connection:
        _patch_execute(monkeypatch, connection, wrap)
        iteration = connection.iterate("SELECT n FROM review_rows ORDER BY n")
        async for _ in iteration:
            break
        await iteration.aclose()  # type: ignore[attr-defined]
        monkeypatch.undo()
        await _clean(connection)
