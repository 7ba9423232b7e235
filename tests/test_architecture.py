"""The package layout keeps its promises: one-way imports, no cycles, kinetics free of solvers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bayes_cart"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """bayes_cart modules imported by ``path``: at module level, and inside functions."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    lazy: set[str] = set()

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            out = [base]
            out += [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
            return [n for n in out if n.startswith("bayes_cart")]
        if isinstance(node, ast.Import):
            return [a.name for a in node.names if a.name.startswith("bayes_cart")]
        return []

    for node in tree.body:
        top.update(names(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                lazy.update(names(inner))
    return top, lazy


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    top, lazy = {}, {}
    for name, path in modules.items():
        t, z = _imports(path)
        top[name] = {m for m in t if m in modules and m != name}
        lazy[name] = {m for m in z if m in modules and m != name}
    return top, lazy


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges into a package's ``__init__`` from its own submodules (re-export only)."""
    return {v: {w for w in ws if not v.startswith(w + ".")} for v, ws in graph.items()}


def test_module_level_imports_have_no_cycle() -> None:
    top, _ = _graph()
    assert _cycles(_without_packages(top)) == []


def test_kinetics_has_no_cycle_even_counting_lazy_imports() -> None:
    top, lazy = _graph()
    kinetics = {
        v: {w for w in top[v] | lazy[v] if w.startswith("bayes_cart.kinetics")}
        for v in top
        if v.startswith("bayes_cart.kinetics")
    }
    assert _cycles(_without_packages(kinetics)) == []


def test_the_kinetics_registry_imports_no_solver_engine() -> None:
    top, _ = _graph()
    seen, todo = set(), ["bayes_cart.kinetics.registry"]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo += sorted(top[v])
    assert not any(m.startswith("bayes_cart.kinetics.engines") for m in seen)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_subpackage_ships_in_the_wheel() -> None:
    """pyproject lists its packages explicitly: a new subpackage must be added there."""
    import tomllib

    listed = set(
        tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    found = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set()


def test_each_public_class_is_defined_once() -> None:
    """One name, one class: two classes of one name (``GroupSpec`` twice, once) mislead."""
    defined: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(_module_name(path))
    assert {k: v for k, v in defined.items() if len(v) > 1} == {}


#: the steps of the data flow, in order (ARCHITECTURE.md, "Layout"): a subpackage imports at
#: module level only from steps before its own (or from itself); the top-level package is the
#: public API above them all
LAYERS = {
    "errors": 0,
    "units": 0,
    "jax_setup": 0,
    "data": 1,
    "kinetics": 1,
    "model": 2,
    "inference": 3,
    "predict": 4,
    "checks": 5,
    "analysis": 5,
    "simulate": 5,
    "plots": 6,
    "report": 7,
    "example": 7,
    "example_data": 7,
    "study": 7,
    "cli": 8,
}


def _step(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_place_in_the_flow() -> None:
    top, _ = _graph()
    assert {_step(m) for m in top} - {None} == set(LAYERS)


def test_module_level_imports_point_back_along_the_flow() -> None:
    top, _ = _graph()
    upstream = [
        f"{v} -> {w}"
        for v, ws in top.items()
        for w in ws
        if _step(v) is not None
        and _step(w) is not None  # bayes_cart itself: only __version__ (io, report)
        and _step(v) != _step(w)
        and LAYERS[_step(w)] >= LAYERS[_step(v)]
    ]
    assert upstream == []
