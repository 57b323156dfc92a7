"""The pure scheduler core: which node each pending task goes to, and why not.

Contract: ``schedule(nodes, tasks, pending, now) -> Plan`` does no I/O, starts nothing and reads
no clock (``now`` is unix seconds). The caller commits the plan and re-checks it against the store
(a node may have changed since the snapshot was taken).

- ``nodes``: every node. Only nodes with status READY and availability ACTIVE take new tasks.
- ``tasks``: tasks already on a node (node_id set). Those not finished (desired state and observed
  state both <= RUNNING) hold their reservations, their host-mode published ports, and count for
  spreading. Tasks that also appear in ``pending`` are ignored here, so passing every task is fine.
- ``pending``: tasks to place. One whose ``not_before`` is after ``now`` is skipped, neither placed
  nor unplaced, and the earliest such time is ``Plan.wake_at``. One whose node_id is already set
  (global mode) is only checked against that node.

A node takes a task when it passes every filter: ready, active, the task's placement constraints,
free cpu, free memory and free host ports (a task reserving nothing fits anywhere on resources;
host ports conflict on protocol and published port, whatever the host_ip).
Among those nodes the scheduler prefers nodes where the task's service has not failed recently
(the `failures` argument), then spreads: fewest tasks of the same service, then fewest tasks, then
lowest node id. Placements made earlier in the same call count like existing tasks.

A replica whose spec mounts a named local volume that may not move (rules.mounts.pinning_volume)
is pinned to the node holding that volume's data: its own ``pinned_node``, else the one of the
newest task of its slot in ``tasks`` that has one (an update's new task follows its slot). Only
that node is considered; when it does not take the task, the reason says which node the task
waits for and why ("waits for node h2, which holds its volume data (shop_data): it is not
ready; x-podium-may-move: true lets it start elsewhere"). The caller records the node a pinned
task is first placed on (scheduler.commit_plan).

The plan depends on the inputs' contents, not their order: pending tasks are handled pinned ones
first (they have no alternative), then by (service id, slot, task id).

Cost: O(groups x nodes + tasks x log nodes). Pending tasks are grouped by everything that decides
placement (service, reservations, constraints, host ports, pinned node); each group filters the
nodes once and then draws from a heap ordered by the spread key. Many services of one replica
each therefore cost about a node scan per task (roughly 10k placements/s over 1,000 nodes).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from podium.manager.eligibility import ENGINE_NOT_ANSWERING, NOT_READY, ineligible
from podium.rules import units
from podium.rules.constraints import parse_constraint
from podium.rules.mounts import pinning_volume
from podium.rules.taskstate import holds_resources
from podium.v1 import objects

__all__ = ["Decision", "NodeFit", "Plan", "Unplaced", "Usage", "schedule"]


@dataclass(slots=True)
class Decision:
    """Place task ``task_id`` on node ``node_id``."""

    task_id: str
    node_id: str


@dataclass(slots=True)
class Unplaced:
    """No node takes ``task_id`` now; ``reason`` says which filters rejected how many nodes."""

    task_id: str
    reason: str


@dataclass(slots=True)
class Plan:
    placed: list[Decision] = field(default_factory=list)
    unplaced: list[Unplaced] = field(default_factory=list)
    # Earliest not_before (unix seconds) among tasks skipped for their restart delay.
    wake_at: float | None = None
    # The store's revision the plan was made at (ReadTx.revision), if the caller tells it.
    revision: int | None = None


# A rejection is (filter rank, index within the filter, detail). A node is charged to the first
# filter it fails, checked in ascending rank; reasons list the highest rank (most specific) first.
_NOT_READY, _UNAVAILABLE, _CONSTRAINT_RANK, _CPU, _MEMORY, _PORT = range(6)
_Rejection = tuple[int, int, str]
_Port = tuple[int, int]  # (protocol, published port)

_RUNNING = objects.TASK_STATE_RUNNING
_HOST = objects.PortConfig.PUBLISH_MODE_HOST


@dataclass(slots=True)
class _NodeState:
    id: str
    name: str
    labels: dict[str, str]
    unavailable: _Rejection | None  # not ready or not active
    free_cpu: int
    free_memory: int
    ports: set[_Port]
    total: int = 0
    per_service: dict[str, int] = field(default_factory=dict)

    def add(self, service_id: str, cpu: int, memory: int, ports: Iterable[_Port]) -> None:
        self.free_cpu -= cpu
        self.free_memory -= memory
        self.ports.update(ports)
        self.total += 1
        self.per_service[service_id] = self.per_service.get(service_id, 0) + 1


@dataclass(slots=True)
class _Group:
    """Pending tasks that every filter and the spread key treat alike."""

    service_id: str
    cpu: int
    memory: int
    constraints: tuple[str, ...]
    ports: tuple[_Port, ...]
    node_id: str  # assigned node (global mode), or ""
    pinned: str = ""  # node holding the replica's volume data, or ""
    volume: str = ""  # that volume's name
    pinned_name: str = ""  # that node's name, for reasons
    tasks: list[objects.Task] = field(default_factory=list)

    def shortfall(self, node: _NodeState) -> _Rejection | None:
        """The first resource filter ``node`` fails for this group, given its current use."""
        if self.cpu and node.free_cpu < self.cpu:
            return (_CPU, 0, units.cpus(self.cpu))
        if self.memory and node.free_memory < self.memory:
            return (_MEMORY, 0, units.size(self.memory))
        for index, port in enumerate(self.ports):
            if port in node.ports:
                return (_PORT, index, f"{port[1]}/{'udp' if port[0] else 'tcp'}")
        return None


@dataclass(slots=True)
class _Held:
    """What one node's tasks hold, summed (Usage)."""

    cpu: int = 0
    memory: int = 0
    total: int = 0
    ports: dict[_Port, int] = field(default_factory=dict)  # port -> tasks binding it
    per_service: dict[str, int] = field(default_factory=dict)


