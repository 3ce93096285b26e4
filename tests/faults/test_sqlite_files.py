"""SQLite faults (issue 15 item 10): two Databases writing one file, a file that cannot exist.

Two ``Database`` objects (two pools) on one file take turns at SQLite's write
lock: a write waits up to the busy timeout (the ``timeout`` option), then
fails with ``sqlite3.OperationalError`` "database is locked", explained; every
write that returned is in the file, the one that failed left nothing. A file
in a directory that does not exist fails ``connect()`` (or the first
statement, with ``min_size=0``) with an error naming the path.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from aiodatabases import Database

WRITERS = 8
WRITES_EACH = 15


def _url(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


async def _make_table(path: Path) -> None:
    async with Database(_url(path)) as db:
        await db.execute("CREATE TABLE t (writer TEXT, n INTEGER, PRIMARY KEY (writer, n))")


def _rows_in_file(path: Path) -> set[tuple[str, int]]:
    # Read with sqlite3 itself: what is in the file, not what a pool remembers.
    connection = sqlite3.connect(path)
    try:
        return {(str(w), int(n)) for w, n in connection.execute("SELECT writer, n FROM t")}
    finally:
        connection.close()


async def _write_all(db: Database, name: str, seed: int) -> set[tuple[str, int]]:
    """``WRITERS`` tasks each writing ``WRITES_EACH`` rows, plainly or in a transaction."""
    rng = random.Random(seed)
    ways = ("plain", "transaction", "immediate")
    plans = [[rng.choice(ways) for _ in range(WRITES_EACH)] for _ in range(WRITERS)]

    async def writer(index: int, plan: list[str]) -> set[tuple[str, int]]:
        written = set()
        for step, how in enumerate(plan):
            key = (f"{name}-{index}", step)
            sql, values = "INSERT INTO t VALUES (:w, :n)", {"w": key[0], "n": key[1]}
            if how == "plain":
                await db.execute(sql, values)
            else:
                isolation = "immediate" if how == "immediate" else None
                async with db.transaction(isolation=isolation):
                    await db.execute(sql, values)
                    await db.fetch_val("SELECT count(*) FROM t")
            written.add(key)
        return written

    results = await asyncio.gather(*(writer(i, plan) for i, plan in enumerate(plans)))
    return set().union(*results)


async def test_two_databases_in_one_loop_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    await _make_table(path)
    # A generous busy timeout: every write waits for the other pool's lock.
    async with Database(_url(path, "timeout=30")) as a, Database(_url(path, "timeout=30")) as b:
        written = await asyncio.wait_for(
            asyncio.gather(_write_all(a, "a", 1), _write_all(b, "b", 2)), 60
        )
    expected = written[0] | written[1]
    assert len(expected) == 2 * WRITERS * WRITES_EACH
    assert _rows_in_file(path) == expected


def test_two_databases_in_two_threads_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    asyncio.run(_make_table(path))
    results: dict[str, set[tuple[str, int]]] = {}
    errors: list[BaseException] = []

    def run(name: str, seed: int) -> None:
        async def main() -> None:
            async with Database(_url(path, "timeout=30")) as db:
                results[name] = await asyncio.wait_for(_write_all(db, name, seed), 60)

        try:
            asyncio.run(main())  # each thread its own loop and its own pool
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(name, seed)) for name, seed in (("x", 3), ("y", 4))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    assert errors == []
    assert _rows_in_file(path) == results["x"] | results["y"]
    assert len(results["x"] | results["y"]) == 2 * WRITERS * WRITES_EACH


@pytest.mark.parametrize("how", ["plain", "execute_many", "immediate", "deferred"])
async def test_a_write_that_outwaits_the_busy_timeout_fails_clearly_and_leaves_nothing(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "locked.db"
    await _make_table(path)
    async with Database(_url(path)) as holder, Database(_url(path, "timeout=0.05")) as waiter:
        async with holder.transaction(isolation="immediate"):  # the write lock, held
            await holder.execute("INSERT INTO t VALUES ('holder', 1)")
            with pytest.raises(sqlite3.OperationalError) as caught:
                await asyncio.wait_for(_one_write(waiter, how), 30)
        message = str(caught.value)
        assert message.startswith("database is locked"), message
        # Explained: what held it, the wait that ran out, and what to do.
        assert "another connection" in message, message
        assert "busy timeout" in message, message
        assert "'timeout' option" in message or "isolation='immediate'" in message, message
        # The waiter's connection is fine, and now that the lock is free it writes.
        await _one_write(waiter, how, n=3)
    assert _rows_in_file(path) == {("holder", 1), ("waiter", 3)}


async def _one_write(db: Database, how: str, n: int = 2) -> None:
    sql, values = "INSERT INTO t VALUES ('waiter', :n)", {"n": n}
    if how == "plain":
        await db.execute(sql, values)
    elif how == "execute_many":
        await db.execute_many(sql, [values])
    else:
        async with db.transaction(isolation=how):
            await db.execute(sql, values)


async def test_a_write_waits_for_the_other_pools_lock_within_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "waits.db"
    await _make_table(path)
    async with Database(_url(path)) as holder, Database(_url(path, "timeout=30")) as waiter:
        transaction = await holder.transaction(isolation="immediate")
        await holder.execute("INSERT INTO t VALUES ('holder', 1)")
        write = asyncio.create_task(waiter.execute("INSERT INTO t VALUES ('waiter', 2)"))
        # One step for the write, which hands it to its worker thread; it meets
        # the lock there (or, should the commit win the race, no lock: the same outcome).
        await asyncio.sleep(0)
        await transaction.commit()
        await asyncio.wait_for(write, 30)
    assert _rows_in_file(path) == {("holder", 1), ("waiter", 2)}


@pytest.mark.parametrize("min_size", [None, 0])
async def test_a_file_in_a_missing_directory_names_the_path(
    tmp_path: Path, min_size: int | None
) -> None:
    path = tmp_path / "no" / "such" / "dir" / "app.db"
    options = {} if min_size is None else {"min_size": min_size}
    db = Database(_url(path), **options)
    with pytest.raises(sqlite3.OperationalError) as caught:
        await asyncio.wait_for(_connect_and_query(db), 30)
    message = str(caught.value)
    assert message.startswith("unable to open database file"), message  # SQLite's own words first
    assert str(path) in message, message
    assert f"the directory {str(path.parent)!r} does not exist" in message, message
    await db.disconnect()
    # The directory made, the same Database connects (nothing stuck from the failure).
    path.parent.mkdir(parents=True)
    async with db:
        assert await db.fetch_val("SELECT 1") == 1


async def _connect_and_query(db: Database) -> None:
    await db.connect()
    await db.fetch_val("SELECT 1")


async def test_a_file_that_cannot_be_opened_names_the_path(tmp_path: Path) -> None:
    # A directory where the file should be: the parent exists, the open fails.
    path = tmp_path / "a-directory"
    path.mkdir()
    db = Database(_url(path))
    with pytest.raises(sqlite3.OperationalError) as caught:
        await asyncio.wait_for(db.connect(), 30)
    assert str(path) in str(caught.value)
    assert "does not exist" not in str(caught.value)
    await db.disconnect()
