"""Fail on import cycles: between modules, and between the subpackages of ``lambdas`` (the core).

Every import statement counts, also one inside a function (a "lazy" import is still a dependency).
``python -m scripts.check_imports`` (``make lint``) prints the core's layers bottom-up and exits 1 on a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lambdas", "stacks", "teacopy_cli", "teacopy_local", "bench", "scripts")
CORE = "lambdas"


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (a package's ``__init__`` counts as the package)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Subpackages grouped bottom-up: each depends only on earlier layers (the graph is acyclic)."""
    done: set[str] = set()
    order: list[list[str]] = []
    while len(done) < len(graph):
        layer = sorted(n for n in graph if n not in done and graph[n] <= done)
        if not layer:
            break
        order.append(layer)
        done.update(layer)
    return order


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == CORE and len(parts) > 1 else None


def main(argv: Iterable[str] = ()) -> int:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    problems = [f"import cycle between modules: {' <-> '.join(c)}" for c in cycles(graph)]
    core: dict[str, set[str]] = {}
    for name, targets in graph.items():
        source = subpackage(name)
        if source is None:
            continue
        core.setdefault(source, set())
        for target in targets:
            dest = subpackage(target)
            if dest is not None and dest != source:
                core[source].add(dest)
    problems += [f"import cycle between core subpackages: {' <-> '.join(c)}" for c in cycles(core)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("no import cycles; core layers, bottom-up:")
    for number, layer in enumerate(layers(core), start=1):
        print(f"  {number}. {', '.join(layer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