class Usage:
    """What the tasks that hold resources take on each node, as `schedule()` counts them from
    ``tasks``, kept up to date one task change at a time: a scheduler pass then reads the
    pending tasks only, not every task (at 150,000 tasks, a second and more per pass).

    ``seen(task)`` after each write of a task, ``gone(task_id)`` after its delete. A pending
    task holds nothing (the pass placing it is what takes room for it)."""

    def __init__(self, tasks: Iterable[objects.Task] = ()) -> None:
        # task id -> (node id, service id, cpu, memory, host ports) of a task holding resources
        self._tasks: dict[str, tuple[str, str, int, int, tuple[_Port, ...]]] = {}
        self._nodes: dict[str, _Held] = {}
        for task in tasks:
            self.seen(task)

    def seen(self, task: objects.Task) -> None:
        self.gone(task.id)
        if not holds_resources(task) or task.status.state == objects.TASK_STATE_PENDING:
            return
        res = task.spec.resources.reservations
        entry = (task.node_id, task.service_id, res.nano_cpus, res.memory_bytes,
                 _host_ports(task))
        self._tasks[task.id] = entry
        held = self._nodes.get(task.node_id)
        if held is None:
            held = self._nodes[task.node_id] = _Held()
        self._count(held, entry, 1)

    def gone(self, task_id: str) -> None:
        entry = self._tasks.pop(task_id, None)
        if entry is None:
            return
        held = self._nodes[entry[0]]
        self._count(held, entry, -1)
        if not held.total:
            del self._nodes[entry[0]]

    @staticmethod
    def _count(held: _Held, entry: tuple[str, str, int, int, tuple[_Port, ...]],
               sign: int) -> None:
        _, service_id, cpu, memory, ports = entry
        held.cpu += sign * cpu
        held.memory += sign * memory
        held.total += sign
        for port in ports:
            if held.ports.setdefault(port, 0) + sign:
                held.ports[port] += sign
            else:
                del held.ports[port]
        if held.per_service.setdefault(service_id, 0) + sign:
            held.per_service[service_id] += sign
        else:
            del held.per_service[service_id]

    def charge(self, state: _NodeState) -> None:
        """Takes what this book holds on `state`'s node off its free resources."""
        held = self._nodes.get(state.id)
        if held is not None:
            state.free_cpu -= held.cpu
            state.free_memory -= held.memory
            state.total += held.total
            state.ports.update(held.ports)
            state.per_service.update(held.per_service)


