"""Run the benchmark: ``python -m bench`` (``make bench``); ``--help`` for options.

For each backend (PostgreSQL, SQLite, MySQL) it creates its ``bench_`` tables,
connects every contender, then runs repetitions. In each repetition every
workload runs once per contender, the contenders taking turns in an order
rotated from one repetition to the next (interleaved, so drift of the machine
hits them all alike), aiodatabases and its raw baselines back to back, twice
in mirrored order (``run_order``). It prints, per workload, the median time of each
contender and the median of the per-repetition ratios of aiodatabases to the
raw driver (and to the held connection on PostgreSQL and MySQL), then drops
its tables. The tables are also written as markdown (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import importlib.metadata
import importlib.util
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pinning
from . import quiet as quiet_mod
from .contenders import (
    AiomysqlHeld,
    AiomysqlPool,
    Aiosqlite,
    AsyncmyHeld,
    AsyncmyPool,
    AsyncpgHeld,
    AsyncpgPool,
    Contender,
    DatabaseAPI,
    Inputs,
    SQLAlchemyCore,
)
from .data import FULL, QUICK, Admin, MySQLAdmin, PostgresAdmin, Sizes, SQLiteAdmin, Style
from .psycopg_contenders import PsycopgHeld, PsycopgPool

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
DEFAULT_OUTPUT = Path(__file__).with_name("results.md")
BACKENDS = ("postgresql", "sqlite", "mysql")
_ALIASES = {"pg": "postgresql", "postgres": "postgresql", "sqlite3": "sqlite", "mariadb": "mysql"}
#: A run that takes longer than this has hung (a deadlock in a contender).
RUN_TIMEOUT = 300.0
SUBJECT = "aiodatabases"
#: Tries of a timed run that other processes disturbed (see ``bench.quiet``).
ATTEMPTS = 3
#: Print every timed run (``--verbose``).
VERBOSE = False
#: Wait for a quiet machine and repeat disturbed runs (not with ``--quick``).
GATED = True


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    #: The issue's target: at most this ratio to the raw baseline.
    target: float
    #: The issue's further aim: at most this ratio to the held connection.
    aim_held: float | None = None


WORKLOADS = (
    Workload("w1", "W1 point select", 1.10, 1.15),
    Workload("w2", "W2 wide fetch_all", 1.10),
    Workload("w3", "W3 concurrency", 1.10, 1.15),
    Workload("w4", "W4 execute_many", 1.25),
    Workload("w5", "W5 iterate", 1.20),
    Workload("w6", "W6 transaction churn", 1.25),
    Workload("w7a", "W7 force_rollback W1", 1.25),
    Workload("w7b", "W7 force_rollback W3", 1.25),
    # The issue sets no target for W8; W6's (transactions) is kept.
    Workload("w8", "W8 mixed load", 1.25),
)
#: W5's memory target: peak above the starting point, bytes.
MEMORY_TARGET = 30 * 1024 * 1024


def describe_workloads(sizes: Sizes) -> list[str]:
    s = sizes
    return [
        f"W1: {s.point:,} sequential `SELECT id, name, score ... WHERE id = :id` (fetch_one).",
        f"W2: fetch_all of {s.wide_rows:,} rows x 8 columns (int, text, float, timestamp, "
        f"bool, numeric, json, uuid), {s.wide_times} times.",
        f"W3: {s.tasks} concurrent tasks x {s.per_task} point selects, pool of {s.pool}.",
        f"W4: execute_many inserting {s.insert_rows:,} rows of the 8 columns.",
        f"W5: iterate over {s.stream_rows:,} rows of the 8 columns (batches of 500); "
        "peak memory above the start measured with tracemalloc in a separate untimed run.",
        f"W6: {s.churn:,} x (begin; insert; select; rollback).",
        "W7: W1 and W3 on `Database(url, force_rollback=True)` (raw drivers and the held "
        "connection have no such mode: they run W1 and W3 again, in the same rounds).",
        f"W8: {s.mixed_tasks} concurrent tasks x {s.mixed_steps} operations (of every five: "
        "a one-insert transaction that commits or rolls back by a rule, two point selects, "
        f"two inserts), pool of {s.pool}, then the rows counted; against the raw driver's "
        "own pool (aiosqlite: its one connection); throughput in operations per second.",
    ]


# -- one backend ---------------------------------------------------------------------------


@dataclass
class Backend:
    key: str
    title: str
    style: Style
    admin: Admin
    #: name -> factory; the factories run only if their packages import.
    factories: dict[str, Callable[[Inputs], Contender]]
    baseline: str
    held: str | None
    notes: list[str] = field(default_factory=list)


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _others_available() -> tuple[bool, bool]:
    """Whether ``databases`` and SQLAlchemy asyncio can be used here."""
    sqlalchemy = _have("sqlalchemy") and _have("greenlet")
    databases = sqlalchemy and _have("databases")
    return databases, sqlalchemy


def _with_scheme(url: str, scheme: str) -> str:
    return scheme + url[url.index("://") :]


def _pool_options(sizes: Sizes) -> dict[str, Any]:
    return {"min_size": sizes.pool, "max_size": sizes.pool}


def postgres_backend(url: str, sizes: Sizes, others: bool) -> Backend:
    with_databases, with_sqlalchemy = _others_available() if others else (False, False)
    factories: dict[str, Callable[[Inputs], Contender]] = {
        SUBJECT: lambda i: DatabaseAPI(i, SUBJECT, "aiodatabases", url, _pool_options(sizes), {}),
        "asyncpg pool": lambda i: AsyncpgPool(i, url),
        "asyncpg held": lambda i: AsyncpgHeld(i, url),
    }
    if with_databases:
        factories["databases"] = lambda i: DatabaseAPI(
            i,
            "databases",
            "databases",
            _with_scheme(url, "postgresql+asyncpg"),
            _pool_options(sizes),
            {},
        )
    if with_sqlalchemy:
        factories["SQLAlchemy"] = lambda i: SQLAlchemyCore(
            i, _with_scheme(url, "postgresql+asyncpg")
        )
    return Backend(
        "postgresql",
        "PostgreSQL",
        "numeric_dollar",
        PostgresAdmin(url),
        factories,
        baseline="asyncpg pool",
        held="asyncpg held",
    )


def postgres_backends(url: str, sizes: Sizes, others: bool) -> list[Backend]:
    """PostgreSQL once per driver, each against that driver's own raw baseline."""
    return [postgres_backend(url, sizes, others), psycopg_backend(url, sizes, others)]


