"""End to end: a manager and two agents as real processes on a real engine."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import IMAGE, WEB, Cluster, containers_of, docker, eventually

pytestmark = pytest.mark.engine


def write(tmp_path: pathlib.Path, text: str, name: str = "stack.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def running_tasks(cluster: Cluster, service: str) -> list[dict[str, object]]:
    return [t for t in cluster.json("ps", service) if t["state"] == "running"
            and t["desired"] == "running"]


def started_at(container_ids: list[str]) -> dict[str, str]:
    out = docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *container_ids)
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_deploy_spreads_scales_and_removes(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    out = cluster.ok("deploy", "-f", write(tmp_path, WEB))
    assert "converged" in out
    tasks = running_tasks(cluster, "web")
    assert len(tasks) == 3
    assert {t["node"] for t in tasks} == {"node-a", "node-b"}
    assert len(cluster.running_containers()) == 3

    # Every replica serves HTTP on the port the engine published for it.
    for task in tasks:
        port = str(task["ports"][0]).split("->")[0].rsplit(":", 1)[1]  # type: ignore[index]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
            assert reply.read().startswith(b"hello from ")

    cluster.ok("scale", "web=6")
    assert len(running_tasks(cluster, "web")) == 6
    assert len(cluster.running_containers()) == 6
    cluster.ok("scale", "web=1")
    assert len(running_tasks(cluster, "web")) == 1
    eventually(lambda: len(cluster.containers()) == 1, what="scaled-down containers removed")

    cluster.ok("rm", "web")
    eventually(lambda: not cluster.containers(), what="no container after rm")
    eventually(lambda: cluster.json("ps") == [], what="tasks deleted")


def test_manager_kill9_keeps_state_and_containers(cluster: Cluster,
                                                  tmp_path: pathlib.Path) -> None:
    cluster.ok("deploy", "-f", write(tmp_path, WEB))
    before_tasks = {t["id"] for t in running_tasks(cluster, "web")}
    before = started_at(list(cluster.running_containers()))
    assert len(before) == 3

    cluster.kill("manager")
    cluster.start_manager()
    eventually(lambda: cluster.node_state("node-a") == cluster.node_state("node-b") == "ready",
               what="agents reconnected")
    assert {s["name"] for s in cluster.json("services")} == {"web"}
    assert {t["id"] for t in running_tasks(cluster, "web")} == before_tasks
    # Same containers, never restarted.
    assert started_at(list(cluster.running_containers())) == before
    cluster.ok("rm", "web")
    eventually(lambda: not cluster.containers(), what="no container after rm")


# The agent dies on a host that answers (loopback): its tasks are held for the restart grace
# (30 s), so the restarted agent finds its containers and adopts them.
def test_agent_kill9_adopts_its_containers(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    cluster.ok("deploy", "-f", write(tmp_path, WEB))
    before = started_at(list(cluster.running_containers()))

    cluster.kill("node-a")
    cluster.start_agent("node-a", "zone=a")
    # The restarted agent reports its tasks running again, on the same containers.
    eventually(lambda: len(running_tasks(cluster, "web")) == 3, what="3 running")
    assert started_at(list(cluster.running_containers())) == before
    assert len(cluster.containers()) == 3
    cluster.ok("rm", "web")
    eventually(lambda: not cluster.containers(), what="no container after rm")


def test_invalid_spec_names_service_and_key(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    bad = WEB.replace("replicas: 3", "replicas: three")
    result = cluster.run("deploy", "-f", write(tmp_path, bad))
    assert result.returncode == 2
    assert "web" in result.stderr and "deploy.replicas" in result.stderr
    result = cluster.run("deploy", "-f", write(tmp_path, WEB + "    volumes: [data:/data]\n"))
    assert result.returncode == 2
    assert "'web'" in result.stderr and "volumes" in result.stderr
    assert cluster.json("services") == []


def test_missing_image_fails_and_retries_with_backoff(cluster: Cluster,
                                                      tmp_path: pathlib.Path) -> None:
    spec = WEB.replace(IMAGE, "podium-test/no-such-image:1").replace("replicas: 3", "replicas: 1")
    deployed = time.monotonic()
    result = cluster.run("deploy", "-f", write(tmp_path, spec), "--timeout", "3")
    assert result.returncode == 1
    assert "did not converge" in result.stderr

    def failed() -> list[dict[str, object]]:
        return [t for t in cluster.json("ps", "web", "-a") if "No such image" in str(t["error"])]

    eventually(failed, what="a failed task with the engine's error")
    table = cluster.ok("ps", "web")
    assert "No such image" in table

    def attempts() -> int:
        return max(int(str(t["attempt"])) for t in cluster.json("ps", "web", "-a"))

    # Restart delays double from 0.5 s (0.5 + 1 + 2 before the fourth try): a hot
    # loop would reach it in milliseconds.
    eventually(lambda: attempts() >= 3, timeout=30, what="third retry")
    assert time.monotonic() - deployed >= 3.0
    cluster.ok("rm", "web")


def test_cli_without_manager_says_where_it_looked(cluster: Cluster) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "podium.client.cli", "--manager", "127.0.0.1:1",
         "--credentials", str(cluster.credentials), "nodes"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach the manager at 127.0.0.1:1" in result.stderr


def test_manager_serves_health_and_reflection(cluster: Cluster) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with cluster.secure_channel(aio=False) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="podium.v1.Control"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert {"podium.v1.Control", "podium.v1.Dispatcher", "grpc.health.v1.Health"} <= names


# A 1 s restart grace: the killed agent's node is down soon after, and its tasks deleted.
@pytest.mark.manager_args("--agent-restart-grace", "1")
def test_agent_removes_containers_unassigned_while_it_was_away(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    cluster.ok("deploy", "-f", write(tmp_path, WEB))
    node_a = cluster.node_ids["node-a"]
    assert any(t["node"] == "node-a" for t in running_tasks(cluster, "web"))
    cluster.kill("node-a")
    eventually(lambda: cluster.node_state("node-a") == "down", what="node-a down")
    cluster.ok("rm", "web")
    # node-b confirms its removals; node-a's tasks are deleted since it is down.
    eventually(lambda: cluster.json("ps") == [], what="tasks deleted")
    assert containers_of([node_a]), "node-a's containers outlive its agent"
    cluster.start_agent("node-a", "zone=a")
    eventually(lambda: not cluster.containers(), what="stale containers removed on reconnect")


def test_events_follow_task_changes(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    import json

    follower = subprocess.Popen(
        cluster.argv("events", "--kind", "task", "-o", "json", "--limit", "200"),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        cluster.ok("deploy", "-f", write(tmp_path, WEB.replace("replicas: 3", "replicas: 1")))
        cluster.ok("rm", "web")
        eventually(lambda: cluster.json("ps") == [], what="tasks deleted")
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["kind"] for e in events} == {"task"}
    # The stream may have opened after the first events; it cannot miss the last ones.
    assert events[-1]["action"] == "delete"
    assert events[-1]["object"]["service_name"] == "web"
