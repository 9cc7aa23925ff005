"""The code's structure: dependencies point one way (cli → cluster → jobs → core) and no module
imports itself back through others, counting imports inside functions too (a lazy import
hides a cycle, it does not break it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "jobs", "cluster", "cli")  # each may import only the ones before it


def project_imports() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its code."""
    graph: dict[str, set[str]] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).glob("*.py")):
            module = f"{package}.{path.stem}"
            found = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                found |= {name for name in names if name.split(".")[0] in LAYERS}
            graph[module] = {name if name in graph or (ROOT / f"{name.replace('.', '/')}.py").exists() else
                             name.rsplit(".", 1)[0] for name in found} - {module}
    return graph


def test_dependencies_point_one_way():
    wrong = [(module, imported) for module, imports in project_imports().items() for imported in imports
             if LAYERS.index(imported.split(".")[0]) > LAYERS.index(module.split(".")[0])]
    assert wrong == []


def test_no_import_cycle():
    graph = project_imports()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in seen:
                seen.add(imported)
                visit(imported, path + [imported])

    for start in sorted(graph):
        seen = {start}
        visit(start, [start])
    assert cycles == []
