"""Autoscaling on requests per second counted by the mesh, on simulated hosts: traffic through
one host's published port scales the service up, and once it stops the count comes back down,
draining through the mesh: the client sees no failure."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from podium.lab.hosts import HostCluster
from tests.e2e.test_mesh import PORT, WEB_CMD, finish, live, start_client
from tests.helpers import IMAGE, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

STACK = f"""
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{WEB_CMD}"]
    init: true
    stop_grace_period: 2s
    ports: ["{PORT}:80"]
    x-podium-autoscale:
      min: 1
      max: 3
      requests_per_second: 5
      scale_down_window: 5s
"""


# One request every INTERVAL seconds (new connection each) for SECONDS; prints the count of
# answers and each failure.
PACED = r"""
import json, sys, time, urllib.request
url, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ok, failures = 0, []
start = time.time()
for n in range(int(seconds / interval)):
    time.sleep(max(0.0, start + n * interval - time.time()))
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            reply.read()
            ok += 1
    except Exception as exc:
        failures.append([round(time.time() - start, 2), repr(exc)[:120]])
print(json.dumps({"ok": ok, "failures": failures}))
"""


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=2) as cluster:
        yield cluster


def _count(hosts: HostCluster) -> int:
    [service] = [s for s in hosts.json("services") if s["name"] == "web"]
    return int(service["desired"])


def _last_decision(hosts: HostCluster) -> str:
    return str(json.loads(hosts.ok("inspect", "web"))["autoscale"]["last_decision"])


def test_requests_through_the_mesh_scale_up_and_the_scale_down_drains(
        hosts: HostCluster, tmp_path: pathlib.Path) -> None:
    stack = tmp_path / "web.yaml"
    stack.write_text(STACK)
    hosts.ok("deploy", "-f", str(stack))
    assert _count(hosts) == 1
    # A sequential client through h2's published port: far more than 5 requests a second.
    client = start_client(hosts, "h2", seconds=20)
    eventually(lambda: _count(hosts) == 3, timeout=15, what="scaled up to max (3)")
    decision = _last_decision(hosts)
    assert re.fullmatch(r"web [12]→3: req/s [\d.]+ of 5 target", decision), decision
    eventually(lambda: len(live(hosts)) == 3 and all(t["state"] == "running" for t in live(hosts)),
               timeout=20, what="3 replicas running")
    result = finish(client)  # the load stops here
    answers = result["answers"]
    assert isinstance(answers, dict) and len(answers) == 3, answers  # all 3 served
    assert result["failures"] == []
    # A light load (4 requests a second, under one replica's target): back to min after the
    # 5 s window, and the replicas that leave drain through the mesh: no request fails.
    slow = subprocess.Popen(
        ["ip", "netns", "exec", hosts.host("h1").netns, sys.executable, "-I", "-c", PACED,
         f"http://{hosts.host('h1').address}:{PORT}/", "25", "0.25"],
        stdout=subprocess.PIPE, text=True)
    eventually(lambda: _count(hosts) == 1, timeout=30, what="back down to min (1)")
    assert re.fullmatch(r"web [23]→1: req/s [\d.]+ of 5 target", _last_decision(hosts))
    eventually(lambda: len(live(hosts)) == 1, timeout=20, what="2 replicas gone")
    out, _ = slow.communicate(timeout=60)
    paced = json.loads(out)
    assert paced["failures"] == [] and paced["ok"] > 50, paced
    hosts.ok("rm", "web")
