"""The package's layout: no module imports another that imports it back, even lazily inside a function (a cycle
hides in such an import until a refactoring moves it to the top and the package no longer loads)."""

import ast
from pathlib import Path

import mtl_keras

PACKAGE = Path(mtl_keras.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        parts = ("mtl_keras", *file.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return modules


def _imports(file: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `file` imports anywhere in it (`from a.b import c` counts as a.b.c where that is a
    module)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                         for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in modules}


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Cycles of imports between modules; a package importing its own submodules (its `__init__`) is no cycle."""
    graph = {name: {d for d in _imports(file, modules) if not d.startswith(name + ".")}
             for name, file in modules.items()}
    cycles = []
    for start in sorted(graph):
        stack, done = [(start, iter(sorted(graph[start])))], set()
        path = [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                done.add(node)
            elif child == start:
                cycles.append([*path, start])
            elif child not in path and child not in done and child > start:  # each cycle from its smallest module
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return cycles


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from mtl_keras.b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    from mtl_keras.a import f\n")
    (tmp_path / "c.py").write_text("import mtl_keras.a\n")
    modules = {f"mtl_keras.{name}": tmp_path / f"{name}.py" for name in "abc"}
    assert import_cycles(modules) == [["mtl_keras.a", "mtl_keras.b", "mtl_keras.a"]]


def test_no_module_of_the_package_imports_itself_back():
    modules = _modules()
    assert len(modules) > 50 and "mtl_keras.training.model" in modules
    assert import_cycles(modules) == []
