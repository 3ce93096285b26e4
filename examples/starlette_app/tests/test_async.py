"""Async tests: the test writes through the database, the app through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from app import app, database, notes

from aiodatabases import Database


@pytest.fixture
async def http(aiodatabases_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    # ASGITransport runs no lifespan: the plugin has connected the database.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_the_app_database_is_the_isolated_one(aiodatabases_db: Database) -> None:
    assert aiodatabases_db is database


async def test_each_side_sees_the_other(aiodatabases_db: Database, http: httpx.AsyncClient) -> None:
    await aiodatabases_db.execute(notes.insert().values(text="from the test", completed=True))
    response = await http.post("/notes", json=[{"text": f"note {i}"} for i in range(5)])
    assert response.json() == {"created": 5, "total": 6}
    count = sa.select(sa.func.count()).select_from(notes)
    assert await aiodatabases_db.fetch_val(count) == 6
    first = (await http.get("/notes")).json()[0]
    assert first == {"id": first["id"], "text": "from the test", "completed": True}


async def test_starts_empty(aiodatabases_db: Database) -> None:
    assert await aiodatabases_db.fetch_all(notes.select()) == []
