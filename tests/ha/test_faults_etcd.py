"""Jepsen-style: 3 etcd members, 3 managers in network namespaces and 4 agents (fake executor)
under random faults (podium.lab.nemesis: kill -9 and partitions of the leader, an etcd member
killed, everything restarted) for about a minute, while a workload deploys, scales and removes
services; then healed, converged, and every invariant of podium.lab.faultcheck checked."""

from __future__ import annotations

import os
import pathlib
import random
import time
from collections.abc import Iterator

import pytest

from podium.lab.faultcheck import Workload, check_final, converged, overlapping_terms
from podium.lab.local import eventually
from podium.lab.nemesis import FaultLab, Nemesis

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(420),
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

FAULT_SECONDS = 75


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> Iterator[FaultLab]:
    with FaultLab(tmp_path / "lab", agents=4) as started:
        yield started


def test_faults_keep_every_acknowledged_write_and_one_leader(lab: FaultLab) -> None:
    seed = int(os.environ.get("PODIUM_FAULT_SEED", random.randrange(1 << 30)))
    print(f"fault seed {seed} (PODIUM_FAULT_SEED={seed} repeats the run)")
    nemesis = Nemesis(lab, seed=seed, log=print)
    workload = Workload(lab.group, seed=seed)
    workload.cut_off = nemesis.cut_off
    workload.start()
    try:
        # Every kind at least once in a short run, then at random.
        for kind in Nemesis.KINDS:
            nemesis.one(kind)
        nemesis.run(max(0.0, FAULT_SECONDS - (time.time() - nemesis.events[0].applied)))
    finally:
        workload.stop()
        nemesis.heal_all()
    eventually(lambda: lab.all_nodes_ready() and converged(lab.group), timeout=90,
               interval=0.5, what="the cluster converged after the last heal")
    print("workload:", workload.summary(), *workload.stale_reads, sep="\n  ")
    assert workload.summary()["acknowledged_count"] >= 20, workload.summary()
    assert workload.summary()["checks_count"] >= 5, workload.summary()
    assert not workload.violations, workload.violations
    final = check_final(lab.group, workload)
    assert not final, final
    overlaps, count = overlapping_terms(lab.group, nemesis.deaths, time.time())
    assert not overlaps, overlaps
    # Leaders changed hands as the faults forced them to (a killed or cut off leader).
    assert count >= 4, count
    assert not nemesis.exits, nemesis.exits
    elected = [e.observed["fault_to_new_leader_s"] for e in nemesis.events
               if "fault_to_new_leader_s" in e.observed]
    assert elected and max(elected) < 10, elected
