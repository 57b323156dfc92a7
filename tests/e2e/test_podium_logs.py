"""End to end: `podium logs` reads real containers' output on two nodes through the manager,
like `docker service logs`: each line behind its task and node, stderr on stderr, --tail, and
-f following new lines and a task that starts meanwhile."""

from __future__ import annotations

import pathlib
import subprocess
import threading

import pytest

from tests.helpers import IMAGE, Cluster, eventually

pytestmark = pytest.mark.engine

# Each replica says hello (with its container's host name) on stdout and once on stderr, then
# ticks every 0.2 s.
CHATTY = f"""
services:
  chatty:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: ["sh", "-c", "echo hello from $HOSTNAME; echo warning here >&2; i=0;
              while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
    deploy:
      replicas: 2
"""


def test_podium_logs_reads_every_replica_across_nodes_and_follows(
        cluster: Cluster, tmp_path: pathlib.Path) -> None:
    spec = tmp_path / "chatty.yaml"
    spec.write_text(CHATTY)
    cluster.ok("deploy", "-f", str(spec))
    tasks = {t["name"]: t for t in cluster.json("ps", "chatty") if t["desired"] == "running"}
    assert sorted(tasks) == ["chatty.1", "chatty.2"]
    assert {t["node"] for t in tasks.values()} == {"node-a", "node-b"}

    def logs(*args: str) -> subprocess.CompletedProcess[str]:
        result = cluster.run("logs", "chatty", *args, timeout=60)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result

    # Every replica's lines, each behind "chatty.N.<task id>@<node> | ".
    def both_ticked() -> subprocess.CompletedProcess[str] | None:
        result = logs()
        return result if result.stdout.count("| tick 3\n") == 2 else None

    result = eventually(both_ticked, what="three ticks of each replica")
    for name, task in tasks.items():
        prefix = f"{name}.{str(task['id'])[:12]}@{task['node']} | "
        mine = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
        assert mine[0].startswith(prefix + "hello from "), mine[:3]
        assert mine[1:4] == [prefix + "tick 1", prefix + "tick 2", prefix + "tick 3"]
        assert prefix + "warning here\n" in result.stderr  # stderr's lines stay on stderr
    assert "warning here" not in result.stdout

    # --tail: the last line of each task; one task by its name.
    tail = logs("--tail", "1").stdout.splitlines()
    assert len(tail) == 2 and all(" | tick " in line for line in tail), tail
    one = cluster.run("logs", "chatty.2", "--no-prefix", "-n", "2", timeout=60)
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 2, one

    # -f: new lines as they come, and the replica that a scale-up starts.
    follower = subprocess.Popen(cluster.argv("logs", "-f", "chatty"), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    reading = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")),
                               daemon=True)  # type: ignore[union-attr]
    reading.start()
    try:
        cluster.ok("scale", "chatty=3")
        eventually(lambda: any(line.startswith("chatty.3.") and " | tick 2" in line
                               for line in list(seen)), timeout=60,
                   what="the new replica's ticks in podium logs -f")
        assert follower.poll() is None, "podium logs -f ended by itself"
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reading.join(timeout=10)
        follower.stdout.close()  # type: ignore[union-attr]
    cluster.ok("rm", "chatty")
    eventually(lambda: not cluster.containers(), what="no container after rm")


def test_podium_logs_names_what_it_cannot_find(cluster: Cluster) -> None:
    result = cluster.run("logs", "nosuch", timeout=60)
    assert result.returncode == 2
    assert "no service or task 'nosuch'" in result.stderr
    result = cluster.run("logs", "--since", "yesterday-ish", "nosuch", timeout=60)
    assert result.returncode == 2
    assert "--since 'yesterday-ish': expected a duration ago" in result.stderr
