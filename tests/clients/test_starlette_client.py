"""A small Starlette app on aiodatabases, tested the way its users test it.

The app is the usual `databases` one: a module-level ``Database`` (with
``force_rollback=True`` for tests), a lifespan that connects and disconnects
it, handlers that query it with SQLAlchemy Core. It is driven with Starlette's
synchronous ``TestClient`` (the app on its own loop thread) and with
``httpx.AsyncClient`` over ``ASGITransport`` inside pytest-asyncio tests, on
every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from conftest import DATABASE_URLS, drop_table, helper_database, scheme_of
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from aiodatabases import Database

metadata = sa.MetaData()
notes = sa.Table(
    "web_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
    sa.Column("completed", sa.Boolean, nullable=False),
)


def note_json(row: object) -> dict[str, object]:
    mapping = row._mapping  # type: ignore[attr-defined]
    return {"id": mapping["id"], "text": mapping["text"], "completed": mapping["completed"]}


def make_app(database: Database) -> Starlette:
    """The app a `databases` user writes, around one database object."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.connect()
        try:
            yield
        finally:
            await database.disconnect()

    async def list_notes(request: Request) -> Response:
        rows = await database.fetch_all(notes.select().order_by(notes.c.id))
        return JSONResponse([note_json(row) for row in rows])

    async def create_note(request: Request) -> Response:
        payload = await request.json()
        query = notes.insert().values(text=payload["text"], completed=payload["completed"])
        note_id = await database.execute(query)
        return JSONResponse({"id": note_id, **payload}, status_code=201)

    async def create_notes(request: Request) -> Response:
        """All the notes of the batch, or none of them."""
        payload = await request.json()
        try:
            async with database.transaction():
                for note in payload:
                    if not note["text"]:
                        raise ValueError("a note needs text")
                    await database.execute(notes.insert().values(**note))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        total = await database.fetch_val(sa.select(sa.func.count()).select_from(notes))
        return JSONResponse({"total": total}, status_code=201)

    async def get_note(request: Request) -> Response:
        query = notes.select().where(notes.c.id == request.path_params["id"])
        row = await database.fetch_one(query)
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(note_json(row))

    async def update_note(request: Request) -> Response:
        payload = await request.json()
        query = notes.update().where(notes.c.id == request.path_params["id"])
        await database.execute(query, values=payload)
        return await get_note(request)

    return Starlette(
        routes=[
            Route("/notes", list_notes, methods=["GET"]),
            Route("/notes", create_note, methods=["POST"]),
            Route("/notes/batch", create_notes, methods=["POST"]),
            Route("/notes/{id:int}", get_note, methods=["GET"]),
            Route("/notes/{id:int}", update_note, methods=["PUT"]),
        ],
        lifespan=lifespan,
    )


@dataclass
class Site:
    url: str
    database: Database
    app: Starlette


# One module-level database and app per backend, built at import.
SITES = [
    Site(url, database, make_app(database))
    for url in DATABASE_URLS
    for database in [Database(url, force_rollback=True)]
]


@pytest.fixture(scope="module")
def web_notes() -> Iterator[None]:
    async def create(url: str) -> None:
        await drop_table(url, notes.name)
        async with helper_database(url) as database:
            await database.execute(sa.schema.CreateTable(notes))

    for url in DATABASE_URLS:
        asyncio.run(create(url))
    yield
    for url in DATABASE_URLS:
        asyncio.run(drop_table(url, notes.name))


@pytest.fixture(params=SITES, ids=lambda site: scheme_of(site.url))
def site(request: pytest.FixtureRequest, web_notes: None) -> Site:
    chosen: Site = request.param
    return chosen


def exercise(client: TestClient) -> None:
    """Create, read and update through the routes; the table is empty at the start."""
    assert client.get("/notes").json() == []
    created = client.post("/notes", json={"text": "buy milk", "completed": False})
    assert created.status_code == 201
    note_id = created.json()["id"]
    assert isinstance(note_id, int)
    assert client.get(f"/notes/{note_id}").json() == {
        "id": note_id,
        "text": "buy milk",
        "completed": False,
    }
    updated = client.put(f"/notes/{note_id}", json={"completed": True})
    assert updated.json()["completed"] is True
    assert client.get(f"/notes/{note_id + 1000}").status_code == 404
    assert [note["text"] for note in client.get("/notes").json()] == ["buy milk"]


