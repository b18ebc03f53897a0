"""The import graph of the ``ablate`` package, read from the source with ``ast`` (nothing is imported):
no module reaches itself through imports (lazy imports inside functions and ``if TYPE_CHECKING``
blocks count: each is a dependency), and the layers of design.md hold: ``ablate.train`` imports no
Ray, pandas, Optuna or seaborn; the figures never reach the trainer; only ``ablate.sweep`` imports Ray."""
from __future__ import annotations

import ast
from pathlib import Path

import ablate

ROOT = Path(ablate.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``name`` imports anywhere in its source (ablate modules resolved
    to files, others as written)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = [f"{target}.{alias.name}" for alias in node.names
                          if f"{target}.{alias.name}" in MODULES]
            found.update(submodules or [target])
            if submodules and len(submodules) < len(node.names):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(name: str) -> set[str]:
    return {dep for dep in GRAPH[name] if dep in MODULES and dep != name}


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in _internal(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _cycles() -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in _internal(v):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            connect(v)
    return out


def _third_party(name: str) -> set[str]:
    return {dep.split(".")[0] for dep in GRAPH[name] if not dep.startswith("ablate")}


def test_the_graph_is_read():
    assert {"ablate.train.trainer", "ablate.train.config", "ablate.sweep"} <= set(MODULES)
    assert "ablate.train.config" in _reach("ablate.train.trainer")
    assert "ray" in _third_party("ablate.sweep")


def test_no_import_cycles():
    assert _cycles() == []


def test_train_imports_no_sweep_or_analysis_libraries():
    banned = {"ray", "pandas", "optuna", "seaborn"}
    offenders = {name: sorted(_third_party(name) & banned) for name in MODULES
                 if name.startswith("ablate.train") and _third_party(name) & banned}
    assert offenders == {}


def test_figures_never_reach_the_trainer():
    offenders = {name for name in MODULES if name.startswith("ablate.figures")
                 and "ablate.train.trainer" in _reach(name) | {name}}
    assert offenders == set()


#: the modules that know Ray (design.md section 3; README *Development*): the sweep and its parts
RAY_MODULES = {"ablate.sweep", "ablate.sweep_trial", "ablate.sweep_search", "ablate.sweep_callbacks",
               "ablate.sweep_workers", "ablate.trackers"}


def test_only_the_sweep_modules_import_ray():
    assert {name for name in MODULES if "ray" in _third_party(name)} == RAY_MODULES
