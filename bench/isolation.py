"""Per-test cost of test isolation on PostgreSQL: ``python -m bench.isolation``.

Every simulated test does one INSERT and one SELECT. Each strategy wraps that
body in its own way of undoing the test's writes:

* ``plugin``: what the pytest plugin's ``aiodatabases_db`` fixture does. The
  database is connected once with ``force_rollback=True``; the (synchronous)
  fixture starts an ``Isolation`` (a savepoint), the test body runs in a fresh
  event loop (pytest-asyncio's default function loop scope), the fixture rolls
  back. Its baseline is ``bare, loop per test``: the same body, database and
  fresh loop, undoing nothing; the difference is the isolation's cost.
* ``isolated``: the same savepoint, ``async with database.isolated():``, with
  everything in one event loop (a session loop scope, or AnyIO).
* ``reconnect``: what ``databases`` users do: per test ``force_rollback()``,
  ``connect()``, body, ``disconnect()`` (a new connection and transaction).
* ``truncate``: a database connected once; after the body, ``TRUNCATE`` the
  table (one table: the best case for TRUNCATE).
* ``bare``: the body alone on a database connected once, in one loop,
  undoing nothing: the baseline of the three above.

The strategies take turns in rounds (interleaved, so drift of the machine hits
them all alike); it prints the median milliseconds per test of each, and its
overhead over its baseline. It works in a database of its own, created and
dropped (one table per strategy).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from aiodatabases import Database, DatabaseURL
from aiodatabases.testing.plugin import _run  # the plugin's sync-to-async bridge

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def body(database: Database, table: str, index: int) -> None:
    """The simulated test: one insert, one select."""
    name = f"test {index}"
    await database.execute(f"INSERT INTO {table} (name) VALUES (:name)", {"name": name})
    row = await database.fetch_one(
        f"SELECT id, name FROM {table} WHERE name = :name", {"name": name}
    )
    assert row is not None


def _admin(url: DatabaseURL) -> Database:
    return Database(url.replace(database="postgres"))


async def _create(url: DatabaseURL, tables: list[str]) -> None:
    async with _admin(url) as admin:
        await admin.execute(f'CREATE DATABASE "{url.database}"')
    async with Database(url) as database:
        for table in tables:
            await database.execute(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, name TEXT)")


async def _drop(url: DatabaseURL) -> None:
    async with _admin(url) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


class Strategy:
    name = ""
    baseline = "bare"

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        # A table each: the force_rollback connections keep their lock on a
        # table's sequence (nextval) until they disconnect, which would block
        # another strategy's TRUNCATE ... RESTART IDENTITY.
        self.table = table_of(self)

    def setup(self) -> None:
        """Once, before the first test (not timed)."""

    def test(self, index: int) -> None:
        """One test, from synchronous code (what pytest calls)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Once, after the last test (not timed)."""


class Plugin(Strategy):
    name = "plugin"
    baseline = "bare, loop per test"

    def setup(self) -> None:
        self.database = Database(self.url)
        with self.database.force_rollback():
            _run(self.database.connect())

    def test(self, index: int) -> None:
        isolation = self.database.isolated()
        _run(isolation.start())
        try:
            asyncio.run(body(self.database, self.table, index))
        finally:
            _run(isolation.rollback())

    def teardown(self) -> None:
        _run(self.database.disconnect())


class BareLoopPerTest(Plugin):
    name = "bare, loop per test"
    baseline = ""

    def test(self, index: int) -> None:
        asyncio.run(body(self.database, self.table, index))


class InLoop(Strategy):
    """A strategy whose tests all run in one event loop (a loop runner's)."""

    def setup(self) -> None:
        self.runner = asyncio.Runner()
        self.runner.run(self.asetup())

    def test(self, index: int) -> None:
        self.runner.run(self.atest(index))

    def teardown(self) -> None:
        self.runner.run(self.ateardown())
        self.runner.close()

    async def asetup(self) -> None:
        pass

    async def atest(self, index: int) -> None:
        raise NotImplementedError

    async def ateardown(self) -> None:
        pass


class Isolated(InLoop):
    name = "isolated"

    async def asetup(self) -> None:
        self.database = Database(self.url)
        with self.database.force_rollback():
            await self.database.connect()

    async def atest(self, index: int) -> None:
        async with self.database.isolated():
            await body(self.database, self.table, index)

    async def ateardown(self) -> None:
        await self.database.disconnect()


class Reconnect(InLoop):
    name = "reconnect"

    async def asetup(self) -> None:
        self.database = Database(self.url)  # the app's module-level object

    async def atest(self, index: int) -> None:
        with self.database.force_rollback():
            await self.database.connect()
        try:
            await body(self.database, self.table, index)
        finally:
            await self.database.disconnect()


class Truncate(InLoop):
    name = "truncate"

    async def asetup(self) -> None:
        self.database = Database(self.url)
        await self.database.connect()

    async def atest(self, index: int) -> None:
        try:
            await body(self.database, self.table, index)
        finally:
            await self.database.execute(f"TRUNCATE {self.table} RESTART IDENTITY")

    async def ateardown(self) -> None:
        await self.database.disconnect()


class Bare(Truncate):
    name = "bare"
    baseline = ""

    async def atest(self, index: int) -> None:
        await body(self.database, self.table, index)

    async def ateardown(self) -> None:
        await self.database.execute(f"TRUNCATE {self.table} RESTART IDENTITY")
        await super().ateardown()


STRATEGIES: list[type[Strategy]] = [Plugin, BareLoopPerTest, Isolated, Reconnect, Truncate, Bare]


def table_of(strategy: Strategy | type[Strategy]) -> str:
    return "bench_isolation_" + strategy.name.replace(",", "").replace(" ", "_")


def measure(url: DatabaseURL, tests: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Per-test times in seconds, by strategy name."""
    strategies = [make(url) for make in STRATEGIES]
    samples: dict[str, list[float]] = {strategy.name: [] for strategy in strategies}
    for strategy in strategies:
        strategy.setup()
    try:
        for round_ in range(rounds):
            shift = round_ % len(strategies)
            for strategy in strategies[shift:] + strategies[:shift]:
                for index in range(warmup):
                    strategy.test(-1 - index)
                for index in range(tests):
                    started = time.perf_counter()
                    strategy.test(index)
                    samples[strategy.name].append(time.perf_counter() - started)
    finally:
        for strategy in strategies:
            strategy.teardown()
    return samples


def report(samples: dict[str, list[float]]) -> str:
    baselines = {strategy.name: strategy.baseline for strategy in STRATEGIES}
    medians = {name: statistics.median(times) for name, times in samples.items()}
    lines = [
        "| Strategy | ms per test (median) | p90 (ms) | overhead (ms) | over |",
        "|---|---:|---:|---:|---|",
    ]
    for name, times in samples.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        baseline = baselines[name]
        overhead = f"{(medians[name] - medians[baseline]) * 1e3:.3f}" if baseline else ""
        lines.append(
            f"| {name} | {medians[name] * 1e3:.3f} | {p90 * 1e3:.3f} | {overhead} | {baseline} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_URL),
        help="PostgreSQL server (a database of its own is created there and dropped)",
    )
    parser.add_argument("--tests", type=int, default=200, help="tests per strategy per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20, help="untimed tests before each round")
    args = parser.parse_args(argv)

    server = DatabaseURL(args.url)
    if server.dialect != "postgresql":
        parser.error("this benchmark runs on PostgreSQL")
    url = server.replace(database=f"aiodatabases_bench_isolation_{os.getpid()}")
    asyncio.run(_create(url, [table_of(strategy) for strategy in STRATEGIES]))
    try:
        samples = measure(url, args.tests, args.rounds, args.warmup)
    finally:
        asyncio.run(_drop(url))
    total = args.tests * args.rounds
    print(f"PostgreSQL {server.hostname}:{server.port}; {total} tests per strategy")
    print(report(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
