"""Read replicas: throughput of routed reads, and what routing costs a statement.

    python -m bench.replicas --primary URL --replica URL [--tasks 50] [--seconds 3]

``URL``s of a PostgreSQL primary and a streaming standby of it (with the
same database). Measures, in alternating rounds:

- reads per second of ``--tasks`` concurrent tasks doing point selects, on
  the primary directly, on the standby directly, and routed
  (``Database(primary, replicas=[replica])``, every read going to the standby);
- the mean time of one sequential point select, on the standby directly and
  routed to it: their difference is what routing costs (plus noise);
- without I/O: ``Replicas.route()`` per call, and the hook that marks writes
  (``WriteMarker``) per statement on the primary.

Not part of ``make bench``: it needs a replica, which the test suite's
``tests/faults/private_servers.py`` (``PrivateReplication``) can start.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

from aiodatabases import Database

TABLE = "bench_replicas"
ROWS = 1000
POINT = f"SELECT v FROM {TABLE} WHERE id = :id"


async def _prepare(primary: str, replica: str) -> None:
    async with Database(primary) as db:
        await db.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await db.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v text)")
        rows = [{"id": i, "v": f"row {i}"} for i in range(ROWS)]
        await db.execute_many(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)", rows)
    async with Database(replica) as standby:
        deadline = time.monotonic() + 30
        while True:  # replayed?
            try:
                if await standby.fetch_val(f"SELECT count(*) FROM {TABLE}") == ROWS:
                    return
            except Exception:
                pass  # the table is not there yet
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not replay the benchmark table in 30s")
            await asyncio.sleep(0.05)


async def _throughput(db: Database, tasks: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * tasks

    async def reader(index: int) -> None:
        key = index
        while time.monotonic() < stop:
            await db.fetch_val(POINT, {"id": key % ROWS})
            key += 7
            counts[index] += 1

    started = time.monotonic()
    await asyncio.gather(*(reader(i) for i in range(tasks)))
    return sum(counts) / (time.monotonic() - started)


async def _latency(db: Database, statements: int) -> float:
    started = time.perf_counter()
    for i in range(statements):
        await db.fetch_val(POINT, {"id": i % ROWS})
    return (time.perf_counter() - started) / statements


def _micro_route(db: Database) -> float:
    routing = db._routing
    assert routing is not None
    sql = "SELECT v FROM bench_replicas WHERE id = $1"
    routing.route(sql)  # cached from here on
    number = 200_000
    return min(timeit.repeat(lambda: routing.route(sql), number=number, repeat=5)) / number


async def _micro_marker(db: Database) -> float:
    """The hook path a primary statement takes with replicas (``WriteMarker``), less
    the direct await it replaces: a statement that costs nothing itself."""
    observers = db._observers
    hooks = observers.hooks()
    from aiodatabases._statements import EXECUTE

    async def nothing(*_: Any) -> None:
        return None

    sql = "UPDATE bench_replicas SET v = $1 WHERE id = $2"
    number = 50_000

    async def observed() -> float:
        started = time.perf_counter()
        for _ in range(number):
            await observers.statement(hooks, EXECUTE, sql, ("x", 1), nothing)
        return time.perf_counter() - started

    async def direct() -> float:
        started = time.perf_counter()
        for _ in range(number):
            await nothing()
        return time.perf_counter() - started

    best = min([await observed() for _ in range(5)])
    base = min([await direct() for _ in range(5)])
    return (best - base) / number


async def _rounds(
    configs: dict[str, Callable[[], Database]],
    measure: Callable[[Database], Awaitable[float]],
    rounds: int,
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, make in configs.items():  # alternating: drift hits each alike
            async with make() as db:
                await measure(db)  # warm: connections opened, statements prepared
                results[name].append(await measure(db))
    return results


async def main(args: argparse.Namespace) -> None:
    primary, replica, tasks = args.primary, args.replica, args.tasks
    await _prepare(primary, replica)
    pool = {"min_size": tasks, "max_size": tasks}
    configs = {
        "primary, direct": lambda: Database(primary, **pool),
        "standby, direct": lambda: Database(replica, **pool),
        "routed to the standby": lambda: Database(primary, replicas=[replica], **pool),
    }
    seconds = args.seconds
    reads = await _rounds(configs, lambda db: _throughput(db, tasks, seconds), args.rounds)
    print(f"reads per second, {tasks} tasks of point selects ({args.rounds} rounds of {seconds}s):")
    for name, values in reads.items():
        low, high = min(values), max(values)
        print(f"  {name:24} median {statistics.median(values):8.0f}  ({low:.0f}-{high:.0f})")
    sequential = {name: configs[name] for name in ("standby, direct", "routed to the standby")}
    latency = await _rounds(sequential, lambda db: _latency(db, args.statements), args.rounds)
    print(f"one sequential point select ({args.statements} x {args.rounds} rounds), mean:")
    for name, values in latency.items():
        print(
            f"  {name:24} median {statistics.median(values) * 1e6:7.1f} us  "
            f"({min(values) * 1e6:.1f}-{max(values) * 1e6:.1f})"
        )
    async with Database(primary, replicas=[replica]) as db:
        print(f"Replicas.route() per bare read: {_micro_route(db) * 1e9:.0f} ns")
        print(
            f"the write-marking hook per primary statement: {await _micro_marker(db) * 1e9:.0f} ns"
        )
        await db.execute(f"DROP TABLE {TABLE}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--primary", required=True)
    parser.add_argument("--replica", required=True)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_arguments()))