def psycopg_backend(url: str, sizes: Sizes, others: bool) -> Backend:
    """aiodatabases on ``postgresql+psycopg://`` against psycopg_pool and held psycopg
    connections (``databases`` has no psycopg backend: SQLAlchemy's is the other)."""
    _, with_sqlalchemy = _others_available() if others else (False, False)
    subject_url = _with_scheme(url, "postgresql+psycopg")
    factories: dict[str, Callable[[Inputs], Contender]] = {
        SUBJECT: lambda i: DatabaseAPI(
            i, SUBJECT, "aiodatabases", subject_url, _pool_options(sizes), {}
        ),
        "psycopg pool": lambda i: PsycopgPool(i, url),
        "psycopg held": lambda i: PsycopgHeld(i, url),
    }
    if with_sqlalchemy:
        factories["SQLAlchemy"] = lambda i: SQLAlchemyCore(i, subject_url)
    return Backend(
        "postgresql",
        "PostgreSQL: psycopg, `postgresql+psycopg://`",
        "numeric_dollar",  # the values: psycopg takes the same native types
        PostgresAdmin(url),
        factories,
        baseline="psycopg pool",
        held="psycopg held",
    )


def sqlite_backend(path: str, sizes: Sizes, others: bool) -> Backend:
    with_databases, with_sqlalchemy = _others_available() if others else (False, False)
    url = f"sqlite:///{path}"
    factories: dict[str, Callable[[Inputs], Contender]] = {
        # Its ten connections contend for the file's write lock in W8 (aiosqlite's
        # one connection never does): a busy timeout above W8's longest wait.
        SUBJECT: lambda i: DatabaseAPI(
            i, SUBJECT, "aiodatabases", f"{url}?timeout=30", _pool_options(sizes), {}
        ),
        "aiosqlite": lambda i: Aiosqlite(i, path),
    }
    if with_databases:
        factories["databases"] = lambda i: DatabaseAPI(
            i, "databases", "databases", _with_scheme(url, "sqlite+aiosqlite"), {}, {}
        )
    if with_sqlalchemy:
        factories["SQLAlchemy"] = lambda i: SQLAlchemyCore(i, _with_scheme(url, "sqlite+aiosqlite"))
    return Backend(
        "sqlite", "SQLite", "qmark", SQLiteAdmin(path), factories, baseline="aiosqlite", held=None
    )


