"""The package's modules import each other without circles (issue 14).

Every import counts, at module level or inside a function, under
``TYPE_CHECKING`` or not: a circle hidden in a function is still one module
that cannot be understood (or changed) without the other. Backends know their
driver and the leaves below them, never the core above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aiodatabases

PACKAGE = Path(aiodatabases.__file__).parent

#: What a backend module may import from the package besides ``backends.*``.
LEAVES = {
    "aiodatabases._bounded",
    "aiodatabases._compat",
    "aiodatabases._optional",
    "aiodatabases._query",
    "aiodatabases._records",
    "aiodatabases._url",
    "aiodatabases.exceptions",
}

#: The modules of a connection, lowest first (issue 14 item 2): each one
#: imports only those before it.
CONNECTION_LAYERS = [
    "aiodatabases._frames",
    "aiodatabases._session",
    "aiodatabases._transactions",
    "aiodatabases._streams",
    "aiodatabases.connection",
]


def _module_name(path: Path) -> str:
    parts = ("aiodatabases", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (anywhere in its code)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from . import _sqlalchemy``: the submodule itself, not its package.
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_import_graph_is_read() -> None:
    graph = _graph()
    # A few arrows that exist: the reader resolves relative imports.
    assert "aiodatabases.connection" in graph["aiodatabases.database"]
    assert "aiodatabases.backends.base" in graph["aiodatabases.backends.postgres"]
    assert "aiodatabases._sqlalchemy" in graph["aiodatabases._optional"]  # in a function
    assert "aiodatabases.backends.base" in graph["aiodatabases.backends"]  # from a package
    assert "aiodatabases._compat" in graph["aiodatabases.backends.sqlite.backend"]  # from ...


def test_circles_are_found() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_through_others() -> None:
    circles = _circles(_graph())
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_backends_import_only_backends_and_leaves() -> None:
    graph = _graph()
    wrong = {
        name: sorted(
            target
            for target in targets
            if not target.startswith("aiodatabases.backends") and target not in LEAVES
        )
        for name, targets in graph.items()
        if name.startswith("aiodatabases.backends")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_leaves_import_no_core_module() -> None:
    graph = _graph()
    core = {name for name in graph if name not in LEAVES and "backends" not in name}
    core.discard("aiodatabases._sqlalchemy")  # what _optional loads: a leaf of its own
    core.discard("aiodatabases._pg_dialect")
    assert {leaf: sorted(graph[leaf] & core) for leaf in LEAVES if graph[leaf] & core} == {}


def test_a_connections_modules_import_only_downward() -> None:
    graph = _graph()
    upward = {
        name: sorted(graph[name] & set(CONNECTION_LAYERS[index + 1 :]))
        for index, name in enumerate(CONNECTION_LAYERS)
    }
    assert {name: above for name, above in upward.items() if above} == {}


#: DESIGN.md section 6, top to bottom: a module imports only modules of its
#: own layer or of the layers below it. Every module is in one layer, so a new
#: module has to be placed (and the drawing kept true) before this passes.
LAYERS: dict[str, set[str]] = {
    "public": {
        "aiodatabases",
        "aiodatabases.__main__",
        "aiodatabases._demo",
        "aiodatabases.database",
        "aiodatabases.otel",
        "aiodatabases.testing",
        "aiodatabases.testing._lifespan",
        "aiodatabases.testing.plugin",
    },
    "connection": {
        "aiodatabases.connection",
        "aiodatabases._streams",
        "aiodatabases._transactions",
        "aiodatabases._session",
        "aiodatabases._frames",
        "aiodatabases.transaction",
        "aiodatabases._tasks",
        "aiodatabases._opening",
        "aiodatabases._kinds",
        "aiodatabases._lifecycle",
        "aiodatabases._replicas",
    },
    "runtime": {
        "aiodatabases._runtime",
        "aiodatabases._pool",
        "aiodatabases._health",
        "aiodatabases._pool_stats",
        "aiodatabases._loops",
        "aiodatabases._mailbox",
        "aiodatabases._statements",
        "aiodatabases._gate",
        "aiodatabases._guard",
        "aiodatabases._background",
        "aiodatabases._waits",
        "aiodatabases._options",
        "aiodatabases._replica_options",
        "aiodatabases._observe",
        "aiodatabases._statement_log",
        "aiodatabases._retry",
    },
    "preparation": {"aiodatabases._prepare"},
    "backends": {"aiodatabases.backends"},  # and every module under it
    "leaves": LEAVES
    | {
        "aiodatabases._sqlalchemy",
        "aiodatabases._pg_dialect",
        "aiodatabases.hooks",
        "aiodatabases._error_codes",
    },
}


def _layer(module: str) -> int:
    for depth, members in enumerate(LAYERS.values()):
        if module in members or (depth == 4 and module.startswith("aiodatabases.backends.")):
            return depth
    raise LookupError(module)


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for name in _graph():
        try:
            _layer(name)
        except LookupError:
            unplaced.append(name)
    assert unplaced == [], f"place these in LAYERS and in DESIGN.md section 6: {unplaced}"


def test_modules_import_only_their_layer_and_below() -> None:
    graph = _graph()
    upward = {
        name: sorted(target for target in targets if _layer(target) < _layer(name))
        for name, targets in graph.items()
    }
    assert {name: above for name, above in upward.items() if above} == {}


def test_an_upward_import_is_found() -> None:
    assert _layer("aiodatabases.backends.sqlite.worker") > _layer("aiodatabases._runtime")
    assert _layer("aiodatabases._runtime") > _layer("aiodatabases.connection")
    assert _layer("aiodatabases._url") == len(LAYERS) - 1
