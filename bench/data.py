"""Sizes, SQL, schema and data of the benchmark, per backend.

Every table the benchmark uses starts with ``bench_``; each backend's
``Admin`` creates them before the run and drops them after it. The data is
deterministic, so every run measures the same rows.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeAlias

Style: TypeAlias = Literal["numeric_dollar", "qmark", "format"]
Row: TypeAlias = tuple[Any, ...]

TABLES = ("bench_wide", "bench_stream", "bench_insert", "bench_churn", "bench_mixed")
COLUMNS = ("id", "name", "score", "created", "active", "amount", "payload", "uid")


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does (see the issue for the full sizes)."""

    point: int = 5_000  # W1: sequential point selects
    wide_rows: int = 10_000  # W2: rows of the wide table
    wide_times: int = 10  # W2: fetch_all of the whole wide table, this many times
    tasks: int = 50  # W3: concurrent tasks ...
    per_task: int = 100  # W3: ... each running this many point selects
    pool: int = 10  # W3: pool size of every pooled contender
    insert_rows: int = 5_000  # W4: rows inserted by one execute_many
    stream_rows: int = 100_000  # W5: rows streamed by iterate()
    churn: int = 2_000  # W6: begin; insert; select; rollback, this many times
    mixed_tasks: int = 200  # W8: concurrent tasks ...
    mixed_steps: int = 50  # W8: ... each running this many operations of the mix


FULL = Sizes()
QUICK = Sizes(
    point=300,
    wide_rows=1_000,
    wide_times=2,
    tasks=50,
    per_task=6,
    insert_rows=500,
    stream_rows=5_000,
    churn=150,
    mixed_tasks=20,
    mixed_steps=10,
)


# -- SQL, written once with :name parameters --------------------------------------------

_WIDE_COLUMNS = ", ".join(COLUMNS)
POINT_SQL = "SELECT id, name, score FROM bench_wide WHERE id = :id"
WIDE_SQL = f"SELECT {_WIDE_COLUMNS} FROM bench_wide WHERE id > :lo"
INSERT_SQL = (
    f"INSERT INTO bench_insert ({_WIDE_COLUMNS}) VALUES "
    "(:id, :name, :score, :created, :active, :amount, :payload, :uid)"
)
STREAM_SQL = f"SELECT {_WIDE_COLUMNS} FROM bench_stream WHERE id > :lo"
CHURN_INSERT_SQL = "INSERT INTO bench_churn (id, name) VALUES (:id, :name)"
CHURN_SELECT_SQL = "SELECT name FROM bench_churn WHERE id = :id"
MIXED_INSERT_SQL = "INSERT INTO bench_mixed (id, name) VALUES (:id, :name)"
MIXED_COUNT_SQL = "SELECT count(*) FROM bench_mixed"

_PARAM = re.compile(r":([A-Za-z_]\w*)")


#: W8's operations: what step ``step`` of a task does (a fixed rule, so every
#: contender runs the same mix): a transaction inserting one row that commits
#: or rolls back, two point selects, two inserts, in every five steps.
MIXED_KINDS = ("transaction", "select", "select", "insert", "insert")