def mysql_connect_kwargs(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": urllib.parse.unquote(parts.username or "root"),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
    }


#: Each MySQL driver: aiodatabases' scheme for it (plain ``mysql://`` is aiomysql,
#: as in databases), its raw pool and held-connection contenders, and the
#: scheme databases and SQLAlchemy take for it.
_MysqlFactory = Callable[[Inputs, dict[str, Any]], Contender]
_MYSQL_DRIVERS: dict[str, tuple[str, _MysqlFactory, _MysqlFactory, str]] = {
    "aiomysql": ("mysql", AiomysqlPool, AiomysqlHeld, "mysql+aiomysql"),
    "asyncmy": ("mysql+asyncmy", AsyncmyPool, AsyncmyHeld, "mysql+asyncmy"),
}


def mysql_backends(url: str, sizes: Sizes, others: bool) -> list[Backend]:
    """MySQL once per driver, each against that driver's own raw baseline."""
    return [mysql_backend(url, sizes, others, driver) for driver in _MYSQL_DRIVERS]


def mysql_backend(url: str, sizes: Sizes, others: bool, driver: str = "aiomysql") -> Backend:
    with_databases, with_sqlalchemy = _others_available() if others else (False, False)
    kwargs = mysql_connect_kwargs(url)
    scheme, pool, held, others_scheme = _MYSQL_DRIVERS[driver]
    subject_url = _with_scheme(url, scheme)
    others_url = _with_scheme(url, others_scheme)
    factories: dict[str, Callable[[Inputs], Contender]] = {
        SUBJECT: lambda i: DatabaseAPI(
            i, SUBJECT, "aiodatabases", subject_url, _pool_options(sizes), {}
        ),
        f"{driver} pool": lambda i: pool(i, kwargs),
        f"{driver} held": lambda i: held(i, kwargs),
    }
    if with_databases:
        factories["databases"] = lambda i: DatabaseAPI(
            i, "databases", "databases", others_url, _pool_options(sizes), {}
        )
    if with_sqlalchemy:
        factories["SQLAlchemy"] = lambda i: SQLAlchemyCore(i, others_url)
    return Backend(
        "mysql",
        f"MySQL/MariaDB: {driver}, `{scheme}://`",
        "format",
        MySQLAdmin(kwargs),
        factories,
        baseline=f"{driver} pool",
        held=f"{driver} held",
    )


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    backend: Backend
    version: str
    names: list[str]
    reps: int
    #: workload -> contender -> seconds per repetition (None: not run or failed)
    times: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    #: contender -> W5 peak bytes above the start
    memory: dict[str, int] = field(default_factory=dict)
    #: (workload, contender) -> error text
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    #: timed runs kept although other processes disturbed every attempt
    disturbed: int = 0
    #: W8's operations per run (for its throughput)
    operations: int = 0

    def median(self, workload: str, name: str) -> float | None:
        values = [t for t in self.times.get(workload, {}).get(name, []) if t is not None]
        return statistics.median(values) if values else None

    def ratio(self, workload: str, name: str, base: str | None) -> float | None:
        """Median of the per-repetition ratios ``name / base``."""
        if base is None:
            return None
        mine = self.times.get(workload, {}).get(name, [])
        theirs = self.times.get(workload, {}).get(base, [])
        ratios = [
            a / b
            for a, b in zip(mine, theirs, strict=False)
            if a is not None and b is not None and b > 0
        ]
        return statistics.median(ratios) if ratios else None


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    if ms >= 10_000:
        return f"{seconds:.1f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}"


def _fmt_mb(size: int | None) -> str:
    return "—" if size is None else f"{size / 1024 / 1024:.1f} MB"


