"""The package's import graph: no circles (module-level or inside functions) and no use of
another subpackage's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sparselinear

ROOT = Path(sparselinear.__file__).parent
PACKAGE = "sparselinear"


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _subpackage(name: str) -> str:
    """The top-level stage a module belongs to (``sparselinear.nn.linear`` -> ``nn``)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import in ``name``'s source, at any
    depth (function-level imports included)."""
    tree = ast.parse(MODULES[name].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    found.append((f"{target}.{alias.name}", None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return [(m, n, line) for m, n, line in found if m == PACKAGE or m.startswith(PACKAGE + ".")]


def _graph() -> dict[str, set[str]]:
    """Module -> modules that importing it executes: each import's target and the packages
    above it, except the importer's own packages (Python initialises those before the
    importer) and the root."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        own = {".".join(name.split(".")[:depth]) for depth in range(1, name.count(".") + 2)}
        for target, _, _ in _imports(name):
            parts = target.split(".")
            for depth in range(2, len(parts) + 1):
                ancestor = ".".join(parts[:depth])
                if ancestor in MODULES and ancestor not in own:
                    graph[name].add(ancestor)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_package_has_subpackages_by_stage():
    stages = {_subpackage(n) for n in MODULES if _is_package(n) and n != PACKAGE}
    assert {"pattern", "io", "datasets", "nn", "constraints", "ops", "memory", "cli",
            "distributed"} <= stages
    flat = [n for n in MODULES if n.count(".") == 1 and not _is_package(n)]
    # The top level holds the errors, the entry point and thin re-exports of moved modules.
    assert sorted(flat) == sorted(
        f"{PACKAGE}.{m}" for m in ("__main__", "errors", "functional", "structured")
    )


def test_the_import_graph_has_no_circles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("importer", sorted(MODULES))
def test_no_private_name_of_another_subpackage_is_imported(importer):
    offending = []
    for target, imported, line in _imports(importer):
        if _subpackage(target) == _subpackage(importer):
            continue
        private_module = any(_private(part) for part in target.split(".")[1:])
        if private_module or (imported is not None and _private(imported)):
            offending.append(f"line {line}: {target} {imported or ''}".strip())
    assert offending == []


def test_the_private_import_check_sees_one():
    source = "from ..ops import _ext\nfrom ..pattern.generators import _hidden\n"
    tree = ast.parse(source)
    names = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for a in node.names]
    assert [n for n in names if _private(n)] == ["_ext", "_hidden"]


def test_importing_the_package_leaves_scipy_and_the_table_readers_unloaded():
    """scipy, pyarrow, pandas and polars load when a function needs them: importing the
    package (and its training-side subpackages) costs neither their time nor their memory."""
    code = (
        "import sys, sparselinear, sparselinear.distributed, sparselinear.memory, "
        "sparselinear.io; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'scipy', 'pyarrow', 'pandas', 'polars', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT.parent).stdout
    assert out.strip() == "[]"
