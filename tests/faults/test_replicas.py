"""Issue 17 item 3: read replicas, against a real streaming standby.

``private_replication`` is a private PostgreSQL primary and a hot standby made
from it with ``pg_basebackup -R``. Where a statement ran is asked of the
server itself: ``pg_is_in_recovery()`` is true only on the standby. Each
test gets a fresh database on the primary, replayed on the standby before
it starts. Waits are deadlines (``until``), never timing assertions.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
import sqlalchemy as sa
from conftest import until
from private_servers import PrivateReplication, PrivateStandby, free_port

from aiodatabases import Database, DatabaseURL, Hook, ReplicaUnavailableError, StatementEvent

ON_REPLICA = "SELECT pg_is_in_recovery()"
BOUND = 60  # seconds: far beyond any timeout involved; reaching it means a hang
#: What asyncpg says of a statement whose server went away under it.
CUT_OFF = re.compile("closed in the middle|connection is closed|shutdown", re.I)


@dataclass
class Replicated:
    primary: str  # the URL of this test's database on the primary
    replica: str  # ... and on the standby
    standby: PrivateStandby


@pytest.fixture
async def replicated(private_replication: PrivateReplication) -> Replicated:
    primary_url = await private_replication.primary.new_database()
    name = DatabaseURL(primary_url).database
    admin = await asyncpg.connect(primary_url)
    try:
        await admin.execute("CREATE TABLE notes (id serial PRIMARY KEY, text text)")
        await admin.execute("INSERT INTO notes (text) VALUES ('first')")
    finally:
        await admin.close()
    standby = private_replication.standby
    await standby.wait_for_replay()
    return Replicated(primary_url, standby.url(name), standby)


async def until_true(probe: Callable[[], Awaitable[object]], within: float = 15) -> None:
    await until(True, probe, within)


def replica_reads(db: Database) -> list[int]:
    return [replica.reads for replica in db.replica_stats()]


# -- routing ------------------------------------------------------------------------------


async def test_bare_reads_go_to_the_replica(replicated: Replicated) -> None:
    async with Database(replicated.primary, replicas=[replicated.replica]) as db:
        assert await db.fetch_val(ON_REPLICA) is True
        assert [row["text"] for row in await db.fetch_all("SELECT text FROM notes")] == ["first"]
        row = await db.fetch_one("SELECT inet_server_port() AS port")
        assert row is not None
        assert row["port"] == replicated.standby.port
        rows = [row[0] async for row in db.iterate(ON_REPLICA)]
        assert rows == [True]
        core = sa.select(sa.func.pg_is_in_recovery())  # a Core select, compiled first
        assert await db.fetch_val(core) is True
        assert replica_reads(db) == [5]
        assert db.pool_stats().opened == 1  # the primary's pool, untouched by the reads


async def test_writes_blocks_and_transactions_run_on_the_primary(replicated: Replicated) -> None:
    async with Database(replicated.primary, replicas=[replicated.replica]) as db:
        await db.execute("INSERT INTO notes (text) VALUES ('a')")  # fails on a standby
        await db.execute_many("INSERT INTO notes (text) VALUES (:t)", [{"t": "b"}, {"t": "c"}])
        # Reads that must run where the writes are:
        assert (
            await db.fetch_val("SELECT pg_is_in_recovery() FROM notes LIMIT 1 FOR UPDATE") is False
        )
        assert await db.fetch_val("SELECT pg_try_advisory_lock(1) AND pg_is_in_recovery()") is False
        async with db.transaction():
            assert await db.fetch_val(ON_REPLICA) is False
            assert [row[0] async for row in db.iterate(ON_REPLICA)] == [False]
        async with db.connection() as connection:
            assert await db.fetch_val(ON_REPLICA) is False
            assert await connection.fetch_val(ON_REPLICA) is False


async def test_a_read_after_a_write_in_the_same_task_goes_to_the_primary(
    replicated: Replicated,
) -> None:
    async def writes_then_reads(db: Database) -> tuple[bool, int]:
        await db.execute("INSERT INTO notes (text) VALUES ('mine')")
        where = await db.fetch_val(ON_REPLICA)
        seen = await db.fetch_val("SELECT count(*) FROM notes WHERE text = 'mine'")
        return where, seen

    async with Database(
        replicated.primary, replicas=[replicated.replica], read_your_writes=60
    ) as db:
        # In a task of its own: the test's context never wrote.
        assert await asyncio.create_task(writes_then_reads(db)) == (False, 1)
        assert await db.fetch_val(ON_REPLICA) is True  # not pinned by the other task's write


async def test_after_the_window_reads_go_to_the_replica_again(replicated: Replicated) -> None:
    async with Database(
        replicated.primary, replicas=[replicated.replica], read_your_writes=0.2
    ) as db:

        async def scenario() -> None:
            await db.execute("INSERT INTO notes (text) VALUES ('x')")
            assert await db.fetch_val(ON_REPLICA) is False
            # A window of 0.2s: some read after it goes to the replica again.
            await until_true(lambda: db.fetch_val(ON_REPLICA))

        await asyncio.create_task(scenario())


async def test_tasks_started_after_a_write_read_it_back_others_do_not(
    replicated: Replicated,
) -> None:
    async with Database(
        replicated.primary, replicas=[replicated.replica], read_your_writes=60
    ) as db:
        written = asyncio.Event()

        async def started_before_the_write() -> bool:
            await written.wait()
            where: bool = await db.fetch_val(ON_REPLICA)
            return where

        async def scenario() -> None:
            other = asyncio.create_task(started_before_the_write())
            await db.execute("INSERT INTO notes (text) VALUES ('y')")
            written.set()
            children = await asyncio.gather(db.fetch_val(ON_REPLICA), db.fetch_val(ON_REPLICA))
            assert children == [False, False]  # started after the write: they see it
            assert await other is True  # its context never saw the write

        await asyncio.create_task(scenario())


async def test_a_transaction_pins_the_reads_after_its_commit(replicated: Replicated) -> None:
    async with Database(
        replicated.primary, replicas=[replicated.replica], read_your_writes=60
    ) as db:

        async def scenario() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO notes (text) VALUES ('z')")
            assert await db.fetch_val("SELECT count(*) FROM notes WHERE text = 'z'") == 1
            assert await db.fetch_val(ON_REPLICA) is False

        async def through_a_connection() -> None:
            async with db.connection() as connection:
                await connection.execute("INSERT INTO notes (text) VALUES ('w')")
            assert await db.fetch_val(ON_REPLICA) is False  # the Connection's write counts

        await asyncio.create_task(scenario())
        await asyncio.create_task(through_a_connection())


async def test_without_a_window_reads_go_to_the_replica_even_after_a_write(
    replicated: Replicated,
) -> None:
    async with Database(
        replicated.primary, replicas=[replicated.replica], read_your_writes=0
    ) as db:
        await db.execute("INSERT INTO notes (text) VALUES ('v')")
        assert await db.fetch_val(ON_REPLICA) is True


async def test_force_rollback_uses_the_primary_only(replicated: Replicated) -> None:
    db = Database(replicated.primary, replicas=[replicated.replica], force_rollback=True)
    async with db:
        assert await db.fetch_val(ON_REPLICA) is False
        await db.execute("INSERT INTO notes (text) VALUES ('rolled back')")
        assert await db.fetch_val("SELECT count(*) FROM notes") == 2  # the shared connection's
        assert db.replica_stats() == []
    async with Database(replicated.primary) as check:
        assert await check.fetch_val("SELECT count(*) FROM notes") == 1


async def test_the_keyword_options_apply_to_the_replicas(replicated: Replicated) -> None:
    replica = replicated.replica + "?max_size=3"  # its URL's options: for it alone
    async with Database(replicated.primary, replicas=[replica], min_size=2) as db:
        [stats] = db.replica_stats()
        assert (stats.pool.min_size, stats.pool.max_size, stats.pool.size) == (2, 3, 2)
        assert (db.pool_stats().min_size, db.pool_stats().max_size) == (2, 10)
        assert stats.available
        assert stats.url == replica


async def test_hooks_see_where_each_statement_ran(replicated: Replicated) -> None:
    seen: list[tuple[str, int | None, type[BaseException] | None]] = []

    class Where(Hook):
        def after_statement(self, event: StatementEvent) -> None:
            error = None if event.error is None else type(event.error)
            seen.append((event.operation, event.database.port, error))

    db = Database(replicated.primary, replicas=[replicated.replica], read_your_writes=0)
    db.add_hook(Where())
    primary_port = DatabaseURL(replicated.primary).port
    async with db:
        await db.fetch_val(ON_REPLICA)
        await db.execute("INSERT INTO notes (text) VALUES ('u')")
        await replicated.standby.stop()
        assert await db.fetch_val(ON_REPLICA) is False
    assert seen == [
        ("fetch_one", replicated.standby.port, None),
        ("execute", primary_port, None),
        ("fetch_one", replicated.standby.port, ReplicaUnavailableError),
        ("fetch_one", primary_port, None),
    ]


async def test_a_span_names_the_replica_that_ran_the_statement(replicated: Replicated) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aiodatabases.otel import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db = Database(replicated.primary, replicas=[replicated.replica])
    instrument(db, tracer_provider=provider)
    async with db:
        await db.fetch_val(ON_REPLICA)
        await db.execute("INSERT INTO notes (text) VALUES ('t')")
    ports = [span.attributes["server.port"] for span in exporter.get_finished_spans()]
    assert ports == [replicated.standby.port, DatabaseURL(replicated.primary).port]
    provider.shutdown()


async def test_connected_again_in_a_new_loop_the_replicas_follow(replicated: Replicated) -> None:
    db = Database(replicated.primary, replicas=[replicated.replica])

    async def connect_and_read() -> tuple[bool, bool]:
        await db.connect()  # never disconnected: its loop ends with it connected
        return await db.fetch_val(ON_REPLICA), await db.fetch_val("SELECT 1 = 1")

    for _ in range(2):  # each asyncio.run a loop of its own, closed at its end
        assert await asyncio.to_thread(asyncio.run, connect_and_read()) == (True, True)
    assert db.replica_stats()[0].reads == 2  # the second loop's replica pool


# -- many replicas, many readers ----------------------------------------------------------


async def test_a_gather_of_reads_is_spread_over_the_replicas(replicated: Replicated) -> None:
    replicas = [replicated.replica, replicated.replica]  # two pools on the one standby
    async with Database(replicated.primary, replicas=replicas, max_size=5) as db:
        results = await asyncio.wait_for(
            asyncio.gather(*(db.fetch_val(ON_REPLICA) for _ in range(60))), BOUND
        )
        assert results == [True] * 60
        reads = replica_reads(db)
        assert sum(reads) == 60
        assert all(count > 0 for count in reads)
        assert all(stats.pool.in_use == 0 for stats in db.replica_stats())


async def test_a_read_cancelled_on_a_replica_leaves_its_pool_healthy(
    replicated: Replicated,
) -> None:
    async def sleeping() -> bool:
        return await _sleeping_on(replicated.replica)

    async with Database(replicated.primary, replicas=[replicated.replica], max_size=1) as db:
        read = asyncio.create_task(db.fetch_val("SELECT pg_sleep(60)"))
        await until_true(sleeping)  # running on the standby
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        await until(False, sleeping)  # cancelled on the server, not left to run
        assert await asyncio.wait_for(db.fetch_val(ON_REPLICA), BOUND) is True  # its pool of one
        [stats] = db.replica_stats()
        assert stats.available
        assert stats.pool.in_use == 0
        assert stats.pool.size == 1


# -- a replica down -----------------------------------------------------------------------


async def test_a_replica_down_is_skipped_with_a_log_record_and_comes_back(
    replicated: Replicated, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiodatabases.replicas")
    url = DatabaseURL(replicated.replica).replace(password="s3cret")  # trust: not asked for
    db = Database(replicated.primary, replicas=[str(url)], replica_retry_after=0.2)
    async with db:
        assert await db.fetch_val(ON_REPLICA) is True
        await replicated.standby.stop()
        for _ in range(3):  # on the primary, with no error for the caller
            assert await asyncio.wait_for(db.fetch_val(ON_REPLICA), BOUND) is False
            assert [row[0] async for row in db.iterate(ON_REPLICA)] == [False]
        [stats] = db.replica_stats()
        assert not stats.available
        assert stats.failures >= 1
        warnings = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.endswith("replicas")
        ]
        assert len(warnings) == 1  # once when it went away; retries are INFO
        assert "unavailable" in warnings[0].getMessage()
        assert str(replicated.standby.port) in warnings[0].getMessage()
        assert "s3cret" not in caplog.text
        await replicated.standby.start()
        await until_true(lambda: db.fetch_val(ON_REPLICA))  # after the back-off
        assert db.replica_stats()[0].available
        assert "answers again" in caplog.text


async def test_connect_works_with_the_replica_down(
    replicated: Replicated, caplog: pytest.LogCaptureFixture
) -> None:
    await replicated.standby.stop()
    db = Database(replicated.primary, replicas=[replicated.replica], replica_retry_after=0.2)
    async with db:
        assert "unavailable" in caplog.text
        assert await db.fetch_val(ON_REPLICA) is False
        assert not db.replica_stats()[0].available
        await replicated.standby.start()
        await until_true(lambda: db.fetch_val(ON_REPLICA))
        assert db.replica_stats()[0].pool.max_size == db.pool_stats().max_size


async def test_the_other_replica_takes_the_reads_of_one_down(replicated: Replicated) -> None:
    nobody = DatabaseURL(replicated.replica).replace(port=_closed_port())
    db = Database(replicated.primary, replicas=[str(nobody), replicated.replica])
    async with db:
        results = await asyncio.gather(*(db.fetch_val(ON_REPLICA) for _ in range(10)))
        assert results == [True] * 10
        down, up = db.replica_stats()
        assert (down.available, up.available, up.reads) == (False, True, 10)


async def test_a_read_cut_off_on_a_replica_is_the_callers_error_not_run_again(
    replicated: Replicated,
) -> None:
    async with Database(replicated.primary, replicas=[replicated.replica]) as db:
        read = asyncio.create_task(db.fetch_val("SELECT pg_sleep(60)"))
        await until_true(lambda: _sleeping_on(replicated.replica))
        await replicated.standby.stop()
        with pytest.raises(Exception, match=CUT_OFF):
            await asyncio.wait_for(read, BOUND)  # it may have run: never sent elsewhere
        assert not db.replica_stats()[0].available
        assert await db.fetch_val(ON_REPLICA) is False


async def _sleeping_on(url: str) -> bool:
    connection = await asyncpg.connect(url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()"
        )
        return bool(count)
    finally:
        await connection.close()


def _closed_port() -> int:
    return free_port()  # bound and released: nobody listens there