def _throughput_row(result: Result, columns: int) -> str:
    """W8's operations per second, per contender, and aiodatabases' ratio to the pool."""
    rates: dict[str, float | None] = {}
    for name in result.names:
        seconds = result.median("w8", name)
        rates[name] = None if not seconds else result.operations / seconds
    cells = ["W8 throughput (ops/s)"]
    cells += ["—" if rates[n] is None else f"{rates[n]:,.0f}" for n in result.names]
    mine, base = rates.get(SUBJECT), rates.get(result.backend.baseline)
    baseline = result.backend.baseline
    cells.append("—" if not mine or not base else f"{mine / base:.2f}x {baseline}'s")
    cells += [""] * (columns - len(cells))
    return "| " + " | ".join(cells) + " |"


def render(result: Result, workloads: Sequence[Workload]) -> list[str]:
    backend = result.backend
    names = result.names
    base, held = backend.baseline, backend.held
    header = ["Workload", *names, f"{SUBJECT} ratio vs {base}"]
    if held is not None:
        header.append(f"ratio vs {held}")
    header += ["Target (vs " + base + ")", "Met"]
    lines = [f"### {backend.title} ({result.version})", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + [":---:"]) + "|")
    for workload in workloads:
        if workload.key not in result.times:
            continue
        cells = [workload.label]
        for name in names:
            if (workload.key, name) in result.errors:
                cells.append("error")
                continue
            text = _fmt_time(result.median(workload.key, name))
            if name not in (SUBJECT, base) and text != "—":
                text += f" ({_fmt_ratio(result.ratio(workload.key, name, base))}x)"
            cells.append(text)
        ratio = result.ratio(workload.key, SUBJECT, base)
        cells.append(_fmt_ratio(ratio))
        target = f"≤ {workload.target:.2f}"
        met = ratio is not None and ratio <= workload.target
        if workload.key == "w5":
            peak = result.memory.get(SUBJECT)
            target += ", < 30 MB"
            met = met and peak is not None and peak < MEMORY_TARGET
        if held is not None:
            held_ratio = result.ratio(workload.key, SUBJECT, held)
            cells.append(_fmt_ratio(held_ratio))
            if workload.aim_held is not None:
                aim_met = held_ratio is not None and held_ratio <= workload.aim_held
                target += f" (aim ≤ {workload.aim_held:.2f} vs held)"
        cells.append(target)
        verdict = "yes" if met else "**no**"
        if held is not None and workload.aim_held is not None:
            verdict += " (aim: " + ("yes" if aim_met else "no") + ")"
        cells.append(verdict)
        lines.append("| " + " | ".join(cells) + " |")
        if workload.key == "w8" and result.operations:
            lines.append(_throughput_row(result, len(header)))
        if workload.key == "w5" and result.memory:
            mem_cells = ["W5 peak memory", *(_fmt_mb(result.memory.get(n)) for n in names)]
            mem_cells += [""] * (len(header) - len(mem_cells))
            lines.append("| " + " | ".join(mem_cells) + " |")
    lines.append("")
    for (workload_key, name), error in sorted(result.errors.items()):
        lines.append(f"- {name} failed {workload_key.upper()}: {error}")
    if result.disturbed:
        lines.append(
            f"- {result.disturbed} timed run(s) were disturbed by other processes on the "
            f"machine in all {ATTEMPTS} attempts; their times are in the medians."
        )
    for note in backend.notes:
        lines.append(f"- {note}")
    if result.errors or backend.notes or result.disturbed:
        lines.append("")
    return lines


def machine_line(versions: Sequence[str]) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    packages = [_subject_version()]
    names = ("asyncpg", "psycopg", "psycopg-pool", "aiosqlite", "aiomysql", "asyncmy")
    for package in (*names, "databases", "SQLAlchemy"):
        try:
            packages.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} (asyncio default loop); "
        f"{', '.join(packages)}; {', '.join(versions)} on the same machine."
    )


def _subject_version() -> str:
    """aiodatabases' version, and the commit of the tree it was imported from."""
    import aiodatabases

    text = f"{SUBJECT} {importlib.metadata.version(SUBJECT)}"
    where = Path(aiodatabases.__file__).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        changes = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return text
    dirty = " with uncommitted changes" if changes.stdout.strip() else ""
    return f"{text} (commit {commit.stdout.strip()}{dirty})"


