"""The workload and the invariants of the fault lab (podium.lab.nemesis).

`Workload` runs in a thread beside the Nemesis: a steady stream of writes through the client
library given every manager (deploys of new services, scales up and down, removals), each
retried on UNAVAILABLE and unreachable managers as a user would, for at most `op_timeout`.
Each write is recorded with its outcome: acknowledged (the client saw it succeed), or
indeterminate (it failed or timed out: it may or may not have landed). Every `check_every`
seconds it also reads the services and records a violation when a service whose last write was
acknowledged a while ago (`settle`, the followers' lag) is missing, present though removed, or
at other replicas; unless the manager read from was cut off from etcd (`cut_off`): then it is a
stale read, counted apart (such a manager serves its last copy of the state, by design).

`HttpLoop` sends requests through the mesh of a real agent meanwhile (FaultLab with `mesh`):
the data path does not depend on the control plane, so every one must succeed.

`check_final` runs after the faults are healed: it waits until the cluster converges (every
service's running tasks match its replicas, every agent ready) and then checks
- every acknowledged write is there: each service is in the state of its last acknowledged
  write, or of a later indeterminate write (an indeterminate one may have landed);
- no service lost, none resurrected (present though removed by an acknowledged write);
- never two live tasks in one slot, and each service's running tasks == its replicas;
- never two managers leading at once: the terms each manager logged ("leading (term ...",
  "no longer leading"; a term cut short by a kill -9 ends at the kill), pairwise disjoint.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import pathlib
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from podium.client import AlreadyExists, InvalidArgument, NotFound, PodiumError
from podium.lab._fakeagents import FAKE_CONSTRAINT
from podium.lab.managers import ManagerGroup
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING
ABSENT = -1  # the state of a removed (or never created) service
IMAGE = "app:1"


@dataclasses.dataclass(slots=True)
class Write:
    kind: str  # deploy, scale, remove
    service: str
    replicas: int  # the state the write leads to (ABSENT for remove)
    started: float  # time.monotonic()
    ended: float = 0.0
    acknowledged: bool = False
    error: str = ""
    address: str = ""  # the manager that answered last
    at: float = 0.0  # time.time() of the answer
    attempts: list[str] = dataclasses.field(default_factory=list)  # each failure, timed
    version: int = 0  # the service's meta.version in the answer (deploy, scale)


class Workload:
    def __init__(self, group: ManagerGroup, *, seed: int, op_timeout: float = 20.0,
                 interval: float = 0.3, check_every: float = 2.0, settle: float = 5.0,
                 max_services: int = 12, prefix: str = "svc") -> None:
        self.group = group
        self.random = random.Random(seed)
        self.op_timeout = op_timeout
        self.interval = interval
        self.check_every = check_every
        self.settle = settle
        self.max_services = max_services
        # Two workloads on one cluster need prefixes of their own: a deploy answered "exists"
        # counts as this workload's own earlier attempt.
        self.prefix = prefix
        self.writes: list[Write] = []
        self.violations: list[str] = []
        self.stale_reads: list[str] = []
        # (manager address, time.time()) -> whether that manager was cut off from etcd then.
        self.cut_off: Callable[[str, float], bool] | None = None
        self.checks = 0
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    # -- the writes ------------------------------------------------------------------------

    def _live(self) -> dict[str, int]:
        """Services this workload believes exist, with the replicas last asked for."""
        state: dict[str, int] = {}
        for write in self.writes:
            state[write.service] = write.replicas
        return {name: r for name, r in state.items() if r != ABSENT}

    def _choose(self) -> Write:
        live = self._live()
        roll = self.random.random()
        now = time.monotonic()
        if not live or (roll < 0.35 and len(live) < self.max_services):
            self._next += 1
            return Write("deploy", f"{self.prefix}{self._next}", self.random.randint(1, 3), now)
        name = self.random.choice(sorted(live))
        if roll < 0.85:
            replicas = max(0, min(6, live[name] + self.random.choice((-2, -1, 1, 2))))
            return Write("scale", name, replicas, now)
        return Write("remove", name, ABSENT, now)

    def _apply(self, client: Any, write: Write) -> None:
        if write.kind == "deploy":
            spec = objects.ServiceSpec(
                name=write.service, replicas=write.replicas,
                container=objects.ContainerSpec(image=IMAGE),
                placement=objects.Placement(constraints=[FAKE_CONSTRAINT]))
            try:
                write.version = client.create_service(spec).meta.version
            except AlreadyExists:
                pass  # names are this run's own: an earlier attempt of this write landed
        elif write.kind == "scale":
            write.version = client.scale(write.service, write.replicas).meta.version
        else:
            try:
                client.remove_service(write.service)
            except NotFound:
                pass  # an earlier attempt of this removal landed

    def one(self, client: Any) -> Write:
        write = self._choose()
        self.writes.append(write)
        deadline = write.started + self.op_timeout
        while True:
            try:
                self._apply(client, write)
                write.acknowledged = True
                break
            except PodiumError as err:
                write.error = str(err)[:200]
                write.attempts.append(f"{time.time():.3f} {client.address} "
                                      f"{type(err).__name__}: {write.error}")
                if isinstance(err, (NotFound, InvalidArgument)):
                    break  # a definite refusal (the service never came): not retried
                if time.monotonic() >= deadline or self._stop.is_set():
                    break
                time.sleep(0.2)  # as a user retries a refused or unreachable write
        write.ended = time.monotonic()
        write.at, write.address = time.time(), client.address
        return write

    def _run(self) -> None:
        last_check = time.monotonic()
        with self.group.client() as client:
            client.timeout = 5.0
            while not self._stop.is_set():
                self.one(client)
                if time.monotonic() - last_check >= self.check_every:
                    last_check = time.monotonic()
                    self.check_now(client)
                self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.op_timeout + 30)

    # -- the invariants --------------------------------------------------------------------

    def expected(self) -> dict[str, set[int]]:
        """For each service: the states it may be in (its last acknowledged write's, and those
        of every later write that was not acknowledged)."""
        by_service: dict[str, list[Write]] = collections.defaultdict(list)
        for write in self.writes:
            by_service[write.service].append(write)
        allowed: dict[str, set[int]] = {}
        for name, writes in by_service.items():
            last = max((i for i, w in enumerate(writes) if w.acknowledged), default=-1)
            states = {writes[last].replicas if last >= 0 else ABSENT}
            states.update(w.replicas for w in writes[last + 1:])
            allowed[name] = states
        return allowed

    def check_now(self, client: Any) -> None:
        """Services settled for `settle` seconds are where their last acknowledged write left
        them (present or absent), as the manager the client reads from now sees them. A
        mismatch read from a manager that `cut_off` says was cut off from etcd then (or had
        just been) is a stale read, kept apart: such a manager serves reads from its copy of
        the state, as documented, however old."""
        try:
            present = {s.spec.name: s.spec.replicas for s in client.services()}
        except PodiumError:
            return  # reads unavailable for now: nothing to check
        self.checks += 1
        now, at, address = time.monotonic(), time.time(), client.address
        last: dict[str, Write] = {}
        for write in self.writes:
            last[write.service] = write
        found = []
        for name, write in last.items():
            if not write.acknowledged or now - write.ended < self.settle:
                continue
            if write.replicas == ABSENT and name in present:
                found.append(f"{name}: present after its acknowledged removal")
            elif write.replicas != ABSENT and name not in present:
                found.append(f"{name}: lost (acknowledged {write.kind} to {write.replicas})")
            elif write.replicas != ABSENT and present[name] != write.replicas:
                found.append(f"{name}: {present[name]} replicas, acknowledged "
                             f"{write.replicas} by {write.address} at {write.at:.3f}")
        stale = self.cut_off is not None and self.cut_off(address, at)
        for line in found:
            line = f"{line} (read from {address} at {at:.3f})"
            (self.stale_reads if stale else self.violations).append(line)

    def dump(self, path: pathlib.Path) -> None:
        """Every write, one JSON object a line (for reading a violation's history)."""
        with path.open("w") as out:
            for write in self.writes:
                out.write(json.dumps(dataclasses.asdict(write)) + "\n")

    def summary(self) -> dict[str, int]:
        return {"writes_count": len(self.writes),
                "acknowledged_count": sum(w.acknowledged for w in self.writes),
                "indeterminate_count": sum(not w.acknowledged for w in self.writes),
                "checks_count": self.checks, "stale_reads_count": len(self.stale_reads)}


class HttpLoop:
    """Requests through the mesh in a thread, one new connection each, until stopped; the
    failures are kept with their time (time.time())."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = self.failed = 0
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-loop", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                with urllib.request.urlopen(self.url, timeout=3) as answer:
                    answer.read()
            except OSError as err:
                self.failed += 1
                self.failures.append((time.time(), str(err)[:120]))
            self._stop.wait(0.02)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> HttpLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def converged(group: ManagerGroup) -> bool:
    """Every service runs exactly its replicas (one live task per slot), no task of a removed
    service is left running."""
    with group.client() as client:
        services = {s.id: s for s in client.services()}
        tasks = client.tasks()
    running: dict[str, int] = collections.Counter()
    for task in tasks:
        if task.status.state == RUNNING and task.desired_state == RUNNING:
            if task.service_id not in services:
                return False
            running[task.service_id] += 1
    return all(running[sid] == s.spec.replicas for sid, s in services.items())


def check_final(group: ManagerGroup, *workloads: Workload) -> list[str]:
    """The invariants once converged (see the module docstring), for the writes of every
    workload given; one line per violation."""
    violations: list[str] = []
    with group.client() as client:
        services = {s.spec.name: s for s in client.services()}
        tasks = client.tasks()
    expected = {name: allowed for w in workloads for name, allowed in w.expected().items()}
    for name, allowed in sorted(expected.items()):
        state = services[name].spec.replicas if name in services else ABSENT
        if state not in allowed:
            what = "absent" if state == ABSENT else f"{state} replicas"
            violations.append(f"{name}: {what}, expected one of "
                              f"{sorted('absent' if a == ABSENT else a for a in allowed)}")
    slots: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
    by_id = {s.id: s for s in services.values()}
    for task in tasks:
        if task.status.state == RUNNING and task.desired_state == RUNNING:
            slots[(task.service_id, task.slot)].append(task.id)
            if task.service_id not in by_id:
                violations.append(f"task {task.id} runs for a service that is gone")
    for (sid, slot), ids in sorted(slots.items()):
        if len(ids) > 1:
            name = by_id[sid].spec.name if sid in by_id else sid
            violations.append(f"{name} slot {slot}: {len(ids)} live tasks ({', '.join(ids)})")
    counts = collections.Counter(sid for sid, _ in slots)
    for sid, service in by_id.items():
        if counts[sid] != service.spec.replicas:
            violations.append(f"{service.spec.name}: {counts[sid]} running, "
                              f"{service.spec.replicas} wanted")
    return violations


def terms(log: pathlib.Path, deaths: list[float], until: float) -> list[tuple[float, float]]:
    """The terms (start, end; time.time()) a manager led, from its JSON log: a term not ended
    in the log ends at the next of its `deaths` (kill -9) after it began, else at `until`."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        message = str(event.get("message", ""))
        at = datetime.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        when = at.timestamp()
        if message.startswith("leading (term"):
            if start is not None:  # the process died leading, then led again
                spans.append((start, _death_after(start, deaths, when)))
            start = when
        elif message.startswith("no longer leading") and start is not None:
            spans.append((start, when))
            start = None
    if start is not None:
        spans.append((start, _death_after(start, deaths, until)))
    return spans


def _death_after(start: float, deaths: list[float], otherwise: float) -> float:
    return min((d for d in deaths if d >= start), default=otherwise)


def overlapping_terms(group: ManagerGroup, deaths: dict[int, list[float]],
                      until: float) -> tuple[list[str], int]:
    """Pairs of terms of different managers that overlap in time, and the number of terms."""
    spans = [(index, s, e) for index in range(len(group.ports))
             for s, e in terms(group.root / f"manager{index}.log", deaths.get(index, []), until)]
    return overlaps(spans), len(spans)


def overlaps(spans: list[tuple[int, float, float]]) -> list[str]:
    """Pairs of (manager, start, end) of different managers that overlap in time."""
    found = []
    for i, (a, a0, a1) in enumerate(spans):
        for b, b0, b1 in spans[i + 1:]:
            if a != b and a0 < b1 and b0 < a1:
                found.append(f"manager{a} led {a0:.3f}-{a1:.3f} while manager{b} led "
                             f"{b0:.3f}-{b1:.3f}")
    return found
