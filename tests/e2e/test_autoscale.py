"""Autoscaling on the real engine: the cpu the agents measure in real containers drives the count
up to max and, once the load is gone, back down to min after the scale-down window."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from tests.helpers import IMAGE, Cluster, eventually

pytestmark = pytest.mark.engine

# Each replica spins one shell loop (100 % of its 0.2 cpus) for 15 s after it starts, then idles:
# the load rises with the first replicas and is gone once the last one has spun.
BURN = f"""
services:
  burn:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "sleep 15 & p=$!; while kill -0 $p 2>/dev/null; do :; done; sleep 3600"]
    deploy:
      resources:
        limits: {{cpus: "0.2"}}
    x-podium-autoscale:
      min: 1
      max: 3
      cpu: 50%
      scale_down_window: 5s
"""


def _count(cluster: Cluster) -> int:
    [service] = [s for s in cluster.json("services") if s["name"] == "burn"]
    return int(service["desired"])


def _last_decision(cluster: Cluster) -> str:
    return str(json.loads(cluster.ok("inspect", "burn"))["autoscale"]["last_decision"])


def test_measured_cpu_scales_up_to_max_then_down_to_min(cluster: Cluster,
                                                         tmp_path: pathlib.Path) -> None:
    stack = tmp_path / "burn.yaml"
    stack.write_text(BURN)
    cluster.ok("deploy", "-f", str(stack))
    eventually(lambda: _count(cluster) == 3, timeout=60, what="scaled up to max (3)")
    decision = _last_decision(cluster)
    assert re.fullmatch(r"burn [12]→3: cpu \d+% of 50% target", decision), decision
    eventually(lambda: len(cluster.running_containers()) == 3, timeout=30,
               what="3 containers running")
    eventually(lambda: _count(cluster) == 1, timeout=90, what="back down to min (1)")
    decision = _last_decision(cluster)
    assert re.fullmatch(r"burn [23]→1: cpu \d+% of 50% target", decision), decision
    cluster.ok("rm", "burn")
    eventually(lambda: not cluster.containers(), what="no container after rm")
