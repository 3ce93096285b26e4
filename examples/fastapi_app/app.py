"""A notes app on FastAPI: ``uvicorn app:app`` (after ``python app.py`` creates the table).

The database is built once, at import, from ``DATABASE_URL``; the lifespan
connects it while the app runs. Raw SQL, no SQLAlchemy needed.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from aiodatabases import Database
from aiodatabases.testing import lifespan

database = Database(os.environ.get("DATABASE_URL", "sqlite:///./example.db"))

app = FastAPI(lifespan=lifespan(database))


class NoteIn(BaseModel):
    text: str
    completed: bool = False


class Note(NoteIn):
    id: int


class Created(BaseModel):
    created: int
    total: int


async def create_schema(db: Database) -> None:
    """Create the table if missing (also the test plugin's schema hook)."""
    id_column = {
        "postgresql": "SERIAL PRIMARY KEY",
        "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
    }.get(db.url.dialect, "INTEGER PRIMARY KEY")
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS notes (id {id_column},"
        " text VARCHAR(200) NOT NULL, completed BOOLEAN NOT NULL)"
    )


@app.get("/notes")
async def list_notes() -> list[Note]:
    rows = await database.fetch_all("SELECT id, text, completed FROM notes ORDER BY id")
    return [Note(id=row["id"], text=row["text"], completed=bool(row["completed"])) for row in rows]


@app.post("/notes", status_code=201)
async def create_notes(notes: list[NoteIn]) -> Created:
    """Create several notes at once: all of them, or none if one is invalid."""

    async def insert(note: NoteIn) -> None:
        await database.execute(
            "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
            {"text": note.text, "completed": note.completed},
        )
        if not note.text.strip():  # after the insert: the transaction must undo it
            raise HTTPException(status_code=400, detail="a note needs some text")

    async with database.transaction():
        await asyncio.gather(*(insert(note) for note in notes))
    total = await database.fetch_val("SELECT COUNT(*) FROM notes")
    return Created(created=len(notes), total=total)


async def _main() -> None:
    async with database:
        await create_schema(database)


if __name__ == "__main__":
    asyncio.run(_main())
