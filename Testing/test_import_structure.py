"""The engine package's import structure: no module imports one that (directly or not) imports it back, and the
engine's layers never import the front ends above them (the command line, the worker). Every import counts: at
module level, inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

PACKAGE = Path(__file__).resolve().parents[1] / "PromptRegister" / "promptregister"
FRONT_ENDS = ("promptregister.cli", "promptregister.worker", "promptregister.__main__", "promptregister.launch")
"""The command line (the cli package) and the worker: nothing below them imports them."""


def module_names() -> Dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    """The package's modules `name` imports (a `from x import y` counts y when y is a module, else x)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def test_no_import_cycle_in_the_engine_package():
    known = module_names()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_engine_never_imports_the_command_line_or_the_worker():
    known = module_names()
    front = lambda name: any(name == f or name.startswith(f + ".") for f in FRONT_ENDS)
    upward = {name: sorted(target for target in imports_of(name, path, known) if front(target))
              for name, path in known.items() if not front(name) and name != "promptregister"}
    assert {name: targets for name, targets in upward.items() if targets} == {}
