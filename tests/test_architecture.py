"""The floors of the house: imports only point down, and nothing imports in a circle.

Every import is read from the source (module level, inside functions, under TYPE_CHECKING), so an import hidden in
a function counts like any other.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Which floor may import which (besides itself). Read bottom to top: a floor may use the floors below it.
# streamer.runtime (where cameras run: local and Ray runners, the camera store) is a floor of its own above the rest
# of streamer; in streamer only the assembly may reach up to it.
STAGES = {"deepfer_core", "detectors", "classifier", "aggregator"}
ALLOWED: dict[str, set[str]] = {
    "deepfer_core": set(),
    "detectors": {"deepfer_core"},
    "classifier": {"deepfer_core"},
    "aggregator": {"deepfer_core"},
    "streamer": STAGES,
    "streamer.runtime": STAGES | {"streamer"},
    "deepfer_bench": STAGES | {"streamer", "streamer.runtime"},
    "dashboard": STAGES | {"streamer", "streamer.runtime"},
    "deepfer": STAGES | {"streamer", "streamer.runtime", "deepfer_bench", "dashboard"},
    "scripts": {"deepfer_core"},
}
EXCEPTIONS: dict[str, set[str]] = {"streamer.assembly": {"streamer.runtime"}}  # module -> floors it may import too
PACKAGES = {floor.split(".")[0] for floor in ALLOWED}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every DeepFER module ``path`` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from pkg import mod" imports pkg.mod when it is a module, else a name of pkg
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in imports_of(path):
            while target not in modules and "." in target:  # a name inside a module: the module it lives in
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges[name].add(target)
        edges.setdefault(name, set())
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package(module: str) -> str:
    return module.split(".")[0]


def floor(module: str) -> str:
    """The floor a module stands on: its package, or a sub-package that is a floor of its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if ".".join(parts[:2]) in ALLOWED else parts[0]


def test_every_package_imports_only_the_floors_below_it():
    wrong = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets
                   if floor(t) != floor(m) and floor(t) not in ALLOWED[floor(m)] | EXCEPTIONS.get(m, set()))
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_only_the_entry_points_import_the_dashboard():
    """The dashboard is a web front: no benchmark, runner or stage imports it; only the ``deepfer`` commands do."""
    users = {package(m) for m, targets in graph().items() for t in targets
             if package(t) == "dashboard" and package(m) != "dashboard"}
    assert users <= {"deepfer"}, users


def test_cameras_run_in_streamer_runtime_only():
    """Nothing in streamer but the runtime itself (and the assembly) imports ``streamer.runtime``."""
    users = sorted(m for m, targets in graph().items() for t in targets
                   if floor(t) == "streamer.runtime" and floor(m) == "streamer" and m != "streamer.assembly")
    assert not users, users


def test_no_module_cycles():
    assert not cycles(graph()), f"modules importing each other in a circle: {cycles(graph())}"


def test_no_package_cycles():
    edges: dict[str, set[str]] = defaultdict(set)
    for m, targets in graph().items():
        edges[package(m)].update(package(t) for t in targets if package(t) != package(m))
    assert not cycles(edges), f"packages importing each other in a circle: {cycles(edges)}"


def test_the_assembly_is_wired_only_from_the_entry_points():
    """streamer.assembly builds the parts; no stage, and nothing in streamer below the runtime, reaches up to it."""
    users = sorted(m for m, targets in graph().items() if "streamer.assembly" in targets)
    entry_floors = ("streamer.runtime", "deepfer_bench", "dashboard", "deepfer")
    assert users and all(floor(m) in entry_floors for m in users), users


def test_the_checker_sees_function_level_imports(tmp_path):
    """The test would fail on an upward import hidden inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dashboard.app import create_app\n    import streamer.pipeline\n")
    assert {"dashboard.app", "dashboard.app.create_app", "streamer.pipeline"} <= imports_of(probe)


def test_the_tests_are_laid_out_like_the_packages():
    """tests/<package>/ holds the tests of that package; only this file, about all of them, stands at the top."""
    tests = REPO / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= PACKAGES, f"test folders that name no package: {sorted(folders - PACKAGES)}"
    loose = sorted(p.name for p in tests.glob("test_*.py") if p.name != Path(__file__).name)
    assert not loose, f"tests outside a package folder: {loose}"


def test_no_generic_top_level_package_is_installed():
    """Issue 31: what ``pip install`` puts in site-packages is the design's stage folders and ``deepfer*``; never a
    generic ``core`` or ``bench`` that other projects' modules collide with."""
    import tomllib

    from setuptools import find_packages

    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    top = {p.split(".")[0] for p in find_packages(str(REPO), include=found["include"])}
    assert top == {"streamer", "detectors", "classifier", "aggregator", "dashboard", "deepfer", "deepfer_core",
                   "deepfer_bench"}
