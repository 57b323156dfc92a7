"""The agent's metrics read at scrape time (no event loop)."""

from __future__ import annotations

from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from podium.agent.meshspec import Traffic
from podium.agent.metrics import AgentFigures, agent_registry


def test_mesh_counters_are_named_by_service_and_keep_it_once_the_route_is_gone() -> None:
    routes = {8080: "web", 5432: "db"}
    traffic = Traffic(bytes_in=100, bytes_out=5000, connect_failures=2)
    for seconds in (0.0002, 0.0003, 0.004, 2.0):
        traffic.connected(seconds)
    requests = {8080: {"t1": 3, "t2": 4}, 5432: {"t3": 1}}
    figures = AgentFigures(
        port_services=lambda: dict(routes),
        connections=lambda: {8080: {"t1": 1, "t2": 2}, 5432: {}},
        requests=lambda: requests,
        traffic=lambda: {8080: traffic, 5432: Traffic()},
        restarts=lambda: [("t1", "web", 0), ("t2", "web", 3)],
        health_results=Counter(healthy=2, unhealthy=1),
        containers_running=lambda: 2,
        engine_up=lambda: False,
    )
    registry = agent_registry(figures)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    found = scrape()
    assert found[("podium_agent_mesh_connections", (("service", "web"),))] == 3
    assert found[("podium_agent_mesh_connections", (("service", "db"),))] == 0
    assert found[("podium_agent_mesh_requests_total", (("service", "web"),))] == 7
    assert found[("podium_agent_mesh_backend_errors_total", (("service", "web"),))] == 2
    web = (("service", "web"),)
    assert found[("podium_agent_mesh_bytes_total", (("direction", "from_clients"), *web))] == 100
    assert found[("podium_agent_mesh_bytes_total", (("direction", "to_clients"), *web))] == 5000
    connect = "podium_agent_mesh_backend_connect_seconds"
    assert found[(connect + "_bucket", (("le", "0.0005"), *web))] == 2
    assert found[(connect + "_bucket", (("le", "0.005"), *web))] == 3
    assert found[(connect + "_bucket", (("le", "+Inf"), *web))] == 4
    assert found[(connect + "_count", web)] == 4
    assert abs(found[(connect + "_sum", web)] - 2.0045) < 1e-9
    assert found[("podium_agent_task_restarts", (("service", "web"), ("task", "t2")))] == 3
    assert found[("podium_agent_health_results_total", (("result", "unhealthy"),))] == 1
    assert found[("podium_agent_health_results_total", (("result", "starting"),))] == 0
    assert found[("podium_agent_containers_running", ())] == 2
    assert found[("podium_agent_engine_up", ())] == 0
    routes.pop(5432)  # db no longer routed here: its retired counter keeps its name
    assert scrape()[("podium_agent_mesh_requests_total", (("service", "db"),))] == 1
