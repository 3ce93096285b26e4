"""The same column types give the same Python types on every server backend (issue 3, item 8).

PostgreSQL (asyncpg) is the reference; MySQL/MariaDB must match it on both
drivers. SQLite is left out: it stores raw SQL values untyped (a BOOLEAN column
holds 0/1, a DATE column text), and typing its results is the job of
SQLAlchemy result types, a later issue.
"""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest
from conftest import dialect_of, drop_table, scheme_of, urls_for

from aiodatabases import Database

URLS = urls_for("postgresql", "mysql")

pytestmark = [
    pytest.mark.skipif(not URLS, reason="no PostgreSQL or MySQL URL configured"),
    pytest.mark.parametrize("url", URLS, ids=scheme_of),
]

# The column types per dialect: the same SQL type where both have it.
_COLUMNS = {
    "postgresql": {
        "id": "SERIAL PRIMARY KEY",
        "flag": "BOOLEAN",
        "amount": "NUMERIC(12, 4)",
        "moment": "TIMESTAMP",
        "stamp": "TIMESTAMP",
        "day": "DATE",
        "clock": "TIME",
        "doc": "JSON",
        "data": "BYTEA",
    },
    "mysql": {
        "id": "INTEGER AUTO_INCREMENT PRIMARY KEY",
        "flag": "BOOLEAN",
        "amount": "DECIMAL(12, 4)",
        "moment": "DATETIME(6)",
        "stamp": "TIMESTAMP(6) NULL",
        "day": "DATE",
        "clock": "TIME(6)",
        "doc": "JSON",
        "data": "BLOB",
    },
}

_DOCUMENT = {"name": "naïve", "tags": ["a", "b"], "n": 1.5, "none": None}

ROWS: list[dict[str, Any]] = [
    {
        "flag": True,
        "amount": decimal.Decimal("12345.6789"),
        "moment": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
        "stamp": datetime.datetime(2024, 3, 1, 0, 0, 1, 654321),
        "day": datetime.date(2024, 2, 29),
        "clock": datetime.time(13, 14, 15, 161718),
        "doc": json.dumps(_DOCUMENT),
        "data": b"\x00\x01\xfe\xffbytes",
    },
    {
        "flag": False,
        "amount": decimal.Decimal("-0.0001"),
        "moment": datetime.datetime(1999, 12, 31, 0, 0),
        "stamp": datetime.datetime(2000, 1, 1, 12, 0),
        "day": datetime.date(1970, 1, 2),
        "clock": datetime.time(0, 0),
        "doc": json.dumps([1, "two", {"three": 3}]),
        "data": b"",
    },
]

# What each column comes back as, on every backend.
EXPECTED_TYPES = {
    "flag": bool,
    "amount": decimal.Decimal,
    "moment": datetime.datetime,
    "stamp": datetime.datetime,
    "day": datetime.date,
    "clock": datetime.time,
    "doc": str,  # asyncpg returns json as text (no codec); MySQL must match
    "data": bytes,
}

NAMES = list(EXPECTED_TYPES)
INSERT = f"INSERT INTO typed ({', '.join(NAMES)}) VALUES ({', '.join(':' + n for n in NAMES)})"
SELECT = f"SELECT {', '.join(NAMES)} FROM typed ORDER BY id"


@pytest.fixture
async def typed(url: str) -> Any:
    columns = _COLUMNS[dialect_of(url)]
    await drop_table(url, "typed")
    async with Database(url) as db:
        await db.execute(
            f"CREATE TABLE typed ({', '.join(f'{n} {t}' for n, t in columns.items())})"
        )
    yield url
    await drop_table(url, "typed")


def assert_same(row: Any, expected: dict[str, Any]) -> None:
    for name, python_type in EXPECTED_TYPES.items():
        value = row[name]
        assert type(value) is python_type, (name, value)
        if name == "doc":
            # The text may be normalised by the server; the document is the same.
            assert json.loads(value) == json.loads(expected[name])
        else:
            assert value == expected[name], name


async def test_types_round_trip(typed: str) -> None:
    async with Database(typed) as db:
        await db.execute(INSERT, ROWS[0])
        await db.execute_many(INSERT, ROWS[1:])
        fetched = await db.fetch_all(SELECT)
        one = await db.fetch_one(SELECT)
        streamed = [row async for row in db.iterate(SELECT)]
        # A value bound as a parameter is found again by equality.
        found = await db.fetch_val(
            "SELECT COUNT(*) FROM typed WHERE amount = :amount AND moment = :moment"
            " AND day = :day AND clock = :clock AND flag = :flag AND data = :data",
            {name: ROWS[0][name] for name in ("amount", "moment", "day", "clock", "flag", "data")},
        )
    assert len(fetched) == len(ROWS)
    for row, expected in zip(fetched, ROWS, strict=True):
        assert_same(row, expected)
    assert one is not None
    assert_same(one, ROWS[0])
    for row, expected in zip(streamed, ROWS, strict=True):  # iterate() converts like fetch_all()
        assert_same(row, expected)
    assert found == 1


async def test_nulls_are_none(typed: str) -> None:
    async with Database(typed) as db:
        await db.execute(INSERT, dict.fromkeys(NAMES))
        row = await db.fetch_one(SELECT)
    assert row is not None
    assert [row[name] for name in NAMES] == [None] * len(NAMES)
