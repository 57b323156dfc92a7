"""`podium secret` and `podium config` against a real manager: create from a file or stdin,
list every version, remove; a secret's content is never printed, a config's may be."""

from __future__ import annotations

import io
import json
import pathlib
import re

import pytest

from podium.client.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_secret_create_ls_rm(manager: str, tmp_path: pathlib.Path,
                             capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pw.txt"
    path.write_bytes(b"hunter2-cli")
    code, out, err = _run(capsys, "--manager", manager, "secret", "create", "cli_pw", str(path))
    assert code == 0, err
    assert out.startswith("secret cli_pw: version 1 (")
    # The same content again: the same version.
    code, again, _ = _run(capsys, "--manager", manager, "secret", "create", "cli_pw", str(path))
    assert again == out
    # New content from stdin: version 2.
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"hunter3-cli")))
    code, out, err = _run(capsys, "--manager", manager, "secret", "create", "cli_pw", "-")
    assert code == 0, err
    assert "version 2" in out
    code, out, _ = _run(capsys, "--manager", manager, "secret", "ls", "-o", "json")
    rows = [r for r in json.loads(out) if r["name"] == "cli_pw"]
    assert [r["version"] for r in rows] == [1, 2]
    assert all(r["digest"].startswith("sha256:") and "size" not in r for r in rows)
    code, table, _ = _run(capsys, "--manager", manager, "secret", "ls")
    assert "cli_pw" in table and "hunter" not in table and "hunter" not in out
    # A secret has no inspect: its content is never printed.
    with pytest.raises(SystemExit):
        main(["--manager", manager, "secret", "inspect", "cli_pw"])
    capsys.readouterr()
    code, out, err = _run(capsys, "--manager", manager, "secret", "rm", "cli_pw")
    assert code == 0, err
    code, out, _ = _run(capsys, "--manager", manager, "secret", "ls", "-o", "json")
    assert not [r for r in json.loads(out) if r["name"] == "cli_pw"]


def test_config_inspect_shows_content_and_errors_are_clear(
        manager: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "app.conf"
    path.write_text("port=8080\n")
    code, out, err = _run(capsys, "--manager", manager, "config", "create", "cli_conf", str(path))
    assert code == 0, err
    code, out, _ = _run(capsys, "--manager", manager, "config", "ls")
    assert "SIZE" in out and "cli_conf" in out
    code, out, _ = _run(capsys, "--manager", manager, "config", "inspect", "cli_conf")
    assert json.loads(out)[0]["content"] == "port=8080\n"
    code, _, err = _run(capsys, "--manager", manager, "config", "rm", "nosuch")
    assert code == 2 and "no config 'nosuch'" in err
    code, _, err = _run(capsys, "--manager", manager, "config", "create", "bad name", str(path))
    assert code == 2 and "config name 'bad name'" in err
    code, _, err = _run(capsys, "--manager", manager, "config", "create", "x",
                        str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_secret_rotate_key(manager: str, tmp_path: pathlib.Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "token.txt"
    path.write_bytes(b"rotate-me")
    code, _, err = _run(capsys, "--manager", manager, "secret", "create", "cli_rot", str(path))
    assert code == 0, err
    code, out, err = _run(capsys, "--manager", manager, "secret", "rotate-key")
    assert code == 0, err
    assert re.fullmatch(r"re-encrypted [1-9]\d* secrets and configs under key [0-9a-f]{16}\n", out)
    first = out.split()[-1]
    code, out, err = _run(capsys, "--manager", manager, "secret", "rotate-key")
    assert code == 0, err
    assert out.split()[-1] != first
    # Still there, and the same content is still recognised as the version stored.
    code, out, err = _run(capsys, "--manager", manager, "secret", "create", "cli_rot", str(path))
    assert code == 0 and "version 1" in out, err
    _run(capsys, "--manager", manager, "secret", "rm", "cli_rot")
