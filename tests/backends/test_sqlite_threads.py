"""SQLite: brief reads run on the calling thread, everything else on aiosqlite's worker.

Which thread ran a read is seen through a column converter (``detect_types``):
sqlite3 calls it, on the thread that fetches the row, for every value of a
column named ``"... [aiodb_thread]"``. Converters are registered for the
whole process and need no ``raw_connection`` (which would make the
connection run everything on its worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import urls_for

from aiodatabases import Database

pytestmark = pytest.mark.skipif(not urls_for("sqlite"), reason="no SQLite URL configured")

_NOTED: list[str] = []


def _thread_name() -> str:
    return threading.current_thread().name


def _note_thread(_: bytes) -> str:
    _NOTED.append(_thread_name())
    return _thread_name()


sqlite3.register_converter("aiodb_thread", _note_thread)

#: Options that make every column named "x [aiodb_thread]" say where it was read.
SEEN = {"detect_types": sqlite3.PARSE_COLNAMES}


def where(sql: str) -> str:
    """``sql`` (its last SELECT) with a column "thread": which thread read the row."""
    head, _, tail = sql.rpartition("SELECT ")
    return f"{head}SELECT 'x' AS \"thread [aiodb_thread]\", {tail}"


def file_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def make_table(url: str) -> None:
    async with Database(url) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")


def _counting(limit: int) -> str:
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {limit}) "
        "SELECT count(*) AS n FROM c"
    )


# --- where statements run --------------------------------------------------------------


async def test_brief_reads_run_on_the_loop_thread_and_the_rest_on_the_worker(
    tmp_path: Path,
) -> None:
    url = file_url(tmp_path / "inline.db")
    await make_table(url)
    here = _thread_name()
    async with Database(url, **SEEN) as db:
        assert await db.fetch_val(where("SELECT 1")) == here
        async with db.transaction():
            assert await db.fetch_val(where("SELECT 1")) == here
        async with db.connection() as connection:
            assert await connection.fetch_val(where("SELECT 1")) == here
        # A write, even one that returns rows, runs on the worker.
        written = await db.fetch_val('INSERT INTO t VALUES (1) RETURNING x AS "x [aiodb_thread]"')
        assert written != here
        # A long read is stopped here and runs again, in full, on the worker.
        long = await db.fetch_one(where(_counting(300_000)))
        assert long is not None
        assert long["n"] == 300_000
        assert long["thread"] != here


async def test_begin_and_savepoint_run_on_the_loop_thread(tmp_path: Path) -> None:
    # They take no time (a lock that is free, a flag): no trip to the worker,
    # so the caller does not even suspend; ending them does.
    async with Database(file_url(tmp_path / "begin.db")) as db, db.connection() as connection:
        for isolation in ("immediate", "deferred", "exclusive"):
            ran: list[bool] = []
            asyncio.get_running_loop().call_soon(ran.append, True)
            outer = await connection.transaction(isolation=isolation)
            inner = await connection.transaction()
            assert ran == []
            await inner.rollback()
            await outer.commit()
            assert ran == [True]


async def test_a_read_too_long_here_twice_goes_to_the_worker_at_once(tmp_path: Path) -> None:
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
        'SELECT x AS "x [aiodb_thread]" FROM c'
    )
    here = _thread_name()
    async with Database(file_url(tmp_path / "slow.db"), max_size=1, **SEEN) as db:
        for _ in range(2):
            _NOTED.clear()
            assert len(await db.fetch_all(slow)) == 100_000
            assert here in _NOTED  # tried here first, then stopped
        _NOTED.clear()
        assert len(await db.fetch_all(slow)) == 100_000
        assert here not in _NOTED
        assert len(_NOTED) == 100_000


async def test_a_read_with_one_long_step_goes_to_the_worker_after_twice(tmp_path: Path) -> None:
    # One call of randomblob() is one step: the budget cannot stop it. It
    # blocks this thread twice; from then on that SQL runs on the worker.
    big = where("SELECT length(randomblob(30000000)) AS n")
    here = _thread_name()
    async with Database(file_url(tmp_path / "step.db"), max_size=1, **SEEN) as db:
        rows = [await db.fetch_one(big) for _ in range(3)]
        assert [row["n"] for row in rows if row is not None] == [30_000_000] * 3
        assert [row["thread"] == here for row in rows if row is not None] == [True, True, False]


async def _fill(db: Database, rows: int) -> None:
    await db.execute("DELETE FROM t")
    await db.execute(
        "INSERT INTO t (x) WITH RECURSIVE c(i) AS "
        f"(SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) SELECT i FROM c"
    )


async def test_a_read_too_long_once_is_still_tried_here(tmp_path: Path) -> None:
    # Once is no proof: a pause of the thread (a garbage collection) must not
    # send a brief read to the worker.
    url = file_url(tmp_path / "once.db")
    await make_table(url)
    count = where("SELECT count(*) AS n FROM t WHERE x % 7 = 1")
    here = _thread_name()
    async with Database(url, max_size=1, **SEEN) as db:
        await _fill(db, 1_000_000)
        long = await db.fetch_one(count)
        assert long is not None
        assert long["thread"] != here  # stopped here, run on the worker
        await _fill(db, 10)
        brief = await db.fetch_one(count)
        assert brief is not None
        assert (brief["n"], brief["thread"]) == (2, here)


async def test_a_read_sent_to_the_worker_is_tried_here_again_later(tmp_path: Path) -> None:
    url = file_url(tmp_path / "again.db")
    await make_table(url)
    count = where("SELECT count(*) AS n FROM t WHERE x % 7 = 1")
    here = _thread_name()
    async with Database(url, max_size=1, **SEEN) as db:
        await _fill(db, 1_000_000)
        for _ in range(2):
            await db.fetch_one(count)
        await _fill(db, 10)  # brief from now on
        threads = [await db.fetch_val(count) for _ in range(300)]
        assert threads[0] != here  # sent away for a while...
        assert threads[-1] == here  # ...then tried here again, and kept here


@pytest.mark.parametrize(
    "options",
    [{"check_same_thread": True}, {"factory": sqlite3.Connection}],
    ids=["check_same_thread", "factory"],
)
async def test_options_that_keep_every_statement_on_the_worker(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    async with Database(file_url(tmp_path / "worker.db"), **SEEN, **options) as db:
        assert await db.fetch_val(where("SELECT 1")) != _thread_name()


# --- the raw connection is the user's: it runs everything on its worker ------------------


async def test_a_function_of_the_user_that_waits_for_the_loop_works(tmp_path: Path) -> None:
    # Regression: run on the loop thread, a function that hands work to the
    # loop and waits for it would wait forever.
    loop = asyncio.get_running_loop()

    async def answer() -> int:
        return 40

    def bridge() -> int:
        return asyncio.run_coroutine_threadsafe(answer(), loop).result(5) + 2

    async with Database(file_url(tmp_path / "bridge.db"), max_size=1) as db:
        async with db.connection() as connection:
            await connection.raw_connection.create_function("bridge", 0, bridge)
            assert await connection.fetch_val("SELECT bridge()") == 42
        assert await db.fetch_val("SELECT bridge()") == 42


async def _set_authorizer(raw: Any, authorizer: Any) -> None:
    if hasattr(raw, "set_authorizer"):
        await raw.set_authorizer(authorizer)
    else:  # aiosqlite < 0.22 has no wrapper: sqlite3's own, on the worker thread
        await raw._execute(raw._conn.set_authorizer, authorizer)


async def test_handlers_set_on_the_raw_connection_stay_in_force(tmp_path: Path) -> None:
    # Regression: a brief read here set its own progress handler and busy
    # timeout (a PRAGMA, which an authorizer may refuse) over the user's.
    calls: list[int] = []

    def no_pragmas(action: int, *_: Any) -> int:
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_PRAGMA else sqlite3.SQLITE_OK

    async with Database(file_url(tmp_path / "handlers.db"), max_size=1) as db:
        async with db.connection() as connection:
            raw = connection.raw_connection
            await raw.set_progress_handler(lambda: calls.append(1), 10)
            await raw.execute("PRAGMA busy_timeout = 1234")
            await _set_authorizer(raw, no_pragmas)
            assert await connection.fetch_val(_counting(1000)) == 1000
            assert calls
            await _set_authorizer(raw, None)
        assert await db.fetch_val("PRAGMA busy_timeout") == 1234


# --- order, fairness, locks -------------------------------------------------------------


async def test_a_read_issued_first_runs_first(tmp_path: Path) -> None:
    # Regression: a read that paused before its turn let a later write in first.
    url = file_url(tmp_path / "order.db")
    await make_table(url)
    async with Database(url) as db, db.connection() as connection:
        read, _ = await asyncio.gather(
            connection.fetch_val("SELECT count(*) FROM t"),
            connection.execute("INSERT INTO t VALUES (1)"),
        )
        assert read == 0
        async with connection.transaction():
            read, _ = await asyncio.gather(
                connection.fetch_val("SELECT count(*) FROM t"),
                connection.execute("INSERT INTO t VALUES (2)"),
            )
            assert read == 1
    async with Database("sqlite:///:memory:") as db:  # one connection for every task
        await db.execute("CREATE TABLE t (x INTEGER)")
        read, _ = await asyncio.gather(
            db.fetch_val("SELECT count(*) FROM t"), db.execute("INSERT INTO t VALUES (1)")
        )
        assert read == 0


async def _reads_until(done: asyncio.Event, read: Any) -> int:
    for count in range(1, 1001):
        if done.is_set():
            return count
        await read("SELECT 1")
    return 0


async def test_a_loop_of_brief_reads_lets_other_tasks_run(tmp_path: Path) -> None:
    # Each read finishes on the loop thread; without a suspension per
    # statement the other task would not run until the loop ended.
    async with Database(file_url(tmp_path / "fair.db")) as db:
        done = asyncio.Event()
        other = asyncio.create_task(asyncio.sleep(0))
        other.add_done_callback(lambda _: done.set())
        assert await _reads_until(done, db.fetch_val) > 0
        done.clear()
        other = asyncio.create_task(asyncio.sleep(0))
        other.add_done_callback(lambda _: done.set())
        async with db.connection() as connection:
            assert await _reads_until(done, connection.fetch_one) > 0


async def _read_outside_a_transaction(db: Database, lock: Callable[[], None]) -> Any:
    lock()
    return await db.fetch_val("SELECT count(*) FROM t")


async def _read_in_a_deferred_transaction(db: Database, lock: Callable[[], None]) -> Any:
    async with db.transaction(isolation="deferred"):
        lock()
        return await db.fetch_val("SELECT count(*) FROM t")


async def _read_in_a_raw_begin_after_an_immediate_transaction(
    db: Database, lock: Callable[[], None]
) -> Any:
    async with db.connection() as connection:
        async with connection.transaction(isolation="immediate"):  # holds the write lock
            await connection.fetch_val("SELECT count(*) FROM t")
        await connection.execute("BEGIN")  # deferred: holds no lock yet
        try:
            lock()
            return await connection.fetch_val("SELECT count(*) FROM t")
        finally:
            await connection.execute("COMMIT")


async def _read_in_a_transaction_begun_while_locked(
    db: Database, lock: Callable[[], None]
) -> Any:
    lock()
    # BEGIN IMMEDIATE waits for the write lock; then a savepoint.
    async with db.transaction(isolation="immediate"), db.transaction():
        return await db.fetch_val("SELECT count(*) FROM t")


@pytest.mark.parametrize(
    "read",
    [
        _read_outside_a_transaction,
        _read_in_a_deferred_transaction,
        _read_in_a_raw_begin_after_an_immediate_transaction,
        _read_in_a_transaction_begun_while_locked,
    ],
)
async def test_a_read_that_must_wait_for_a_lock_never_blocks_the_loop(
    tmp_path: Path, read: Any
) -> None:
    # The lock is released by a callback of this loop: a read that waited for
    # it on the loop thread (its busy timeout) would block that callback and
    # fail with "database is locked" when the timeout ends.
    path = tmp_path / "locked.db"
    await make_table(file_url(path))
    blocker = sqlite3.connect(path, isolation_level=None)

    def lock() -> None:
        blocker.execute("BEGIN EXCLUSIVE")
        blocker.execute("INSERT INTO t VALUES (1)")
        asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")

    try:
        async with Database(file_url(path), max_size=1, timeout=3) as db:
            assert await read(db, lambda: None) == 0
            assert await read(db, lock) == 1
            # The configured busy timeout is back after the reads here.
            assert await db.fetch_val("PRAGMA busy_timeout") == 3000
    finally:
        blocker.close()


@contextlib.contextmanager
def _write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock (BEGIN IMMEDIATE) of ``path``."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield blocker
    finally:
        blocker.close()


async def test_a_begin_that_waits_longer_than_the_busy_timeout_fails_as_locked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    await make_table(file_url(path))
    with _write_locked(path) as blocker:
        async with Database(file_url(path), max_size=1, timeout=0.2) as db:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await _begin_and_insert(db)
            await _nothing_left_begun(db, blocker)


@pytest.mark.parametrize(
    "options",
    [{}, {"check_same_thread": True}, {"raw": True}],
    ids=["calling_thread", "check_same_thread", "raw_used"],
)
async def test_a_begin_waiting_for_a_lock_is_cancelled_at_once_with_nothing_begun(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    # Regression: the BEGIN IMMEDIATE waited in SQLite's busy handler on the
    # worker, which nothing interrupts: its cancelled caller stayed until the
    # busy timeout ended (then "database is locked", not CancelledError). It
    # now waits between tries, on the calling thread, or on the worker where
    # statements cannot run here; a cancelled caller stops that wait.
    path = tmp_path / "locked.db"
    await make_table(file_url(path))
    options = dict(options)
    use_raw = options.pop("raw", False)
    with _write_locked(path) as blocker:
        async with Database(file_url(path), max_size=1, timeout=60, **options) as db:
            if use_raw:
                async with db.connection() as connection:
                    assert connection.raw_connection is not None  # statements stay on the worker
            waiting = asyncio.create_task(_begin_and_insert(db))
            await asyncio.sleep(0.1)  # it waits for the lock
            waiting.cancel()
            # A deadline far beyond "at once", far below the busy timeout.
            done, _ = await asyncio.wait([waiting], timeout=10)
            assert done == {waiting}, "the cancelled BEGIN still waits for the lock"
            assert waiting.cancelled()
            assert blocker.in_transaction  # still locked: the caller left anyway
            await _nothing_left_begun(db, blocker)


async def test_a_begin_that_fails_at_once_lets_other_tasks_run(tmp_path: Path) -> None:
    # Regression: with timeout=0 (fail fast and let the application retry) a
    # BEGIN on the calling thread that failed never suspended its caller: a
    # retry loop never let the lock's holder (a callback of this loop) run.
    path = tmp_path / "retry.db"
    await make_table(file_url(path))
    with _write_locked(path) as blocker:
        async with Database(file_url(path), max_size=1, timeout=0) as db:
            assert await db.fetch_val("SELECT 1") == 1
            asyncio.get_running_loop().call_soon(blocker.execute, "ROLLBACK")
            errors: list[str] = []
            for _ in range(10_000):
                try:
                    await _begin_and_insert(db)
                    break
                except sqlite3.OperationalError as exc:
                    errors.append(str(exc))
            else:
                pytest.fail("10,000 failed BEGINs and the loop never ran anything else")
            assert all("locked" in error for error in errors)


async def _begin_and_insert(db: Database) -> None:
    # Immediate: the BEGIN itself waits for the write lock (a deferred one
    # would wait at the INSERT, in SQLite's busy handler).
    async with db.transaction(isolation="immediate"):
        await db.execute("INSERT INTO t VALUES (1)")


async def _nothing_left_begun(db: Database, blocker: sqlite3.Connection) -> None:
    """Once the lock is given up, a transaction of ``db`` works."""
    blocker.execute("ROLLBACK")
    await _begin_and_insert(db)
    assert await db.fetch_val("SELECT count(*) FROM t") == 1


async def _set_by_execute(db: Database, milliseconds: int) -> None:
    await db.execute(f"PRAGMA busy_timeout = {milliseconds}")


async def _set_by_iterate(db: Database, milliseconds: int) -> None:
    async for _ in db.iterate(f"PRAGMA busy_timeout = {milliseconds}"):
        pass


@pytest.mark.parametrize("set_timeout", [_set_by_execute, _set_by_iterate])
async def test_a_busy_timeout_set_by_a_statement_stays_after_brief_reads(
    tmp_path: Path, set_timeout: Any
) -> None:
    # Regression (iterate): the wait restored after a read here
    # was the one read before, so the statement's new busy timeout was undone.
    async with Database(file_url(tmp_path / "busy.db"), max_size=1, timeout=0.25) as db:
        assert await db.fetch_val("SELECT 1") == 1
        await set_timeout(db, 1234)
        for _ in range(3):
            assert await db.fetch_val("SELECT 1") == 1
        async with db.transaction():
            assert await db.fetch_val("SELECT 1") == 1
        assert await db.fetch_val("PRAGMA busy_timeout") == 1234


# --- cancellation and open cursors ----------------------------------------------------


async def test_an_iteration_cancelled_as_its_cursor_opens_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    # Regression: cancelled after the worker opened the cursor but before the
    # task ran on, the cursor was lost unclosed (its read lock kept other
    # connections from writing), and the interrupt sent for the cancellation
    # stayed in force: every later statement of the connection "interrupted".
    path = tmp_path / "opening.db"
    url = file_url(path)
    async with Database(url, max_size=1) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.execute_many("INSERT INTO t VALUES (:x)", [{"x": i} for i in range(1000)])

        async def first_row() -> Any:
            async for row in db.iterate("SELECT x FROM t"):
                return row
            return None

        task = asyncio.create_task(first_row())
        await asyncio.sleep(0)  # it hands the cursor's opening to the worker
        time.sleep(0.2)  # noqa: ASYNC251 - the worker opens it and posts the result meanwhile
        await asyncio.sleep(0)  # the result is delivered; the task has not run on
        task.cancel()
        outcome = await asyncio.gather(task, return_exceptions=True)  # kept, as gather keeps it
        assert isinstance(outcome[0], asyncio.CancelledError)
        assert await db.fetch_val("SELECT count(*) FROM t") == 1000
        await db.execute("INSERT INTO t VALUES (-1)")
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("INSERT INTO t VALUES (-2)")  # no read lock left behind
        finally:
            other.close()


async def test_a_cancelled_read_does_not_stop_an_iteration_on_the_same_connection(
    tmp_path: Path,
) -> None:
    # Regression: the interrupt sent for the cancelled read stopped the
    # iteration's own cursor too ("interrupted").
    async with Database(file_url(tmp_path / "iterating.db"), max_size=2) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.execute_many("INSERT INTO t VALUES (:x)", [{"x": i} for i in range(2000)])
        seen = 0
        async with db.connection() as connection:
            async for row in connection.iterate("SELECT x FROM t ORDER BY x"):
                if row["x"] == 0:
                    read = asyncio.create_task(connection.fetch_val(_counting(3_000_000)))
                    await asyncio.sleep(0.05)
                    read.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await read
                seen += 1
            assert await connection.execute("INSERT INTO t VALUES (-1)") is not None
        assert seen == 2000


async def test_a_cancelled_read_never_interrupts_another_statement(tmp_path: Path) -> None:
    # Regression: a read given up while still queued behind a cancelled write
    # (which runs to its end on the worker) sent an interrupt that stopped
    # that write, and SQLite rolled back the whole force_rollback transaction:
    # later writes were committed.
    path = tmp_path / "queued.db"
    await make_table(file_url(path))
    slow_write = (
        "INSERT INTO t (x) WITH RECURSIVE c(i) AS "
        "(SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000000) SELECT i FROM c"
    )
    async with Database(file_url(path), force_rollback=True) as db:
        await db.execute("INSERT INTO t VALUES (-1)")
        write = asyncio.create_task(db.execute(slow_write))
        await asyncio.sleep(0.05)
        write.cancel()  # it goes on running on the worker
        await asyncio.gather(write, return_exceptions=True)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(db.fetch_val(_counting(10)), 0.01)  # queued behind it
        assert await db.fetch_val("SELECT count(*) FROM t WHERE x = -1") == 1
        await db.execute("INSERT INTO t VALUES (42)")
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)
    check.close()


async def test_a_loop_of_failing_reads_lets_other_tasks_run(tmp_path: Path) -> None:
    # Regression: only a read that succeeded paused afterwards; a poller
    # retrying a failing read never let the task that fixes it run.
    async with Database(file_url(tmp_path / "failing.db")) as db:
        created = asyncio.create_task(db.execute("CREATE TABLE later (x INTEGER)"))
        failures = 0
        while failures < 1000:
            try:
                assert await db.fetch_all("SELECT * FROM later") == []
                break
            except sqlite3.OperationalError:
                failures += 1
        assert 0 < failures < 1000  # it failed first, then the other task ran
        await created


async def test_reading_the_busy_timeout_sees_the_configured_one(tmp_path: Path) -> None:
    # Regression: run here, with the busy timeout set to 0 for the read.
    async with Database(file_url(tmp_path / "pragma.db"), timeout=3) as db:
        assert await db.fetch_val("SELECT * FROM pragma_busy_timeout") == 3000
        assert await db.fetch_val("SELECT timeout FROM pragma_busy_timeout") == 3000


async def test_a_read_in_a_write_transaction_never_waits_to_spill_the_cache(
    tmp_path: Path,
) -> None:
    # Regression: inside BEGIN IMMEDIATE a read here kept the busy timeout
    # ("a transaction holding the write lock waits for nobody"); but with the
    # page cache full of its own changes, a read must spill them, which needs
    # the exclusive lock another connection's reader holds off. The loop then
    # slept in the busy handler. The reader below lets go from a callback of
    # this loop (or, if the loop is stuck, from a watchdog thread).
    path = tmp_path / "spill.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)")
        setup.executemany("INSERT INTO big (v) VALUES (?)", [("x" * 300,) for _ in range(20_000)])
    setup.close()
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT v FROM big LIMIT 1").fetchall()  # holds a shared lock
    released = threading.Lock()
    by_watchdog: list[bool] = []

    def release(watchdog: bool) -> None:
        if released.acquire(blocking=False):
            by_watchdog.append(watchdog)
            reader.execute("COMMIT")

    watchdog = threading.Timer(5, release, (True,))
    watchdog.start()
    try:
        async with Database(file_url(path), max_size=1, cache_size=50) as db:
            with contextlib.suppress(KeyError):
                async with db.transaction(isolation="immediate"):
                    await db.execute("PRAGMA busy_timeout = 0")  # the update spills nothing
                    await db.execute("UPDATE big SET v = v || 'y' WHERE id <= 3000")
                    await db.execute("PRAGMA busy_timeout = 60000")
                    asyncio.get_running_loop().call_later(0.1, release, False)
                    for n in range(5):
                        assert await db.fetch_val(
                            "SELECT length(v) FROM big WHERE id = :id", {"id": 15_000 + n}
                        ) == 300
                    raise KeyError("roll back")
            await asyncio.sleep(0.2)
        assert by_watchdog == [False]  # released by this loop: it was never stuck
    finally:
        watchdog.cancel()
        reader.close()
