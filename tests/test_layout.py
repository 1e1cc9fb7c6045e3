"""The layout shows the architecture: imports point down only, and nothing imports a CLI.

Every import is counted, also those inside functions (they are still dependencies):
an import cycle between modules, or a library module that imports botify.cli, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"botify": REPO / "botify" / "src" / "botify", "sim": REPO / "sim" / "src" / "sim"}

#: the floors of botify, lowest first; a package may import only its own floor or lower ones
FLOORS = {
    "store": 0,
    "recommenders": 1,
    "analysis": 2,
    "training": 3,
    "service": 3,
    "spark": 4,
    "lab": 5,
    "cli": 6,
}
#: `python -m botify[.X]` entry points: they exist to call the CLI
ENTRY_POINTS = {"botify.__main__", "botify.ab", "botify.train", "botify.evaluate", "botify.contest", "botify.lab.__main__",
                "botify.spark.__main__"}


def _module_name(root: str, path: Path) -> str:
    rel = path.relative_to(ROOTS[root]).with_suffix("")
    parts = [root, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def import_graph() -> nx.DiGraph:
    modules: dict[str, Path] = {}
    for root, top in ROOTS.items():
        for path in top.rglob("*.py"):
            modules[_module_name(root, path)] = path
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(path, name):
            # `from pkg import mod` names a module; `from mod import func` the module itself
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                g.add_edge(name, target)
    return g


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return import_graph()


def test_no_import_cycles(graph: nx.DiGraph) -> None:
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:10])


def test_library_modules_never_import_the_cli(graph: nx.DiGraph) -> None:
    bad = [
        (a, b) for a, b in graph.edges
        if b.startswith("botify.cli") and not a.startswith("botify.cli") and a not in ENTRY_POINTS
    ]
    assert not bad, f"library modules importing the CLI: {bad}"


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 and parts[0] == "botify" else None


def test_botify_imports_point_down(graph: nx.DiGraph) -> None:
    up = []
    for a, b in graph.edges:
        fa, fb = _floor(a), _floor(b)
        if a in ENTRY_POINTS or fa is None or fb is None or a.split(".")[1] == b.split(".")[1]:
            continue
        if fb > fa or (fb == fa):
            up.append(f"{a} -> {b}")
    assert not up, "imports that point up or sideways: " + ", ".join(sorted(up))


def test_sim_does_not_depend_on_botify_or_flask(graph: nx.DiGraph) -> None:
    for path in ROOTS["sim"].rglob("*.py"):
        imported = _imports(path, _module_name("sim", path))
        assert not {i for i in imported if i.split(".")[0] in ("botify", "flask", "flask_restful")}, path


def test_one_file_per_builtin_recommender() -> None:
    files = {p.stem for p in (ROOTS["botify"] / "recommenders").glob("*.py")}
    assert {"random", "top_pop", "sticky_artist", "indexed", "contextual", "i2i"} <= files
