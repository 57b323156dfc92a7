"""Every `podium` command tells a manager it cannot reach apart from a name the manager does not
know: the first exits 1 naming the address, the second exits 2 naming what was not found."""

from __future__ import annotations

import pathlib

import pytest

from podium.client import Client, ManagerUnreachable, NotFound
from podium.client.cli import main
from tests.helpers import free_port

# One invocation of every command that talks to the manager.
COMMANDS = [
    ["services"], ["ps"], ["ps", "web"], ["nodes"], ["inspect", "web"], ["scale", "web=2"],
    ["rm", "web"], ["node", "drain", "node-1"], ["events", "--limit", "1"],
    ["history", "web"], ["rollback", "web"], ["promote", "web"],
    ["secret", "ls"], ["secret", "rm", "pw"], ["config", "ls"], ["config", "inspect", "conf"],
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_an_unreachable_manager_is_named(command: list[str], credentials: pathlib.Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, err = _run(capsys, "--manager", address, *command)
    assert code == 1, err
    assert f"cannot reach the manager at {address}" in err
    assert "no service" not in err and "not found" not in err


def test_deploy_to_an_unreachable_manager(capsys: pytest.CaptureFixture[str],
                                          tmp_path: pathlib.Path,
                                          credentials: pathlib.Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("services:\n  web:\n    image: podium/web:latest\n")
    address = f"127.0.0.1:{free_port()}"
    code, err = _run(capsys, "--manager", address, "deploy", "-f", str(stack), "--detach")
    assert code == 1 and f"cannot reach the manager at {address}" in err


def test_without_credentials_the_error_says_where_they_come_from(
        capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nothing-here"
    monkeypatch.setenv("PODIUM_CREDENTIALS", str(missing))
    code, err = _run(capsys, "--manager", f"127.0.0.1:{free_port()}", "nodes")
    assert code == 1
    assert f"no credentials file at {missing}" in err
    assert "podium user add" in err and "--credentials" in err


@pytest.mark.parametrize("command", [["inspect", "nosuch"], ["scale", "nosuch=2"],
                                     ["rm", "nosuch"], ["ps", "nosuch"],
                                     ["node", "pause", "nosuch"], ["history", "nosuch"],
                                     ["rollback", "nosuch"], ["promote", "nosuch"]],
                         ids=lambda c: " ".join(c))
def test_an_unknown_name_is_not_found(manager: str, command: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--manager", manager, *command)
    assert code == 2, err
    assert "nosuch" in err
    assert "cannot reach" not in err


def test_the_library_raises_distinct_errors(manager: str) -> None:
    with Client(manager) as podium:
        with pytest.raises(NotFound, match="nosuch"):
            podium.service("nosuch")
        assert podium.nodes() == []
    with Client(f"127.0.0.1:{free_port()}", timeout=5) as podium:
        with pytest.raises(ManagerUnreachable, match=r"cannot reach the manager at 127\.0\.0\.1"):
            podium.nodes()
