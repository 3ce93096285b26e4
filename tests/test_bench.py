"""The benchmark harness runs: ``python -m bench --quick`` on SQLite only.

No timing is asserted; only that the run succeeds and prints its table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
