"""The updater with the orchestrator on a real store, agents played by hand, a clock of our own.

Each round runs the orchestrator and the updater once, then "the agents" move tasks: new tasks
start (ready or not, healthy or not, as the test says) and ended ones go away. Invariants a user
relies on are checked after every round: the count of ready tasks never drops below the replica
count (start-first) or the replica count minus parallelism (stop-first), and a slot never holds
two tasks of the same version.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import pytest

from podium.manager import ids, versions
from podium.manager.orchestrator import Orchestrator
from podium.manager.store import SqliteStore, WriteTx
from podium.manager.updater import Updater
from podium.rules.taskstate import is_live
from podium.v1 import objects

US = objects.UpdateStatus
RUNNING = objects.TASK_STATE_RUNNING
FAILED = objects.TASK_STATE_FAILED
REMOVED = objects.TASK_STATE_REMOVED
HEALTHY = objects.HEALTH_HEALTHY
UNHEALTHY = objects.HEALTH_UNHEALTHY

# How the fake agents treat a task of a given version: (ready, health) or "fail".
Behaviour = Callable[[objects.Task], tuple[bool, int] | str]


def good(task: objects.Task) -> tuple[bool, int]:
    return True, HEALTHY


class Cluster:
    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.store = SqliteStore(tmp_path / "state.db")
        self.orch = Orchestrator(store=self.store)
        self.now = time.time()  # tasks and updates are stamped with the real clock
        self.updater = Updater(store=self.store, clock=lambda: self.now)
        self.behaviour: Behaviour = good
        self.min_ready: dict[str, int] = {}
        self.store.update_now(lambda tx: tx.create(_node("n1")))

    def restart_manager(self) -> None:
        self.updater = Updater(store=self.store, clock=lambda: self.now)

    def create(self, name: str, replicas: int = 3, deploy_id: str = "",
               edit: Callable[[objects.ServiceSpec], None] | None = None) -> str:
        service = objects.Service(id=name, spec_version=1, last_version=1)
        service.spec.name = name
        service.spec.replicas = replicas
        service.spec.container.image = "podium/web:latest"
        service.spec.container.env["VERSION"] = "1"
        if edit:
            edit(service.spec)
        first = objects.ServiceVersion(version=1, spec=service.spec, change="created")
        service.versions.append(first)
        service.update_status.deploy_id = deploy_id
        self.store.update_now(lambda tx: tx.create(service))
        self.settle()
        return name

    def deploy(self, name: str, version: str, deploy_id: str = "",
               edit: Callable[[objects.ServiceSpec], None] | None = None) -> None:
        def apply(tx: WriteTx) -> None:
            service = tx.get_service(name)
            assert service is not None
            spec = objects.ServiceSpec()
            spec.CopyFrom(service.spec)
            spec.container.env["VERSION"] = version
            if edit:
                edit(spec)
            versions.begin_update(service, spec, deploy_id)
            tx.update(service)

        self.store.update_now(apply)

    def service(self, name: str) -> objects.Service:
        found = self.store.view().get_service(name)
        assert found is not None
        return found

    def live(self, name: str) -> list[objects.Task]:
        return [t for t in self.store.view().tasks_of_service(name) if is_live(t)]

    def ready(self, name: str) -> int:
        return sum(1 for t in self.live(name) if t.status.state == RUNNING and t.status.ready)

    def round(self) -> None:
        for service in list(self.store.view().services()):
            self.store.update_now(lambda tx, s=service.id: self.orch._reconcile_service(tx, s))
            self.store.update_now(
                lambda tx, s=service.id: self.updater.reconcile_service(tx, s, self.now))
        self.store.update_now(self._agents)
        for service in self.store.view().services():
            self._check(service)

    def _agents(self, tx: WriteTx) -> None:
        for task in list(tx.tasks()):
            if task.desired_state > RUNNING:
                if task.status.state < REMOVED:
                    task.status.state = REMOVED  # type: ignore[assignment]
                    task.status.ready = False
                    tx.update(task)
                continue
            if task.status.state >= RUNNING:
                continue
            if not task.node_id:  # the scheduler: the ready node with the fewest live tasks
                ready = [n.id for n in tx.nodes()
                         if n.status.state == objects.NodeStatus.STATE_READY]
                task.node_id = min(ready, key=lambda n: (sum(
                    1 for t in tx.tasks_of_node(n) if is_live(t)), n))
            outcome = self.behaviour(task)
            if outcome == "fail":
                task.status.state = FAILED  # type: ignore[assignment]
                task.status.err = "exit code 1"
            else:
                assert not isinstance(outcome, str)
                task.status.state = RUNNING  # type: ignore[assignment]
                task.status.ready, task.status.health = outcome  # type: ignore[assignment]
                if outcome[1] == UNHEALTHY:
                    task.status.message = "unhealthy: GET /: status 500"
            tx.update(task)

    def _check(self, service: objects.Service) -> None:
        floor = self.min_ready.get(service.id)
        if floor is not None:
            assert self.ready(service.id) >= floor, f"{service.id}: too few ready tasks"
        per_slot: dict[tuple[int, int], int] = {}
        for task in self.live(service.id):
            if task.slot and not task.canary:
                key = (task.slot, task.spec_version)
                per_slot[key] = per_slot.get(key, 0) + 1
        assert all(n == 1 for n in per_slot.values()), per_slot

    def settle(self, rounds: int = 40, step: float = 0.5) -> None:
        """Rounds until nothing changes, the clock moving `step` each round."""
        for _ in range(rounds):
            before = self.store.view().services(), list(self.store.view().tasks())
            self.round()
            self.now += step
            after = self.store.view().services(), list(self.store.view().tasks())
            if [s.SerializeToString() for s in before[0]] == [
                    s.SerializeToString() for s in after[0]] and before[1] == after[1]:
                return

    def run_until(self, name: str, states: tuple[int, ...], rounds: int = 200,
                  step: float = 0.5) -> objects.Service:
        for _ in range(rounds):
            self.round()
            service = self.service(name)
            if service.update_status.state in states:
                return service
            self.now += step
        raise AssertionError(f"{name} stuck: {self.service(name).update_status}")


def _node(id: str) -> objects.Node:
    node = objects.Node(id=id)
    node.description.name = id
    node.status.state = objects.NodeStatus.STATE_READY
    return node


def _versions(cluster: Cluster, name: str) -> set[str]:
    return {t.spec.container.env["VERSION"] for t in cluster.live(name)}


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Cluster:
    return Cluster(tmp_path)


def test_a_good_update_replaces_one_slot_at_a_time_without_losing_a_ready_task(
        cluster: Cluster) -> None:
    cluster.create("web", replicas=3)
    cluster.min_ready["web"] = 3
    cluster.deploy("web", "2")
    widest = 0
    for _ in range(100):
        cluster.round()
        new = [t for t in cluster.live("web") if t.spec_version == 2]
        starting = [t for t in new if not t.status.ready]
        widest = max(widest, len(starting))
        if cluster.service("web").update_status.state == US.STATE_COMPLETED:
            break
        cluster.now += 0.5
    status = cluster.service("web").update_status
    assert status.state == US.STATE_COMPLETED, status
    assert status.message == "updated to version 2"
    assert _versions(cluster, "web") == {"2"} and len(cluster.live("web")) == 3
    assert widest <= 1  # parallelism 1


def test_completion_waits_for_the_monitor_window(cluster: Cluster) -> None:
    cluster.create("web", replicas=1)
    cluster.deploy("web", "2")
    for _ in range(4):
        cluster.round()
    started = cluster.now
    service = cluster.run_until("web", (US.STATE_COMPLETED,), step=0.25)
    assert service.update_status.state == US.STATE_COMPLETED
    assert cluster.now - started >= 5.0 - 0.5  # the default monitor, 5 s


def test_an_unhealthy_new_version_rolls_back_by_itself(cluster: Cluster) -> None:
    cluster.create("web", replicas=3)
    cluster.min_ready["web"] = 3

    def bad_v2(task: objects.Task) -> tuple[bool, int]:
        return (False, UNHEALTHY) if task.spec.container.env["VERSION"] == "2" else (True, HEALTHY)

    cluster.behaviour = bad_v2
    cluster.deploy("web", "2")
    service = cluster.run_until("web", (US.STATE_ROLLED_BACK, US.STATE_ROLLBACK_PAUSED))
    status = service.update_status
    assert status.state == US.STATE_ROLLED_BACK
    assert service.spec_version == 1 and service.spec.container.env["VERSION"] == "1"
    assert "unhealthy" in status.message and "rolled back to version 1" in status.message
    assert status.reason.startswith("web.1 ")
    cluster.settle()
    assert _versions(cluster, "web") == {"1"} and len(cluster.live("web")) == 3


def test_a_task_that_is_never_healthy_fails_at_the_deadline(cluster: Cluster) -> None:
    def deadline(spec: objects.ServiceSpec) -> None:
        spec.update_config.CopyFrom(objects.UpdateConfig(parallelism=1))
        spec.update_config.healthy_deadline.FromSeconds(30)

    cluster.create("web", replicas=2, edit=deadline)

    def stuck(task: objects.Task) -> tuple[bool, int]:
        v2 = task.spec.container.env["VERSION"] == "2"
        return (False, objects.HEALTH_STARTING) if v2 else (True, HEALTHY)

    cluster.behaviour = stuck
    cluster.deploy("web", "2", edit=deadline)
    start = cluster.now
    service = cluster.run_until("web", (US.STATE_ROLLING_BACK, US.STATE_ROLLED_BACK), step=1.0)
    assert 30 <= cluster.now - start <= 33
    assert service.spec_version == 1


def test_failure_action_pause_stops_the_update_where_it_is(cluster: Cluster) -> None:
    def pause(spec: objects.ServiceSpec) -> None:
        spec.update_config.CopyFrom(objects.UpdateConfig(
            parallelism=1, failure_action=objects.UpdateConfig.FAILURE_ACTION_PAUSE))

    cluster.create("web", replicas=3, edit=pause)
    cluster.behaviour = lambda t: "fail" if t.spec.container.env["VERSION"] == "2" else good(t)
    cluster.deploy("web", "2", edit=pause)
    service = cluster.run_until("web", (US.STATE_PAUSED,))
    assert "web.1 exit code 1" in service.update_status.message
    assert "paused" in service.update_status.message
    for _ in range(20):
        cluster.round()
        cluster.now += 1
    # Slots 2 and 3 were never touched; the service stays on version 2 (paused).
    assert cluster.service("web").update_status.state == US.STATE_PAUSED
    v1 = [t for t in cluster.live("web") if t.spec_version == 1]
    assert sorted(t.slot for t in v1) == [1, 2, 3]


def test_stop_first_for_a_fixed_host_port_keeps_replicas_minus_parallelism(
        cluster: Cluster) -> None:
    def host_port(spec: objects.ServiceSpec) -> None:
        spec.ports.add(target_port=80, published_port=8080,
                       mode=objects.PortConfig.PUBLISH_MODE_HOST)

    cluster.create("web", replicas=3, edit=host_port)
    cluster.min_ready["web"] = 2
    cluster.deploy("web", "2", edit=host_port)
    assert "stop-first" in cluster.service("web").update_status.message
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    assert _versions(cluster, "web") == {"2"}
    assert service.update_status.done == 3


def test_one_failing_service_rolls_back_the_whole_deploy(cluster: Cluster) -> None:
    cluster.create("api", replicas=2)
    cluster.create("web", replicas=2)
    cluster.behaviour = lambda t: ("fail" if t.service_name == "web"
                                   and t.spec.container.env["VERSION"] == "2" else good(t))
    cluster.deploy("api", "2", deploy_id="d1")
    cluster.run_until("api", (US.STATE_COMPLETED,))  # done before the other one fails
    cluster.deploy("web", "2", deploy_id="d1")
    cluster.run_until("web", (US.STATE_ROLLED_BACK,))
    api = cluster.run_until("api", (US.STATE_ROLLED_BACK,))
    assert api.spec_version == 1
    assert "web failed in the same deploy" in api.update_status.message
    cluster.settle()
    assert _versions(cluster, "api") == {"1"} and _versions(cluster, "web") == {"1"}


def test_a_later_deploy_is_not_rolled_back_with_an_earlier_one(cluster: Cluster) -> None:
    cluster.create("api", replicas=1)
    cluster.create("web", replicas=1)
    cluster.deploy("api", "2", deploy_id="d1")
    cluster.run_until("api", (US.STATE_COMPLETED,))
    cluster.behaviour = lambda t: ("fail" if t.service_name == "web"
                                   and t.spec.container.env["VERSION"] == "2" else good(t))
    cluster.deploy("web", "2", deploy_id="d2")
    cluster.run_until("web", (US.STATE_ROLLED_BACK,))
    cluster.settle()
    assert cluster.service("api").spec_version == 2


def test_canary_runs_beside_the_old_tasks_until_promoted(cluster: Cluster) -> None:
    def canary(spec: objects.ServiceSpec) -> None:
        spec.canary.count = 1

    cluster.create("web", replicas=3, edit=canary)
    cluster.min_ready["web"] = 3
    cluster.deploy("web", "2", edit=canary)
    service = cluster.run_until("web", (US.STATE_CANARY,))
    assert "podium promote web" in service.update_status.message
    for _ in range(10):
        cluster.round()
        cluster.now += 1
    live = cluster.live("web")
    canaries = [t for t in live if t.canary]
    assert len(canaries) == 1 and canaries[0].spec_version == 2 and canaries[0].slot == 4
    assert sorted(t.slot for t in live if t.spec_version == 1) == [1, 2, 3]
    cluster.store.update_now(lambda tx: versions.promote(tx, tx.get_service("web"), by="test"))  # type: ignore[arg-type]
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    cluster.settle()
    live = cluster.live("web")
    assert sorted(t.slot for t in live) == [1, 2, 3] and _versions(cluster, "web") == {"2"}
    assert canaries[0].id in {t.id for t in live}  # the canary took over a slot


def test_a_failing_canary_is_discarded_by_the_rollback(cluster: Cluster) -> None:
    def canary(spec: objects.ServiceSpec) -> None:
        spec.canary.count = 1

    cluster.create("web", replicas=2, edit=canary)
    cluster.min_ready["web"] = 2
    cluster.behaviour = lambda t: "fail" if t.spec.container.env["VERSION"] == "2" else good(t)
    cluster.deploy("web", "2", edit=canary)
    cluster.run_until("web", (US.STATE_ROLLED_BACK,))
    cluster.settle()
    assert not [t for t in cluster.live("web") if t.canary]
    assert _versions(cluster, "web") == {"1"}


def test_canary_promotes_itself_after_its_healthy_period(cluster: Cluster) -> None:
    def canary(spec: objects.ServiceSpec) -> None:
        spec.canary.count = 1
        spec.canary.auto_promote_after.FromSeconds(10)

    cluster.create("web", replicas=2, edit=canary)
    cluster.deploy("web", "2", edit=canary)
    cluster.run_until("web", (US.STATE_CANARY,))
    healthy_at = cluster.now
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    assert service.update_status.promoted
    assert cluster.now - healthy_at >= 10


def test_manual_rollback_and_versions(cluster: Cluster) -> None:
    cluster.create("web", replicas=2)
    for v in ("2", "3"):
        cluster.deploy("web", v)
        cluster.run_until("web", (US.STATE_COMPLETED,))
    service = cluster.service("web")
    assert [v.version for v in service.versions] == [1, 2, 3]
    assert service.versions[-1].change == "container.env.VERSION 2 -> 3"

    def back(tx: WriteTx) -> None:
        svc = tx.get_service("web")
        assert svc is not None
        versions.start_rollback(tx, svc, 1, reason="", manual=True)

    cluster.store.update_now(back)
    service = cluster.run_until("web", (US.STATE_ROLLED_BACK,))
    assert service.update_status.manual and service.spec_version == 1
    assert service.update_status.message == "rolled back to version 1"
    cluster.settle()
    assert _versions(cluster, "web") == {"1"}
    cluster.deploy("web", "4")
    assert cluster.service("web").spec_version == 4  # numbers are never reused


def test_only_the_last_ten_versions_are_kept(cluster: Cluster) -> None:
    cluster.create("web", replicas=1)
    for v in range(2, 15):
        cluster.deploy("web", str(v))
    service = cluster.service("web")
    assert [v.version for v in service.versions] == list(range(5, 15))


def test_a_restarted_manager_resumes_the_update_without_duplicates(cluster: Cluster) -> None:
    cluster.create("web", replicas=4)
    cluster.min_ready["web"] = 4
    cluster.deploy("web", "2")
    for _ in range(5):
        cluster.round()
        cluster.now += 0.5
    assert cluster.service("web").update_status.state == US.STATE_UPDATING
    cluster.restart_manager()
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    assert service.update_status.done == 4
    cluster.settle()
    assert len(cluster.live("web")) == 4 and _versions(cluster, "web") == {"2"}


def test_continue_goes_on_until_the_failure_ratio_is_passed(cluster: Cluster) -> None:
    def tolerant(spec: objects.ServiceSpec) -> None:
        spec.update_config.CopyFrom(objects.UpdateConfig(
            parallelism=1, failure_action=objects.UpdateConfig.FAILURE_ACTION_CONTINUE,
            max_failure_ratio=0.5))

    cluster.create("web", replicas=4, edit=tolerant)
    failed_once: set[int] = set()

    def flaky_slot_2(task: objects.Task) -> tuple[bool, int] | str:
        if task.spec_version == 2 and task.slot == 2 and 2 not in failed_once:
            failed_once.add(2)
            return "fail"
        return good(task)

    cluster.behaviour = flaky_slot_2
    cluster.deploy("web", "2", edit=tolerant)
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    assert len(service.update_status.failed_tasks) == 1


def test_global_service_updates_node_by_node(cluster: Cluster) -> None:
    cluster.store.update_now(lambda tx: (tx.create(_node("n2")), tx.create(_node("n3"))))

    def glob(spec: objects.ServiceSpec) -> None:
        spec.mode = objects.ServiceSpec.MODE_GLOBAL  # type: ignore[assignment]

    cluster.create("mon", edit=glob)
    assert len(cluster.live("mon")) == 3
    cluster.min_ready["mon"] = 2
    cluster.deploy("mon", "2", edit=glob)
    service = cluster.run_until("mon", (US.STATE_COMPLETED,))
    assert _versions(cluster, "mon") == {"2"}
    assert {t.node_id for t in cluster.live("mon")} == {"n1", "n2", "n3"}
    assert service.update_status.total == 3


def test_timestamps_are_set(cluster: Cluster) -> None:
    cluster.create("web", replicas=1)
    cluster.deploy("web", "2")
    service = cluster.run_until("web", (US.STATE_COMPLETED,))
    status = service.update_status
    assert ids.seconds(status.completed) >= ids.seconds(status.started) > 0


def test_a_host_lost_mid_update_does_not_stop_it(cluster: Cluster) -> None:
    cluster.store.update_now(lambda tx: tx.create(_node("n2")))
    cluster.create("web", replicas=4)
    assert {t.node_id for t in cluster.live("web")} == {"n1", "n2"}
    cluster.deploy("web", "2")
    for _ in range(3):
        cluster.round()
        cluster.now += 0.5

    def down(tx: WriteTx) -> None:
        node = tx.get_node("n2")
        assert node is not None
        node.status.state = objects.NodeStatus.STATE_DOWN  # type: ignore[assignment]
        tx.update(node)

    cluster.store.update_now(down)
    service = cluster.run_until("web", (US.STATE_COMPLETED, US.STATE_ROLLING_BACK))
    assert service.update_status.state == US.STATE_COMPLETED
    cluster.settle()
    live = cluster.live("web")
    assert sorted(t.slot for t in live) == [1, 2, 3, 4]
    assert {t.node_id for t in live} == {"n1"} and _versions(cluster, "web") == {"2"}
