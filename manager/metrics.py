"""The manager's Prometheus metrics (README, "Metrics").

Figures that are state (nodes, tasks, services, updates, autoscaling, sessions, the mesh's
traffic) are read from the store, the LoadBook and the components at scrape time by one
collector: nothing on a hot path is instrumented for them. Only what is a stream of events is
observed as it happens, through plain callables the components take (none of them imports
prometheus_client): store commit durations, scheduling latencies and heartbeat intervals.

Each Manager has its own registry, so that several in one process keep their figures apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from podium.manager.loadbook import LoadBook
from podium.manager.store import Store
from podium.rules import autoscale
from podium.v1 import objects

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCHEDULING_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HEARTBEAT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


def _state_names(enum: Mapping[str, int], prefix: str) -> dict[int, str]:
    """Enum value -> its name without `prefix`, lower case ("STATE_READY" -> "ready")."""
    return {number: name.removeprefix(prefix).lower() for name, number in enum.items()}


NODE_STATES = _state_names(dict(objects.NodeStatus.State.items()), "STATE_")
TASK_STATES = _state_names(dict(objects.TaskState.items()), "TASK_STATE_")
UPDATE_STATES = {number: name for number, name in
                 _state_names(dict(objects.UpdateStatus.State.items()), "STATE_").items()
                 if name != "none"}


class ManagerMetrics:
    """The registry, the event histograms, and `collect_from()` to add the state collector once
    the components exist."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.commit_seconds = Histogram(
            "podium_store_commit_duration_seconds",
            "Time to commit one store transaction to SQLite.",
            buckets=COMMIT_BUCKETS, registry=self.registry)
        self.scheduling_seconds = Histogram(
            "podium_scheduling_latency_seconds",
            "Time from a task's creation to its assignment to a node.",
            buckets=SCHEDULING_BUCKETS, registry=self.registry)
        self.heartbeat_seconds = Histogram(
            "podium_heartbeat_interval_seconds",
            "Time between two heartbeats (or load reports, which stand in for them) of one "
            "agent's session.",
            buckets=HEARTBEAT_BUCKETS, registry=self.registry)

    def collect_from(self, *, store: Store, load: LoadBook, sessions: Callable[[], int],
                     autoscale_decisions: Mapping[str, int]) -> None:
        self.registry.register(_StateCollector(store=store, load=load, sessions=sessions,
                                               decisions=autoscale_decisions))


class _StateCollector(Collector):
    def __init__(self, *, store: Store, load: LoadBook, sessions: Callable[[], int],
                 decisions: Mapping[str, int]) -> None:
        self._store = store
        self._load = load
        self._sessions = sessions
        self._decisions = decisions

    def describe(self) -> list[Metric]:
        # Names only (auto_describe would otherwise read the store at registration).
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        view = self._store.view()
        families = self._families()
        nodes, tasks, services, updates, desired, decisions, sessions, conns, reqs = families

        counts = dict.fromkeys(NODE_STATES.values(), 0)
        for node in view.nodes():
            name = NODE_STATES.get(node.status.state, "unknown")
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            nodes.add_metric([name], n)

        counts = dict.fromkeys(TASK_STATES.values(), 0)
        service_of: dict[str, str] = {}
        for task in view.tasks():
            name = TASK_STATES.get(task.status.state, str(int(task.status.state)))
            counts[name] = counts.get(name, 0) + 1
            service_of[task.id] = task.service_name
        for name, n in counts.items():
            tasks.add_metric([name], n)

        counts = dict.fromkeys(UPDATE_STATES.values(), 0)
        all_services = list(view.services())
        for service in all_services:
            name = UPDATE_STATES.get(service.update_status.state, "")
            if name:
                counts[name] += 1
            if autoscale.enabled(service.spec):
                desired.add_metric([service.spec.name], service.spec.replicas)
        for name, n in counts.items():
            updates.add_metric([name], n)
        services.add_metric([], len(all_services))

        for direction in ("up", "down"):
            decisions.add_metric([direction], self._decisions.get(direction, 0))
        sessions.add_metric([], self._sessions())

        for figures, family in ((self._load.connections(), conns),
                                (self._load.request_counts(), reqs)):
            per_service: dict[str, int] = {}
            for task_id, n in figures.items():
                owner = service_of.get(task_id)
                if owner is not None:  # a task deleted since: its figures go with it
                    per_service[owner] = per_service.get(owner, 0) + n
            for owner, n in sorted(per_service.items()):
                family.add_metric([owner], n)
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                             GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily,
                             GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily("podium_nodes", "Nodes, by state.", labels=["state"]),
            GaugeMetricFamily("podium_tasks", "Tasks in the store, by observed state.",
                              labels=["state"]),
            GaugeMetricFamily("podium_services", "Services."),
            GaugeMetricFamily("podium_service_updates",
                              "Services by the state of their last update or rollback "
                              "(services never updated are not counted).", labels=["state"]),
            GaugeMetricFamily("podium_autoscale_desired_replicas",
                              "Replicas the autoscaler set, for each autoscaled service.",
                              labels=["service"]),
            CounterMetricFamily("podium_autoscale_decisions",
                                "Replica changes the autoscaler wrote, by direction.",
                                labels=["direction"]),
            GaugeMetricFamily("podium_sessions", "Agents' sessions open."),
            GaugeMetricFamily("podium_mesh_connections",
                              "Connections open through the mesh, over every node, by service "
                              "(nodes on the kernel mesh count none).", labels=["service"]),
            CounterMetricFamily("podium_mesh_requests",
                                "Requests forwarded through the mesh by the nodes reporting, "
                                "by service (falls when an agent restarts).",
                                labels=["service"]),
        )
