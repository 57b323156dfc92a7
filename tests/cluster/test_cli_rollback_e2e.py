"""The `podium` CLI's updates end to end on the in-process cluster (a real manager, agents on the
fake executor): deploy, a good update, a bad one that rolls back, history, rollback --to."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from podium.client.cli import main
from tests.inprocess import InProcessCluster, in_process_cluster


@pytest.fixture
async def secured(tmp_path: pathlib.Path) -> AsyncIterator[InProcessCluster]:
    """The CLI speaks mutual TLS only: an in-process cluster secured as a real one is."""
    async with in_process_cluster(tmp_path, agents=2, plaintext=False) as c:
        yield c

# No check on the fake executor's tasks: each is healthy after running `monitor`.
STACK = """
services:
  web:
    image: {image}
    deploy:
      replicas: 2
      update_config: {{parallelism: 2, monitor: 200ms}}
      rollback_config: {{parallelism: 2, monitor: 200ms}}
"""


class Cli:
    """Runs `podium` commands on a thread of its own (they block; the cluster runs in this
    test's event loop)."""

    def __init__(self, mini: InProcessCluster, capsys: pytest.CaptureFixture[str],
                 tmp_path: pathlib.Path, pool: ThreadPoolExecutor) -> None:
        self.mini, self.capsys, self.tmp_path, self.pool = mini, capsys, tmp_path, pool

    async def __call__(self, *argv: str) -> tuple[int, list[str], str]:
        argv = ("--manager", self.mini.address, "--credentials", str(self.mini.credentials),
                *argv)
        code = await asyncio.get_running_loop().run_in_executor(self.pool, main, list(argv))
        out, err = self.capsys.readouterr()
        return code, out.splitlines(), err

    async def deploy(self, image: str) -> tuple[int, list[str], str]:
        path = self.tmp_path / "stack.yaml"
        path.write_text(STACK.format(image=image))
        return await self("deploy", "-f", str(path), "--timeout", "30")


async def test_deploy_update_rollback_and_history(secured: InProcessCluster,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: pathlib.Path) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        cli = Cli(secured, capsys, tmp_path, pool)
        code, out, err = await cli.deploy("app:1")
        assert code == 0, err
        assert out[0] == "created service web" and out[-1] == "converged"

        code, out, err = await cli.deploy("app:2")
        assert code == 0, err
        assert out[0] == "updated service web: version 2 (container.image app:1 -> app:2)"
        assert out[-2:] == ["web: updated to version 2", "converged"]
        assert len(out) == len(set(out))  # each progress line once

        code, out, err = await cli.deploy("missing/app:3")
        assert code == 1, out
        assert err.startswith("error: web: web.")
        assert "No such image: missing/app:3" in err
        assert err.strip().endswith("rolled back to version 2")

        code, out, err = await cli("history", "web", "-o", "json")
        assert code == 0, err
        rows = json.loads("\n".join(out))
        assert [(r["version"], r["current"]) for r in rows] == [
            (1, False), (2, True), (3, False)]

        code, out, err = await cli("rollback", "web", "--to", "1", "--timeout", "30")
        assert code == 0, err
        assert out[0] == "web: rolling back from version 2 to version 1"
        assert out[-2:] == ["web: rolled back to version 1", "converged"]
        code, out, err = await cli("services")
        assert code == 0, err
        assert out[1].split()[-2:] == ["rolled", "back"]
        code, out, err = await cli("rollback", "web", "--to", "1")
        assert code == 0, err
        assert out == ["web: already at version 1"]
