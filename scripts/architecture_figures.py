"""Figures of the package's shape for docs/ARCHITECTURE.md (issue 22), measured, not kept by
hand: module sizes, the longest functions, and the import graph's cycles.

    python scripts/architecture_figures.py [src/emraudit]

Import cycles are looked for twice: among the imports a module runs when it is imported
(module level; `from pkg import sub` is an edge to the submodule `pkg.sub`), which must be
none (tests/test_import_cycles.py), and among every import including those deferred inside
functions, which are listed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _targets(mod: str, path: Path, node: ast.AST, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    out = []
    for a in node.names:                  # a submodule by name, else the module itself
        sub = f"{base}.{a.name}"
        out.append(sub if sub in known else base)
    return [t for t in out if t in known]


def import_graph(root: Path, deferred: bool = False) -> dict[str, set[str]]:
    """module -> modules of the package it imports (at import time; with `deferred`, also
    inside functions)."""
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = ast.walk(tree) if deferred else _import_time(tree)
        for n in nodes:
            graph[mod].update(t for t in _targets(mod, path, n, known) if t != mod)
    return graph


def _import_time(tree: ast.Module):
    """The statements run on import: the module body, including inside if/try blocks (not
    functions and classes' methods; `if TYPE_CHECKING:` blocks are skipped)."""
    stack = list(tree.body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            yield n
        elif isinstance(n, ast.If):
            if not (isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING"):
                stack += n.body + n.orelse
        elif isinstance(n, ast.Try):
            stack += n.body + n.orelse + n.finalbody + [s for h in n.handlers for s in h.body]
        elif isinstance(n, (ast.With, ast.ClassDef)):
            stack += n.body


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def functions(root: Path) -> list[tuple[int, str]]:
    """(lines, module:qualified name) of every function and method."""
    out = []
    for mod, path in modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def walk(node: ast.AST, prefix: str) -> None:
            for ch in ast.iter_child_nodes(node):
                if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.append((ch.end_lineno - ch.lineno + 1, f"{mod}:{prefix}{ch.name}"))
                    walk(ch, f"{prefix}{ch.name}.")
                elif isinstance(ch, ast.ClassDef):
                    walk(ch, f"{prefix}{ch.name}.")
        walk(tree, "")
    return sorted(out, key=lambda x: (-x[0], x[1]))


def main(root: Path) -> None:
    mods = modules(root)
    sizes = sorted(((len(p.read_text(encoding="utf-8").splitlines()), m)
                    for m, p in mods.items()), key=lambda x: (-x[0], x[1]))
    print(f"{len(mods)} modules, {sum(n for n, _ in sizes):,} lines\n")
    print("| lines | module |\n| ---: | --- |")
    for n, m in sizes[:15]:
        print(f"| {n} | `{m}` |")
    print("\n| lines | function |\n| ---: | --- |")
    for n, f in functions(root)[:10]:
        print(f"| {n} | `{f}` |")
    now = cycles(import_graph(root))
    print(f"\nimport-time cycles: {len(now)}" + "".join(f"\n  {c}" for c in now))
    later = cycles(import_graph(root, deferred=True))
    print(f"cycles counting imports deferred inside functions: {len(later)}")
    for c in later:
        print(f"  {len(c)} modules: {', '.join(c)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else
              Path(__file__).resolve().parents[1] / "src" / "emraudit"))