def test_testclient_with_lifespan(site: Site) -> None:
    with TestClient(site.app) as client:
        exercise(client)
    # The lifespan's disconnect rolled everything back: the next run starts empty.
    with TestClient(site.app) as client:
        assert client.get("/notes").json() == []
        exercise(client)
    assert not site.database.is_connected


def test_testclient_batch_is_all_or_nothing(site: Site) -> None:
    with TestClient(site.app) as client:
        batch = [{"text": "one", "completed": False}, {"text": "two", "completed": True}]
        assert client.post("/notes/batch", json=batch).json() == {"total": 2}
        bad = [{"text": "three", "completed": False}, {"text": "", "completed": False}]
        response = client.post("/notes/batch", json=bad)
        assert response.status_code == 400
        assert [note["text"] for note in client.get("/notes").json()] == ["one", "two"]


async def test_testclient_inside_an_async_test(site: Site) -> None:
    """The test's loop connects; the TestClient's loop thread uses the same rollback."""
    async with site.database:
        await site.database.execute(notes.insert().values(text="from test", completed=True))
        with TestClient(site.app) as client:
            assert [note["text"] for note in client.get("/notes").json()] == ["from test"]
            client.post("/notes", json={"text": "from app", "completed": False})
        texts = await site.database.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
        assert [row.text for row in texts] == ["from test", "from app"]
    async with site.database:
        assert await site.database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0


async def test_async_client_over_asgi_transport(site: Site) -> None:
    # ASGITransport sends no lifespan events: the test connects, as users' fixtures do.
    async with site.database:
        transport = httpx.ASGITransport(app=site.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/notes")).json() == []
            responses = await asyncio.gather(
                *(
                    client.post("/notes", json={"text": f"note {n}", "completed": n % 2 == 0})
                    for n in range(8)
                )
            )
            assert [response.status_code for response in responses] == [201] * 8
            ids = [response.json()["id"] for response in responses]
            assert len(set(ids)) == 8
            listed = (await client.get("/notes")).json()
            assert sorted(note["id"] for note in listed) == sorted(ids)
            bad = [{"text": "kept?", "completed": False}, {"text": "", "completed": False}]
            assert (await client.post("/notes/batch", json=bad)).status_code == 400
            updated = await client.put(f"/notes/{ids[0]}", json={"text": "first"})
            assert updated.json() == {"id": ids[0], "text": "first", "completed": True}
            assert len((await client.get("/notes")).json()) == 8
    async with helper_database(site.url) as plain:
        assert await plain.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0


# The same app on a plain database (commits), for a TestClient kept open for the module.
PLAIN_SITES = [
    Site(url, database, make_app(database))
    for url in DATABASE_URLS
    for database in [Database(url)]
]


@pytest.fixture(scope="module", params=PLAIN_SITES, ids=lambda site: scheme_of(site.url))
def running(request: pytest.FixtureRequest, web_notes: None) -> Iterator[tuple[Site, TestClient]]:
    """A module-scoped TestClient: its lifespan connects the database on the client's loop."""
    site: Site = request.param
    with TestClient(site.app) as client:
        yield site, client


async def delete_all_then_fail(database: Database) -> None:
    async with database.transaction():
        await database.execute(notes.delete())
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0
        raise LookupError("roll the delete back")


@pytest.mark.parametrize("round_", [1, 2])
async def test_async_tests_beside_a_module_scoped_testclient(
    running: tuple[Site, TestClient], round_: int
) -> None:
    """Each test's own loop uses the database the client's loop connected (calls carried over)."""
    site, client = running
    try:
        insert = notes.insert().values(text=f"direct {round_}", completed=False)
        await site.database.execute(insert)
        assert [note["text"] for note in client.get("/notes").json()] == [f"direct {round_}"]
        client.post("/notes", json={"text": "via app", "completed": True})
        with pytest.raises(LookupError):
            await delete_all_then_fail(site.database)
        rows = await site.database.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
        assert [row.text for row in rows] == [f"direct {round_}", "via app"]
    finally:
        await site.database.execute(notes.delete())
