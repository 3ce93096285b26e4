"""Load: 200 tasks x 500 statements with exact row accounting (issue 15 item 6).

Each task runs point selects, inserts, and transactions that commit or roll
back by a rule of (task, step); afterwards the table holds exactly the rows
of the inserts and committed transactions, none of the rolled-back ones.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import dialect_of, drop_table, helper_database

from aiodatabases import Database

TASKS = 200
#: 500 is the issue's load (AIODATABASES_LOAD_STEPS=500: measured on the 2-CPU
#: machine shared with other runs, PostgreSQL 17 s, aiomysql 27 s, asyncmy 21 s,
#: SQLite 24 s, about 90 s in all). CI (.ci/run) runs 500; a local
#: ``make test`` runs 50 steps per task (10,000 statements per backend, about 7 s).
STEPS = int(os.environ.get("AIODATABASES_LOAD_STEPS", "50"))
POINTS = 100
TABLE = "load_rows"
POINTS_TABLE = "load_points"


class Undo(Exception):
    """Rolls a transaction back."""


def commits(task: int, step: int) -> bool:
    return (task + step // 5) % 2 == 0


def expected_keys(tasks: int, steps: int) -> set[str]:
    keys = set()
    for task in range(tasks):
        for step in range(steps):
            kind = step % 5
            if kind in (3, 4) or (kind == 0 and commits(task, step)):
                keys.add(f"{task}:{step}")
    return keys


async def one_task(db: Database, task: int, steps: int) -> None:
    insert = f"INSERT INTO {TABLE} (k, task) VALUES (:k, :task)"
    point = f"SELECT v FROM {POINTS_TABLE} WHERE id = :id"
    for step in range(steps):
        kind = step % 5
        key = f"{task}:{step}"
        if kind == 0:
            try:
                async with db.transaction():
                    await db.execute(insert, {"k": key, "task": task})
                    if not commits(task, step):
                        raise Undo
            except Undo:
                pass
        elif kind in (1, 2):
            ident = (task * 7 + step) % POINTS
            assert await db.fetch_val(point, {"id": ident}) == ident * 3
        else:
            await db.execute(insert, {"k": key, "task": task})


@pytest.fixture
async def load_tables(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    if dialect_of(database_url) == "sqlite":
        # A file of its own: WAL (as a loaded SQLite application runs) persists in
        # the file and must not change the other tests' shared one. Writers still
        # take turns; each waits per the busy timeout.
        database_url = (
            f"sqlite:///{tmp_path / 'load.db'}?journal_mode=wal&synchronous=normal&timeout=60"
        )
    for table in (TABLE, POINTS_TABLE):
        await drop_table(database_url, table)
    async with helper_database(database_url) as db:
        await db.execute(f"CREATE TABLE {TABLE} (k VARCHAR(20) PRIMARY KEY, task INTEGER)")
        await db.execute(f"CREATE TABLE {POINTS_TABLE} (id INTEGER PRIMARY KEY, v INTEGER)")
        await db.execute_many(
            f"INSERT INTO {POINTS_TABLE} (id, v) VALUES (:id, :v)",
            [{"id": i, "v": i * 3} for i in range(POINTS)],
        )
    yield database_url
    for table in (TABLE, POINTS_TABLE):
        await drop_table(database_url, table)


async def test_200_tasks_of_500_statements_account_for_every_row(load_tables: str) -> None:
    url = load_tables
    db = Database(url, max_size=10, acquire_timeout=60)
    async with db:
        await asyncio.wait_for(
            asyncio.gather(*(one_task(db, task, STEPS) for task in range(TASKS))), 300
        )
        stats = db.pool_stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        rows = await db.fetch_all(f"SELECT k FROM {TABLE}")
    found = [row[0] for row in rows]
    assert len(found) == len(set(found))
    assert set(found) == expected_keys(TASKS, STEPS)
