"""Tests for the pure scheduler core: no event loop, no store, plain protos."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from podium.manager.placement import Decision, Plan, schedule
from podium.rules.constraints import parse_constraint
from podium.v1 import objects

GiB = 1 << 30
MiB = 1 << 20
CPU = 10**9
NOW = 1_700_000_000.0

Ready = objects.NodeStatus.STATE_READY
Active = objects.NodeSpec.AVAILABILITY_ACTIVE


def node(
    node_id: str,
    *,
    name: str = "",
    labels: dict[str, str] | None = None,
    cpus: float = 4,
    memory: int = 8 * GiB,
    state: objects.NodeStatus.State = Ready,
    availability: objects.NodeSpec.Availability = Active,
) -> objects.Node:
    return objects.Node(
        id=node_id,
        spec=objects.NodeSpec(availability=availability),
        description=objects.NodeDescription(
            name=name or f"host-{node_id}",
            labels=labels or {},
            capacity=objects.Resources(nano_cpus=int(cpus * CPU), memory_bytes=memory),
        ),
        status=objects.NodeStatus(state=state),
    )


def task(
    task_id: str,
    *,
    service: str = "web",
    slot: int = 0,
    node_id: str = "",
    cpus: float = 0,
    memory: int = 0,
    constraints: tuple[str, ...] = (),
    host_port: int = 0,
    state: objects.TaskState = objects.TASK_STATE_PENDING,
    desired: objects.TaskState = objects.TASK_STATE_RUNNING,
    not_before: float | None = None,
) -> objects.Task:
    ports = []
    if host_port:
        ports.append(objects.PortConfig(target_port=80, published_port=host_port,
                                        mode=objects.PortConfig.PUBLISH_MODE_HOST))
    t = objects.Task(
        id=task_id,
        service_id=service,
        slot=slot,
        node_id=node_id,
        spec=objects.ServiceSpec(
            resources=objects.ResourceRequirements(
                reservations=objects.Resources(nano_cpus=int(cpus * CPU), memory_bytes=memory)),
            placement=objects.Placement(constraints=list(constraints)),
            ports=ports,
        ),
        desired_state=desired,
        status=objects.TaskStatus(state=state),
    )
    if not_before is not None:
        t.not_before.FromNanoseconds(int(not_before * 1e9))
    return t


def running(task_id: str, node_id: str, **kwargs: Any) -> objects.Task:
    kwargs.setdefault("state", objects.TASK_STATE_RUNNING)
    return task(task_id, node_id=node_id, **kwargs)


def replicas(count: int, service: str = "web", **kwargs: Any) -> list[objects.Task]:
    return [task(f"{service}.{i}", service=service, slot=i, **kwargs)
            for i in range(1, count + 1)]


def placements(plan: Plan) -> dict[str, str]:
    return {d.task_id: d.node_id for d in plan.placed}


def per_node(plan: Plan) -> Counter[str]:
    return Counter(d.node_id for d in plan.placed)


# --- constraints -------------------------------------------------------------------------------


def test_constraints_on_name_and_labels() -> None:
    nodes = [node("n1", name="db1", labels={"zone": "a"}),
             node("n2", name="web1", labels={"zone": "b"}),
             node("n3", name="web2")]
    cases = {
        "node.labels.zone == a": {"n1"},
        "node.labels.zone != a": {"n2", "n3"},  # != matches an absent label
        "node.name == web1": {"n2"},
        "node.hostname != db1": {"n2", "n3"},
        "node.id == n3": {"n3"},
    }
    for expr, allowed in cases.items():
        plan = schedule(nodes, [], replicas(6, constraints=(expr,)), NOW)
        assert set(per_node(plan)) == allowed, expr
        assert not plan.unplaced


def test_invalid_constraint_is_unplaced_with_the_error() -> None:
    plan = schedule([node("n1")], [], [task("t1", constraints=("node.zone == a",))], NOW)
    assert plan.placed == []
    assert "unknown key 'node.zone'" in plan.unplaced[0].reason


# --- spreading -------------------------------------------------------------------------------


def test_spreads_six_tasks_over_three_nodes() -> None:
    plan = schedule([node("n1"), node("n2"), node("n3")], [], replicas(6), NOW)
    assert per_node(plan) == {"n1": 2, "n2": 2, "n3": 2}


def test_prefers_nodes_with_fewer_tasks_of_the_service() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    existing = [running("web.old1", "n1"), running("web.old2", "n1"),
                running("other.1", "n2", service="other")]
    plan = schedule(nodes, existing, replicas(2), NOW)
    # n1 already has two web tasks; n3 is empty, n2 has one task of another service.
    assert placements(plan) == {"web.1": "n3", "web.2": "n2"}
    plan = schedule(nodes, existing, replicas(4), NOW)
    assert per_node(plan) == {"n2": 2, "n3": 2}


def test_finished_tasks_do_not_count() -> None:
    existing = [running("old", "n1", memory=8 * GiB, state=objects.TASK_STATE_FAILED),
                running("stopping", "n1", memory=8 * GiB, desired=objects.TASK_STATE_SHUTDOWN)]
    plan = schedule([node("n1")], existing, [task("t1", memory=8 * GiB)], NOW)
    assert placements(plan) == {"t1": "n1"}


# --- resources -------------------------------------------------------------------------------


def test_cpu_respected_including_earlier_placements() -> None:
    nodes = [node("n1", cpus=2), node("n2", cpus=1)]
    plan = schedule(nodes, [running("r", "n1", cpus=0.5)], replicas(4, cpus=0.5), NOW)
    # Free: n1 1.5 cpus (3 tasks), n2 1 cpu (2 tasks): four fit, spread 2/2.
    assert per_node(plan) == {"n1": 2, "n2": 2}
    plan = schedule(nodes, [running("r", "n1", cpus=0.5)], replicas(6, cpus=0.5), NOW)
    assert per_node(plan) == {"n1": 3, "n2": 2}
    assert [u.task_id for u in plan.unplaced] == ["web.6"]
    assert "no node has 0.5 cpus free (2 nodes)" in plan.unplaced[0].reason


def test_memory_respected_including_earlier_placements() -> None:
    nodes = [node("n1", memory=4 * GiB), node("n2", memory=3 * GiB)]
    plan = schedule(nodes, [], replicas(4, memory=2 * GiB), NOW)
    assert per_node(plan) == {"n1": 2, "n2": 1}
    assert [u.task_id for u in plan.unplaced] == ["web.4"]
    assert plan.unplaced[0].reason == "no node has 2 GiB memory free (2 nodes)"


def test_zero_reservation_fits_a_full_node() -> None:
    plan = schedule([node("n1", cpus=1, memory=GiB)], [running("r", "n1", cpus=1, memory=GiB)],
                    [task("t1")], NOW)
    assert placements(plan) == {"t1": "n1"}


def test_reason_names_memory_constraint_and_node_counts() -> None:
    nodes = [node("n1", labels={"zone": "a"}, memory=GiB),
             node("n2", labels={"zone": "a"}, memory=512 * MiB),
             node("n3", labels={"zone": "b"}),
             node("n4", labels={"zone": "a"}, state=objects.NodeStatus.STATE_DOWN),
             node("n5", labels={"zone": "a"}, availability=objects.NodeSpec.AVAILABILITY_DRAIN)]
    plan = schedule(nodes, [], [task("t1", memory=2 * GiB, constraints=("node.labels.zone==a",))],
                    NOW)
    assert plan.placed == []
    reason = plan.unplaced[0].reason
    assert reason == ("no node has 2 GiB memory free (2 nodes); 1 node fails node.labels.zone == a;"
                      " 1 node paused/draining; 1 node not ready")


def test_reason_with_no_nodes() -> None:
    plan = schedule([], [], [task("t1")], NOW)
    assert plan.unplaced[0].reason == "no nodes in the cluster"


def test_unavailable_nodes_are_not_used() -> None:
    nodes = [node("down", state=objects.NodeStatus.STATE_DOWN),
             node("unknown", state=objects.NodeStatus.STATE_UNKNOWN),
             node("paused", availability=objects.NodeSpec.AVAILABILITY_PAUSE),
             node("drained", availability=objects.NodeSpec.AVAILABILITY_DRAIN),
             node("ok")]
    plan = schedule(nodes, [], replicas(5), NOW)
    assert per_node(plan) == {"ok": 5}
    plan = schedule(nodes[:4], [], replicas(1), NOW)
    assert plan.unplaced[0].reason == "2 nodes paused/draining; 2 nodes not ready"


# --- ports, delays, pinned tasks -----------------------------------------------------------------


def test_host_port_conflict() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    existing = [running("other", "n1", service="other", host_port=8080)]
    plan = schedule(nodes, existing, replicas(3, host_port=8080), NOW)
    assert sorted(placements(plan).values()) == ["n2", "n3"]
    assert plan.unplaced[0].reason == "host port 8080/tcp in use (3 nodes)"
    # A different port does not conflict.
    plan = schedule(nodes, existing, replicas(3, host_port=8081), NOW)
    assert len(plan.placed) == 3


def test_not_before_in_future_is_skipped_and_sets_wake_at() -> None:
    pending = [task("late", not_before=NOW + 30), task("later", not_before=NOW + 60),
               task("due", not_before=NOW - 1), task("now")]
    plan = schedule([node("n1")], [], pending, NOW)
    assert sorted(placements(plan)) == ["due", "now"]
    assert plan.unplaced == []
    assert plan.wake_at == pytest.approx(NOW + 30)
    assert schedule([node("n1")], [], [task("t")], NOW).wake_at is None


def test_pinned_task_goes_to_its_node_or_says_why() -> None:
    nodes = [node("n1"), node("n2", memory=GiB)]
    plan = schedule(nodes, [], [task("g1", service="g", node_id="n1", memory=2 * GiB),
                                task("g2", service="g", node_id="n2", memory=2 * GiB),
                                task("g3", service="g", node_id="gone")], NOW)
    assert plan.placed == [Decision("g1", "n1")]
    reasons = {u.task_id: u.reason for u in plan.unplaced}
    assert reasons == {"g2": "assigned node n2: no node has 2 GiB memory free (1 node)",
                       "g3": "assigned node gone not found"}


def test_pending_tasks_also_passed_as_tasks_hold_nothing() -> None:
    nodes = [node("n1", memory=2 * GiB)]
    pending = [task("g1", service="g", node_id="n1", memory=2 * GiB),
               task("g2", service="g", node_id="n1", memory=2 * GiB, not_before=NOW + 5)]
    plan = schedule(nodes, pending, pending, NOW)
    assert plan.placed == [Decision("g1", "n1")]
    assert plan.wake_at == pytest.approx(NOW + 5)


def test_pinned_tasks_are_placed_before_replicas() -> None:
    nodes = [node("n1", memory=2 * GiB)]
    pending = [task("a.1", service="a", memory=2 * GiB), task("z", service="z", node_id="n1",
                                                             memory=2 * GiB)]
    assert placements(schedule(nodes, [], pending, NOW)) == {"z": "n1"}


# --- determinism and agreement with a naive scan --------------------------------------------------


def test_deterministic_regardless_of_input_order() -> None:
    nodes = [node(f"n{i}", labels={"zone": "ab"[i % 2]}, cpus=2) for i in range(7)]
    pending = (replicas(9, "a", cpus=0.5) + replicas(5, "b", constraints=("node.labels.zone==a",))
               + replicas(4, "c", host_port=9000))
    first = schedule(nodes, [], pending, NOW)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(nodes)
        rng.shuffle(pending)
        assert schedule(nodes, [], pending, NOW) == first


def naive_schedule(nodes: list[objects.Node], pending: list[objects.Task]) -> dict[str, str]:
    """Reference: per task, scan every node and take the least loaded that fits."""
    free = {n.id: [n.description.capacity.nano_cpus, n.description.capacity.memory_bytes]
            for n in nodes}
    ports: dict[str, set[int]] = {n.id: set() for n in nodes}
    count: Counter[tuple[str, str]] = Counter()
    total: Counter[str] = Counter()
    out = {}
    for t in sorted(pending, key=lambda t: (t.service_id, t.slot, t.id)):
        res = t.spec.resources.reservations
        port = {p.published_port for p in t.spec.ports}
        fits = [n.id for n in nodes
                if n.status.state == Ready and n.spec.availability == Active
                and all(parse_constraint(c).matches(n.id, n.description.name,
                                                    dict(n.description.labels))
                        for c in t.spec.placement.constraints)
                and (not res.nano_cpus or free[n.id][0] >= res.nano_cpus)
                and (not res.memory_bytes or free[n.id][1] >= res.memory_bytes)
                and not port & ports[n.id]]
        if fits:
            best = min(fits, key=lambda n: (count[t.service_id, n], total[n], n))
            free[best][0] -= res.nano_cpus
            free[best][1] -= res.memory_bytes
            ports[best] |= port
            count[t.service_id, best] += 1
            total[best] += 1
            out[t.id] = best
    return out


@pytest.mark.parametrize("seed", range(10))
def test_agrees_with_naive_scan(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [node(f"n{i:02d}", labels={"zone": rng.choice("abc")}, cpus=rng.choice([1, 2, 4]),
                  memory=rng.choice([1, 2, 4]) * GiB,
                  state=rng.choice([Ready] * 5 + [objects.NodeStatus.STATE_DOWN]))
             for i in range(rng.randint(1, 12))]
    pending: list[objects.Task] = []
    for s in range(rng.randint(1, 5)):
        constraints = rng.choice([(), ("node.labels.zone == a",), ("node.labels.zone != b",)])
        pending += replicas(rng.randint(1, 15), f"svc{s}", cpus=rng.choice([0, 0.25, 1]),
                            memory=rng.choice([0, 256 * MiB, GiB]), constraints=constraints,
                            host_port=rng.choice([0, 0, 80]))
    plan = schedule(nodes, [], pending, NOW)
    assert placements(plan) == naive_schedule(nodes, pending)
    assert len(plan.placed) + len(plan.unplaced) == len(pending)


def test_an_ingress_port_occupies_no_node() -> None:
    # The mesh serves ingress ports on every node; replicas publish on ephemeral ports.
    nodes = [node("n1"), node("n2")]
    pending = replicas(3, host_port=8080)
    for t in pending:
        t.spec.ports[0].mode = objects.PortConfig.PUBLISH_MODE_INGRESS
    plan = schedule(nodes, [], pending, NOW)
    assert len(plan.placed) == 3 and not plan.unplaced


def test_usage_kept_change_by_change_places_as_a_scan_of_every_task_does() -> None:
    """The scheduler keeps what each node's tasks hold from the store's changes (Usage) rather
    than reading every task each pass: after any sequence of writes and deletes, the plans
    must be the ones the full scan gives."""
    import random

    from podium.manager.placement import Usage

    rng = random.Random(7)
    nodes = [node(f"n{i}", cpus=2, memory=4 * GiB) for i in range(6)]
    states = [objects.TASK_STATE_PENDING, objects.TASK_STATE_ASSIGNED,
              objects.TASK_STATE_RUNNING, objects.TASK_STATE_FAILED,
              objects.TASK_STATE_COMPLETE]
    tasks: dict[str, objects.Task] = {}
    usage = Usage()
    for step in range(400):
        task_id = f"t{rng.randrange(60)}"
        if task_id in tasks and rng.random() < 0.2:
            del tasks[task_id]
            usage.gone(task_id)
        else:
            placed = rng.random() < 0.8
            tasks[task_id] = task(
                task_id, service=rng.choice(["web", "db", "api"]), slot=rng.randrange(1, 9),
                node_id=rng.choice(nodes).id if placed else "",
                cpus=rng.choice([0, 0.5, 1]), memory=rng.choice([0, GiB]),
                host_port=rng.choice([0, 0, 8080, 9090]),
                state=rng.choice(states[1:]) if placed else objects.TASK_STATE_PENDING,
                desired=rng.choice([objects.TASK_STATE_RUNNING, objects.TASK_STATE_RUNNING,
                                    objects.TASK_STATE_SHUTDOWN]))
            usage.seen(tasks[task_id])
        if step % 20 == 0:
            new = replicas(12, service=rng.choice(["web", "db", "new"]), memory=GiB // 2, cpus=0.5,
                           host_port=rng.choice([0, 8080]))
            everything = [*tasks.values(), *new]
            scanned = schedule(nodes, everything, new, NOW)
            kept = schedule(nodes, everything, new, NOW, usage=usage)
            assert placements(kept) == placements(scanned), step
            assert [(u.task_id, u.reason) for u in kept.unplaced] == \
                [(u.task_id, u.reason) for u in scanned.unplaced], step
    assert Usage(tasks.values())._nodes == usage._nodes
