"""No import cycle inside the package: module A importing B while B imports A (at module level or
inside a function, where such cycles hide) makes the layering unreadable and the import order
fragile. Read from the source with `ast`; no module is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dreamactor_jax"


def _modules() -> dict[str, Path]:
    out = {}
    for p in (ROOT / PACKAGE).rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules `path` imports anywhere in its body (`from pkg import mod` counts as mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    modules = _modules()
    assert f"{PACKAGE}.models.kernels" in modules and f"{PACKAGE}.models.attention" in modules
    # a package's __init__ importing its own submodules is not a cycle of the layering
    graph = {m: {d for d in _imports(p, modules) if not m.startswith(d + ".") and d != m}
             for m, p in modules.items()}
    assert f"{PACKAGE}.models.kernels" in graph[f"{PACKAGE}.models.sequence_parallel"]
    assert _cycles(graph) == [], "import cycles (module groups that import each other)"
