"""SQLite through aiosqlite (one worker thread per connection).

``raw_connection`` is the aiosqlite connection, as with ``databases``. A
brief read runs on the calling thread (no hand-over at all, see ``here``);
every other statement runs as one function on aiosqlite's worker thread
(its ``_execute``, see ``worker``): one hand-over between threads.

The modules, each with one job:

- ``options``: what a URL configures (PRAGMAs, ``sqlite3.connect`` keywords,
  URI parameters, the default BEGIN) and the database it opens (``Target``);
- ``backend``: ``SQLiteBackend``, which opens connections and begins transactions;
- ``connection``: ``SQLiteConnection``, the statement operations;
- ``here``: brief reads on the calling thread (``SlowReads``);
- ``locks``: SQLITE_BUSY, the busy timeout, a BEGIN that waits for a lock;
- ``worker``: calls on aiosqlite's worker thread and cancelled callers.

``SQLiteConnection`` is one class built from three layers, each the base of
the next, so that a statement calls its own methods (no object in between
on the hot path): ``WorkerCalls`` <- ``BusyHandling`` <- ``BriefReads``.
"""

from __future__ import annotations

from .backend import SQLiteBackend, SQLiteRecord
from .connection import LastInsert, SQLiteConnection
from .here import SlowReads
from .options import OPTIONS, PRAGMAS, URI_PARAMETERS, Target, database_target

__all__ = [
    "OPTIONS",
    "PRAGMAS",
    "URI_PARAMETERS",
    "LastInsert",
    "SQLiteBackend",
    "SQLiteConnection",
    "SQLiteRecord",
    "SlowReads",
    "Target",
    "database_target",
]
