"""``python -m bench.isolation`` runs (a few tests per strategy) and prints its table.

No timing is asserted. PostgreSQL only, like the benchmark.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import urls_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url", urls_for("postgresql")[:1], ids=["postgresql"])
def test_isolation_benchmark_runs(url: str) -> None:
    options = ["--url", url, "--tests", "5", "--rounds", "2", "--warmup", "1"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.isolation", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for strategy in ("plugin", "bare, loop per test", "isolated", "reconnect", "truncate"):
        assert f"| {strategy} |" in completed.stdout