# -- running -------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


async def _timed(contender: Contender, workload: str, gated: bool) -> tuple[float, bool, bool]:
    """Seconds of one run; whether it started on a quiet machine and stayed undisturbed."""
    quiet = await quiet_mod.wait_until_quiet() if gated else True
    gc.collect()
    before = quiet_mod.sample() if gated else None
    start = time.perf_counter()
    await asyncio.wait_for(contender.run(workload), RUN_TIMEOUT)
    seconds = time.perf_counter() - start
    after = quiet_mod.sample() if gated else None
    return seconds, quiet, not quiet_mod.disturbed(before, after)


async def _one_run(
    backend: Backend, contender: Contender, workload: str, result: Result | None
) -> float | None:
    """Run one workload; record and swallow its failure (``result``: a timed run).

    A timed run that other processes disturbed is repeated (``ATTEMPTS`` in all).
    """
    try:
        for attempt in range(1, ATTEMPTS + 1):
            if workload in ("w4", "w8"):
                await backend.admin.reset_insert_table()
            await contender.before(workload)
            try:
                gated = result is not None and GATED
                seconds, quiet, clean = await _timed(contender, workload, gated)
            finally:
                await contender.after(workload)
            if result is None:
                return seconds
            if VERBOSE or not clean:
                flags = ("" if quiet else ", machine busy at start") + (
                    "" if clean else ", disturbed by other processes"
                )
                print(
                    f"  {workload} {contender.name}: {_fmt_time(seconds)}{flags}", file=sys.stderr
                )
            if clean:
                break
            if attempt == ATTEMPTS:
                result.disturbed += 1
        return seconds
    except Exception as exc:
        if result is not None:
            result.errors[(workload, contender.name)] = _error_text(exc)
        print(f"  {contender.name} {workload}: {_error_text(exc)}", file=sys.stderr)
        return None


