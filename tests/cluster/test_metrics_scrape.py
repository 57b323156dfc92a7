"""The manager's and the agents' /metrics on the in-process cluster (port 0 each): the figures
reflect the cluster."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    """Every sample at 127.0.0.1:PORT/metrics: (name, sorted labels) -> value."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
async def metered(tmp_path: pathlib.Path) -> AsyncIterator[InProcessCluster]:
    async with in_process_cluster(tmp_path, agents=2, metrics_listen="127.0.0.1:0",
                                  agent_args={"metrics_listen": "127.0.0.1:0"}) as c:
        yield c


async def test_the_manager_counts_nodes_tasks_and_sessions(metered: InProcessCluster) -> None:
    assert metered.manager is not None and metered.manager.metrics_port
    await metered.create("web", replicas=3)
    await metered.wait_running("web", 3)
    port = metered.manager.metrics_port
    samples = await scrape(port)
    assert value(samples, "podium_tasks", state="running") == 3
    assert value(samples, "podium_tasks", state="failed") == 0  # every state, zeros included
    assert value(samples, "podium_nodes", state="ready") == 2
    assert value(samples, "podium_nodes", state="down") == 0
    assert value(samples, "podium_services") == 1
    assert value(samples, "podium_sessions") == 2
    assert value(samples, "podium_autoscale_decisions_total", direction="up") == 0
    assert (value(samples, "podium_store_commit_duration_seconds_count") or 0) > 0
    assert value(samples, "podium_scheduling_latency_seconds_count") == 3

    async def heartbeats_seen() -> bool:
        found = await scrape(port)
        return (value(found, "podium_heartbeat_interval_seconds_count") or 0) > 0

    await eventually_async(heartbeats_seen, timeout=5, what="a heartbeat interval observed")


async def test_each_agent_counts_its_containers(metered: InProcessCluster) -> None:
    await metered.create("web", replicas=3)
    tasks = await metered.wait_running("web", 3)
    running = 0.0
    restarts: set[str] = set()
    for agent in metered.agents.values():
        assert agent.metrics_port
        samples = await scrape(agent.metrics_port)
        running += value(samples, "podium_agent_containers_running") or 0
        assert value(samples, "podium_agent_engine_up") == 1
        assert value(samples, "podium_agent_health_results_total", result="unhealthy") == 0
        restarts |= {dict(labels)["task"] for (name, labels), n in samples.items()
                     if name == "podium_agent_task_restarts" and dict(labels)["service"] == "web"
                     and n == 0}
    assert running == 3
    assert restarts == {t.id for t in tasks}


async def test_off_by_default_in_process(mini: InProcessCluster) -> None:
    assert mini.manager is not None and mini.manager.metrics_port == 0
    assert all(agent.metrics_port == 0 for agent in mini.agents.values())
