"""Health management end to end: restarts, checks, the agent alone, load figures."""

from __future__ import annotations

import itertools
import pathlib
import re
import time
from typing import Any

import pytest

from podium.v1 import control, control_grpc
from tests.helpers import IMAGE, Cluster, consistently, docker, eventually

pytestmark = pytest.mark.engine

WEB_CMD = 'mkdir -p /www && echo ok > /www/health.html && exec httpd -f -p 80 -h /www'


def deploy(cluster: Cluster, tmp_path: pathlib.Path, body: str, *extra: str) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("services:\n" + body)
    cluster.ok("deploy", "-f", str(path), *extra)


def tasks(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    return list(cluster.json("ps", service, "-a"))


def live(cluster: Cluster, service: str) -> dict[str, Any]:
    [task] = [t for t in tasks(cluster, service) if t["desired"] == "running"]
    return task


def event_times(task: dict[str, Any], kind: str, pattern: str = "") -> list[float]:
    return [float(e["time"]) for e in task["history"]
            if e["kind"] == kind and re.search(pattern, e["message"])]


def test_a_crashing_container_restarts_with_growing_delays(cluster: Cluster,
                                                           tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, f"""
  crash:
    image: {IMAGE}
    command: ["sh", "-c", "exit 1"]
    init: true
""", "--detach")
    task = eventually(lambda: (t := live(cluster, "crash"))["restarts"] >= 4 and t,
                      timeout=60, what="4 restarts")
    restarts = event_times(task, "restart")
    gaps = [b - a for a, b in itertools.pairwise(restarts)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert task["exit_code"] == 1
    table = cluster.ok("ps", "crash")
    assert "exit code 1" in table
    cluster.ok("rm", "crash")


def test_condition_none_and_max_attempts(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, f"""
  once:
    image: {IMAGE}
    command: ["sh", "-c", "exit 1"]
    init: true
    deploy:
      restart_policy: {{condition: none}}
  twice:
    image: {IMAGE}
    command: ["sh", "-c", "exit 2"]
    init: true
    deploy:
      restart_policy: {{max_attempts: 2}}
""", "--detach")
    eventually(lambda: live(cluster, "once")["state"] == "failed", what="once failed")
    eventually(lambda: live(cluster, "twice")["state"] == "failed", timeout=30,
               what="twice failed")

    def settled() -> bool:
        once, twice = tasks(cluster, "once"), tasks(cluster, "twice")
        return (len(once) == 1 and once[0]["restarts"] == 0 and once[0]["state"] == "failed"
                and len(twice) == 1 and twice[0]["restarts"] == 2
                and twice[0]["state"] == "failed")

    consistently(settled, duration=3, what="no restart beyond the policy")
    assert "max_attempts (2) reached" in live(cluster, "twice")["message"]
    cluster.ok("rm", "once", "twice")


def _probe_service(name: str, start: str = "", start_period: str = "0s") -> str:
    return f"""
  {name}:
    image: {IMAGE}
    command: ["sh", "-c", "{start}{WEB_CMD}"]
    init: true
    stop_grace_period: 1s
    x-podium-probe:
      http: {{port: 80, path: /health.html}}
      interval: 0.5s
      timeout: 0.5s
      retries: 2
      start_period: {start_period}
"""


def _break_health(cluster: Cluster, service: str) -> float:
    container_id = live(cluster, service)["container_id"]
    broken_at = time.time()
    docker("exec", container_id, "/bin/busybox", "rm", "/www/health.html")
    return broken_at


def test_failing_http_check_restarts_the_replica(cluster: Cluster,
                                                 tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, _probe_service("checked"))
    eventually(lambda: live(cluster, "checked")["health"] == "healthy", what="healthy")
    broken_at = _break_health(cluster, "checked")
    task = eventually(lambda: (t := live(cluster, "checked"))["restarts"] >= 1 and t,
                      what="restarted after failing its check")
    [unhealthy_at, *_] = event_times(task, "health", "^unhealthy")
    # interval x retries + 1 s, plus a little for the engine and the report.
    assert unhealthy_at - broken_at <= 0.5 * 2 + 1 + 0.5, unhealthy_at - broken_at
    eventually(lambda: live(cluster, "checked")["health"] == "healthy", what="healthy again")
    cluster.ok("rm", "checked")


def test_start_period_spares_a_slow_starter(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, _probe_service("slow", start="sleep 3; ", start_period="6s"),
           "--detach")
    eventually(lambda: live(cluster, "slow")["health"] == "healthy", timeout=20,
               what="slow starter healthy")
    assert live(cluster, "slow")["restarts"] == 0
    cluster.ok("rm", "slow")


def test_engine_run_cmd_check_restarts_too(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, f"""
  engine:
    image: {IMAGE}
    command: ["sh", "-c", "{WEB_CMD}"]
    init: true
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test -f /www/health.html"]
      interval: 0.5s
      retries: 2
""")
    eventually(lambda: live(cluster, "engine")["health"] == "healthy", what="healthy")
    broken_at = _break_health(cluster, "engine")
    task = eventually(lambda: (t := live(cluster, "engine"))["restarts"] >= 1 and t,
                      what="restarted after failing its check")
    [unhealthy_at, *_] = event_times(task, "health", "^unhealthy")
    assert unhealthy_at - broken_at <= 0.5 * 2 + 1 + 0.5, unhealthy_at - broken_at
    cluster.ok("rm", "engine")


def test_agent_restarts_alone_and_reports_what_the_manager_missed(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    deploy(cluster, tmp_path, f"""
  lone:
    image: {IMAGE}
    init: true
""")
    container_id = live(cluster, "lone")["container_id"]
    cluster.kill("manager")
    crashed_at = time.time()
    docker("kill", container_id)
    eventually(lambda: docker("inspect", "-f", "{{.State.Running}} {{.RestartCount}}",
                              container_id).startswith("true"), what="restarted by the agent")
    cluster.start_manager()
    task = eventually(lambda: (t := live(cluster, "lone"))["restarts"] >= 1 and t,
                      what="restart reported")
    [restarted_at] = event_times(task, "restart")
    assert restarted_at >= crashed_at
    assert task["container_id"] == container_id
    cluster.ok("rm", "lone")


# Holds 30 MB in a shell variable; `echo` after `sleep` keeps the shell from exec-ing sleep.
HOLD_30MB = ('x=$(/bin/busybox head -c 30000000 /dev/zero | /bin/busybox tr "\\0" a); '
             'sleep 600; echo done')


def _engine_memory(container_id: str) -> int:
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container_id)
    amount, unit = re.match(r"([\d.]+)\s*([KMG]i?B|B)", usage.strip()).groups()  # type: ignore[union-attr]
    scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
    return int(float(amount) * scale)


def test_load_is_reported_per_task(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, f"""
  busy:
    image: {IMAGE}
    command: ["sh", "-c", "while :; do :; done"]
    init: true
  idle:
    image: {IMAGE}
    command: ['sh', '-c', '{HOLD_30MB}']
    init: true
""")
    running_at = time.monotonic()
    busy_id = live(cluster, "busy")["id"]
    # Polled over one gRPC channel: a CLI process per poll would compete for the 2 cores.
    with cluster.secure_channel(aio=False) as channel:
        stub = control_grpc.ControlStub(channel)

        def busy_cores() -> float:
            tasks = stub.GetLoad(control.GetLoadRequest(), timeout=5).tasks
            return next((t.latest.cpu_cores for t in tasks if t.task_id == busy_id), 0.0)

        cores = eventually(lambda: (c := busy_cores()) >= 0.8 and c, timeout=3, interval=0.1,
                           what="busy task at 0.8 core or more")
    assert time.monotonic() - running_at <= 3
    assert cores <= 1.2
    # Once it has filled its memory (which takes some cpu), the idle task reads below 0.05.
    eventually(lambda: (t := live(cluster, "idle"))["cpu_cores"] is not None
               and t["memory_bytes"] > 20_000_000 and t["cpu_cores"] < 0.05, timeout=15,
               what="idle task below 0.05 core, with its memory")

    def memory_agrees() -> bool:
        task = live(cluster, "idle")
        reported = task["memory_bytes"]
        engine = _engine_memory(task["container_id"])
        return abs(reported - engine) <= 0.1 * engine

    eventually(memory_agrees, timeout=10, what="memory within 10% of the engine's figure")
    nodes = cluster.json("nodes")
    assert all(n["cpu_used_cores"] is not None for n in nodes)
    cluster.ok("rm", "busy", "idle")




def test_a_task_that_keeps_failing_is_replaced_on_another_node(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    deploy(cluster, tmp_path, f"""
  loop:
    image: {IMAGE}
    command: ["sh", "-c", "exit 1"]
    init: true
""", "--detach")
    first = eventually(lambda: (t := live(cluster, "loop"))["node"] and t, what="placed")
    # 5 local restarts (0 + 1 + 2 + 4 + 8 s), then the manager's replacement delay.
    moved = eventually(lambda: (t := live(cluster, "loop"))["id"] != first["id"] and t,
                       timeout=90, interval=0.5, what="replacement task")
    assert moved["node"] != first["node"]
    [old] = [t for t in tasks(cluster, "loop") if t["id"] == first["id"]]
    assert old["state"] == "failed" and old["restarts"] == 5
    assert "in a row on this node" in old["message"]
    cluster.ok("rm", "loop")
