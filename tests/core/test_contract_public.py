"""The tests of tests/contract/ use the public API only (DESIGN.md §7).

No private module (``aiodatabases._gate``), no private name imported from a
public one, and no private attribute read, written or patched (``db._gate``,
``getattr(conn, "_driver")``): the contract is what users can observe. A test
file's own helpers (the underscore names it defines) are its own business.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTRACT = Path(__file__).resolve().parents[1] / "contract"
# Underscore names that are public API: ``Record._mapping``, as in databases
# (and SQLAlchemy's Row).
PUBLIC_UNDERSCORE_NAMES = {"_mapping"}
_BY_NAME = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.AST) -> set[str]:
    """The underscore names a test file defines itself (functions, classes, attributes it sets)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {name for name in names if _is_private(name)}


def private_uses(source: str) -> list[str]:
    """Each use of a private name of something the file does not define: ``line: what``."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found: list[str] = []

    def private(name: str) -> bool:
        return _is_private(name) and name not in own and name not in PUBLIC_UNDERSCORE_NAMES

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aiodatabases":
            module = node.module or ""
            if any(_is_private(part) for part in module.split(".")):
                found.append(f"{node.lineno}: from {module} import ...")
            found += [
                f"{node.lineno}: from {module} import {alias.name}"
                for alias in node.names
                if _is_private(alias.name)
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "aiodatabases"
                and any(_is_private(part) for part in alias.name.split("."))
            ]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            called = node.func
            name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")
            if name in _BY_NAME:
                attribute = node.args[1]
                if isinstance(attribute, ast.Constant) and private(str(attribute.value)):
                    found.append(f"{node.lineno}: {name}(..., {attribute.value!r})")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_the_check_sees_private_uses_and_only_those() -> None:
    source = '''
import aiodatabases._gate
from aiodatabases._gate import Gate
from aiodatabases import Database, _private_helper
from aiodatabases.connection import Connection


class Parked:
    def __init__(self):
        self._resume = None

    def _wake(self):
        return self._resume


async def _helper(db, record, monkeypatch, conn):
    waiting = db._gate._waiters
    driver = getattr(conn, "_driver")
    monkeypatch.setattr(conn, "_busy", True)
    return record._mapping, Parked()._wake(), waiting.__len__(), _helper.__name__
'''
    assert private_uses(source) == [
        "2: import aiodatabases._gate",
        "3: from aiodatabases._gate import ...",
        "4: from aiodatabases import _private_helper",
        "17: ._waiters",
        "17: ._gate",
        "18: getattr(..., '_driver')",
        "19: setattr(..., '_busy')",
    ]


def _contract_files() -> list[Path]:
    return sorted(CONTRACT.glob("*.py"))


def test_there_are_contract_tests() -> None:
    # The check below would pass on an empty or moved directory.
    assert len(_contract_files()) >= 10


@pytest.mark.parametrize("path", _contract_files(), ids=lambda path: path.name)
def test_contract_tests_use_only_the_public_api(path: Path) -> None:
    uses = private_uses(path.read_text(encoding="utf-8"))
    assert not uses, (
        f"tests/contract/{path.name} uses private names (observe the rule through "
        f"public behaviour, or move the test to tests/core/): {uses}"
    )
