"""The services form layers: no import cycle, and each module imports on its own."""

import ast
import subprocess
import sys
from pathlib import Path

import extframework.services

SERVICES = Path(extframework.services.__file__).parent
PACKAGE = "extframework.services"


def service_modules() -> list[str]:
    return sorted(p.stem for p in SERVICES.glob("*.py") if p.stem != "__init__")


def imported_services(module: str) -> set[str]:
    """Return the service modules ``module`` imports anywhere, function bodies included."""
    tree = ast.parse((SERVICES / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[2] for a in node.names if a.name.startswith(PACKAGE + ".")
            )
    return found & set(service_modules())


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a path of module names, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_services_import_each_other_without_a_cycle():
    graph = {module: imported_services(module) for module in service_modules()}
    assert "manifest_records" in graph["registry"] and "registry" not in graph["migration_checks"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_each_service_module_imports_on_its_own():
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('extframework')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    names = [f"{PACKAGE}.{module}" for module in service_modules()]
    result = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
