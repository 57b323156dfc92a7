"""Fixtures shared by the client's tests: the scripted Control server and a real manager."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from podium.manager.pki import ClusterCA
from podium.rules.credentials import ENV, Credentials
from tests.fakecontrol import FakeManager
from tests.helpers import PODIUM, eventually, free_port


@pytest.fixture
def fake() -> Iterator[FakeManager]:
    manager = FakeManager()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real manager process with no agents (no engine needed); its address. Meanwhile
    $PODIUM_CREDENTIALS names the admin's credentials, which the manager wrote."""
    address = f"127.0.0.1:{free_port()}"
    data = tmp_path_factory.mktemp("manager")
    credentials = data / "admin.credentials"
    with open(data / "manager.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "podium.manager", "--listen", address,
                                 "--join-listen", "127.0.0.1:0", "--admin-credentials",
                                 str(credentials), "--data-dir", str(data),
                                 "--dashboard", "off"],
                                stdout=log, stderr=subprocess.STDOUT)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(credentials)
    try:
        def up() -> bool:
            result = subprocess.run([*PODIUM, "--manager", address, "nodes"], capture_output=True)
            return result.returncode == 0

        eventually(up, timeout=20, what="manager up")
        yield address
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def credentials(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An admin's credentials file of a cluster of its own, named by $PODIUM_CREDENTIALS (for
    commands that must get as far as connecting)."""
    ca = ClusterCA.load_or_create(tmp_path / "pki")
    admin = ca.issue("root", "admin")
    path = tmp_path / "admin.credentials"
    Credentials("127.0.0.1:7070", "root", "admin", ca.pem, admin.certificate,
                admin.key).save(path)
    monkeypatch.setenv(ENV, str(path))
    return path
