"""The dispatcher, scheduler and worker together on the in-process cluster."""

from __future__ import annotations

from collections import Counter

from tests.inprocess import InProcessCluster


async def test_deploy_converges_and_spreads(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=4)
    tasks = await mini.wait_running("web", 4)
    assert Counter(t.node_id for t in tasks) == {mini.node_ids["node-a"]: 2,
                                                  mini.node_ids["node-b"]: 2}
    assert sum(len(mini.containers(n)) for n in ("node-a", "node-b")) == 4
