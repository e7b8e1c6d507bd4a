"""The package layout holds: no import cycle between packages, imports at the top of modules.

Each top-level package or module of ``recsys`` is a node; an import of ``recsys.<b>...`` from a
file of ``recsys.<a>`` is an edge a -> b. A cycle would mean two packages that cannot be
understood, tested or replaced apart. Imports inside functions hide such edges, so outside
``recsys/cli`` (the Hydra edge, which imports what a command needs when it runs) one is allowed
only with a comment on the line before it saying why.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import recsys

ROOT = Path(recsys.__file__).parent


def _modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((path, name))
    return out


def _node(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[ast.stmt, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                found.append((node, ".".join(base + ([node.module] if node.module else []))))
            elif node.module:
                found.append((node, node.module))
    return [(n, m) for n, m in found if m == "recsys" or m.startswith("recsys.")]


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path, module in _modules():
        tree = ast.parse(path.read_text())
        for _, target in _imports(tree, module, path.name == "__init__.py"):
            a, b = _node(module), _node(target)
            if a and b and a != b:
                edges[a].add(b)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path of nodes, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_packages():
    edges = _graph()
    assert edges, "no imports found: the walk is broken"
    assert _cycle(edges) is None, f"import cycle between packages: {' -> '.join(_cycle(edges))}"


def _function_level_imports() -> list[str]:
    offenders = []
    for path, module in _modules():
        if module.startswith("recsys.cli"):
            continue
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node, target in _imports(func, module, path.name == "__init__.py"):
                before = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if not before.startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {target}")
    return offenders


def test_imports_inside_functions_say_why():
    offenders = _function_level_imports()
    assert not offenders, "imports inside functions without a comment why:\n" + "\n".join(offenders)
