"""The packages' boundaries: neither daemon imports the other, the shared rules import no side,
the client imports a daemon only through its entry module, and nothing outside tests/ imports
test code."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# package folder -> the podium packages its modules must not import
FORBIDDEN = {
    "manager": ("podium.agent", "podium.client", "podium.lab"),
    "agent": ("podium.manager", "podium.client", "podium.lab"),
    "rules": ("podium.manager", "podium.agent", "podium.client", "podium.lab"),
    "client": ("podium.manager", "podium.agent", "podium.lab"),
}
# The client runs the daemons through their entry modules (`from podium.agent import main`).
ALLOWED = {"podium.agent", "podium.agent.main", "podium.manager", "podium.manager.main"}


def imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_package_boundaries(folder: str) -> None:
    wrong = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for name in imports(path):
            if folder == "client" and name in ALLOWED:
                continue
            if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[folder]):
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong


@pytest.mark.parametrize("folder", ["manager", "agent", "rules", "client", "lab", "bench"])
def test_no_test_code_outside_tests(folder: str) -> None:
    wrong = [f"{path.relative_to(REPO)} imports {name}"
             for path in sorted((REPO / folder).rglob("*.py"))
             for name in imports(path) if name == "tests" or name.startswith("tests.")]
    assert not wrong
