"""A cancellation storm leaves the pool whole and loses nothing (issue 15 item 5).

300 tasks run a seeded mix of sleeps, inserts and short transactions (some
commit, some roll back); about half are cancelled at seeded random moments;
three rounds on every backend. After each round: the pool is at full
strength (nothing in use, nobody waiting, ``max_size`` connections usable at
once), the server runs no statement and holds no transaction for this test's
database, every insert that returned is there and nothing of a rolled-back or
cancelled transaction is. Each row's key records its task, and the test keeps
what happened to that task.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass

import pytest
from conftest import (
    _sqlite_write_locked,
    dialect_of,
    drop_table,
    helper_database,
    sleep_query,
    until,
)

from aiodatabases import Database, DatabaseURL

TASKS = 300
ROUNDS = 3
MAX_SIZE = 10
TABLE = "storm_rows"


class Kind(enum.Enum):
    SLEEP = "sleep"
    INSERT = "insert"
    COMMIT = "commit"
    ROLLBACK = "rollback"


class Undo(Exception):
    """Raised inside a transaction to roll it back."""


@dataclass
class Outcome:
    kind: Kind
    keys: tuple[str, ...]
    returned: bool = False  # the call (or the whole block) returned normally
    committing: bool = False  # the block's body ended: its COMMIT may have run


def busy_ddl(url: str) -> str:
    return f"CREATE TABLE {TABLE} (k VARCHAR(40) PRIMARY KEY, what VARCHAR(20))"


async def run_one(db: Database, url: str, rng: random.Random, outcome: Outcome) -> None:
    insert = f"INSERT INTO {TABLE} (k, what) VALUES (:k, :what)"
    what = outcome.kind.value
    if outcome.kind is Kind.SLEEP:
        await db.fetch_val(sleep_query(url, rng.uniform(0, 0.05)))
    elif outcome.kind is Kind.INSERT:
        await db.execute(insert, {"k": outcome.keys[0], "what": what})
    elif outcome.kind is Kind.COMMIT:
        async with db.transaction():
            await db.execute(insert, {"k": outcome.keys[0], "what": what})
            await db.fetch_val(sleep_query(url, rng.uniform(0, 0.02)))
            await db.execute(insert, {"k": outcome.keys[1], "what": what})
            outcome.committing = True
    else:
        try:
            async with db.transaction():
                await db.execute(insert, {"k": outcome.keys[0], "what": what})
                await db.execute(insert, {"k": outcome.keys[1], "what": what})
                raise Undo
        except Undo:
            pass
    outcome.returned = True


async def storm_round(db: Database, url: str, rng: random.Random, round_no: int) -> list[Outcome]:
    outcomes = []
    tasks = []
    loop = asyncio.get_running_loop()
    for index in range(TASKS):
        kind = rng.choice(list(Kind))
        keys = (f"r{round_no}t{index}a", f"r{round_no}t{index}b")
        outcome = Outcome(kind, keys)
        outcomes.append(outcome)
        task = asyncio.create_task(run_one(db, url, random.Random(rng.random()), outcome))
        tasks.append(task)
        if rng.random() < 0.5:
            loop.call_later(rng.uniform(0, 0.1), task.cancel)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result  # only cancellations are expected
    return outcomes


async def server_is_quiet(url: str, pooled: int) -> None:
    """No statement running, no transaction open, on this test's database (but ours).

    ``pooled``: the pool's connections, each just seen out of a transaction
    (``all_connections_work``). On MySQL a session's transaction is not
    visible from another session: MariaDB's INNODB_TRX keeps listing, as
    RUNNING, transactions of sessions that committed or rolled back (seen
    under load, on sessions that say ``@@in_transaction = 0`` and whose rows
    are committed). So there the server must show no running statement and
    no session but the pool's, and each pooled connection says itself that
    it is out of a transaction.
    """
    dialect = dialect_of(url)
    if dialect == "sqlite":

        async def locked() -> bool:
            return await asyncio.to_thread(_sqlite_write_locked, DatabaseURL(url).database)

        await until(False, locked)
        return
    # The busy sessions themselves, so that a failure shows what they do.
    query = {
        "postgresql": "SELECT pid, state, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND (state = 'active' OR state LIKE 'idle in transaction%')",
        "mysql": "SELECT ID, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND = 'Query'",
    }[dialect]
    sessions = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
    }[dialect]
    async with helper_database(url) as observer:

        async def busy() -> list[object]:
            found: list[object] = [tuple(row.values()) for row in await observer.fetch_all(query)]
            count = int(await observer.fetch_val(sessions))
            if count > pooled:  # a session the pool no longer knows: leaked, or still closing
                found.append(f"{count} sessions for a pool of {pooled}")
            return found

        await until([], busy)


async def all_connections_work(db: Database, url: str, n: int) -> None:
    """``n`` connections held at once, each answering and out of a transaction."""
    barrier = asyncio.Barrier(n)
    in_transaction = {
        "mysql": "SELECT @@in_transaction",
        "postgresql": "SELECT count(*) FROM pg_stat_activity"
        " WHERE pid = pg_backend_pid() AND backend_xid IS NOT NULL",
        "sqlite": "SELECT 0",
    }[dialect_of(url)]

    async def hold() -> int:
        async with db.connection() as connection:
            value = int(await connection.fetch_val(in_transaction))
            await barrier.wait()  # all n held at once
            return value

    assert await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(n))), 60) == [0] * n


def check_rows(outcomes: list[Outcome], found: dict[str, str]) -> None:
    wrong = []
    for outcome in outcomes:
        if outcome.kind is Kind.SLEEP:
            continue
        present = [key in found for key in outcome.keys[: 1 if outcome.kind is Kind.INSERT else 2]]
        if outcome.kind is Kind.INSERT:
            if outcome.returned and not present[0]:
                wrong.append(f"returned insert {outcome.keys[0]} missing")
        elif outcome.kind is Kind.ROLLBACK:
            if any(present):
                wrong.append(f"rolled back {outcome.keys} present")
        elif outcome.returned:
            if not all(present):
                wrong.append(f"committed {outcome.keys} missing: {present}")
        elif not outcome.committing:
            if any(present):
                wrong.append(f"cancelled before commit {outcome.keys} present")
        elif any(present) != all(present):
            wrong.append(f"cancelled at commit {outcome.keys} half there")
    assert wrong == []


@pytest.fixture
async def storm_table(database_url: str) -> object:
    await drop_table(database_url, TABLE)
    async with helper_database(database_url) as database:
        await database.execute(busy_ddl(database_url))
    yield database_url
    await drop_table(database_url, TABLE)


async def test_a_cancellation_storm_leaves_the_pool_whole_and_loses_nothing(
    database_url: str, storm_table: object
) -> None:
    rng = random.Random(15_5)
    db = Database(database_url, min_size=1, max_size=MAX_SIZE, acquire_timeout=60)
    async with db:
        for round_no in range(ROUNDS):
            outcomes = await storm_round(db, database_url, rng, round_no)
            cancelled = sum(not outcome.returned for outcome in outcomes)
            assert 0 < cancelled < TASKS  # the storm did cancel, and not everything

            async def settled() -> tuple[int, int]:
                found = db.pool_stats()
                return found.in_use, found.waiting

            await until((0, 0), settled)
            assert db.pool_stats().size <= MAX_SIZE
            await all_connections_work(db, database_url, MAX_SIZE)
            assert db.pool_stats().size == MAX_SIZE
            await server_is_quiet(database_url, MAX_SIZE)
            rows = await db.fetch_all(f"SELECT k, what FROM {TABLE}")
            check_rows(outcomes, {row[0]: row[1] for row in rows})
