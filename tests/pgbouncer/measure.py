"""Throughput through PgBouncer (transaction mode) against PostgreSQL directly.

Not a test: ``.venv/bin/python tests/pgbouncer/measure.py [--pin] [--rounds N]
[--drivers asyncpg,psycopg]``
starts a private PgBouncer (``bouncer.PgBouncer``, a pool of 10 server
sessions) in front of the local PostgreSQL, creates a database of its own,
and times two loops like the benchmark's W1 and W3 (``docs/performance.md``):

- sequential: 5,000 point selects one after another (``fetch_one``);
- concurrent: 50 tasks x 100 point selects through a pool of 10.

for three setups, per driver: direct (its defaults: asyncpg's statement
cache, psycopg's statements prepared after 5 runs), direct with
``pgbouncer=true`` (what preparing nothing costs by itself), and through the
bouncer with ``pgbouncer=true``. It prints the median of the
rounds in milliseconds and statements per second. ``--pin`` puts this
process, the servers and the bouncer on one CPU (``bench/pinning.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench/

from bouncer import PgBouncer, through

from aiodatabases import Database, DatabaseURL

SERVER = os.environ.get("MEASURE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SELECT = "SELECT id, name, score FROM measure_wide WHERE id = :id"
#: The URL scheme of each driver measured.
SCHEMES = {"asyncpg": "postgresql", "psycopg": "postgresql+psycopg"}
ROWS = 1000


async def sequential(db: Database) -> int:
    for i in range(5000):
        await db.fetch_one(SELECT, {"id": i % ROWS + 1})
    return 5000


async def concurrent(db: Database) -> int:
    async def task(t: int) -> None:
        for i in range(100):
            await db.fetch_one(SELECT, {"id": (t * 100 + i) % ROWS + 1})

    await asyncio.gather(*(task(t) for t in range(50)))
    return 5000


async def _timed(url: str, workload: str) -> float:
    async with Database(url, min_size=10, max_size=10) as db:
        await concurrent(db)  # warm: every pooled connection opened and used
        started = time.perf_counter()
        await (sequential if workload == "sequential" else concurrent)(db)
        return time.perf_counter() - started


async def _prepare(admin_url: str, name: str, drop: bool = False) -> None:
    async with Database(admin_url) as admin:
        if drop:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        await admin.execute(f'CREATE DATABASE "{name}"')
    async with Database(admin_url.rsplit("/", 1)[0] + f"/{name}") as db:
        await db.execute("CREATE TABLE measure_wide (id int PRIMARY KEY, name text, score float)")
        await db.execute(
            f"INSERT INTO measure_wide SELECT i, 'name ' || i, i * 0.5"
            f" FROM generate_series(1, {ROWS}) i"
        )


def _pin(bouncer: PgBouncer) -> Callable[[], None]:
    """Everything on CPU 0; returns what gives the servers their affinity back."""
    from bench.pinning import pin

    restore = pin(0)
    pid = int((bouncer.root / "pgbouncer.pid").read_text().strip())
    os.sched_setaffinity(pid, {0})  # stopped at the end: nothing to restore
    return restore


def _setups(bouncer: PgBouncer, direct: str, drivers: list[str]) -> dict[str, str]:
    """Each driver's three URLs, by label."""
    setups = {}
    for driver in drivers:
        scheme = SCHEMES[driver]
        own = DatabaseURL(direct).replace(scheme=scheme)
        setups[f"{driver}, direct"] = str(own)
        bouncing = own.replace(options={"pgbouncer": "true"})
        setups[f"{driver}, direct, pgbouncer=true"] = str(bouncing)
        setups[f"{driver}, through PgBouncer"] = through(bouncer, direct, scheme, pgbouncer="true")
    return setups


async def main(rounds: int, pinned: bool, drivers: list[str]) -> None:
    name = f"aiodatabases_measure_{uuid.uuid4().hex[:8]}"
    direct = SERVER.rsplit("/", 1)[0] + f"/{name}"
    host_port = direct.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    bouncer = PgBouncer(host, int(port), pool_size=10)
    bouncer.start()
    restore: Callable[[], None] | None = None
    try:
        await _prepare(SERVER, name)
        if pinned:
            restore = _pin(bouncer)
        setups = _setups(bouncer, direct, drivers)
        print(f"median of {rounds} rounds, 5,000 point selects each (ms; statements/s)")
        for workload in ("sequential", "concurrent"):
            for label, url in setups.items():
                times = [await _timed(url, workload) for _ in range(rounds)]
                median = statistics.median(times)
                print(f"{workload:10}  {label:36} {median * 1000:8.0f} ms {5000 / median:9.0f}/s")
    finally:
        if restore is not None:
            restore()
        await _prepare(SERVER, name, drop=True)
        bouncer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pin", action="store_true", help="everything on CPU 0")
    parser.add_argument(
        "--drivers", default="asyncpg,psycopg", help="comma-separated: asyncpg, psycopg"
    )
    arguments = parser.parse_args()
    chosen = [name.strip() for name in arguments.drivers.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCHEMES))
    if unknown:
        parser.error(f"unknown driver(s) {', '.join(unknown)}; choose from {', '.join(SCHEMES)}")
    asyncio.run(main(arguments.rounds, arguments.pin, chosen))