def schedule(
    nodes: Iterable[objects.Node],
    tasks: Iterable[objects.Task],
    pending: Iterable[objects.Task],
    now: float,
    failures: Collection[tuple[str, str]] = (),
    usage: Usage | None = None,
) -> Plan:
    """Place what fits of ``pending`` on ``nodes``, given the running ``tasks``; see the module.

    ``failures`` holds (service id, node id) pairs where the service failed recently: such a
    node is tried last for that service's tasks. ``usage``: what the tasks hold, kept by the
    caller (then ``tasks`` is read only for the slots' pinned nodes, and only when a pending
    task pins a volume)."""
    plan = Plan()
    to_place: dict[str, objects.Task] = {}
    delayed: set[str] = set()
    for task in pending:
        if task.HasField("not_before") and (at := task.not_before.ToNanoseconds() / 1e9) > now:
            plan.wake_at = at if plan.wake_at is None else min(plan.wake_at, at)
            delayed.add(task.id)
        else:
            to_place.setdefault(task.id, task)

    states = {node.id: _node_state(node) for node in nodes}
    if usage is not None:
        for each in states.values():
            usage.charge(each)
    else:
        for task in tasks:
            state = states.get(task.node_id) if task.node_id else None
            if (state is None or task.id in to_place or task.id in delayed
                    or not holds_resources(task)):
                continue
            res = task.spec.resources.reservations
            state.add(task.service_id, res.nano_cpus, res.memory_bytes, _host_ports(task))

    slot_pins: dict[tuple[str, int], str] | None = None  # read at the first pinned task
    pins: dict[str, tuple[str, str]] = {}  # task id -> (pinned node, volume)
    for task in to_place.values():
        if not task.node_id and task.slot and (volume := pinning_volume(task.spec)):
            if slot_pins is None:
                slot_pins = _slot_pins(tasks)
            if pin := task.pinned_node or slot_pins.get((task.service_id, task.slot), ""):
                pins[task.id] = (pin, volume)
    ordered = sorted(to_place.values(),
                     key=lambda t: (not (t.node_id or t.id in pins), t.service_id, t.slot, t.id))
    groups: dict[tuple[object, ...], _Group] = {}
    for task in ordered:
        res = task.spec.resources.reservations
        pin, volume = pins.get(task.id, ("", ""))
        group = _Group(task.service_id, res.nano_cpus, res.memory_bytes,
                       tuple(task.spec.placement.constraints), _host_ports(task), task.node_id,
                       pin, volume)
        key = (group.service_id, group.cpu, group.memory, group.constraints, group.ports,
               group.node_id, group.pinned, group.volume)
        groups.setdefault(key, group).tasks.append(task)

    # Ready, availability and constraints do not change during a call: filter once per set.
    static: dict[tuple[str, ...], tuple[list[_NodeState], dict[_Rejection, int]] | str] = {}
    for group in groups.values():
        if group.node_id:
            pinned = states.get(group.node_id)
            if pinned is None:
                _fail(plan, group.tasks, f"assigned node {group.node_id} not found")
                continue
            filtered = _filter([pinned], group.constraints)
        elif group.pinned:
            holder = states.get(group.pinned)
            if holder is None:
                _fail(plan, group.tasks, _waits(group, group.pinned, "it is not in the cluster"))
                continue
            group.pinned_name = holder.name or holder.id
            filtered = _filter([holder], group.constraints)
        else:
            if group.constraints not in static:
                static[group.constraints] = _filter(states.values(), group.constraints)
            filtered = static[group.constraints]
        if isinstance(filtered, str):
            _fail(plan, group.tasks, filtered)
        else:
            _place(plan, group, *filtered, failures=failures)
    return plan


