"""``python -m aiodatabases demo``, run as a user runs it: in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aiodatabases import DatabaseURL

# The lines that show each part's expectation was checked and met.
KEY_LINES = [
    "[a1] ok: this test starts from an empty table",
    "[a2] ok: this test starts from an empty table",
    "[a2] ok: all 5 concurrent inserts landed (5 rows)",
    "[a] ok: no test's write was committed (0 rows)",
    "[b] ok: the sibling waits while the transaction is open",
    "[b] rows now: ['sibling']",
    "[b] ok: the rollback undid the children and kept the sibling",
    "[c] ok: every query inside the loop completed",
    "[end] ok: nothing was committed (0 rows)",
]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    # -W error: a warning in the demo (an unclosed resource, say) is a failure here too.
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "aiodatabases", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# MySQL drivers cannot interleave: part c shows the immediate, clear refusal.
MYSQL_PART_C = "[c] ok: it failed at once with InterleaveError (no hang)"


def assert_demo_passed(result: subprocess.CompletedProcess[str], *, mysql: bool = False) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    for line in KEY_LINES:
        if mysql and line.startswith("[c]"):
            line = MYSQL_PART_C
        assert line in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("demo passed: ")
    assert result.stderr == ""


def test_demo_on_a_temporary_sqlite_file() -> None:
    result = run_module("demo")
    assert_demo_passed(result)
    assert "[end] temporary file" in result.stdout
    assert result.stdout.rstrip().splitlines()[-2].endswith("removed: True")


def test_demo_on_each_configured_database(database_url: str) -> None:
    assert_demo_passed(
        run_module("demo", database_url), mysql=DatabaseURL(database_url).dialect == "mysql"
    )


@pytest.mark.parametrize("args", [(), ("frobnicate",)], ids=["no-command", "unknown-command"])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = run_module(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m aiodatabases")
    assert result.stdout == ""


def test_demo_refuses_an_in_memory_sqlite_database() -> None:
    result = run_module("demo", "sqlite:///:memory:")
    assert result.returncode == 2
    assert "needs a SQLite file" in result.stderr
