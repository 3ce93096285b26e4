"""The benchmark harness runs: ``python -m bench --quick`` on SQLite, and on MySQL if configured.

No timing is asserted; only that the run succeeds and prints its table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import urls_for

from aiodatabases import DatabaseURL

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_on_sqlite_prints_the_table(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--backends", "sqlite", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "Machine: " in out
    assert "### SQLite" in out
    header = next(line for line in out.splitlines() if line.startswith("| Workload"))
    assert "aiodatabases ratio vs aiosqlite" in header
    for label in (
        "W1 point select",
        "W2 wide fetch_all",
        "W3 concurrency",
        "W4 execute_many",
        "W5 iterate",
        "W5 peak memory",
        "W6 transaction churn",
        "W7 force_rollback W1",
        "W7 force_rollback W3",
        "W8 mixed load",
        "W8 throughput (ops/s)",
    ):
        row = next((line for line in out.splitlines() if line.startswith(f"| {label} |")), None)
        assert row is not None, f"no row for {label}:\n{out}"
        assert "error" not in row, row
    assert output.read_text(encoding="utf-8").startswith("# Benchmark results")


def test_aiodatabases_and_its_baselines_run_back_to_back_twice_mirrored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is not an installed package
    from bench.data import Sizes
    from bench.run import SUBJECT, postgres_backend, run_order

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    backend = postgres_backend("postgresql://localhost/x", Sizes(), others=False)
    names = [SUBJECT, "asyncpg pool", "databases", "asyncpg held", "SQLAlchemy"]
    compared = {SUBJECT, "asyncpg pool", "asyncpg held"}
    firsts = set()
    for rep in range(6):
        contenders: Any = [Named(name) for name in names]
        order = [contender.name for contender in run_order(backend, contenders, rep)]
        assert sorted(set(order)) == sorted(names)
        start = min(order.index(name) for name in compared)
        block = order[start : start + 6]
        assert block[:3] == block[3:][::-1], order  # back to back, mirrored
        assert set(block) == compared
        assert [name for name in order if name not in compared] == sorted(
            set(names) - compared, key=lambda name: order.index(name)
        )
        assert len(order) == len(names) + 3
        firsts.add(block[0])
    assert firsts == compared  # each of them runs first in its block in some repetition


def test_mysql_is_benchmarked_once_per_driver_against_its_own_raw_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.data import Sizes
    from bench.run import SUBJECT, mysql_backends

    backends = mysql_backends("mysql://root@localhost/x", Sizes(), others=False)
    assert [(b.baseline, b.held) for b in backends] == [
        ("aiomysql pool", "aiomysql held"),
        ("asyncmy pool", "asyncmy held"),
    ]
    expected = [("mysql", "aiomysql"), ("mysql+asyncmy", "asyncmy")]
    for backend, (scheme, raw) in zip(backends, expected, strict=True):
        assert set(backend.factories) == {SUBJECT, backend.baseline, backend.held}
        assert f"`{scheme}://`" in backend.title
        assert raw in backend.title


def test_postgresql_is_benchmarked_once_per_driver_against_its_own_raw_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.data import Sizes
    from bench.run import SUBJECT, postgres_backends

    backends = postgres_backends("postgresql://postgres@localhost/x", Sizes(), others=False)
    assert [(b.baseline, b.held) for b in backends] == [
        ("asyncpg pool", "asyncpg held"),
        ("psycopg pool", "psycopg held"),
    ]
    assert set(backends[1].factories) == {SUBJECT, "psycopg pool", "psycopg held"}
    assert "`postgresql+psycopg://`" in backends[1].title


_MYSQL_URLS = urls_for("mysql")


@pytest.mark.skipif(not _MYSQL_URLS, reason="no MySQL URL configured")
def test_quick_benchmark_on_mysql_prints_a_table_per_driver() -> None:
    # The run's private database (its bench_ tables are dropped at the end).
    url = str(DatabaseURL(_MYSQL_URLS[0]).replace(scheme="mysql", options={}))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--no-others",
            "--backends",
            "mysql",
            "--workloads",
            "w1,w2,w5,w6",
            "--mysql-url",
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert "### MySQL/MariaDB: aiomysql, `mysql://`" in completed.stdout
    assert "### MySQL/MariaDB: asyncmy, `mysql+asyncmy://`" in completed.stdout
    headers = [line for line in lines if line.startswith("| Workload")]
    assert len(headers) == 2
    assert "aiodatabases ratio vs aiomysql pool" in headers[0]
    assert "ratio vs aiomysql held" in headers[0]
    assert "aiodatabases ratio vs asyncmy pool" in headers[1]
    assert "ratio vs asyncmy held" in headers[1]
    rows = [line for line in lines if line.startswith(("| W1 ", "| W2 ", "| W5 ", "| W6 "))]
    assert len(rows) == 2 * 5  # W5's peak memory row as well
    assert not [row for row in rows if "error" in row], rows
