"""The layer rule: imports only go down (or sideways), and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from probe.layers import FACE, LAYERS, layer_of

ROOT = Path(__file__).resolve().parents[1] / "probe"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path) -> set[str]:
    """Every probe module that ``path`` imports, anywhere in the file (lazy imports count)."""
    return imports_in(path.read_text(), _module_name(path), path.name == "__init__.py")


def imports_in(text: str, module: str, is_package: bool = False) -> set[str]:
    """The probe imports of source ``text`` as if it were ``module``."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            # "from probe.x import y" may name the submodule probe.x.y
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n == FACE or n.startswith(FACE + "."))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module an import refers to (``from a import b``: ``a.b`` if a module, else ``a``)."""
    return name if name in modules else None


def test_every_module_is_in_a_layer():
    for name in _modules():
        layer_of(name)  # KeyError names the stray module


def test_imports_only_go_down():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        own = layer_of(name)
        for target in imports_of(path):
            if _known(target, modules) is None:
                continue
            if target == FACE and name != FACE:
                upward.append(f"{name} imports the package face 'probe' (import the module instead)")
            elif layer_of(target) > own:
                upward.append(f"{name} (layer {LAYERS[own][0]}) imports {target} "
                              f"(layer {LAYERS[layer_of(target)][0]})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t in imports_of(path) if _known(t, modules) and t != name
                    and not name.startswith(t + ".")}  # a module may import its own package's __init__
             for name, path in modules.items()}
    # a package importing its own submodules (re-exports) is not a cycle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_layer_rule_catches_an_upward_import():
    """The checker itself: lazy and relative upward imports are both seen."""
    text = "def f():\n    from probe.report.fmt import fmt\nfrom ..report import markdown\n"
    found = imports_in(text, "probe.diagnostics.activity")
    assert {"probe.report.fmt", "probe.report.markdown"} <= found
    assert layer_of("probe.report.fmt") > layer_of("probe.diagnostics.activity")
