"""The package's shape: small modules with one job each (DESIGN.md section 7).

No module over 400 lines and no class over 300 (the demo aside), and every
module opens with a docstring whose first line names its job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "aiodatabases"
MODULE_LIMIT = 400
CLASS_LIMIT = 300
#: The demo is a script shown to users, not a part of the library.
EXEMPT = {"_demo.py"}

MODULES = sorted(
    path for path in PACKAGE.rglob("*.py") if path.name not in EXEMPT
)


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LIMIT, f"{_name(path)} has {lines} lines (limit {MODULE_LIMIT})"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_classes_are_small(path: Path) -> None:
    tree = ast.parse(path.read_text())
    large = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > CLASS_LIMIT
    ]
    assert not large, f"{_name(path)}: classes over {CLASS_LIMIT} lines: {large}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_says_its_job(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{_name(path)} has no module docstring"
    first = docstring.splitlines()[0].strip()
    assert len(first) >= 10, f"{_name(path)}: first docstring line {first!r} names no job"
