"""The shape of the ``assetry`` package: no import cycle, small modules, lazy exports.

The import graph is read from the source with :mod:`ast` (nothing is imported), over every
module of the packages that ``pyproject.toml`` lists, so the lazily exported modules
(runtime, checks, watchers, clients, testing, server) are walked even when their optional
dependencies are missing. Imports under ``if TYPE_CHECKING:`` are type-only and ignored.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 700


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def _setuptools() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]


def _package_dir(package: str, mapping: dict[str, str]) -> Path:
    """The folder of ``package`` under setuptools' ``package-dir`` mapping."""
    base = max((k for k in mapping if package == k or package.startswith(k + ".")), key=len)
    rest = package[len(base) :].lstrip(".")
    return ROOT / mapping[base] / Path(*rest.split(".")) if rest else ROOT / mapping[base]


def _modules() -> dict[str, Module]:
    setuptools = _setuptools()
    mapping: dict[str, str] = setuptools["package-dir"]  # type: ignore[assignment]
    packages: list[str] = setuptools["packages"]  # type: ignore[assignment]
    found: dict[str, Module] = {}
    for package in packages:
        for path in sorted(_package_dir(package, mapping).glob("*.py")):
            is_package = path.stem == "__init__"
            name = package if is_package else f"{package}.{path.stem}"
            found[name] = Module(name, path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is imported (and, with ``deferred``, also
    those inside functions, run when the function is first called)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_nodes(node.body, deferred)
            yield from _import_nodes(node.orelse, deferred)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_nodes(block, deferred)
            for handler in node.handlers:
                yield from _import_nodes(handler.body, deferred)
        elif isinstance(node, ast.With | ast.ClassDef) or (
            deferred
            and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.For | ast.While)
        ):
            yield from _import_nodes(node.body, deferred)


def _targets(
    module: Module, node: ast.Import | ast.ImportFrom, modules: dict[str, Module]
) -> set[str]:
    """The assetry modules an import statement runs (the implicit import of a parent
    package is left out: every submodule has it)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        parts = package.split(".")
        base = parts[: len(parts) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    out: set[str] = set()
    for alias in node.names:
        if f"{source}.{alias.name}" in modules:  # from . import plugins
            out.add(f"{source}.{alias.name}")
        elif source in modules:  # from .backend import StateBackend
            out.add(source)
    return out


def _graph(deferred: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        edges: set[str] = set()
        for node in _import_nodes(tree.body, deferred):
            edges |= _targets(module, node, modules)
        edges.discard(module.name)
        graph[module.name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            if cycle is not None:
                return cycle
    return None


def test_the_graph_walk_sees_every_kind_of_import() -> None:
    graph = _graph(deferred=False)
    assert "assetry.runtime" in graph and "assetry.server.app" in graph
    assert "assetry.backends.sql.backend" in graph and "assetry.testing.pytest_plugin" in graph
    assert "assetry.backend" in graph["assetry.store"]  # from .backend import ...
    assert "assetry.plugins" in graph["assetry.instance"]  # from . import plugins
    assert "assetry" in graph["assetry.server.app"]  # from .. import __version__
    assert "assetry.runtime.context" in graph["assetry.runtime.events"]
    # a type-only import is not an edge; a deferred one is only in the deferred graph
    assert "assetry.instance" not in graph["assetry.store"]
    assert "assetry.watchers" not in graph["assetry.instance"]
    assert "assetry.watchers" in _graph(deferred=True)["assetry.instance"]


def test_find_cycle_reports_the_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_at_module_level() -> None:
    cycle = _find_cycle(_graph(deferred=False))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_hidden_in_a_function() -> None:
    """An import inside a function may defer a heavy module; it must not hide a cycle."""
    cycle = _find_cycle(_graph(deferred=True))
    assert cycle is None, (
        "import cycle through imports inside functions: "
        + " -> ".join(cycle or [])
        + "; move the shared code to a module both can import instead"
    )


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A subpackage missing from ``packages`` would be missing from installed wheels."""
    listed = {module.path.parent for module in _modules().values() if module.is_package}
    mapping: dict[str, str] = _setuptools()["package-dir"]  # type: ignore[assignment]
    for folder in {ROOT / path for path in mapping.values()}:
        for init in folder.rglob("__init__.py"):
            assert init.parent in listed, f"{init.parent.relative_to(ROOT)} is not in packages"


def _oversized() -> list[str]:
    return sorted(
        f"{module.path.relative_to(ROOT)} ({n} lines)"
        for module in _modules().values()
        if (n := len(module.path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    )


def test_no_module_over_700_lines() -> None:
    """Every module of the package stays under 700 lines: split a bigger one by concern."""
    assert _oversized() == []


def test_import_assetry_leaves_the_lazy_exports_unimported() -> None:
    """``import assetry`` stays fast: lazily exported modules and plugins load on first use."""
    import assetry

    code = "import sys, assetry; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "assetry" in loaded
    heavy = ("asyncio", "pandas", "pyarrow", "sqlalchemy", "fsspec", "ibis", "click", "fastapi")
    assert [m for m in heavy if m in loaded] == []
    lazy = {*assetry._LAZY.values(), "testing", "server", "backends", "iomanagers"}
    eager = [m for m in loaded if m.startswith("assetry.") and m.split(".")[1] in lazy]
    assert eager == [], f"import assetry imported {eager}"
