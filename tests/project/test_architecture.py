"""House rules read from the source with ``ast`` (nothing is imported).

- no import cycle between modelconv modules, counting imports inside functions;
- no torch/tensorflow/keras import under ``modelconv/ir`` and ``modelconv/passes``;
- no module over 800 lines;
- ``modelconv/importers`` holds one entry per framework.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.paths import ROOT

PACKAGE = ROOT / "modelconv"
FRAMEWORKS = {"torch", "tensorflow", "keras", "tf_keras", "tf2onnx"}
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: Iterable[str] = ()) -> set[str]:
    """Every module named by an ``import`` or ``from`` anywhere in the file (inside functions
    and ``TYPE_CHECKING`` blocks too). ``from pkg import mod`` names ``pkg.mod`` only when it is
    one of ``modules``: a package is the parent of its modules, not a dependency of them."""
    known = set(modules)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {target for target in _imports(name, path, modules)
                       if target in modules and target != name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(graph[v])
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a self-loop)."""
    reach = {v: _reachable(graph, v) for v in graph}
    components = {frozenset({v} | {w for w in reach[v] if v in reach[w]})
                  for v in graph if v in reach[v]}
    return sorted(sorted(c) for c in components)


def test_no_import_cycles() -> None:
    graph = _graph()
    found = _cycles(graph)
    shown = [" | ".join(f"{m} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c)
             for c in found]
    assert not found, "import cycles (module -> what it imports inside the cycle):\n" + \
        "\n".join(shown)


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", ["ir", "passes"])
def test_no_framework_import_in_lower_layers(layer: str) -> None:
    bad = {name: sorted(t for t in _imports(name, path) if t.split(".")[0] in FRAMEWORKS)
           for name, path in _modules().items() if name.split(".")[1:2] == [layer]}
    assert {name: targets for name, targets in bad.items() if targets} == {}


def test_no_module_over_800_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importers_hold_one_entry_per_framework() -> None:
    entries = {p.name for p in (PACKAGE / "importers").iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "onnx", "torch", "keras", "tf"}
