"""The agent's Prometheus metrics (README, "Metrics").

One collector reads everything at scrape time from the parts that already count it: the mesh's
counters per published port (named by the service the routing table gives the port; a port
whose route is gone keeps the last service it had, so that counters stay with their service),
the worker's runners (restarts, health changes) and the engine's health. On the mesh's data path
only counters are added: bytes per read, one clock reading per backend connection.

Each Agent has its own registry, so that several in one process keep their figures apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from podium.agent.meshspec import CONNECT_BUCKETS, Traffic


@dataclass(slots=True, frozen=True)
class AgentFigures:
    """Where the collector reads from, each a call made at scrape time."""

    # Published port -> service name, for the ports routed now.
    port_services: Callable[[], Mapping[int, str]]
    # Published port -> endpoint key -> connections open / requests forwarded (a counter).
    connections: Callable[[], Mapping[int, Mapping[str, int]]]
    requests: Callable[[], Mapping[int, Mapping[str, int]]]
    # Published port -> its traffic (counters); None: not counted (the kernel mesh).
    traffic: Callable[[], Mapping[int, Traffic]] | None
    # (task id, service, restarts) of every task the agent runs.
    restarts: Callable[[], list[tuple[str, str, int]]]
    health_results: Mapping[str, int]
    containers_running: Callable[[], int]
    engine_up: Callable[[], bool]


def agent_registry(figures: AgentFigures) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_AgentCollector(figures))
    return registry


class _AgentCollector(Collector):
    def __init__(self, figures: AgentFigures) -> None:
        self._figures = figures
        self._services: dict[int, str] = {}  # every port's last service

    def describe(self) -> list[Metric]:
        return list(_families())

    def collect(self) -> Iterator[Metric]:
        f = self._figures
        families = _families()
        (conns, reqs, failures, transferred, connect, restarts, health, containers,
         engine) = families
        self._services.update(f.port_services())

        def service(port: int) -> str:
            return self._services.get(port, f"port {port}")

        for source, family in ((f.connections(), conns), (f.requests(), reqs)):
            per_service: dict[str, int] = {}
            for port, per_key in source.items():
                name = service(port)
                per_service[name] = per_service.get(name, 0) + sum(per_key.values())
            for name, n in sorted(per_service.items()):
                family.add_metric([name], n)
        if f.traffic is not None:
            by_service: dict[str, Traffic] = {}
            for port, traffic in f.traffic().items():
                by_service.setdefault(service(port), Traffic()).add(traffic)
            for name, t in sorted(by_service.items()):
                failures.add_metric([name], t.connect_failures)
                transferred.add_metric([name, "from_clients"], t.bytes_in)
                transferred.add_metric([name, "to_clients"], t.bytes_out)
                cumulative, buckets = 0, []
                for bound, n in zip([*map(str, CONNECT_BUCKETS), "+Inf"], t.connects,
                                    strict=True):
                    cumulative += n
                    buckets.append((bound, cumulative))
                connect.add_metric([name], buckets, t.connect_seconds)
        for task_id, name, n in sorted(f.restarts()):
            restarts.add_metric([name, task_id], n)
        for result in ("healthy", "unhealthy", "starting"):
            health.add_metric([result], f.health_results.get(result, 0))
        containers.add_metric([], f.containers_running())
        engine.add_metric([], 1 if f.engine_up() else 0)
        yield from families


def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily,
                         CounterMetricFamily, HistogramMetricFamily, GaugeMetricFamily,
                         CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("podium_agent_mesh_connections",
                          "Connections open through this node's mesh, by service.",
                          labels=["service"]),
        CounterMetricFamily("podium_agent_mesh_requests",
                            "Requests forwarded by this node's mesh, by service.",
                            labels=["service"]),
        CounterMetricFamily("podium_agent_mesh_backend_errors",
                            "Backend connections this node's mesh could not make (refused, "
                            "unreachable, timed out), by service.", labels=["service"]),
        CounterMetricFamily("podium_agent_mesh_bytes",
                            "Bytes this node's mesh forwarded, by service and direction "
                            "(from_clients: to the replicas; to_clients: their answers).",
                            labels=["service", "direction"]),
        HistogramMetricFamily("podium_agent_mesh_backend_connect_seconds",
                              "How long this node's mesh took to connect to a replica, by "
                              "service.", labels=["service"]),
        GaugeMetricFamily("podium_agent_task_restarts",
                          "Restarts in place of each task this node runs.",
                          labels=["service", "task"]),
        CounterMetricFamily("podium_agent_health_results",
                            "Changes of a task's health on this node, by the new health.",
                            labels=["result"]),
        GaugeMetricFamily("podium_agent_containers_running", "Task containers running."),
        GaugeMetricFamily("podium_agent_engine_up",
                          "1 while the Docker engine answers its health pings, else 0."),
    )
