"""The import graph of src/domainft, read from the source (no imports run): the packages, the one direction of
their imports, and any cycle. `python scripts/architecture.py` prints the section docs/architecture.md holds
between its markers; `--write` updates the file. tests/test_architecture.py fails when the two differ or when
any cycle appears, so the picture cannot drift.

Edges are every `import`/`from … import` of a domainft module, at module level or inside a function (a lazy
import that dodges a cycle is still a cycle); imports under `if TYPE_CHECKING:` are kept apart, reported but not
part of the order. Importing `domainft.a.b` runs `domainft/a/__init__.py` first, so it is an edge to `a` too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "domainft"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- imports: begin (scripts/architecture.py --write) -->", "<!-- imports: end -->"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(runtime, type-checking-only) domainft modules that `path` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    runtime: set[str] = set()
    typing_only: set[str] = set()

    def resolve(node: ast.ImportFrom) -> list[str]:
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        found = []
        for alias in node.names:  # `from . import x` may name a submodule
            if f"{stem}.{alias.name}" in modules:
                found.append(f"{stem}.{alias.name}")
        return found + [stem]

    def visit(node: ast.AST, typing_block: bool) -> None:
        for child in ast.iter_child_nodes(node):
            block = typing_block or (isinstance(child, ast.If) and _type_checking(child))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                targets = resolve(child)
            for target in targets:
                while target and target not in modules:  # `import domainft.a.b.func` → the module
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                for i in range(2, len(parts) + 1):  # the packages that run first, then the module
                    dep = ".".join(parts[:i])
                    if dep != name and not name.startswith(dep + "."):
                        (typing_only if block else runtime).add(dep)
            visit(child, block)

    visit(tree, False)
    return runtime, typing_only - runtime


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = sorted(SRC.rglob("*.py"))
    modules = {module_name(p) for p in files}
    runtime, typing_only = {}, {}
    for p in files:
        runtime[module_name(p)], typing_only[module_name(p)] = imports(p, modules)
    return runtime, typing_only


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def part(module: str) -> str:
    """The package (or top-level module) a module belongs to: domainft.engines.swift → engines."""
    return module.split(".")[1] if module.count(".") else "domainft"


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for src, deps in edges.items():
        out[part(src)]
        for dep in deps:
            if part(dep) != part(src) and part(dep) != "domainft":
                out[part(src)].add(part(dep))
    return dict(out)


def layers(edges: dict[str, set[str]]) -> list[list[str]]:
    """Packages by depth: layer 0 imports no other package, each later one only earlier layers."""
    depth: dict[str, int] = {}

    def d(v: str, seen: tuple[str, ...] = ()) -> int:
        if v in depth:
            return depth[v]
        if v in seen:
            return 0  # a cycle: reported elsewhere
        depth[v] = 1 + max((d(w, seen + (v,)) for w in sorted(edges.get(v, ()))), default=-1)
        return depth[v]

    for v in sorted(edges):
        d(v)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for v, n in depth.items():
        out[n].append(v)
    return [sorted(layer) for layer in out]


def reduced(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Transitive reduction: a → c is left out when a → b → … → c says it already."""
    def reach(v: str, seen: set[str]) -> set[str]:
        for w in edges.get(v, ()):
            if w not in seen:
                seen.add(w)
                reach(w, seen)
        return seen

    return {v: {w for w in ws if not any(w in reach(u, set()) for u in ws - {w})} for v, ws in edges.items()}


def section() -> str:
    runtime, typing_only = graph()
    packages = {k: v for k, v in package_edges(runtime).items() if k != "domainft"}
    folders = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()} | {"cli", "pipeline"}
    big = reduced({k: {d for d in v if d in folders} for k, v in packages.items() if k in folders})
    lines = ["The packages (folders of `src/domainft`) and the two entry modules, an arrow for \"imports\" (arrows "
             "implied by others left out):", "", "```mermaid", "flowchart TD"]
    for src in sorted(big):
        lines += [f"  {src} --> {dep}" for dep in sorted(big[src])]
    lines += ["```", "", "Every module, by layer: layer 0 imports nothing of domainft, each later layer only lower ones.", ""]
    for n, layer in enumerate(layers(packages)):
        lines.append(f"{n}. {', '.join(f'`{p}`' for p in layer)}")
    typing_edges = sorted((s, d) for s, ds in typing_only.items() for d in ds if part(s) != part(d))
    lines += ["", f"Imports made only for type checking (`if TYPE_CHECKING:`), between packages: {len(typing_edges)}."]
    lines += [f"- `{s}` → `{d}`" for s, d in typing_edges]
    return "\n".join(lines) + "\n"


def main() -> int:
    runtime, _ = graph()
    problems = cycles(runtime) + cycles(package_edges(runtime))
    for comp in problems:
        print("cycle: " + " ↔ ".join(comp), file=sys.stderr)
    text = section()
    if "--write" in sys.argv:
        doc = DOC.read_text(encoding="utf-8")
        head, _, rest = doc.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}", encoding="utf-8")
    else:
        print(text, end="")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
