"""deploy/install.sh and the systemd units, without root or systemd: the installer's dry run, the
agent unit's command line run by a shell, and `systemd-analyze verify` where it is installed.

The join token must reach /etc/podium/agent.token with mode 0600 and never appear in the output.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOKEN = "PODIUM1-" + "3f" * 32 + "-" + "abcdefghijklmnopqrstuvwxyz234567"
TOKEN_PATH = "/etc/podium/agent.token"


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(DEPLOY / "install.sh"), "--dry-run", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def planned_token_write(out: str) -> str:
    plan = "install: [dry-run] would write the join token"
    lines = [line for line in out.splitlines() if line.startswith(plan) and TOKEN_PATH in line]
    assert len(lines) == 1, out
    assert "mode 0600" in lines[0] and "owner podium" in lines[0]
    return lines[0]


def test_agent_with_token_file(tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    done = dry_run("--role", "agent", "--manager", "manager.example:7070",
                   "--token-file", str(token_file), "--start")
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert str(token_file) in planned_token_write(out)
    assert "PODIUM_MANAGER=manager.example:7070" in out
    assert TOKEN not in out and TOKEN.split("-")[2] not in out


def test_both_with_token_never_prints_it() -> None:
    done = dry_run("--role", "both", "--token", TOKEN, "--start")
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    planned_token_write(out)
    assert TOKEN not in out and TOKEN.split("-")[2] not in out
    assert "/etc/podium/admin.credentials" in out  # the link root's CLI falls back to


@pytest.mark.skipif(pathlib.Path(TOKEN_PATH).exists(),
                    reason=f"{TOKEN_PATH} exists on this machine: install.sh keeps it")
def test_both_fetches_the_token_from_the_manager_it_started() -> None:
    done = dry_run("--role", "both", "--start")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "--credentials /etc/podium/admin.credentials token agent" in out
    line = planned_token_write(out)
    lines = out.splitlines()
    # After the manager is started and before the agent is.
    assert (lines.index("install: [dry-run] would run: systemctl restart podium-manager")
            < lines.index(line)
            < lines.index("install: [dry-run] would run: systemctl restart podium-agent"))


def test_a_bad_token_is_refused_without_showing_it(tmp_path: pathlib.Path) -> None:
    bad = TOKEN[:-1] + "!"
    token_file = tmp_path / "token"
    token_file.write_text(bad)
    for args in (["--token", bad], ["--token-file", str(token_file)]):
        done = dry_run("--role", "agent", *args)
        assert done.returncode != 0
        assert "not a join token" in done.stderr
        assert bad not in done.stdout + done.stderr
    done = dry_run("--role", "manager", "--token", TOKEN)
    assert done.returncode != 0 and TOKEN not in done.stdout + done.stderr


def exec_start(unit: pathlib.Path) -> list[str]:
    """The unit's ExecStart as systemd would run it (the subset of its syntax the units use)."""
    text = unit.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return [word.replace("$$", "$").replace("%H", "node-a")
            for word in shlex.split(line.removeprefix("ExecStart="))]


@pytest.mark.parametrize("with_token", [True, False])
def test_agent_unit_passes_the_token_file_only_when_present(tmp_path: pathlib.Path,
                                                            with_token: bool) -> None:
    fake = tmp_path / "podium"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    token = tmp_path / "agent.token"
    if with_token:
        token.write_text(TOKEN)
    argv = [word.replace("/opt/podium/venv/bin/podium", str(fake)).replace(TOKEN_PATH, str(token))
            for word in exec_start(DEPLOY / "podium-agent.service")]
    env = {"PATH": os.environ["PATH"], "PODIUM_MANAGER": "10.0.0.1:7070",
           "PODIUM_JOIN_ADDRESS": "", "PODIUM_AGENT_ARGS": "--label zone=a --label '*'"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, check=True)
    expected = ["agent", "--join", "10.0.0.1:7070", "--name", "node-a",
                "--data-dir", "/var/lib/podium/agent"]
    expected += ["--token-file", str(token)] if with_token else []
    assert done.stdout.splitlines() == [*expected, "--label", "zone=a", "--label", "'*'"]

    env["PODIUM_JOIN_ADDRESS"] = "10.0.0.1:7443"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, check=True)
    assert "--join-address\n10.0.0.1:7443\n" in done.stdout


