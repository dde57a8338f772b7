"""The house rules that keep data flowing one way (issue 8): no import cycles in the
package (imports inside functions included), and no backend reaching back into the
settings or the dispatcher."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import convreg

PKG = Path(convreg.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, level: int, name) -> str:
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict:
    """module -> set of convreg modules it imports anywhere in its source."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve(mod, is_pkg, node.level, node.module)
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                # the deepest convreg module the import names
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("convreg"):
                    deps.add(t)
        graph[mod] = deps
    return graph


def _without_package_inits(graph):
    """Importing ``a.b`` runs ``a/__init__``: package __init__ files that only re-export
    (convreg/__init__) are the public surface, not part of the flow; edges into a
    package's __init__ are kept only for subpackages' own __init__ modules."""
    return {m: {d for d in deps if d != "convreg"} for m, deps in graph.items()
            if m != "convreg"}


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(_without_package_inits(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(m for m in import_graph()
                                          if m.startswith("convreg.backends.")))
def test_backends_never_reach_settings_or_dispatch(module):
    bad = {d for d in import_graph()[module]
           if d.startswith(("convreg._settings", "convreg._dispatch", "convreg._api"))}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_frontend_depends_on_nothing_downstream():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("convreg._frontend"):
            assert not {d for d in deps if d.startswith(
                ("convreg._settings", "convreg._dispatch", "convreg.backends"))}, mod
