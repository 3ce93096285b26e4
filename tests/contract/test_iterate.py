"""iterate(): batches, and statements between them (§2, §5)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc

import pytest
from conftest import dialect_of

from aiodatabases import Database, InterleaveError

_ROWS = 1234  # more than two batches


def _interleaves(url: str) -> bool:
    """MySQL drivers stream a cursor over the connection: nothing else can run on it."""
    return dialect_of(url) != "mysql"


async def _refused_while_streaming(url: str, database: Database, query: str) -> None:
    """On MySQL a statement on the iterating connection fails at once (never hangs)."""
    iteration = database.iterate(query)
    async with contextlib.aclosing(iteration):
        async for _ in iteration:
            with pytest.raises(InterleaveError, match="streaming"):
                await database.fetch_val("SELECT 1")
            break


async def _fill(database: Database, n: int = _ROWS) -> None:
    await database.execute_many(
        "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
        [{"text": f"n{i}", "completed": i % 2 == 0} for i in range(n)],
    )


@pytest.mark.parametrize("force_rollback", [False, True])
async def test_query_inside_iterate_completes(notes: str, force_rollback: bool) -> None:
    async with Database(notes, force_rollback=force_rollback, acquire_timeout=10) as database:
        await _fill(database)
        if force_rollback and not _interleaves(notes):
            # The one shared connection is the iterating one.
            await _refused_while_streaming(notes, database, "SELECT id FROM notes")
            return
        seen = 0
        async for row in database.iterate("SELECT id, text FROM notes ORDER BY id"):
            value = await database.fetch_val(
                "SELECT text FROM notes WHERE id = :id", {"id": row["id"]}
            )
            assert value == row["text"]
            seen += 1
        assert seen == _ROWS


async def test_write_inside_iterate_in_a_transaction(notes: str) -> None:
    async with Database(notes, acquire_timeout=10) as database:
        await _fill(database, 10)
        if not _interleaves(notes):
            async with database.transaction():
                await _refused_while_streaming(notes, database, "SELECT id FROM notes")
            return
        async with database.transaction():
            async for row in database.iterate("SELECT id FROM notes ORDER BY id"):
                await database.execute(
                    "UPDATE notes SET completed = :c WHERE id = :id", {"c": True, "id": row["id"]}
                )
        assert await database.fetch_val("SELECT count(*) FROM notes WHERE completed") == 10


async def test_iterate_inside_connection_block_interleaves(notes: str) -> None:
    async with Database(notes, acquire_timeout=10) as database:
        await _fill(database, 600)
        async with database.connection() as connection:
            if not _interleaves(notes):
                await _refused_while_streaming(notes, database, "SELECT id FROM notes")
                return
            total = 0
            async for row in connection.iterate("SELECT id FROM notes"):
                total += await connection.fetch_val(
                    "SELECT count(*) FROM notes WHERE id = :id", {"id": row["id"]}
                )
            assert total == 600


async def test_other_tasks_run_between_batches_on_shared_connection(notes: str) -> None:
    async with Database(notes, force_rollback=True, acquire_timeout=10) as database:
        await _fill(database)
        iterating = asyncio.Event()
        written = asyncio.Event()
        seen_while_iterating: list[bool] = []

        async def reader() -> None:
            async for _ in database.iterate("SELECT id FROM notes"):
                iterating.set()
                await asyncio.sleep(0)
                seen_while_iterating.append(written.is_set())

        async def writer() -> None:
            await iterating.wait()
            await database.execute("INSERT INTO notes (text) VALUES ('during')")
            written.set()

        await asyncio.gather(reader(), writer())
        assert written.is_set()
        if _interleaves(notes):
            assert any(seen_while_iterating), "iterate locked the connection for the whole loop"
        else:
            # MySQL: the iteration owns the connection; another task waits for it.
            assert not any(seen_while_iterating)


async def test_break_out_of_iterate_leaves_database_usable(notes: str) -> None:
    async with Database(notes, min_size=0, max_size=1, acquire_timeout=5) as database:
        await _fill(database)
        async with contextlib.aclosing(database.iterate("SELECT id FROM notes")) as rows:
            async for _ in rows:
                break
        assert await database.fetch_val("SELECT count(*) FROM notes") == _ROWS


async def test_iterate_with_parameters_and_records(notes: str) -> None:
    async with Database(notes) as database:
        await _fill(database, 20)
        texts = [
            row.text
            async for row in database.iterate(
                "SELECT text FROM notes WHERE completed = :c ORDER BY id", {"c": True}
            )
        ]
        assert texts == [f"n{i}" for i in range(0, 20, 2)]


async def test_iterate_memory_is_bounded(notes: str) -> None:
    async with Database(notes) as database:
        await database.execute_many(
            "INSERT INTO notes (text) VALUES (:text)", [{"text": "x" * 90} for _ in range(20_000)]
        )
        gc.collect()
        tracemalloc.start()
        try:
            count = 0
            async for _ in database.iterate("SELECT id, text FROM notes"):
                count += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 20_000
        # Fetching everything at once would hold 20k rows (several MB); batches hold few.
        assert peak < 2_000_000


async def test_query_inside_iterate_with_a_pool_of_one(notes: str) -> None:
    # Regression: the body's query waited for a second connection that could
    # never come (PoolTimeoutError, or a hang without acquire_timeout).
    async with Database(notes, min_size=0, max_size=1, acquire_timeout=5) as database:
        await _fill(database, 700)
        if not _interleaves(notes):
            # The iteration holds the only connection and cannot share it: the
            # body's query fails at once rather than wait for it.
            await _refused_while_streaming(notes, database, "SELECT id FROM notes")
            return
        count = 0
        async for row in database.iterate("SELECT id FROM notes"):
            assert await database.fetch_val("SELECT :v", {"v": str(row["id"])}) == str(row["id"])
            count += 1
        assert count == 700


async def test_query_inside_iterate_on_sqlite_memory() -> None:
    async with Database("sqlite:///:memory:", acquire_timeout=5) as database:
        await database.execute("CREATE TABLE t (x INTEGER)")
        await database.execute_many("INSERT INTO t VALUES (:x)", [{"x": i} for i in range(600)])
        total = 0
        async for row in database.iterate("SELECT x FROM t"):
            total += await database.fetch_val("SELECT x FROM t WHERE x = :x", {"x": row["x"]})
        assert total == sum(range(600))


def test_break_out_of_iterate_then_disconnect_closes_cleanly(database_url: str) -> None:
    # Regression: the abandoned cursor's connection came back after the pool
    # closed, and its close was left pending on a loop about to close.
    async def main() -> list[int]:
        values = []
        async with Database(database_url) as database:
            async for row in database.iterate("SELECT 1 AS x UNION ALL SELECT 2"):
                values.append(row["x"])
                break
        return values

    assert asyncio.run(main()) == [1]
    gc.collect()
