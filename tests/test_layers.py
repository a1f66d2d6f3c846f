"""The structure drawn from the imports: no circle between modules, no arrow that runs back up
between packages, and ``storage`` importing nothing from ``search`` (README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import fishopt

ROOT = Path(fishopt.__file__).parent
# Lowest first: a package may import only those before it.
LAYERS = [
    "errors",
    "files",
    "config",
    "logline",
    "redact",
    "claims",
    "stats",
    "storage",
    "shutdown",
    "data",
    "training",
    "notes",
    "search",
    "replay",
    "bundle",
    "report",
    "serve",
    "dashboard",
    "cli",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT.parent / rel).with_suffix(".py").exists() or (ROOT.parent / rel).is_dir()


def import_graph() -> dict[str, set[str]]:
    """Module -> fishopt modules it imports (``from pkg import submodule`` counts as the
    submodule, as Python's own import of it does)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fishopt"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                mods = [s for s in subs if _is_module(s)]
                deps.update(mods)
                if len(mods) < len(subs):
                    deps.add(node.module)  # type: ignore[arg-type]
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("fishopt."))
        name = _module_name(path)
        graph[name] = {d for d in deps if d != name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_packages_import_only_downwards() -> None:
    up = []
    for module, deps in import_graph().items():
        here = _package(module)
        for dep in deps:
            there = _package(dep)
            if here and there and here != there and LAYERS.index(there) > LAYERS.index(here):
                up.append(f"{module} -> {dep}")
    assert sorted(up) == []


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in import_graph()} - {""}
    assert packages <= set(LAYERS), packages - set(LAYERS)
