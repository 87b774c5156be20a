"""The package's layout keeps its promises (docs/layout.md): imports point one way, with no circle.

Read off the source with `ast`, every import counted, also the ones inside functions: a lazy import that
points up is still a dependency that points up. Imports under `if TYPE_CHECKING:` are left out: they name a
type for the reader and the type checker, and load nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "camexp"

# The commands: they wire the config tree to the parts below and are imported by the command line only.
COMMANDS = (
    "camexp.cli",
    "camexp.cli_evaluate",
    "camexp.train",
    "camexp.evaluate",
    "camexp.reproduce",
    "camexp.wsol.evaluate_maps",
    "camexp.features.probes",
    "camexp.features.concepts",
    "camexp.features.finegrained",
    "camexp.features.units",
)
# Below the commands, from the bottom up: a part may import its own layer and the layers under it.
LAYERS = (
    ("camexp.errors", "camexp.textfiles", "camexp.paper_numbers"),
    ("camexp.cam", "camexp.localization", "camexp.wsol", "camexp.viz", "camexp.console", "camexp.outputs"),
    ("camexp.config", "camexp.metrics", "camexp.data", "camexp.models"),
    ("camexp.callbacks", "camexp.loggers", "camexp.reports", "camexp.runs"),
    ("camexp.wiring", "camexp.explainer", "camexp.features"),  # what several commands share: config -> objects,
    # a network on any image, pooled features and SVMs
)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield node
            for other in node.orelse:
                yield from [other, *runtime_nodes(other)]
            continue
        yield node
        yield from runtime_nodes(node)


def imported_names(path: Path, package: str) -> set[str]:
    """Dotted names `path` imports: modules, and module.name for `from module import name`."""
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def imports_of(path: Path, modules: set[str], package_dir: Path = PACKAGE) -> set[str]:
    """The package's modules `path` imports (`from camexp import viz` is camexp.viz, not the package)."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for dotted in imported_names(path, package):
        owner = dotted if dotted in modules else dotted.rpartition(".")[0]  # a module, or a name in one
        if owner in modules and owner != name:
            found.add(owner)
    return found


def package_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    paths = sorted(package_dir.rglob("*.py"))
    modules = {module_name(p, package_dir) for p in paths}
    return {module_name(p, package_dir): imports_of(p, modules, package_dir) for p in paths}


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> int | None:
    if within(module, COMMANDS):
        return len(LAYERS)
    for rank, prefixes in enumerate(LAYERS):
        if within(module, prefixes):
            return rank
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer_of(module) is not None and layer_of(target) is not None and layer_of(target) > layer_of(module)
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: a component of two or more modules is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return package_graph()


def test_every_module_has_a_place_in_the_layout(graph):
    homeless = [m for m in graph if m not in ("camexp", "camexp.__main__") and layer_of(m) is None]
    assert not homeless, f"add these to a layer in tests/test_layout.py and docs/layout.md: {homeless}"


def test_imports_point_down(graph):
    upward = upward_imports(graph)
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_nothing_below_the_commands_imports_a_command(graph):
    below = {m: t for m, t in graph.items() if m not in ("camexp", "camexp.__main__") and not within(m, COMMANDS)}
    offenders = [f"{m} -> {t}" for m, targets in below.items() for t in targets if within(t, COMMANDS)]
    assert not offenders, offenders


def test_models_and_data_never_import_each_other(graph):
    crossing = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if (within(m, ["camexp.models"]) and within(t, ["camexp.data"]))
        or (within(m, ["camexp.data"]) and within(t, ["camexp.models"]))
    ]
    assert not crossing, crossing


def defined_names(path: Path) -> set[str]:
    """What a module defines or imports at its top level (also inside top-level if/try blocks)."""
    names = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.If, ast.Try)):
            body += [*node.body, *node.orelse, *getattr(node, "finalbody", []), *getattr(node, "handlers", [])]
        elif isinstance(node, ast.ExceptHandler):
            body += node.body
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_every_import_of_the_package_names_a_module_or_a_name_in_one():
    """A stale `from camexp import faults` must fail here, not load a module left in another checkout; in the
    package, the tests and the benchmarks alike (`make bench` is not run by `make test`)."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    repo = PACKAGE.parent
    users = [*modules.values(), *sorted((repo / "tests").glob("*.py")), *sorted((repo / "benchmarks").glob("*.py"))]
    unknown = []
    for path in users:
        name = module_name(path) if path.is_relative_to(PACKAGE) else str(path.relative_to(repo))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for dotted in imported_names(path, package):
            if not dotted.startswith("camexp") or dotted in modules:
                continue
            owner, _, attribute = dotted.rpartition(".")
            if owner not in modules or attribute not in defined_names(modules[owner]):
                unknown.append(f"{name}: {dotted}")
    assert not unknown, unknown


def test_no_import_circle(graph):
    assert not circles(graph)


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    """The checker on a made-up package: errors imports train (up, lazily), loggers and reports import each other."""
    package = tmp_path / "camexp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("def f():\n    from camexp.train import train\n")
    (package / "train.py").write_text("")
    (package / "loggers.py").write_text("from camexp import reports\n")
    (package / "reports.py").write_text("from . import loggers\n")
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from camexp import train\n"
    (package / "viz.py").write_text(type_only)
    made_up = package_graph(package)
    assert made_up["camexp.viz"] == set()  # a type named for the reader loads nothing
    assert made_up["camexp.errors"] == {"camexp.train"} and made_up["camexp.reports"] == {"camexp.loggers"}
    assert upward_imports(made_up) == ["camexp.errors -> camexp.train"]
    assert circles(made_up) == [["camexp.loggers", "camexp.reports"]]
