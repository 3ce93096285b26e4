"""SQLAlchemy Core statements run as ``databases`` 0.9 runs them (issue 13, item 4).

LIKE filters whose values hold ``%``, ``_`` and backslashes (as ORMs built on
``databases`` generate them), literals with backslashes and ``%``, and
``Numeric`` columns, on every backend. The expected values were observed by
running the same statements through ``databases`` 0.9 (SQLAlchemy 2.1) on
PostgreSQL and MariaDB; on SQLite ``databases`` fails every statement whose
SQL holds a ``%``, so there the expected rows are the other backends' (the
same LIKE semantics), except where SQLite's own semantics differ (said where).
"""

from __future__ import annotations

import decimal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import dialect_of, drop_table, helper_database
from sqlalchemy.schema import CreateTable

from aiodatabases import Database

metadata = sa.MetaData()

names = sa.Table(
    "sa_fidelity_names",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)

numbers = sa.Table(
    "sa_fidelity_numbers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("n15", sa.Numeric(20, 15)),
    sa.Column("n20", sa.Numeric(30, 20)),
    sa.Column("n2", sa.Numeric(10, 2)),
)

# Lower case only: LIKE is case-insensitive on MySQL and SQLite, not on PostgreSQL.
NAMES = [
    "100%",
    "a_b",
    "ab",
    "back\\slash",
    "50% off_x",
    "plain",
    "x\\%y",
    "under_",
    "%start",
    "_start",
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """Both tables, ``names`` filled with ``NAMES`` in order; a connected ``Database``."""
    for table in metadata.sorted_tables:
        await drop_table(database_url, table.name)
    async with helper_database(database_url) as helper:
        for table in metadata.sorted_tables:
            await helper.execute(CreateTable(table))
    async with Database(database_url) as database:
        await database.execute_many(
            names.insert(), [{"id": i, "name": name} for i, name in enumerate(NAMES, start=1)]
        )
        yield database
    for table in metadata.sorted_tables:
        await drop_table(database_url, table.name)


async def matching(db: Database, condition: Any) -> list[str]:
    rows = await db.fetch_all(sa.select(names.c.name).where(condition).order_by(names.c.id))
    return [row[0] for row in rows]


def escaped_like(value: str, operator: str) -> Any:
    """``name <operator> '%value%'`` as ORMs on ``databases`` build ``name__contains=value``:
    the value's ``\\``, ``%`` and ``_`` escaped with backslashes, and the clause's
    ``escape`` modifier set to a backslash after the clause was built."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    clause = getattr(names.c.name, operator)(f"%{escaped}%")
    clause.modifiers["escape"] = "\\"
    return clause


# The names holding each value, as ``databases`` 0.9 returned them for LIKE '%value%'.
CONTAINING = {
    "%": ["100%", "50% off_x", "x\\%y", "%start"],
    "_": ["a_b", "50% off_x", "under_", "_start"],
    "\\": ["back\\slash", "x\\%y"],
    "a_b": ["a_b"],
    "%s": ["%start"],
}


@pytest.mark.parametrize("operator", ["like", "ilike", "not_like", "not_ilike"])
@pytest.mark.parametrize("value", list(CONTAINING), ids=repr)
async def test_orm_style_escaped_like_counted_over_a_subquery_alias(
    db: Database, value: str, operator: str
) -> None:
    clause = escaped_like(value, operator)
    expected = CONTAINING[value]
    if operator.startswith("not_"):
        expected = [name for name in NAMES if name not in expected]
    subquery = sa.select(names.c.id).where(clause).subquery()
    count = sa.select(sa.func.count()).select_from(subquery.alias())
    assert await db.fetch_val(count) == len(expected)
    assert await matching(db, clause) == expected


# (method, value, the names databases 0.9 returned)
AUTOESCAPED = [
    ("contains", "%", ["100%", "50% off_x", "x\\%y", "%start"]),
    ("startswith", "%", ["%start"]),
    ("endswith", "%", ["100%"]),
    ("contains", "_", ["a_b", "50% off_x", "under_", "_start"]),
    ("startswith", "_", ["_start"]),
    ("endswith", "_", ["under_"]),
    ("contains", "\\", ["back\\slash", "x\\%y"]),
    ("startswith", "\\", []),
    ("contains", "\\%", ["x\\%y"]),
    ("contains", "a_b", ["a_b"]),
    ("startswith", "%s", ["%start"]),
    ("endswith", "%s", []),
]


@pytest.mark.parametrize(("method", "value", "expected"), AUTOESCAPED, ids=repr)
async def test_autoescaped_contains_startswith_endswith(
    db: Database, method: str, value: str, expected: list[str]
) -> None:
    assert await matching(db, getattr(names.c.name, method)(value, autoescape=True)) == expected


@pytest.mark.parametrize(
    ("pattern", "escape", "expected"),
    [
        ("%\\%%", "\\", ["100%", "50% off_x", "x\\%y", "%start"]),
        ("%\\_%", "\\", ["a_b", "50% off_x", "under_", "_start"]),
        ("%\\\\%", "\\", ["back\\slash", "x\\%y"]),
        ("%\\%", "\\", ["100%"]),  # a backslash-escaped % at the end
        ("%^%%", "^", ["100%", "50% off_x", "x\\%y", "%start"]),
    ],
    ids=repr,
)
async def test_like_with_an_escape_character(
    db: Database, pattern: str, escape: str, expected: list[str]
) -> None:
    assert await matching(db, names.c.name.like(pattern, escape=escape)) == expected
    assert await matching(db, names.c.name.not_like(pattern, escape=escape)) == [
        name for name in NAMES if name not in expected
    ]


async def test_a_literal_rendered_into_the_sql_keeps_its_backslash_and_percent(
    db: Database,
) -> None:
    value = "a\\b%c"
    assert await db.fetch_val(sa.select(sa.literal(value, literal_execute=True))) == value
    assert await db.fetch_val(sa.select(sa.literal(value))) == value
    in_rendered = sa.select(names.c.name).where(
        names.c.name.in_(sa.bindparam("wanted", expanding=True, literal_execute=True))
    )
    rows = await db.fetch_all(in_rendered, {"wanted": ["x\\%y", "100%", "none"]})
    assert sorted(row[0] for row in rows) == ["100%", "x\\%y"]
    replaced = sa.select(sa.func.replace(names.c.name, "\\", "%")).where(names.c.id == 4)
    assert await db.fetch_val(replaced) == "back%slash"


async def test_text_with_percent_and_backslash_literals(db: Database) -> None:
    # A backslash in an SQL string literal is an escape on MySQL, plain text elsewhere.
    backslash = "'a\\\\b'" if dialect_of(str(db.url)) == "mysql" else "'a\\b'"
    row = await db.fetch_one(
        sa.text(f"SELECT :v AS v, '100%' AS p, '%%' AS q, {backslash} AS b").bindparams(v="a\\b%c")
    )
    assert row is not None
    assert (row["v"], row["p"], row["q"], row["b"]) == ("a\\b%c", "100%", "%%", "a\\b")


async def test_like_against_a_literal_pattern_in_text_and_core(db: Database) -> None:
    pattern = "'%\\%%'"
    # PostgreSQL and MySQL: backslash is LIKE's default escape, so this is "holds a %";
    # SQLite has no default escape: a backslash followed by anything.
    if dialect_of(str(db.url)) == "sqlite":
        expected = ["back\\slash", "x\\%y"]
    else:
        expected = ["100%", "50% off_x", "x\\%y", "%start"]
    rows = await db.fetch_all(
        sa.text(f"SELECT name FROM sa_fidelity_names WHERE name LIKE {pattern} ORDER BY id")
    )
    assert [row[0] for row in rows] == expected
    assert await matching(db, names.c.name.like(sa.literal_column(pattern))) == expected


# -- Numeric ------------------------------------------------------------------------------

# (value stored through Core, n15, n20, n2) read back through Core. Observed from
# databases 0.9 on PostgreSQL and MariaDB (the same there); SQLite stores a REAL, and
# databases reads it back as below (a float's binary value to n20's 20 places).
NUMERIC_ROWS: list[tuple[Any, ...]] = [
    (
        decimal.Decimal("0.700000000000001"),
        decimal.Decimal("0.700000000000001"),
        decimal.Decimal("0.70000000000000100000"),
        decimal.Decimal("0.70"),
    ),
    (
        0.700000000000001,
        decimal.Decimal("0.700000000000001"),
        decimal.Decimal("0.70000000000000100000"),
        decimal.Decimal("0.70"),
    ),
    (
        decimal.Decimal("12345.123456789012345"),
        decimal.Decimal("12345.123456789012345"),
        decimal.Decimal("12345.12345678901234500000"),
        decimal.Decimal("12345.12"),
    ),
    (
        0.1,
        decimal.Decimal("0.100000000000000"),
        decimal.Decimal("0.10000000000000000000"),
        decimal.Decimal("0.10"),
    ),
    (
        decimal.Decimal("-0.000000000000001"),
        decimal.Decimal("-1E-15"),
        decimal.Decimal("-1.00000E-15"),
        decimal.Decimal("0.00"),
    ),
    (
        1,
        decimal.Decimal("1.000000000000000"),
        decimal.Decimal("1.00000000000000000000"),
        decimal.Decimal("1.00"),
    ),
]
SQLITE_DIFFERENT = {
    # row index: (n15, n20) databases 0.9 returned on SQLite
    0: (decimal.Decimal("0.700000000000001"), decimal.Decimal("0.70000000000000095479")),
    1: (decimal.Decimal("0.700000000000001"), decimal.Decimal("0.70000000000000095479")),
    2: (decimal.Decimal("12345.123456789011470"), decimal.Decimal("12345.12345678901147039142")),
    3: (decimal.Decimal("0.100000000000000"), decimal.Decimal("0.10000000000000000555")),
}


def expected_numbers(url: str) -> list[tuple[Any, ...]]:
    rows = []
    for index, (_, n15, n20, n2) in enumerate(NUMERIC_ROWS):
        if dialect_of(url) == "sqlite" and index in SQLITE_DIFFERENT:
            n15, n20 = SQLITE_DIFFERENT[index]
        rows.append((index + 1, n15, n20, n2))
    return rows


async def test_numeric_round_trip_returns_the_decimal_databases_returns(db: Database) -> None:
    for index, (value, *_) in enumerate(NUMERIC_ROWS, start=1):
        await db.execute(numbers.insert().values(id=index, n15=value, n20=value, n2=value))
    rows = await db.fetch_all(sa.select(numbers).order_by(numbers.c.id))
    got = [tuple(row[i] for i in range(4)) for row in rows]
    assert got == expected_numbers(str(db.url))
    assert all(isinstance(value, decimal.Decimal) for row in got for value in row[1:])
    # Same digits, not only equal values: the scale of each column.
    assert [str(row[2]) for row in got] == [str(row[2]) for row in expected_numbers(str(db.url))]


async def test_numeric_written_by_raw_sql_reads_back_exactly(db: Database) -> None:
    await db.execute(
        "INSERT INTO sa_fidelity_numbers (id, n15, n20, n2)"
        " VALUES (1, 0.700000000000001, 0.700000000000001, 0.7)"
    )
    row = await db.fetch_one(sa.select(numbers.c.n15, numbers.c.n20, numbers.c.n2))
    assert row is not None
    if dialect_of(str(db.url)) == "sqlite":
        # A REAL on SQLite; databases 0.9 reads back the float's binary value.
        expected_n20 = decimal.Decimal("0.70000000000000095479")
    else:
        expected_n20 = decimal.Decimal("0.70000000000000100000")
    assert (row[0], str(row[1]), row[2]) == (
        decimal.Decimal("0.700000000000001"),
        str(expected_n20),
        decimal.Decimal("0.70"),
    )


async def test_a_decimal_compared_in_sql_binds_every_digit(db: Database) -> None:
    await db.execute("INSERT INTO sa_fidelity_numbers (id, n15) VALUES (1, 12345.123456789012345)")
    found = sa.select(numbers.c.id).where(numbers.c.n15 == decimal.Decimal("12345.123456789012345"))
    # SQLite stores a REAL: the Decimal, bound as a float, is the same float.
    assert await db.fetch_val(found) == 1
    # A float compared with a Numeric column binds as a Float (SQLAlchemy's choice),
    # which asyncpg sends with its binary expansion: no match on PostgreSQL, in
    # databases 0.9 too; not asserted here.


async def test_a_numeric_literal_with_no_type_from_the_server(db: Database) -> None:
    # What databases 0.9 returned: PostgreSQL infers text for a bare SELECT $1;
    # MariaDB returns a DECIMAL for the Decimal and a DOUBLE for the float; SQLite
    # a REAL, read back at the type's 20 places.
    value = decimal.Decimal("0.700000000000001")
    query = sa.select(
        sa.literal(value, sa.Numeric(30, 20)), sa.literal(0.700000000000001, sa.Numeric(30, 20))
    )
    expected = {
        "postgresql": ("0.700000000000001", "0.700000000000001"),
        "mysql": (value, 0.700000000000001),
        "sqlite": (decimal.Decimal("0.70000000000000095479"),) * 2,
    }[dialect_of(str(db.url))]
    row = await db.fetch_one(query)
    assert row is not None
    assert (row[0], row[1]) == expected


async def test_a_server_default_with_percent_and_backslash_in_ddl(db: Database) -> None:
    # databases 0.9 stores '100%%\x' on PostgreSQL (its DDL keeps pyformat's doubled %).
    table = sa.Table(
        "sa_fidelity_defaults",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(20), server_default="100%\\x"),
    )
    url = str(db.url)
    await drop_table(url, table.name)
    try:
        await db.execute(CreateTable(table))
        await db.execute(table.insert().values(id=1))
        assert await db.fetch_val(sa.select(table.c.label)) == "100%\\x"
    finally:
        await drop_table(url, table.name)
