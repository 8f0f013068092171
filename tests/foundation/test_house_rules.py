"""The shape of the house (issue: one concept in one place): no module over 300 lines, no import cycle
between the package's modules, no module-level mutable state outside the registries."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"nft_deploy": ROOT / "nft_deploy", "nft_deploy.converters": ROOT / "converters"}
MAX_LINES = 300
REGISTRIES = {("nft_deploy.evaluation.backends", "_REGISTRY"), ("nft_deploy.training.registry", "_REGISTRY"),
              ("nft_deploy.training.registry", "_CLASSES"), ("nft_deploy.training.registry", "_VERSION"),
              ("nft_deploy.converters.handlers", "OP_FAMILIES")}


def modules() -> dict[str, Path]:
    out = {}
    for prefix, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((prefix, *parts[:-1])) if parts[-1] == "__init__" else ".".join((prefix, *parts))
            out[name] = path
    return out


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle_between_the_packages_modules():
    mods = modules()
    graph = {name: top_level_imports(name, path, set(mods)) for name, path in mods.items()}
    for name in graph:  # a package imports its parent's __init__ implicitly; that is not a cycle to report
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault", "add",
            "discard", "__setitem__", "__delitem__"}


def test_module_level_mutable_state_is_only_the_registries():
    """Module-level lists, dicts and sets are constant tables unless a registry: no function of the module
    mutates one (item assignment, del, augmented assignment, a mutating method) or rebinds a global."""
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    found = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        tables = set()
        for node in tree.body:
            targets, value = ((node.targets, node.value) if isinstance(node, ast.Assign) else
                              ([node.target], node.value) if isinstance(node, ast.AnnAssign) and node.value else ([], None))
            if isinstance(value, mutable) or (isinstance(value, ast.Call) and getattr(value.func, "id", "") in
                                               ("list", "dict", "set", "defaultdict")):
                tables |= {t.id for t in targets if isinstance(t, ast.Name)}
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                if isinstance(node, ast.Global):
                    found |= {(name, g) for g in node.names}
                hit = None
                if isinstance(node, (ast.Assign, ast.Delete)):
                    hit = [t.value for t in getattr(node, "targets", []) if isinstance(t, ast.Subscript)]
                elif isinstance(node, ast.AugAssign):
                    hit = [node.target.value if isinstance(node.target, ast.Subscript) else node.target]
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
                    hit = [node.func.value]
                found |= {(name, h.id) for h in hit or () if isinstance(h, ast.Name) and h.id in tables}
    assert found - REGISTRIES == set(), f"module-level state mutated: {sorted(found - REGISTRIES)}"