async def _memory_of_w5(backend: Backend, contender: Contender) -> int | None:
    """W5 once more under tracemalloc (slower, so never timed): peak above the start."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            await asyncio.wait_for(contender.run("w5"), RUN_TIMEOUT)
        except Exception as exc:
            print(f"  {contender.name} w5 (memory): {_error_text(exc)}", file=sys.stderr)
            return None
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def run_order(backend: Backend, contenders: Sequence[Contender], rep: int) -> list[Contender]:
    """The order of the runs in repetition ``rep`` (a contender may run twice).

    aiodatabases and the raw baselines it is compared with run back to back,
    twice, in mirrored order (A B C C B A): on a shared virtual machine the
    CPU's speed drifts by up to a third over seconds, so a ratio should
    compare runs close in time (a slow contender between them, ``databases``
    inserting row by row, would let the drift in), and a drift that is steady
    over the block cancels out of the mean of each contender's two runs.
    Within the block and among the others the order rotates from one
    repetition to the next; the block runs before the others in even
    repetitions and after them in odd ones.
    """

    def rotated(group: list[Contender]) -> list[Contender]:
        shift = rep % len(group) if group else 0
        return group[shift:] + group[:shift]

    compared = (SUBJECT, backend.baseline, backend.held)
    block = rotated([c for c in contenders if c.name in compared])
    block += block[::-1]
    others = rotated([c for c in contenders if c.name not in compared])
    return block + others if rep % 2 == 0 else others + block


async def _run_repetition(
    backend: Backend, contenders: Sequence[Contender], workload: str, rep: int, result: Result
) -> None:
    """Every contender's runs of ``workload`` in repetition ``rep``; each keeps the
    mean of its runs (None if one failed or it does not run this workload)."""
    runs: dict[str, list[float | None]] = {c.name: [] for c in contenders}
    for contender in run_order(backend, contenders, rep):
        failed = (workload, contender.name) in result.errors
        if workload not in contender.supports or failed:
            runs[contender.name].append(None)
            continue
        runs[contender.name].append(await _one_run(backend, contender, workload, result))
    for name, seconds in runs.items():
        done = [s for s in seconds if s is not None]
        mean = statistics.fmean(done) if done and len(done) == len(seconds) else None
        result.times[workload][name].append(mean)


async def run_backend(
    backend: Backend, sizes: Sizes, reps: int, workloads: Sequence[Workload], warmup: bool
) -> Result:
    version = await backend.admin.server_version()
    print(f"{backend.title}: creating tables ({version})", file=sys.stderr)
    await backend.admin.create(sizes)
    inputs = Inputs(sizes, backend.style)
    contenders: list[Contender] = []
    result = Result(backend, version, [], reps)
    result.operations = sizes.mixed_tasks * sizes.mixed_steps
    try:
        for name, factory in backend.factories.items():
            contender = factory(inputs)
            try:
                await contender.start()
            except Exception as exc:
                backend.notes.append(f"{name} could not connect: {_error_text(exc)}")
                continue
            contenders.append(contender)
        result.names = [c.name for c in contenders]
        if warmup:
            print(f"{backend.title}: warm-up", file=sys.stderr)
            small = Inputs(
                dataclasses.replace(
                    sizes,
                    point=200,
                    wide_times=1,
                    per_task=2,
                    insert_rows=200,
                    churn=50,
                    mixed_steps=2,
                ),
                backend.style,
            )
            for contender in contenders:
                contender.inputs = small
                for workload in workloads:
                    if workload.key in contender.supports and workload.key != "w5":
                        await _one_run(backend, contender, workload.key, None)
                contender.inputs = inputs
        for workload in workloads:
            result.times[workload.key] = {c.name: [] for c in contenders}
        for rep in range(reps):
            print(f"{backend.title}: repetition {rep + 1}/{reps}", file=sys.stderr)
            for workload in workloads:
                await _run_repetition(backend, contenders, workload.key, rep, result)
        if any(w.key == "w5" for w in workloads):
            for contender in contenders:
                if contender.name in (SUBJECT, backend.baseline, backend.held):
                    peak = await _memory_of_w5(backend, contender)
                    if peak is not None:
                        result.memory[contender.name] = peak
    finally:
        for contender in contenders:
            try:
                await contender.stop()
            except Exception as exc:
                print(f"  {contender.name} stop: {_error_text(exc)}", file=sys.stderr)
        await backend.admin.drop()
    return result


async def profile_backend(backend: Backend, sizes: Sizes, workloads: Sequence[Workload]) -> None:
    """Each workload once for aiodatabases under cProfile; prints the costliest functions.

    cProfile sees the calling thread only: a force_rollback database's loop
    thread (W7) and aiosqlite's worker threads are not in the listing.
    """
    await backend.admin.create(sizes)
    inputs = Inputs(sizes, backend.style)
    contender = backend.factories[SUBJECT](inputs)
    try:
        await contender.start()
        for workload in workloads:
            if workload.key == "w4":
                await backend.admin.reset_insert_table()
            await contender.before(workload.key)
            try:
                await contender.run(workload.key)  # warm
                if workload.key == "w4":
                    await backend.admin.reset_insert_table()
                profiler = cProfile.Profile()
                profiler.enable()
                await contender.run(workload.key)
                profiler.disable()
            finally:
                await contender.after(workload.key)
            print(f"\n## {backend.title} {workload.label}: {SUBJECT}, sorted by own time\n")
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats(pstats.SortKey.TIME).print_stats(25)
    finally:
        await contender.stop()
        await backend.admin.drop()


async def reachable(backend: Backend) -> str | None:
    """None if the server answers, else why not."""
    try:
        await asyncio.wait_for(backend.admin.server_version(), 10)
    except Exception as exc:
        return _error_text(exc)
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="aiodatabases against the raw drivers, databases and SQLAlchemy Core.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small sizes, 2 repetitions, no warm-up, no waiting for a quiet machine",
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 5, or 2 with --quick)"
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated: postgresql,sqlite,mysql (default: all; "
        "a server that does not answer is skipped unless named here)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated subset of w1,w2,w3,w4,w5,w6,w7a,w7b,w8",
    )
    parser.add_argument(
        "--no-others", action="store_true", help="leave out databases and SQLAlchemy"
    )
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--mysql-url", default=os.environ.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL))
    parser.add_argument(
        "--pin",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="CPU",
        help="run this process and the local database servers on one CPU (default 0) for "
        "stable times on a small virtual machine; restores the servers' affinity at the end",
    )
    parser.add_argument("--verbose", action="store_true", help="print every timed run")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the table: run each chosen workload once for aiodatabases "
        "under cProfile and print its costliest functions",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown file for the tables (default {DEFAULT_OUTPUT.name} "
        "beside this script; none with --quick)",
    )
    args = parser.parse_args(argv)
    args.explicit_backends = "--backends" in " ".join(argv if argv is not None else sys.argv)
    return args


async def amain(args: argparse.Namespace) -> int:
    global VERBOSE, GATED
    VERBOSE = args.verbose
    GATED = not args.quick
    sizes = QUICK if args.quick else FULL
    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    wanted = [
        _ALIASES.get(b.strip().lower(), b.strip().lower())
        for b in args.backends.split(",")
        if b.strip()
    ]
    unknown = [b for b in wanted if b not in BACKENDS]
    keys = [k.strip().lower() for k in args.workloads.split(",") if k.strip()]
    workloads = [w for w in WORKLOADS if w.key in keys]
    if unknown or not workloads or reps < 1:
        print(f"unknown backend(s) {unknown}, or no workload, or reps < 1", file=sys.stderr)
        return 2
    others = not args.no_others
    restore: Callable[[], None] | None = None
    if args.pin is not None:
        try:
            restore = pinning.pin(args.pin)
        except (OSError, ValueError, AttributeError) as exc:
            print(f"--pin: cannot set CPU affinity here ({exc}); running unpinned", file=sys.stderr)
    try:
        return await _run_all(args, sizes, reps, wanted, workloads, others, restore is not None)
    finally:
        if restore is not None:
            restore()


async def _run_all(
    args: argparse.Namespace,
    sizes: Sizes,
    reps: int,
    wanted: list[str],
    workloads: list[Workload],
    others: bool,
    pinned: bool,
) -> int:
    with tempfile.TemporaryDirectory(prefix="aiodatabases-bench-") as tmp:
        results: list[Result] = []
        failed = False
        backends: list[Backend] = []
        for key in wanted:
            if key == "postgresql":
                backends += postgres_backends(args.pg_url, sizes, others)
            elif key == "sqlite":
                backends.append(sqlite_backend(os.path.join(tmp, "bench.db"), sizes, others))
            else:
                backends += mysql_backends(args.mysql_url, sizes, others)
        for backend in backends:
            why = await reachable(backend)
            if why is not None:
                print(
                    f"{backend.title}: skipped, the server does not answer ({why})", file=sys.stderr
                )
                failed = failed or args.explicit_backends
                continue
            if args.profile:
                await profile_backend(backend, sizes, workloads)
                continue
            result = await run_backend(backend, sizes, reps, workloads, warmup=not args.quick)
            results.append(result)
            failed = failed or any(
                name in (SUBJECT, backend.baseline, backend.held) for _, name in result.errors
            )
    if args.profile:
        return 1 if failed else 0
    if not results:
        print("no backend could be run", file=sys.stderr)
        return 1
    others_note = ""
    if others and not all(_others_available()):
        others_note = (
            " `databases` and/or SQLAlchemy asyncio are not installed "
            "(`pip install -e '.[bench]'`): their columns are left out."
        )
    lines = [
        machine_line(list(dict.fromkeys(r.version for r in results)))
        + (f" Benchmark and servers pinned to CPU {args.pin} (`--pin`)." if pinned else ""),
        "",
        f"{reps} repetitions{' (quick sizes)' if args.quick else ''}, contenders "
        "interleaved (order rotated per repetition; aiodatabases and its raw baselines back "
        "to back, twice, in mirrored order, each keeping the mean of its two runs); "
        "times are medians per repetition, "
        "ratios the median of the per-repetition ratios (lower is better; "
        "other contenders' ratios in parentheses)." + others_note,
        "",
        *(f"- {line}" for line in describe_workloads(sizes)),
        "",
    ]
    for result in results:
        lines += render(result, workloads)
    text = "\n".join(lines).rstrip() + "\n"
    print()
    print(text)
    output = args.output if args.output is not None else (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        output.write_text("# Benchmark results\n\n" + text, encoding="utf-8")
        print(f"written to {output}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))
