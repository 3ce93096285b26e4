"""``Record``: the rows every fetch returns, on every backend, through real queries."""

from __future__ import annotations

import pytest
from conftest import dialect_of

from aiodatabases import Database, Record

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"
SELECT = "SELECT id, text, completed FROM notes ORDER BY id"


async def one_note(url: str) -> Record:
    async with Database(url) as db:
        await db.execute(INSERT, {"text": "buy milk", "completed": True})
        row = await db.fetch_one(SELECT)
    assert isinstance(row, Record)
    return row


async def test_every_fetch_returns_records(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": False})
        fetched_all = await db.fetch_all(SELECT)
        fetched_one = await db.fetch_one(SELECT)
        iterated = [row async for row in db.iterate(SELECT)]
        async with db.connection() as connection:
            on_connection = await connection.fetch_all(SELECT)
    for row in [*fetched_all, fetched_one, *iterated, *on_connection]:
        assert isinstance(row, Record)
        assert row["text"] == "a"


async def test_access_by_name_index_and_attribute(notes: str) -> None:
    row = await one_note(notes)
    assert row["id"] == 1
    assert row["text"] == "buy milk"
    assert bool(row["completed"]) is True
    assert row[0] == 1
    assert row[1] == "buy milk"
    assert row[-2] == "buy milk"
    assert row[-1] == row["completed"]
    assert row.id == 1
    assert row.text == "buy milk"
    assert row.completed == row["completed"]


async def test_mapping_interface(notes: str) -> None:
    row = await one_note(notes)
    completed = row["completed"]
    assert row._mapping["text"] == "buy milk"
    assert dict(row._mapping) == {"id": 1, "text": "buy milk", "completed": completed}
    assert list(row.keys()) == ["id", "text", "completed"]
    assert list(row.values()) == [1, "buy milk", completed]
    assert list(row.items()) == [("id", 1), ("text", "buy milk"), ("completed", completed)]
    assert dict(row) == {"id": 1, "text": "buy milk", "completed": completed}
    assert {**row} == dict(row)
    assert row.get("text") == "buy milk"
    assert row.get("missing") is None


async def test_iteration_yields_column_names(notes: str) -> None:
    row = await one_note(notes)
    assert list(row) == ["id", "text", "completed"]
    assert len(row) == 3
    assert "text" in row
    assert "missing" not in row


async def test_missing_column_raises_key_error_and_attribute_error(notes: str) -> None:
    row = await one_note(notes)
    with pytest.raises(KeyError, match="missing"):
        row["missing"]
    with pytest.raises(AttributeError, match="missing"):
        row.missing  # noqa: B018
    with pytest.raises(IndexError):
        row[3]
    assert not hasattr(row, "missing")


async def test_equality(notes: str) -> None:
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": True})
        first = await db.fetch_one(SELECT)
        second = await db.fetch_one(SELECT)
        await db.execute(INSERT, {"text": "b", "completed": True})
        other = await db.fetch_one("SELECT id, text, completed FROM notes WHERE id = 2")
    assert first is not None
    assert first == {"id": 1, "text": "a", "completed": first["completed"]}
    assert first != {"id": 1, "text": "z", "completed": first["completed"]}
    assert first == second
    assert first != other


async def test_equality_compares_names_as_well_as_values(database_url: str) -> None:
    # The drivers' own rows compare as tuples; a Record is a mapping.
    async with Database(database_url) as db:
        ab = await db.fetch_one("SELECT 1 AS a, 2 AS b")
        cd = await db.fetch_one("SELECT 1 AS c, 2 AS d")
        ab_again = await db.fetch_one("SELECT 1 AS a, 2 AS b")
    assert ab is not None
    assert cd is not None
    assert ab != cd
    assert not ab == cd  # noqa: SIM201 - == and != are checked apart
    assert ab == ab_again
    assert not ab != ab_again  # noqa: SIM202
    assert ab == (1, 2)
    assert ab != (2, 1)
    with pytest.raises(TypeError):
        hash(ab)


async def test_columns_named_like_sequence_methods_are_columns(database_url: str) -> None:
    quote = "`" if dialect_of(database_url) == "mysql" else '"'
    async with Database(database_url) as db:
        row = await db.fetch_one(f"SELECT 3 AS {quote}count{quote}, 4 AS {quote}index{quote}")
        other = await db.fetch_one("SELECT 1 AS one")
    assert row is not None
    assert other is not None
    assert (row.count, row.index) == (3, 4)
    assert (row["count"], row["index"]) == (3, 4)
    for name in ("count", "index"):
        with pytest.raises(AttributeError, match=name):
            getattr(other, name)


async def test_every_way_of_reading_a_boolean_gives_the_same_value(notes: str) -> None:
    query = "SELECT completed, id, completed AS again FROM notes"
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": True})
        row = await db.fetch_one(query)
        rows = await db.fetch_all(query)
        streamed = [r async for r in db.iterate(query)]
    assert row is not None
    for record in (row, rows[0], streamed[0]):
        read = [
            record["completed"],
            record[0],
            record[-1],
            record.completed,
            *record[0:3:2],
            *list(record.values())[0::2],
            dict(record)["again"],
        ]
        assert read == [True] * len(read)
        if dialect_of(notes) != "sqlite":  # SQLite has no boolean type: 1
            assert all(type(value) is bool for value in read)
        assert record == {"completed": True, "id": 1, "again": True}


async def test_an_index_out_of_range_raises_index_error(notes: str) -> None:
    # Regression: on MySQL, a row with a BOOLEAN column answered row[-5] of
    # three columns with a value instead of raising.
    async with Database(notes) as db:
        await db.execute(INSERT, {"text": "a", "completed": True})
        row = await db.fetch_one("SELECT completed, id, text FROM notes")
    assert row is not None
    for index in (3, 4, -4, -5, 100, -100):
        with pytest.raises(IndexError):
            row[index]
    assert (row[-3], row[-2], row[-1]) == (row["completed"], 1, "a")


async def test_repr_shows_names_and_values(notes: str) -> None:
    row = await one_note(notes)
    text = repr(row)
    assert "buy milk" in text
    assert "text" in text


async def test_expressions_and_nulls(database_url: str) -> None:
    async with Database(database_url) as db:
        row = await db.fetch_one("SELECT 1 + 1 AS two, CAST(NULL AS INTEGER) AS empty, 'x' AS x")
    assert row is not None
    assert row["two"] == 2
    assert row.two == 2
    assert row["empty"] is None
    assert row.empty is None
    assert "empty" in row
    assert dict(row) == {"two": 2, "empty": None, "x": "x"}
