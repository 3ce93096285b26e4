"""``python -m aiodatabases demo [URL]``: the failures of ``databases`` this library removes.

Each part runs the pattern that breaks with ``databases`` and prints what
happened, one labelled line per step:

a. one ``Database(url, force_rollback=True)`` built before any event loop,
   used by two ``asyncio.run()`` calls (two "tests", each its own loop), each
   running concurrent inserts and reads with ``asyncio.gather`` on the one
   shared connection, and each starting from an empty table;
b. a transaction on the shared connection: the tasks it creates run inside
   it, a sibling task started outside waits until it ends, and its rollback
   keeps the sibling's write;
c. a query inside ``async for row in db.iterate(...)`` completes.

Every expectation is checked; the first one that fails ends the demo with
exit status 1. Without a URL the demo uses a temporary SQLite file, removed
at the end. With a URL it creates and drops the table ``aiodatabases_demo``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ._url import DatabaseURL
from .database import Database
from .exceptions import ConfigurationError, InterleaveError

__all__ = ["DemoFailure", "run_demo", "shown", "url_problem"]

T = TypeVar("T")

TABLE = "aiodatabases_demo"
#: Bound on every part, so a hang is reported as a failure instead of hanging the demo.
PART_TIMEOUT = 30.0
#: How long the sibling task of part b is watched while the transaction is open.
SIBLING_WATCH = 0.2

_ID_COLUMN = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "SERIAL PRIMARY KEY",
    "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
}


class DemoFailure(Exception):
    """An expectation of the demo was not met.

    Raised inside the event loop as an ordinary exception (a ``SystemExit``
    raised in a task would stop the loop abruptly, skipping the cleanup);
    ``run_demo`` turns it into ``SystemExit`` once the loop is closed.
    """


@dataclass
class _Checks:
    """Counts the expectations met; the first one not met ends the demo."""

    passed: int = 0

    def expect(self, label: str, ok: bool, what: str) -> None:
        if not ok:
            raise DemoFailure(f"[{label}] FAILED: {what}")
        self.passed += 1
        say(label, f"ok: {what}")


def say(label: str, message: str) -> None:
    print(f"[{label}] {message}", flush=True)


def _dialect(url: str) -> str:
    dialect = DatabaseURL(url).dialect
    return "postgresql" if dialect == "postgres" else dialect


def shown(url: str) -> str:
    """``url`` fit to print: without its password."""
    try:
        return DatabaseURL(url).obscure_password
    except ConfigurationError:
        return "the URL given"


def url_problem(url: str) -> str | None:
    """Why the demo cannot run on ``url``, or None if it can."""
    try:
        Database(url)  # checks the scheme, the options and the driver; no I/O
    except ConfigurationError as exc:
        return str(exc)
    if _dialect(url) not in _ID_COLUMN:
        return (
            f"the demo runs on sqlite, postgresql or mysql URLs, not {DatabaseURL(url).dialect!r}"
        )
    if _dialect(url) == "sqlite" and DatabaseURL(url).database in ("", ":memory:"):
        # Every Database opens its own in-memory database: the setup's table
        # would not exist for the force_rollback one.
        return "the demo needs a SQLite file, not an in-memory database"
    return None


def _id_column(url: str) -> str:
    return _ID_COLUMN[_dialect(url)]


async def _bounded(label: str, work: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(work, PART_TIMEOUT)
    except asyncio.TimeoutError:
        raise DemoFailure(
            f"[{label}] FAILED: still waiting after {PART_TIMEOUT:g} s (a hang)"
        ) from None


async def _count(database: Database) -> int:
    count = await database.fetch_val(f"SELECT COUNT(*) FROM {TABLE}")
    return int(count)


async def _texts(database: Database) -> list[str]:
    rows = await database.fetch_all(f"SELECT text FROM {TABLE} ORDER BY id")
    return [str(row["text"]) for row in rows]


# -- setup and teardown (a plain Database, committed) -------------------------------------------


async def _create_table(url: str) -> None:
    async with Database(url) as database:
        await database.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await database.execute(
            f"CREATE TABLE {TABLE} (id {_id_column(url)}, text VARCHAR(100) NOT NULL)"
        )


async def _committed_rows(url: str) -> int:
    async with Database(url) as database:
        return await _count(database)


async def _drop_table(url: str) -> None:
    async with Database(url) as database:
        await database.execute(f"DROP TABLE IF EXISTS {TABLE}")


# -- a. one force_rollback Database, two event loops, concurrent statements ------------------


async def _one_test(database: Database, run: int, checks: _Checks) -> None:
    label = f"a{run}"
    async with database:
        before = await _count(database)
        say(label, f"new event loop; connected; the table holds {before} row(s)")
        checks.expect(label, before == 0, "this test starts from an empty table")

        async def insert(i: int) -> None:
            await database.execute(
                f"INSERT INTO {TABLE} (text) VALUES (:text)", {"text": f"test {run} row {i}"}
            )

        inserts = [insert(i) for i in range(5)]
        reads = [_count(database) for _ in range(3)]
        results = await asyncio.gather(*inserts, *reads)
        seen = results[len(inserts) :]
        say(label, f"gather(5 inserts, 3 reads) on the shared connection; reads saw {seen} rows")
        after = await _count(database)
        checks.expect(label, after == 5, f"all 5 concurrent inserts landed ({after} rows)")
    say(label, "disconnected: the force_rollback transaction was rolled back")


def _part_a(database: Database, url: str, checks: _Checks) -> None:
    for run in (1, 2):
        asyncio.run(_bounded(f"a{run}", _one_test(database, run, checks)))
    committed = asyncio.run(_committed_rows(url))
    checks.expect("a", committed == 0, f"no test's write was committed ({committed} rows)")


# -- b. a transaction owns the shared connection -----------------------------------------------


async def _sibling(database: Database, opened: asyncio.Event) -> float:
    """Insert once the transaction is open; return how long the INSERT waited."""
    await opened.wait()
    say("b", "sibling task (started outside the transaction): INSERT sent")
    sent = time.monotonic()
    await database.execute(f"INSERT INTO {TABLE} (text) VALUES ('sibling')")
    return time.monotonic() - sent


async def _child(database: Database, i: int) -> None:
    await database.execute(f"INSERT INTO {TABLE} (text) VALUES (:text)", {"text": f"child {i}"})


async def _transaction_with_children(
    database: Database, checks: _Checks, opened: asyncio.Event, sibling: asyncio.Task[float]
) -> None:
    label = "b"
    async with database.transaction(force_rollback=True):
        say(label, "transaction opened on the shared connection")
        opened.set()
        await asyncio.gather(*(_child(database, i) for i in range(3)))
        inside = await _count(database)
        say(label, f"3 child tasks (gather inside the transaction) inserted; {inside} rows seen")
        checks.expect(label, inside == 3, "the children's rows are in the transaction")
        await asyncio.sleep(SIBLING_WATCH)
        waiting = not sibling.done()
        say(label, f"after {SIBLING_WATCH} s the sibling is still waiting: {waiting}")
        checks.expect(label, waiting, "the sibling waits while the transaction is open")
    say(label, "transaction(force_rollback=True) ended: rolled back")


async def _part_b(database: Database, checks: _Checks) -> None:
    label = "b"
    async with database:
        opened = asyncio.Event()
        sibling = asyncio.create_task(_sibling(database, opened))
        try:
            await _transaction_with_children(database, checks, opened, sibling)
            waited = await sibling
        finally:
            # After a failure, end the sibling before disconnect() rolls everything back.
            sibling.cancel()
            await asyncio.gather(sibling, return_exceptions=True)
        say(label, f"the sibling's INSERT ran after the transaction ended (waited {waited:.2f} s)")
        texts = await _texts(database)
        say(label, f"rows now: {texts}")
        checks.expect(
            label, texts == ["sibling"], "the rollback undid the children and kept the sibling"
        )


# -- c. a query inside iterate() ------------------------------------------------------------


async def _part_c(database: Database, checks: _Checks) -> None:
    label = "c"
    async with database:
        await database.execute_many(
            f"INSERT INTO {TABLE} (text) VALUES (:text)", [{"text": f"item {i}"} for i in range(3)]
        )
        if _dialect(str(database.url)) == "mysql":
            await _part_c_mysql(database, checks)
            return
        pairs: list[tuple[str, int]] = []
        async for row in database.iterate(f"SELECT id, text FROM {TABLE} ORDER BY id"):
            upto = await database.fetch_val(
                f"SELECT COUNT(*) FROM {TABLE} WHERE id <= :id", {"id": row["id"]}
            )
            pairs.append((str(row["text"]), int(upto)))
            say(label, f"row {row['text']!r}: query inside the loop returned {upto}")
        checks.expect(
            label,
            pairs == [("item 0", 1), ("item 1", 2), ("item 2", 3)],
            "every query inside the loop completed",
        )


async def _part_c_mysql(database: Database, checks: _Checks) -> None:
    # MySQL drivers stream rows over the connection itself: a statement on the
    # iterating connection cannot run, and says so at once instead of hanging.
    label = "c"
    refused = ""
    async for _ in database.iterate(f"SELECT id, text FROM {TABLE} ORDER BY id"):
        try:
            await database.fetch_val(f"SELECT COUNT(*) FROM {TABLE}")
        except InterleaveError as exc:
            refused = str(exc)
        break
    say(label, f"query inside the loop on MySQL's streaming connection: {refused[:60]}...")
    checks.expect(label, bool(refused), "it failed at once with InterleaveError (no hang)")


# -- the whole demo ----------------------------------------------------------------------------


def _demo(url: str, checks: _Checks) -> None:
    say("setup", f"database {shown(url)}")
    asyncio.run(_create_table(url))
    say("setup", f"created table {TABLE} (committed, empty)")
    try:
        # Built before any event loop exists, as an application module does at import.
        database = Database(url, force_rollback=True)
        say("setup", "Database(url, force_rollback=True) built with no event loop running")
        _part_a(database, url, checks)
        asyncio.run(_bounded("b", _part_b(database, checks)))
        asyncio.run(_bounded("c", _part_c(database, checks)))
        committed = asyncio.run(_committed_rows(url))
        checks.expect("end", committed == 0, f"nothing was committed ({committed} rows)")
    finally:
        asyncio.run(_drop_table(url))


def run_demo(url: str | None = None) -> int:
    """Run the demo on ``url`` (default: a temporary SQLite file); return the exit status.

    A failed expectation raises ``SystemExit`` with a message naming it.
    """
    checks = _Checks()
    if url is not None:
        problem = url_problem(url)
        if problem is not None:
            raise SystemExit(f"cannot run the demo on {shown(url)}: {problem}")
    try:
        if url is None:
            with tempfile.TemporaryDirectory(prefix="aiodatabases-demo-") as directory:
                path = Path(directory, "demo.db")
                _demo(f"sqlite:///{path}", checks)
            say("end", f"temporary file {path} removed: {not path.exists()}")
        else:
            _demo(url, checks)
    except DemoFailure as failure:
        print(f"demo FAILED after {checks.passed} checks", flush=True)
        raise SystemExit(str(failure)) from None
    print(f"demo passed: {checks.passed} checks in 3 parts (a, b, c)", flush=True)
    return 0
