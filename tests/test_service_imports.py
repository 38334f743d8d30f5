"""The service layer's modules form no import cycle, and none of them needs Ray or HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "serve_app" / "service"
PACKAGE = "serve_app.service"


def imports_of(path: Path) -> set[str]:
    """The serve_app.service modules a module imports (TYPE_CHECKING imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.update(f"{PACKAGE}.{alias.name}" for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def test_service_import_graph_has_no_cycle() -> None:
    graph = {
        f"{PACKAGE}.{path.stem}": imports_of(path)
        for path in SERVICE.glob("*.py")
        if path.stem != "__init__"
    }
    assert len(graph) >= 8
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*trail, module])
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            visit(target, [*trail, module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_service_layer_knows_no_ray_or_http() -> None:
    for path in SERVICE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not names & {"ray", "fastapi", "starlette", "kopf"}, (path.name, names)
