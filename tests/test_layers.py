"""The package's import graph shows its layers as folders: errors < engine < io < models <
generate < the top (model.py, cli.py, kernels.py, perf/, serve/, __init__, __main__). A module
imports only from its own layer or below (lazy imports inside functions and TYPE_CHECKING ones
included), and the modules import each other without cycles. Run it alone to see the graph:
`pytest tests/test_layers.py -q`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyrustml

PACKAGE = Path(pyrustml.__file__).resolve().parent
LAYERS = ["errors", "engine", "io", "models", "generate", "top"]
TOP = {"model", "cli", "kernels", "perf", "serve", "__init__", "__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """The layer of pyrustml.<first>...: its folder (or errors.py) names it; the rest is the top."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    if first in TOP:
        return LAYERS.index("top")
    if first not in LAYERS:
        pytest.fail(f"{module} is in no layer: add its folder to LAYERS or TOP")
    return LAYERS.index(first)


def imports(module: str) -> set[str]:
    """The pyrustml modules `module` imports, anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            # an imported attribute (a class, a function) counts as the module holding it
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("pyrustml") and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    assert "pyrustml.errors" in GRAPH and "pyrustml.engine.kernels" in GRAPH
    for m in GRAPH:
        layer(m)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_upward_import(module: str) -> None:
    up = sorted(i for i in GRAPH[module] if layer(i) > layer(module))
    assert not up, f"{module} ({LAYERS[layer(module)]}) imports from above: {up}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycle = [*path[path.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