def mixed_commits(task: int, step: int) -> bool:
    """Whether W8's transaction at ``step`` of ``task`` commits (else it rolls back)."""
    return (task + step // 5) % 2 == 0


def mixed_expected_rows(tasks: int, steps: int) -> int:
    """The rows W8 leaves: its inserts and its committed transactions."""
    return sum(
        1
        for task in range(tasks)
        for step in range(steps)
        if MIXED_KINDS[step % 5] == "insert"
        or (MIXED_KINDS[step % 5] == "transaction" and mixed_commits(task, step))
    )


def positional(sql: str, style: Style) -> str:
    """The benchmark's SQL in a driver's own style (its SQL has no strings or casts)."""
    if style == "qmark":
        return _PARAM.sub("?", sql)
    if style == "format":
        return _PARAM.sub("%s", sql)
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PARAM.sub(number, sql)


def point_ids(count: int, rows: int) -> list[int]:
    """``count`` ids spread over ``1..rows`` (a fixed stride, not sequential)."""
    return [(i * 7_919) % rows + 1 for i in range(count)]


# -- data ---------------------------------------------------------------------------------

_EPOCH = datetime.datetime(2024, 1, 1, 12, 0, 0)


def wide_row(i: int, style: Style) -> Row:
    """Row ``i`` of a wide table, with the values the backend's driver takes."""
    name = f"name-{i:07d}"
    score = i * 0.25
    created = _EPOCH + datetime.timedelta(seconds=i, microseconds=i % 1_000)
    active = i % 2 == 0
    amount = Decimal(i % 1_000_000) / 100
    payload = json.dumps({"i": i, "tags": ["a", "b"], "ok": active})
    uid = uuid.UUID(int=i)
    if style == "numeric_dollar":  # asyncpg: native types (json as text)
        return (i, name, score, created, active, amount, payload, uid)
    if style == "qmark":  # SQLite: ISO text, 0/1, text
        return (
            i,
            name,
            score,
            created.isoformat(" "),
            int(active),
            float(amount),
            payload,
            str(uid),
        )
    return (i, name, score, created, active, amount, payload, str(uid))  # MySQL


def wide_rows(start: int, count: int, style: Style) -> list[Row]:
    return [wide_row(i, style) for i in range(start, start + count)]


def as_mappings(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


# -- schema and administration, per backend -----------------------------------------------


def _wide_table(name: str, types: Sequence[str], suffix: str = "") -> str:
    columns = ", ".join(f"{col} {typ}" for col, typ in zip(COLUMNS, types, strict=True))
    return f"CREATE TABLE {name} ({columns}){suffix}"


_PG_TYPES = (
    "integer PRIMARY KEY",
    "text NOT NULL",
    "double precision NOT NULL",
    "timestamp NOT NULL",
    "boolean NOT NULL",
    "numeric(12,2) NOT NULL",
    "json NOT NULL",
    "uuid NOT NULL",
)
_SQLITE_TYPES = (
    "INTEGER PRIMARY KEY",
    "TEXT NOT NULL",
    "REAL NOT NULL",
    "TEXT NOT NULL",
    "INTEGER NOT NULL",
    "NUMERIC NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
)
_MYSQL_TYPES = (
    "INT PRIMARY KEY",
    "VARCHAR(64) NOT NULL",
    "DOUBLE NOT NULL",
    "DATETIME(6) NOT NULL",
    "BOOLEAN NOT NULL",
    "DECIMAL(12,2) NOT NULL",
    "JSON NOT NULL",
    "CHAR(36) NOT NULL",
)

_CHUNK = 2_000


class Admin(Protocol):
    """Creates, fills, resets and drops the benchmark's tables on one server."""

    async def create(self, sizes: Sizes) -> None: ...

    async def reset_insert_table(self) -> None: ...

    async def drop(self) -> None: ...

    async def server_version(self) -> str: ...


class PostgresAdmin:
    def __init__(self, url: str) -> None:
        self._url = url

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self._url)

    async def create(self, sizes: Sizes) -> None:
        conn = await self._connect()
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
            for table in ("bench_wide", "bench_stream", "bench_insert"):
                await conn.execute(_wide_table(table, _PG_TYPES))
            await conn.execute("CREATE TABLE bench_churn (id integer PRIMARY KEY, name text)")
            await conn.execute("CREATE TABLE bench_mixed (id integer PRIMARY KEY, name text)")
            for table, count in (
                ("bench_wide", sizes.wide_rows),
                ("bench_stream", sizes.stream_rows),
            ):
                await conn.copy_records_to_table(
                    table, records=wide_rows(1, count, "numeric_dollar"), columns=COLUMNS
                )
            await conn.execute("ANALYZE bench_wide; ANALYZE bench_stream")
        finally:
            await conn.close()

    async def reset_insert_table(self) -> None:
        conn = await self._connect()
        try:
            await conn.execute("TRUNCATE bench_insert, bench_mixed")
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await self._connect()
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
        finally:
            await conn.close()

    async def server_version(self) -> str:
        conn = await self._connect()
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return f"PostgreSQL {str(version).split()[0]}"


class SQLiteAdmin:
    """Uses the standard library's sqlite3 directly: setup is not measured."""

    def __init__(self, path: str) -> None:
        self._path = path

    def _run(self, *statements: str) -> None:
        with sqlite3.connect(self._path, isolation_level=None) as conn:
            for sql in statements:
                conn.execute(sql)
        conn.close()

    async def create(self, sizes: Sizes) -> None:
        self._run(*(f"DROP TABLE IF EXISTS {table}" for table in TABLES))
        self._run(
            *(
                _wide_table(t, _SQLITE_TYPES)
                for t in ("bench_wide", "bench_stream", "bench_insert")
            ),
            "CREATE TABLE bench_churn (id INTEGER PRIMARY KEY, name TEXT)",
            "CREATE TABLE bench_mixed (id INTEGER PRIMARY KEY, name TEXT)",
        )
        conn = sqlite3.connect(self._path)
        try:
            placeholders = ", ".join("?" * len(COLUMNS))
            with conn:
                for table, count in (
                    ("bench_wide", sizes.wide_rows),
                    ("bench_stream", sizes.stream_rows),
                ):
                    conn.executemany(
                        f"INSERT INTO {table} VALUES ({placeholders})", wide_rows(1, count, "qmark")
                    )
        finally:
            conn.close()

    async def reset_insert_table(self) -> None:
        self._run("DELETE FROM bench_insert", "DELETE FROM bench_mixed")

    async def drop(self) -> None:
        self._run(*(f"DROP TABLE IF EXISTS {table}" for table in TABLES))

    async def server_version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"


class MySQLAdmin:
    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        self._kwargs = connect_kwargs

    async def _execute(self, *statements: str, rows: Sequence[Row] = (), insert: str = "") -> Any:
        import asyncmy
        from asyncmy.cursors import Cursor

        class QuietCursor(Cursor):
            async def _show_warnings(self, conn: Any) -> None:
                return None  # DROP TABLE IF EXISTS of a missing table warns

        conn = await asyncmy.connect(autocommit=True, **self._kwargs)
        try:
            result = None
            async with conn.cursor(QuietCursor) as cursor:
                for sql in statements:
                    await cursor.execute(sql)
                    result = await cursor.fetchone() if cursor.description else None
                for start in range(0, len(rows), _CHUNK):
                    await cursor.executemany(insert, list(rows[start : start + _CHUNK]))
            return result
        finally:
            await conn.ensure_closed()

    async def create(self, sizes: Sizes) -> None:
        await self._execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
        await self._execute(
            *(
                _wide_table(t, _MYSQL_TYPES, " ENGINE=InnoDB")
                for t in ("bench_wide", "bench_stream", "bench_insert")
            ),
            "CREATE TABLE bench_churn (id INT PRIMARY KEY, name VARCHAR(64)) ENGINE=InnoDB",
            "CREATE TABLE bench_mixed (id INT PRIMARY KEY, name VARCHAR(64)) ENGINE=InnoDB",
        )
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        for table, count in (("bench_wide", sizes.wide_rows), ("bench_stream", sizes.stream_rows)):
            await self._execute(
                rows=wide_rows(1, count, "format"),
                insert=f"INSERT INTO {table} VALUES ({placeholders})",
            )
        await self._execute("ANALYZE TABLE bench_wide, bench_stream")

    async def reset_insert_table(self) -> None:
        await self._execute("TRUNCATE TABLE bench_insert", "TRUNCATE TABLE bench_mixed")

    async def drop(self) -> None:
        await self._execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")

    async def server_version(self) -> str:
        row = await self._execute("SELECT VERSION()")
        version = str(row[0]) if row else "?"
        kind = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        return f"{kind} {version.split('-')[0]}"
