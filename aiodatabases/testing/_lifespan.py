"""Connect databases for an ASGI app's lifetime, in one line.

app = Starlette(routes=..., lifespan=lifespan(database))
app = FastAPI(lifespan=lifespan(database))
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..database import Database


def lifespan(*databases: Database) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for Starlette/FastAPI that connects ``databases`` while the app runs.

    Connections nest by count, so a test that already connected the same
    database keeps its connection (and its force_rollback transaction).
    """

    @contextlib.asynccontextmanager
    async def connected(app: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for database in databases:
                await stack.enter_async_context(database)
            yield

    return connected
