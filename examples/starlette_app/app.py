"""A notes app on Starlette: ``uvicorn app:app`` (after ``python app.py`` creates the table).

The database is built once, at import, from ``DATABASE_URL``; the lifespan
connects it while the app runs.
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodatabases import Database
from aiodatabases.testing import lifespan

database = Database(os.environ.get("DATABASE_URL", "sqlite:///./example.db"))

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(200), nullable=False),
    sa.Column("completed", sa.Boolean, nullable=False, default=False),
)


async def list_notes(request: Request) -> JSONResponse:
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    return JSONResponse(
        [{"id": row["id"], "text": row["text"], "completed": row["completed"]} for row in rows]
    )


async def create_notes(request: Request) -> JSONResponse:
    """Create several notes at once: all of them, or none if one is invalid."""
    payload = await request.json()
    texts = [note["text"] for note in payload]
    try:
        async with database.transaction():
            await asyncio.gather(*(_insert(text) for text in texts))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    total = await database.fetch_val(sa.select(sa.func.count()).select_from(notes))
    return JSONResponse({"created": len(texts), "total": total}, status_code=201)


async def _insert(text: str) -> None:
    await database.execute(notes.insert().values(text=text, completed=False))
    if not text.strip():  # after the insert: the transaction must undo it
        raise ValueError("a note needs some text")


app = Starlette(
    routes=[
        Route("/notes", list_notes, methods=["GET"]),
        Route("/notes", create_notes, methods=["POST"]),
    ],
    lifespan=lifespan(database),
)


async def create_schema() -> None:
    from sqlalchemy.schema import CreateTable

    async with database:
        for table in metadata.sorted_tables:
            await database.execute(CreateTable(table, if_not_exists=True))


if __name__ == "__main__":
    asyncio.run(create_schema())
