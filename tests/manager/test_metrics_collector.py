"""The manager's metrics read at scrape time from a store and a LoadBook (no event loop)."""

from __future__ import annotations

import pathlib

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from podium.manager.loadbook import LoadBook
from podium.manager.metrics import ManagerMetrics
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import dispatcher, objects


def _service(id: str, name: str, *, replicas: int = 1, autoscaled: bool = False,
             update: int = objects.UpdateStatus.STATE_NONE) -> objects.Service:
    service = objects.Service(id=id)
    service.spec.name = name
    service.spec.replicas = replicas
    service.spec.container.image = "app:1"
    if autoscaled:
        service.spec.autoscale.CopyFrom(objects.Autoscale(min=1, max=9, cpu=0.5))
    service.update_status.state = update  # type: ignore[assignment]
    return service


def _task(id: str, service: str, state: int) -> objects.Task:
    task = objects.Task(id=id, service_id=f"s-{service}", service_name=service, slot=1)
    task.status.state = state  # type: ignore[assignment]
    return task


def samples(metrics: ManagerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_state_figures_come_from_the_store_and_the_loadbook(tmp_path: pathlib.Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    running, pending = objects.TASK_STATE_RUNNING, objects.TASK_STATE_PENDING

    def seed(tx: WriteTx) -> None:
        tx.create(_service("s-web", "web", replicas=4, autoscaled=True,
                           update=objects.UpdateStatus.STATE_ROLLING_BACK))
        tx.create(_service("s-db", "db", update=objects.UpdateStatus.STATE_UPDATING))
        tx.create(objects.Node(id="n1", status=objects.NodeStatus(
            state=objects.NodeStatus.STATE_READY)))
        for id, service, state in [("w1", "web", running), ("w2", "web", running),
                                   ("w3", "web", pending), ("d1", "db", running)]:
            tx.create(_task(id, service, state))

    store.update_now(seed)
    load = LoadBook()
    for node, count in (("n1", 5), ("n2", 7)):
        report = dispatcher.LoadReport(connections={"w1": 2, "d1": 1},
                                       requests={"w1": count, "w2": 1, "gone": 50})
        report.time.FromSeconds(1000)
        load.record(node, report)
    metrics = ManagerMetrics()
    metrics.collect_from(store=store, load=load, sessions=lambda: 1,
                         autoscale_decisions={"up": 2})
    found = samples(metrics)
    assert found[("podium_tasks", (("state", "running"),))] == 3
    assert found[("podium_tasks", (("state", "pending"),))] == 1
    assert found[("podium_nodes", (("state", "ready"),))] == 1
    assert found[("podium_services", ())] == 2
    assert found[("podium_service_updates", (("state", "rolling_back"),))] == 1
    assert found[("podium_service_updates", (("state", "updating"),))] == 1
    assert found[("podium_service_updates", (("state", "completed"),))] == 0
    assert found[("podium_autoscale_desired_replicas", (("service", "web"),))] == 4
    assert ("podium_autoscale_desired_replicas", (("service", "db"),)) not in found
    assert found[("podium_autoscale_decisions_total", (("direction", "up"),))] == 2
    assert found[("podium_autoscale_decisions_total", (("direction", "down"),))] == 0
    assert found[("podium_sessions", ())] == 1
    # Summed over both nodes, by service; a task no longer in the store counts for none.
    assert found[("podium_mesh_connections", (("service", "web"),))] == 4
    assert found[("podium_mesh_connections", (("service", "db"),))] == 2
    assert found[("podium_mesh_requests_total", (("service", "web"),))] == 5 + 7 + 2
    store.close()


def test_event_histograms_observe_what_the_hooks_are_given() -> None:
    metrics = ManagerMetrics()
    metrics.commit_seconds.observe(0.002)
    metrics.scheduling_seconds.observe(0.3)
    metrics.heartbeat_seconds.observe(1.0)
    found = samples(metrics)
    assert found[("podium_store_commit_duration_seconds_count", ())] == 1
    assert found[("podium_scheduling_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert found[("podium_scheduling_latency_seconds_bucket", (("le", "0.25"),))] == 0
    assert found[("podium_heartbeat_interval_seconds_sum", ())] == 1.0
