"""Synchronous tests, async tests using TestClient, and async tests using httpx."""

from __future__ import annotations

import httpx
from app import app, database
from fastapi.testclient import TestClient

from aiodatabases import Database

INSERT = "INSERT INTO notes (text, completed) VALUES (:text, :completed)"


def test_create_and_list(client: TestClient) -> None:
    response = client.post("/notes", json=[{"text": "buy milk"}, {"text": "walk the dog"}])
    assert response.status_code == 201
    assert response.json() == {"created": 2, "total": 2}
    assert sorted(note["text"] for note in client.get("/notes").json()) == [
        "buy milk",
        "walk the dog",
    ]


def test_starts_empty(client: TestClient) -> None:
    assert client.get("/notes").json() == []


def test_an_invalid_note_creates_none(client: TestClient) -> None:
    response = client.post("/notes", json=[{"text": "fine"}, {"text": " "}, {"text": "ok"}])
    assert response.status_code == 400
    assert client.get("/notes").json() == []


async def test_testclient_inside_an_async_test(aiodatabases_db: Database) -> None:
    assert aiodatabases_db is database
    await aiodatabases_db.execute(INSERT, {"text": "from the test", "completed": True})
    with TestClient(app) as client:
        assert client.post("/notes", json=[{"text": "from the app"}]).json()["total"] == 2
        texts = [note["text"] for note in client.get("/notes").json()]
    assert texts == ["from the test", "from the app"]
    assert await aiodatabases_db.fetch_val("SELECT COUNT(*) FROM notes") == 2


async def test_httpx_async_client(aiodatabases_db: Database) -> None:
    transport = httpx.ASGITransport(app=app)  # runs no lifespan: the plugin connected it
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/notes")).json() == []
        response = await http.post("/notes", json=[{"text": f"note {i}"} for i in range(10)])
        assert response.json() == {"created": 10, "total": 10}
    assert await aiodatabases_db.fetch_val("SELECT COUNT(*) FROM notes") == 10


async def test_starts_empty_again(aiodatabases_db: Database) -> None:
    assert await aiodatabases_db.fetch_all("SELECT * FROM notes") == []
