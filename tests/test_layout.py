"""The packages' boundaries: neither daemon imports the other, the shared rules import no side,
the client imports a daemon only through its entry module, nothing outside tests/ imports test
code, and no daemon waits with asyncio.wait_for (see the test)."""

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


@pytest.mark.parametrize("folder", ["manager", "agent", "rules", "client", "lab"])
def test_no_asyncio_wait_for(folder: str) -> None:
    """On Python 3.11, asyncio.wait_for returns the result of what it waited for when that ended
    in the turn of the loop its task was cancelled in: the cancellation is lost, and a loop that
    was told to stop (a deposed leader's, a stopping manager's) goes on. asyncio.timeout keeps
    it."""
    wrong = [f"{path.relative_to(REPO)}:{node.lineno}"
             for path in sorted((REPO / folder).rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Attribute) and node.attr == "wait_for"
             and isinstance(node.value, ast.Name) and node.value.id == "asyncio"]
    assert not wrong, "asyncio.wait_for (use asyncio.timeout): " + ", ".join(wrong)