class NodeFit:
    """One node's free cpu, memory and host ports, for re-checking decisions against the state
    at commit time with the filters `schedule()` applies (a plan made on a snapshot may be stale).

    ``tasks``: the node's tasks; those holding resources count, except pending ones (the plan
    being committed is what places those). ``take()`` counts a task committed to the node."""

    __slots__ = ("_state",)

    def __init__(self, node: objects.Node, tasks: Iterable[objects.Task]) -> None:
        self._state = _node_state(node)
        for task in tasks:
            if holds_resources(task) and task.status.state != objects.TASK_STATE_PENDING:
                self.take(task)

    def shortfall(self, task: objects.Task) -> str:
        """Why ``task`` does not fit (worded as `schedule()`'s reasons), or "" when it does."""
        node = self._state
        try:
            constraints = [parse_constraint(expr) for expr in task.spec.placement.constraints]
        except ValueError as exc:
            return str(exc)
        for constraint in constraints:
            if not constraint.matches(node.id, node.name, node.labels):
                return _describe((_CONSTRAINT_RANK, 0, str(constraint)), 1)
        res = task.spec.resources.reservations
        group = _Group(task.service_id, res.nano_cpus, res.memory_bytes, (), _host_ports(task), "")
        rejection = group.shortfall(node)
        return "" if rejection is None else _describe(rejection, 1)

    def take(self, task: objects.Task) -> None:
        res = task.spec.resources.reservations
        self._state.add(task.service_id, res.nano_cpus, res.memory_bytes, _host_ports(task))


def _node_state(node: objects.Node) -> _NodeState:
    unavailable: _Rejection | None = None
    if reason := ineligible(node):
        unavailable = (_NOT_READY if reason == NOT_READY else _UNAVAILABLE, 0, reason)
    desc = node.description
    return _NodeState(node.id, desc.name, dict(desc.labels), unavailable,
                      desc.capacity.nano_cpus, desc.capacity.memory_bytes, set())


def _host_ports(task: objects.Task) -> tuple[_Port, ...]:
    # Host mode binds the published port on the replica's node; an ingress port is served by
    # every node's mesh and occupies no node.
    return tuple(sorted({(p.protocol, p.published_port) for p in task.spec.ports
                         if p.mode == _HOST and p.published_port}))


def _filter(nodes: Iterable[_NodeState], exprs: tuple[str, ...]
            ) -> tuple[list[_NodeState], dict[_Rejection, int]] | str:
    """Nodes passing the static filters, and how many each filter rejected (or an error)."""
    try:
        constraints = [parse_constraint(expr) for expr in exprs]
    except ValueError as exc:
        return str(exc)
    passed: list[_NodeState] = []
    rejected: dict[_Rejection, int] = {}
    for node in nodes:
        reason = node.unavailable
        if reason is None:
            for index, constraint in enumerate(constraints):
                if not constraint.matches(node.id, node.name, node.labels):
                    reason = (_CONSTRAINT_RANK, index, str(constraint))
                    break
        if reason is None:
            passed.append(node)
        else:
            rejected[reason] = rejected.get(reason, 0) + 1
    return passed, rejected


