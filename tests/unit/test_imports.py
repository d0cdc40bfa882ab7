"""The import graph: no cycles, dependencies point one way (tests → chaos,
bench → devtools → consumer → schemas), `schemas` stands alone, and the
runtime package imports without the checkout's tooling or dev-only libraries.

The graph is read from the source with `ast`: every import statement, those
inside functions too (a lazy import is still a dependency), except the ones
under `if TYPE_CHECKING:`, which exist for annotations only."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consumer", "schemas", "devtools")

#: Top-level packages each one must never import.
FORBIDDEN = {
    "schemas": {"consumer", "devtools", "tests", "chaos", "bench"},
    "consumer": {"devtools", "tests", "chaos", "bench"},
    "devtools": {"tests", "chaos", "bench"},
    "chaos": {"tests"},
    "bench": {"tests"},
}


def module_files(packages: Iterable[str]) -> dict[str, Path]:
    out = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(name: str, path: Path, *, type_checking: bool = False) -> Iterator[str]:
    """Dotted names `path` imports (module, and module.attribute for `from`),
    relative imports resolved."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _type_checking(node.test) and not type_checking:
            for statement in node.orelse:
                yield from visit(statement)
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(), str(path)))


def import_graph(packages: Iterable[str]) -> dict[str, set[str]]:
    """Module → the modules of `packages` it imports (the longest known prefix
    of each imported name)."""
    files = module_files(packages)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for dotted in imported_names(name, path):
            parts = dotted.split(".")
            known = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
            target = next((m for m in known if m in files), None)
            if target is not None and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while (w := stack.pop()) != v:
                component.add(w)
            if component:
                found.append({v, *component})

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles() -> None:
    assert [sorted(c) for c in cycles(import_graph(PACKAGES))] == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    wrong = sorted(
        f"{name} imports {dotted}"
        for name, path in module_files([package]).items()
        for dotted in imported_names(name, path, type_checking=True)
        if dotted.split(".")[0] in FORBIDDEN[package])
    assert wrong == []


def _import_all(modules: Iterable[str], *, blocked: Iterable[str]) -> list[str]:
    """Import `modules` in a fresh interpreter in which `blocked` cannot be
    imported (a None entry in sys.modules makes any import of it fail);
    returns the names it imported, or the failure as the process's stderr."""
    code = "\n".join([
        "import importlib, sys",
        *(f"sys.modules[{name!r}] = None" for name in blocked),
        f"for name in {sorted(modules)!r}:",
        "    importlib.import_module(name)",
        "    print(name)",
    ])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    return proc.stdout.split() if proc.returncode == 0 else [proc.stderr]


def test_schemas_imports_without_consumer() -> None:
    modules = sorted(module_files(["schemas"]))
    assert _import_all(modules, blocked=["consumer", "devtools", "tests"]) == modules


def test_runtime_imports_without_the_checkouts_tooling() -> None:
    """Every module of the wheel imports with no devtools, tests, chaos or
    bench beside it and no dev-only library installed."""
    dev_only = ["grafana_foundation_sdk", "pytest", "hypothesis", "testcontainers",
                "promql_parser", "kubernetes_validate", "yaml", "compose", "confluent_kafka"]
    modules = sorted(module_files(["consumer", "schemas"]))
    imported = _import_all(modules, blocked=["devtools", "tests", "chaos", "bench", *dev_only])
    assert imported == modules


def test_the_wheel_holds_the_runtime_only() -> None:
    """The packages setuptools' `find` takes: folders with an `__init__.py`
    whose dotted name matches an `include` pattern."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    tops = [d for d in ROOT.iterdir() if (d / "__init__.py").exists()]
    packages = {".".join(init.parent.relative_to(ROOT).parts)
                for top in tops for init in top.rglob("__init__.py")}
    taken = {p for p in packages if any(fnmatch.fnmatchcase(p, pat) for pat in include)}
    assert {p.split(".")[0] for p in taken} == {"consumer", "schemas"}
    assert not any("dev" in pattern for pattern in config["package-data"]["consumer"])
