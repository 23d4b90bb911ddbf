"""The package layout holds: each stage imports only what comes before it, training never
leaks into the running node, no import circle, no module grows past ~300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dicom_node"

# What each room may import from the package, at module level or inside functions.
ALLOWED = {
    "dicom": {"dicom", "errors"},
    "storage": {"storage", "errors"},
    "index": {"index", "storage", "errors"},
    "ingest": {
        "__init__",
        "ingest",
        "dicom",
        "index",
        "storage",
        "config",
        "errors",
        "audit",
        "metrics",
    },
    "model": {"model", "errors"},
    "results": {"results", "model", "dicom", "__init__"},
    "pipeline": {
        "__init__",
        "hl7",
        "audit",
        "metrics",
        "pipeline",
        "dicom",
        "storage",
        "index",
        "ingest",
        "model",
        "results",
        "config",
        "errors",
    },
    # results: `score --pictures` draws the anomaly map exactly as the node's SC does
    "training": {"training", "model", "results", "errors", "config", "config_file"},
    "hl7": {"hl7", "config", "errors"},
    "web": {
        "__init__",
        "audit",
        "config",
        "errors",
        "index",
        "ingest",
        "storage",
        "web",
    },
    "app": {
        "__init__",
        "hl7",
        "web",
        "app",
        "storage",
        "config",
        "config_file",
        "errors",
        "index",
        "ingest",
        "pipeline",
        "model",
        "dicom",
        "samples",
        "training",
    },
    "testing": {"testing"},
}


def modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): ast.parse(
            path.read_text()
        )
        for path in PACKAGE.rglob("*.py")
    }


def imported(tree: ast.AST, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("dicom_node")
        ):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("dicom_node")}
    return names


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_each_room_imports_only_the_rooms_before_it():
    wrong = [
        f"{name} imports {target}"
        for name, tree in modules().items()
        if room(name) in ALLOWED
        for target in imported(tree)
        if room(target) not in ALLOWED[room(name)]
    ]
    assert wrong == []


def test_no_import_circle_at_module_level():
    graph = {name: imported(tree, top_level_only=True) for name, tree in modules().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = [name for name in graph if reaches(name, name, {name})]
    assert circles == []


def test_no_module_over_300_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert long == {}
