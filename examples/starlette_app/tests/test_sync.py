"""Plain (synchronous) tests driving the app through Starlette's TestClient."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_create_and_list(client: TestClient) -> None:
    response = client.post("/notes", json=[{"text": "buy milk"}, {"text": "walk the dog"}])
    assert response.status_code == 201
    assert response.json() == {"created": 2, "total": 2}
    assert sorted(note["text"] for note in client.get("/notes").json()) == [
        "buy milk",
        "walk the dog",
    ]


def test_starts_empty(client: TestClient) -> None:
    # The previous test's notes were rolled back.
    assert client.get("/notes").json() == []


def test_an_invalid_note_creates_none(client: TestClient) -> None:
    response = client.post("/notes", json=[{"text": "fine"}, {"text": " "}, {"text": "ok"}])
    assert response.status_code == 400
    assert client.get("/notes").json() == []
