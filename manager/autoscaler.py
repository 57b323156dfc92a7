"""Autoscaler: sets an autoscaled service's replica count from the load its agents stream.

Every `period` (the agents' load period) it reads the store and the LoadBook and, per service
with `spec.autoscale`, totals each target's figure over the ready replicas: cpu (cores used over
the replica's cpus limit, else over one core) and memory (its share of the memory limit) from
the tasks' own figures; requests per second and open connections from the mesh of every node.
podium.manager.scaling turns those into a count; a change is one store write of spec.replicas
and autoscale_status (the orchestrator and the scheduler do the rest, as for `podium scale`).

Figures are missing when a ready replica has none yet or its node's reports stopped, and, for
the mesh's figures, when any node that is not down stopped reporting (its share of the traffic
is unknown) or its mesh counts nothing (the kernel data path), or when a down node still holds
one of the service's tasks. Missing figures add
nothing when scaling up and hold every scale-down; so do replicas that are not ready yet, tasks
the scheduler could not place, and an update in progress (a rolling update moves tasks; the
count stays the autoscaler's, and the updater reads it as it goes). New tasks that stay pending
with the scheduler's reason mean the cluster is at capacity: the autoscaler says so in
autoscale_status.at_capacity and asks for no more.

It keeps in memory only the recent recommendations (for the scale-down window) and what it
last saw (for reads: desired, holding, the current figures); a restarted manager starts a new
window, so it makes no scale-down before it has watched one, and no scale-up before figures
arrive.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from podium.manager import ids
from podium.manager.loadbook import LoadBook
from podium.manager.orchestrator import WAITING
from podium.manager.scaling import Decision, Figure, Recommendation, Stabilizer, recommend
from podium.manager.store import ReadTx, Store, WriteTx
from podium.rules import autoscale as rules
from podium.rules.names import task_name
from podium.rules.taskstate import is_live
from podium.rules.update import UNSETTLED
from podium.v1 import objects

log = logging.getLogger(__name__)

RUNNING = objects.TASK_STATE_RUNNING
PENDING = objects.TASK_STATE_PENDING
DOWN = objects.NodeStatus.STATE_DOWN
# A node whose last load report is older than this many periods is silent.
STALE_PERIODS = 3


@dataclass(slots=True)
class _Watched:
    stabilizer: Stabilizer
    seen: objects.AutoscaleStatus = field(default_factory=objects.AutoscaleStatus)


@dataclass(slots=True)
class _Inputs:
    ready: int
    figures: list[Figure]
    hold_down: str
    at_capacity: str


class Autoscaler:
    name = "autoscaler"

    def __init__(self, *, store: Store, load: LoadBook, period: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._load = load
        self._period = period
        self._clock = clock
        self._watched: dict[str, _Watched] = {}
        # Replica changes written, by direction ("up", "down"), since the manager started.
        self.decisions: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("autoscaler pass failed")
            await asyncio.sleep(self._period)

    def fill(self, service: objects.Service) -> None:
        """Adds what it last saw (desired, holding, figures) to a copy of `service` for a read."""
        watched = self._watched.get(service.id)
        if watched is not None and rules.enabled(service.spec):
            service.autoscale_status.MergeFrom(watched.seen)

    async def tick(self) -> None:
        now = self._clock()
        view = self._store.view()
        services = [s for s in view.services() if rules.enabled(s.spec)]
        for gone in self._watched.keys() - {s.id for s in services}:
            del self._watched[gone]
        if not services:
            return  # nothing to scale: the figures of thousands of nodes are not gathered
        nodes = {n.id: n for n in view.nodes()}
        # Nodes whose share of the mesh's traffic is unknown: silent, or counting nothing.
        unheard = [n.description.name or n.id for n in nodes.values() if n.status.state != DOWN
                   and (self._silent(n.id, now) or not self._load.mesh_counted(n.id))]
        rates, connections = self._load.request_rates(), self._load.connections()
        for service in services:
            watched = self._watched.setdefault(service.id, _Watched(Stabilizer(now)))
            settings = rules.settings(service.spec.autoscale)
            current = int(service.spec.replicas)
            inputs = self._inputs(view, service, nodes, unheard, rates, connections, now)
            rec = recommend(settings, current, inputs.ready, inputs.figures)
            decision = watched.stabilizer.decide(
                now, settings, current, rec,
                hold_up=f"at capacity: {inputs.at_capacity}" if inputs.at_capacity else "",
                hold_down=inputs.hold_down)
            watched.seen = _seen(rec, decision, inputs)
            if decision.count != current or inputs.at_capacity != \
                    service.autoscale_status.at_capacity:
                written = await self._store.update(
                    functools.partial(_write, seen=service, decision=decision,
                                      at_capacity=inputs.at_capacity))
                if written and decision.count != current:
                    self.decisions["up" if decision.count > current else "down"] += 1

    def _silent(self, node_id: str, now: float) -> bool:
        reported = self._load.reported_at(node_id)
        return reported is None or now - reported > STALE_PERIODS * self._period

    def _inputs(self, view: ReadTx, service: objects.Service, nodes: dict[str, objects.Node],
                unheard: list[str], rates: dict[str, float], connections: dict[str, int],
                now: float) -> _Inputs:
        live = [t for t in view.tasks_of_service(service.id) if is_live(t)]
        ready = [t for t in live if t.status.state == RUNNING and t.status.ready]
        policy = service.spec.autoscale
        held: list[str] = []
        if service.update_status.state in UNSETTLED:
            held.append("an update is in progress")
        pending = [t for t in live if t.status.state == PENDING
                   and t.status.message not in ("", WAITING)]
        on_down = sorted({nodes[t.node_id].description.name or t.node_id for t in live
                          if t.node_id in nodes and nodes[t.node_id].status.state == DOWN})
        mesh_missing = unheard + on_down
        unmeasured = [task_name(t) for t in ready
                      if self._load.task_load(t.id) is None or self._silent(t.node_id, now)]
        figures: list[Figure] = []
        missing: dict[str, str] = {}  # why figures are missing, by where they come from
        for name in rules.TARGETS:
            target = getattr(policy, name)
            if target <= 0:
                continue
            if name in ("cpu", "memory"):
                total = sum(_share(name, t, self._load) for t in ready
                            if task_name(t) not in unmeasured)
                figures.append(Figure(name, target, total, bool(unmeasured)))
                if unmeasured:
                    missing["tasks"] = f"no figures yet for {', '.join(unmeasured)}"
            else:
                counts = rates if name == "requests_per_second" else connections
                total = float(sum(counts.get(t.id, 0) for t in ready))
                figures.append(Figure(name, target, total, bool(mesh_missing)))
                if mesh_missing:
                    missing["mesh"] = (f"no figures from node{'s' * (len(mesh_missing) > 1)} "
                                       f"{', '.join(mesh_missing)}")
        held.extend(missing.values())
        starting = [task_name(t) for t in live if t not in ready and t not in pending]
        if starting:
            held.append(f"{', '.join(starting[:3])} not ready")
        return _Inputs(len(ready), figures, "; ".join(held),
                       pending[0].status.message if pending else "")


def _share(name: str, task: objects.Task, load: LoadBook) -> float:
    figures = load.task_load(task.id)
    if figures is None:
        return 0.0
    if name == "memory":
        return figures.memory_share
    cpus = task.spec.resources.limits.nano_cpus / 1e9
    return figures.cpu_cores / (cpus or 1.0)


def _seen(rec: Recommendation, decision: Decision, inputs: _Inputs) -> objects.AutoscaleStatus:
    seen = objects.AutoscaleStatus(desired=rec.count, holding=decision.holding)
    for figure in inputs.figures:
        seen.metrics.add(name=figure.name, target=figure.target,
                         current=rec.averages.get(figure.name, 0.0), partial=figure.missing)
    return seen


def _write(tx: WriteTx, seen: objects.Service, decision: Decision, at_capacity: str) -> bool:
    """Whether it wrote."""
    service = tx.get_service(seen.id)
    if service is None or not rules.enabled(service.spec) \
            or service.spec.replicas != seen.spec.replicas:
        return False  # changed meanwhile: the next pass decides again
    status = service.autoscale_status
    status.at_capacity = at_capacity
    if decision.count != service.spec.replicas:
        before = int(service.spec.replicas)
        service.spec.replicas = decision.count
        status.last_decision = f"{service.spec.name} {before}→{decision.count}: {decision.reason}"
        status.last_time.CopyFrom(ids.timestamp())
        status.from_replicas = before
        status.to_replicas = decision.count
        log.info("autoscale %s", status.last_decision)
    tx.update(service)
    return True