def test_manager_unit_writes_the_admin_credentials_in_its_state_directory() -> None:
    argv = exec_start(DEPLOY / "podium-manager.service")
    at = argv.index("--admin-credentials")
    assert argv[at + 1] == "/var/lib/podium/manager/admin.credentials"
    assert "--data-dir" in argv and argv[argv.index("--data-dir") + 1] == "/var/lib/podium/manager"


def directives(unit: pathlib.Path) -> dict[str, list[str]]:
    """The unit's directives (no comments, continuation lines joined): name -> values."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().replace("\\\n", " ").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            name, _, value = line.partition("=")
            found.setdefault(name.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", ["podium-manager.service", "podium-agent.service"])
def test_units_are_notify_with_a_watchdog(name: str) -> None:
    """The daemons say READY=1 themselves (podium.rules.notify) and feed a 30 s watchdog; only
    the main process is heard, which for the agent is the process its shell exec's into."""
    unit = directives(DEPLOY / name)
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] == ["30"] and unit["Restart"] == ["always"]
    if name == "podium-agent.service":
        assert unit["KillMode"] == ["process"]  # its containers outlive it
        assert unit["ExecStart"][0].startswith("/bin/sh -efc")
        assert "exec \"$$@\"" in unit["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_verify(tmp_path: pathlib.Path) -> None:
    units = []
    for name in ("podium-manager.service", "podium-agent.service"):
        # verify checks that the command exists: the installed one does not here.
        text = (DEPLOY / name).read_text().replace("/opt/podium/venv/bin/podium", "/bin/true")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *units], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "podium" not in done.stderr, done.stderr


def test_a_wheel_that_is_not_one_is_refused_naming_it(tmp_path: pathlib.Path) -> None:
    result = dry_run("--role", "agent", "--wheel", str(tmp_path / "podium.tar.gz"))
    assert result.returncode == 1
    assert f"--wheel {tmp_path / 'podium.tar.gz'}: not a readable .whl file" in result.stderr


@pytest.mark.release
def test_the_release_wheel_is_what_install_installs(tmp_path: pathlib.Path) -> None:
    built = subprocess.run(["bash", str(DEPLOY / "release.sh"), "--out", str(tmp_path)],
                           env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                           text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    wheel = pathlib.Path(built.stdout.strip())
    assert wheel.parent == tmp_path and wheel.name.startswith("podium-")
    assert wheel.name.endswith("-py3-none-any.whl")
    digest, name = (tmp_path / "SHA256SUMS").read_text().split()
    assert name == wheel.name and len(digest) == 64
    # Everything the daemons and the CLI import is in it, and nothing of a checkout.
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for module in ("podium/manager/manager.py", "podium/agent/agent.py", "podium/client/cli.py",
                   "podium/v1/control_pb2.py", "podium/rules/daemon.py"):
        assert module in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    planned = dry_run("--role", "agent", "--manager", "10.0.0.10:7070", "--wheel", str(wheel))
    assert planned.returncode == 0, planned.stderr
    assert f"installing podium from {wheel} into /opt/podium/venv" in planned.stdout
    assert f"--force-reinstall --no-deps {wheel}" in planned.stdout


def test_uninstall_refuses_an_unknown_argument_naming_it() -> None:
    done = subprocess.run(["bash", str(DEPLOY / "uninstall.sh"), "--purge", "--everything"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "unknown argument: --everything (expected --purge or --dry-run)" in done.stderr


def test_uninstall_dry_run_changes_nothing() -> None:
    done = subprocess.run(["bash", str(DEPLOY / "uninstall.sh"), "--dry-run", "--purge"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "uninstall: dry run: nothing will be changed"
    assert lines[-1] == "uninstall: done"
    assert all(line.startswith("uninstall: ") for line in lines)