def _place(plan: Plan, group: _Group, candidates: list[_NodeState],
           rejected: dict[_Rejection, int], *, failures: Collection[tuple[str, str]]) -> None:
    sid, cpu, memory, ports = group.service_id, group.cpu, group.memory, group.ports
    # group.shortfall(n) is None, inlined: this scan is the cost of a group.
    heap = [((sid, n.id) in failures, n.per_service.get(sid, 0), n.total, n.id, i)
            for i, n in enumerate(candidates)
            if (not cpu or n.free_cpu >= cpu) and (not memory or n.free_memory >= memory)
            and n.ports.isdisjoint(ports)]
    heapq.heapify(heap)
    # Only this group changes node state while its heap lives, and every node is re-pushed with
    # its new key after a placement, so entries are never stale: the top is always the spread
    # choice and always fits.
    for done, task in enumerate(group.tasks):
        if not heap:
            _fail(plan, group.tasks[done:], _reason(group, candidates, rejected))
            return
        top = heap[0]
        node = candidates[top[4]]
        node.add(sid, cpu, memory, ports)
        plan.placed.append(Decision(task.id, node.id))
        if group.shortfall(node) is None:
            heapq.heapreplace(heap, (top[0], node.per_service[sid], node.total, node.id, top[4]))
        else:
            heapq.heappop(heap)


def _reason(group: _Group, candidates: list[_NodeState], rejected: dict[_Rejection, int]) -> str:
    counts = dict(rejected)
    for node in candidates:
        if (shortfall := group.shortfall(node)) is not None:
            counts[shortfall] = counts.get(shortfall, 0) + 1
    if not counts:
        return "no nodes in the cluster"
    if group.pinned:
        rejection = min(counts, key=lambda r: (-r[0], r[1]))
        return _waits(group, group.pinned_name, _pinned_detail(rejection))
    parts = [_describe(r, counts[r]) for r in sorted(counts, key=lambda r: (-r[0], r[1]))]
    text = "; ".join(parts)
    return f"assigned node {group.node_id}: {text}" if group.node_id else text


def _slot_pins(tasks: Iterable[objects.Task]) -> dict[tuple[str, int], str]:
    """(service id, slot) -> the pinned node of the newest task of that slot that has one."""
    newest: dict[tuple[str, int], tuple[int, str]] = {}
    for task in tasks:
        if task.pinned_node and task.slot:
            key = (task.service_id, task.slot)
            created = task.meta.created.ToNanoseconds()
            if key not in newest or created >= newest[key][0]:
                newest[key] = (created, task.pinned_node)
    return {key: node for key, (_, node) in newest.items()}


def _waits(group: _Group, node: str, detail: str) -> str:
    return (f"waits for node {node}, which holds its volume data ({group.volume}): {detail}; "
            "x-podium-may-move: true lets it start elsewhere")


def _pinned_detail(rejection: _Rejection) -> str:
    """Why the one node a pinned task may run on does not take it."""
    rank, _, detail = rejection
    if rank == _NOT_READY:
        return "it is not ready"
    if rank == _UNAVAILABLE:
        if detail == ENGINE_NOT_ANSWERING:
            return "its engine is not answering"
        return f"it is {detail}"
    if rank == _CONSTRAINT_RANK:
        return f"it fails {detail}"
    if rank == _CPU:
        return f"it has less than {detail} free"
    if rank == _MEMORY:
        return f"it has less than {detail} memory free"
    return f"host port {detail} is in use there"


def _describe(rejection: _Rejection, count: int) -> str:
    rank, _, detail = rejection
    nodes = f"{count} node{'' if count == 1 else 's'}"
    if rank == _PORT:
        return f"host port {detail} in use ({nodes})"
    if rank == _MEMORY:
        return f"no node has {detail} memory free ({nodes})"
    if rank == _CPU:
        return f"no node has {detail} free ({nodes})"
    if rank == _CONSTRAINT_RANK:
        return f"{nodes} {'fails' if count == 1 else 'fail'} {detail}"
    return f"{nodes} {detail}"


def _fail(plan: Plan, tasks: list[objects.Task], reason: str) -> None:
    plan.unplaced.extend(Unplaced(task.id, reason) for task in tasks)
