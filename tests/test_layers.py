"""The package's layering, read from its own imports (every ``import``, at module level or inside a
function: a lazy import hides a circle, it does not remove it).

Floors, ground first (README, "Layout"): 0 config; 1 data, models, dictionary, losses, kernels;
2 active, analysis (reads run folders and snapshots); 3 samplers, eval (probes and benchmarks);
4 train (runs the probes at the end of a run); 5 study.  Each module imports only from floors below
its own, or from its own package.
"""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "avlib"
FLOORS = {"config": 0, "data": 1, "models": 1, "dictionary": 1, "losses": 1, "kernels": 1, "active": 2,
          "analysis": 2, "samplers": 3, "eval": 3, "train": 4, "study": 5}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every avlib module ``path`` imports, anywhere in the file (``from avlib.x import y`` counts as
    ``avlib.x.y`` when that is a module, else ``avlib.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("avlib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("avlib") and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) & set(MODULES) for name, path in MODULES.items()}


def floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


def test_config_imports_nothing_from_avlib():
    assert GRAPH["avlib.config"] == set()


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (depth-first search), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target, path + [target])):
                return circle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_no_import_circle_in_avlib():
    circle = find_circle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_every_import_goes_down_a_floor_or_stays_in_its_package():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            here, there = floor(module), floor(target)
            same_package = module.split(".")[:2] == target.split(".")[:2]
            if here is not None and there is not None and not same_package and there >= here:
                upward.append(f"{module} (floor {here}) imports {target} (floor {there})")
    assert not upward, "\n".join(upward)


def test_the_layering_checks_can_fail():
    """The parser sees a function-level import (the kind that hid the config <-> samplers circle),
    and the search finds a circle through it."""
    source = "def f():\n    from avlib.samplers import SAMPLERS\n"
    assert [n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)] == ["avlib.samplers"]
    graph = {"avlib.config": {"avlib.samplers"}, "avlib.samplers": {"avlib.samplers.base"},
             "avlib.samplers.base": {"avlib.config"}}
    assert find_circle(graph) == ["avlib.config", "avlib.samplers", "avlib.samplers.base", "avlib.config"]
    assert find_circle({**graph, "avlib.samplers.base": set()}) is None
