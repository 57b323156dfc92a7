"""Benchmark: rolling updates, automatic and manual rollback and a canary, under steady traffic
through the mesh, next to each scenario's floor and a naive all-at-once update in the same run.

    python bench/update.py [--json] [--rate 700] [--parallelism N] [--monitor S]
                           [--probe-interval 0.25] [--lead 4] [--tail 4] [--canary-hold 6]
                           [--calibrations 5] [--no-naive] [--dir DIR]

Layout: three simulated hosts (podium.lab.hosts: network namespaces, each with its own engine
and agent) and a manager; service `web`, --replicas (6) of podium/web:latest published on the
ingress port 8080 (every host's mesh serves it), with an agent-run readiness check
(`x-podium-probe` http GET /healthz on port 80 every --probe-interval, 3 retries): "ready" means
the replica's server answers. Every version runs the same command (busybox httpd serving
/www/index.html = "$VERSION $(hostname)" and /www/$HEALTH_FILE); versions differ by their
environment only. The bad version is a release that renamed its health endpoint (HEALTH_FILE=
health): its server runs and its index answers, but /healthz answers 404, so its check fails.

Traffic: two load generators (bench/_httpload.py, asyncio on uvloop, open loop at --rate
requests/s each) in the manager's network namespace, the way an outside client reaches the
hosts, sending GET / to port 8080 of every host in turn: one with a new connection per request,
one with HTTP/1.1 keep-alive connections. busybox httpd keeps no connection alive: it answers
every request with `Connection: close` and closes, so the keep-alive client opens a new connection
for each request too (counted as `server_close`); were a server to close an idle kept-alive
connection, a request that got EOF before any response byte would be retried once on a new
connection (RFC 9112 9.3.1) and counted as `retried_closed_keepalive`, never silently. Any other
error, no answer within 2 s (--timeout) or a status outside 2xx is a failed request. The traffic
runs from before the first scenario to after the last; its phases split it per scenario (a
request counts in the phase it was due in). Each phase runs --lead seconds before its scenario's
call and --tail seconds after its update ended and the old tasks are gone; the last goal
scenario's tail is lengthened when (a)-(d) would otherwise add up to fewer than 100,000 requests.

Scenarios (podium.client.Client; the settings as Compose keys), in order:
  (a) good update: VERSION v1 -> v2, until update_status COMPLETED;
  (b) bad update: v3 with its health check failing, until ROLLED_BACK (automatic);
  (c) manual rollback (Client.rollback, as `podium rollback web`: to the version before the
      current one), until ROLLED_BACK;
  (d) canary then promote: v4 with x-podium-canary count 1, until CANARY; --canary-hold seconds
      with the canary in rotation; Client.promote (`podium promote web`), until COMPLETED;
  and the baseline: the same kind of change as (a) with `order: stop-first, parallelism: 6`
  (every replica at once), its failed requests reported next to (a)'s.
Update settings: Podium's defaults (parallelism 1, start-first, monitor 5 s, failure action
rollback) unless --parallelism / --monitor are given; the rollback config gets the same.

Figures:
- requests sent and failed per scenario and mode; the generators' achieved rate, how far behind
  schedule a request started at worst, and latency (so that a generator that lags shows).
- each scenario's time, from the call (deploy, rollback; for (d) deploy, then promote, the hold
  between them left out) to update_status.completed of its terminal state (the manager's clock;
  same machine), and its `replaced` time, to the first poll (every 20 ms) that sees every slot
  done (update_status.done == total): the updater then still watches the last new task for
  `monitor` before it completes. Next to them the floor: one task's start + health time times
  the batches its settings need: (a) and (c) ceil(replicas / parallelism), (d) 1 (the canary)
  + ceil((replicas - 1) / parallelism), (b) one task's start time (created -> running) +
  retries x probe interval (its checks failing) + the batches of tasks the rollback had to start
  (0 when start-first kept the old tasks running). One task's start + health time is measured in
  the same run under the same traffic: the service is scaled to replicas + 1 and the new task
  timed from its creation (Task.meta.created, the manager's clock) to its "healthy" event (its
  status history, the agent's clock), median of --calibrations trials. As the machine is noisy,
  the `own` floor is shown too: the scenario's own new tasks' start + health times, batch by
  batch (the slowest of each batch), summed: replaced / own is the updater's own overhead.
- detection of the bad version: from its first failed check to the first poll (every 20 ms) that
  sees the update leave UPDATING. The first failed check is computed, not observed (the agent
  records health changes, not each check): the task's "running" event (when its prober starts)
  plus one probe interval, the earliest the first check can run (the prober wakes on a 0.1 s
  grid, so it may run up to 0.1 s later): detection is never understated.
- the lowest count of ready replicas in rotation during each scenario (polled every 100 ms).

Goals (the issue's): 0 failed of >= 100,000 requests over (a)-(d); detection <= monitor + 1 s;
each scenario within 1.5x its floor (judged on `replaced`; the time to the terminal state is
also shown against floor + monitor and against the floor alone). `--json` prints one JSON
object whose keys end in their units (and the table to stderr). Everything (generators,
containers, namespaces, processes) is torn down at the end, on failure and on Ctrl-C or SIGTERM.
The run is bounded: every wait has a deadline (--deadline, 120 s) and the generators stop by
themselves after 20 minutes; a run takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._backlog import BacklogWatch
from bench._updatereport import (
    GOAL_REQUESTS,
    HEALTH_PATH,
    MODES,
    PORT,
    PROBE_RETRIES,
    SERVICE,
    Run,
    Scenario,
    cpu_times,
    figures,
    table,
)
from podium.client import Client
from podium.client.compose import load_stack
from podium.lab import _system as system
from podium.lab.hosts import HostCluster
from podium.lab.local import IMAGE, eventually
from podium.rules import update as rules
from podium.v1 import objects

# The replica's server: the same command in every version (see the module docstring).
COMMAND = ('mkdir -p /www && echo "$VERSION $(hostname)" > /www/index.html'
           ' && echo ok > "/www/$HEALTH_FILE" && exec httpd -f -p 80 -h /www')
LOADGEN = pathlib.Path(__file__).resolve().parent / "_httpload.py"
GENERATOR_SECONDS = 1200  # a generator stops by itself after this, whatever happens here
POLL_S = 0.02
TASKS_POLL_S = 0.1
US = objects.UpdateStatus
STATE_NAMES = {v: k[6:] for k, v in US.State.items()}
ACTIVE = {US.STATE_UPDATING, US.STATE_ROLLING_BACK}


# -- the service ------------------------------------------------------------------------------


def compose(args: argparse.Namespace, *, version: str, broken: bool = False, canary: int = 0,
            naive: bool = False) -> str:
    """The service's Compose file for one version. Its update and rollback settings are
    Podium's defaults but for --parallelism / --monitor; the naive baseline's update replaces
    every replica at once, stop-first."""
    settings = []
    if args.parallelism is not None:
        settings.append(f"parallelism: {args.parallelism}")
    if args.monitor is not None:
        settings.append(f"monitor: {args.monitor:g}s")
    rollback = ", ".join(settings)
    if naive:
        settings = [f"parallelism: {args.replicas}", "order: stop-first",
                    *(x for x in settings if x.startswith("monitor"))]
    text = f"""services:
  {SERVICE}:
    image: {IMAGE}
    command: ["sh", "-c", {json.dumps(COMMAND)}]
    environment:
      VERSION: {version}
      HEALTH_FILE: {"health" if broken else "healthz"}
    init: true
    stop_grace_period: 2s
    ports: ["{PORT}:80"]
    x-podium-probe:
      http: {{port: 80, path: {HEALTH_PATH}}}
      interval: {args.probe_interval:g}s
      timeout: 1s
      retries: {PROBE_RETRIES}
    deploy:
      replicas: {args.replicas}
      update_config: {{{", ".join(settings)}}}
      rollback_config: {{{rollback}}}
"""
    if canary:
        text += f"    x-podium-canary: {{count: {canary}}}\n"
    return text


def spec_for(args: argparse.Namespace, version: str, *, broken: bool = False, canary: int = 0,
             naive: bool = False) -> objects.ServiceSpec:
    text = compose(args, version=version, broken=broken, canary=canary, naive=naive)
    return load_stack(text, source="bench")[0]


# -- traffic ----------------------------------------------------------------------------------


class Traffic:
    """The two generators, in the manager's namespace; see the module docstring."""

    def __init__(self, hosts: HostCluster, *, rate: float, timeout: float) -> None:
        targets = [f"{hosts.host(name).address}:{PORT}" for name in hosts.names]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        for mode in MODES:
            argv = [*system.netns_exec(hosts.mgr_netns), sys.executable, str(LOADGEN),
                    "--mode", mode, "--rate", str(rate), "--timeout", str(timeout),
                    "--seconds", str(GENERATOR_SECONDS)]
            for target in targets:
                argv += ["--target", target]
            self.procs[mode] = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, text=True,
                                                start_new_session=True)
        self.results: dict[str, Any] = {}

    def phase(self, name: str) -> None:
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.write(f"phase {name}\n")
            proc.stdin.flush()

    def stop(self) -> dict[str, Any]:
        """Ends both runs; mode -> what the generator printed."""
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
            proc.stdin = None  # communicate() would flush it
        for mode, proc in self.procs.items():
            out, _ = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} generator exited with {proc.returncode}")
            self.results[mode] = json.loads(out)
        return self.results

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


# -- watching an update -------------------------------------------------------------------------


def ts(t: Any) -> float:
    """A protobuf Timestamp in seconds since the epoch (0.0 when unset)."""
    return float(t.seconds + t.nanos / 1e9)


def in_rotation(task: objects.Task) -> bool:
    return (task.desired_state <= objects.TASK_STATE_RUNNING
            and task.status.state == objects.TASK_STATE_RUNNING and task.status.ready)


def event_time(task: objects.Task, kind: str, prefix: str) -> float | None:
    """When the task's status history first shows an event `kind` starting with `prefix`."""
    for event in task.status.history:
        if event.kind == kind and event.message.startswith(prefix):
            return ts(event.time)
    return None


@dataclass(slots=True)
class Watch:
    """What polling saw of one update, from the call to its terminal state."""

    called: float  # wall clock, just before the call
    states: list[tuple[float, str]] = field(default_factory=list)  # (seen at, state) changes
    min_ready: int = 1 << 30
    max_ready: int = 0
    left_active: float | None = None  # first poll after the call that saw it leave UPDATING
    # First poll that saw every slot on the target version and healthy (done == total), before
    # the final monitor window.
    replaced: float | None = None
    final: objects.Service | None = None
    ended: float = 0.0  # update_status.completed, else when polling saw the end

    @property
    def seconds(self) -> float:
        return self.ended - self.called

    @property
    def replaced_s(self) -> float:
        return (self.ended if self.replaced is None else self.replaced) - self.called


def watch(client: Client, w: Watch, *, until: set[int], deadline: float,
          seen: dict[str, objects.Task]) -> Watch:
    """Polls the service until its update reaches one of `until` after the call: an active
    state seen first, or a `started` at or after the call. Every task polled goes into
    `seen` (by id: its latest copy)."""
    seen_active = False
    last_tasks = 0.0
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        now = time.time()
        service = client.service(SERVICE)
        status = service.update_status
        name = STATE_NAMES.get(status.state, str(status.state))
        if not w.states or w.states[-1][1] != name:
            w.states.append((now, name))
        seen_active = seen_active or status.state in ACTIVE
        if w.left_active is None and seen_active and status.state != US.STATE_UPDATING:
            w.left_active = now
        if (w.replaced is None and status.state in ACTIVE and status.total
                and status.done == status.total):
            w.replaced = now
        if now - last_tasks >= TASKS_POLL_S:
            last_tasks = now
            tasks = client.tasks(service=SERVICE)
            seen.update((t.id, t) for t in tasks)
            ready = sum(1 for t in tasks if in_rotation(t))
            w.min_ready = min(w.min_ready, ready)
            w.max_ready = max(w.max_ready, ready)
        fresh = seen_active or ts(status.started) >= w.called - 0.001
        if status.state in until and fresh:
            w.final = service
            done = ts(status.completed)
            w.ended = done if done >= w.called else now
            return w
        time.sleep(POLL_S)
    raise TimeoutError(f"update of {SERVICE} not in "
                       f"{'/'.join(STATE_NAMES[s] for s in until)} within {deadline:g} s; "
                       f"states seen: {w.states}")


def settle(client: Client, replicas: int, *, deadline: float,
           seen: dict[str, objects.Task]) -> None:
    """Waits until exactly `replicas` tasks run, all of the service's version, and no other
    task of it runs (the old ones are stopped). Every task polled goes into `seen`."""
    def settled() -> bool:
        version = client.service(SERVICE).spec_version
        tasks = client.tasks(service=SERVICE)
        seen.update((t.id, t) for t in tasks)
        running = [t for t in tasks if t.status.state == objects.TASK_STATE_RUNNING]
        return (len(running) == replicas and all(in_rotation(t) for t in running)
                and all(t.spec_version == version for t in running))

    eventually(settled, timeout=deadline, interval=0.1, what=f"{replicas} replicas settled")


def new_tasks(client: Client, since: float) -> list[objects.Task]:
    return [t for t in client.tasks(service=SERVICE) if ts(t.meta.created) >= since]


def task_times(task: objects.Task) -> tuple[float | None, float | None]:
    """(created -> running, created -> healthy) of a task, None where it did not get there."""
    created = ts(task.meta.created)
    running = event_time(task, "state", "running")
    healthy = event_time(task, "health", "healthy")
    return (None if running is None else running - created,
            None if healthy is None else healthy - created)


# -- the run ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, hosts: HostCluster, client: Client) -> None:
        self.args = args
        self.hosts = hosts
        self.client = client
        self.traffic: Traffic | None = None
        self.backlog: BacklogWatch | None = None
        self.plan = rules.plan(spec_for(args, "v1"))
        self.rollback_plan = rules.plan(spec_for(args, "v1"), rollback=True)
        self.run = Run(self.plan, self.rollback_plan)
        self.goal_started = 0.0  # when the first scenario's traffic phase began (monotonic)
        self.tasks: dict[str, objects.Task] = {}  # every task seen, by id

    # -- helpers

    def deploy(self, spec: objects.ServiceSpec) -> None:
        _, outcome = self.client.deploy(spec)
        assert outcome != "unchanged", "the bench's spec change was not taken"

    def phase(self, name: str) -> None:
        """Starts the traffic's (and the overflow count's) next phase."""
        assert self.traffic is not None
        self.traffic.phase(name)
        if self.backlog is not None:
            self.backlog.phase(name)

    def begin(self, key: str, title: str) -> Scenario:
        """A scenario's traffic phase, --lead seconds of it before the call."""
        assert self.traffic is not None
        self.phase(key)
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        scenario = Scenario(key, title)
        self.run.scenarios.append(scenario)
        if self.goal_started == 0.0:
            self.goal_started = time.monotonic() - self.args.lead
        return scenario

    def await_update(self, called: float, until: set[int]) -> Watch:
        return watch(self.client, Watch(called), until=until, deadline=self.args.deadline,
                     seen=self.tasks)

    def finish(self, scenario: Scenario, w: Watch, since: float, plan: rules.Plan, *,
               canary: bool = False) -> None:
        """Records the scenario's outcome, waits for the old tasks to be gone, then --tail.
        Its own floor: its new tasks' created -> healthy times, in batches of the plan's
        parallelism in the order they were created, the slowest of each batch, summed."""
        assert w.final is not None
        status = w.final.update_status
        self.record_tasks()
        scenario.state = STATE_NAMES.get(status.state, str(status.state))
        scenario.message = status.message
        scenario.versions = f"{status.from_version} -> {status.to_version}"
        settle(self.client, self.args.replicas, deadline=self.args.deadline, seen=self.tasks)
        tasks = sorted(new_tasks(self.client, since), key=lambda t: ts(t.meta.created))
        ready = [h for _, h in map(task_times, tasks) if h is not None]
        scenario.task_ready_s = ready
        # A canary is a batch of its own, before the others.
        alone, rest = (ready[:1], ready[1:]) if canary else ([], ready)
        width = plan.parallelism or len(rest) or 1
        scenario.own_floor_s = sum(alone) + sum(
            max(rest[i:i + width]) for i in range(0, len(rest), width))
        time.sleep(self.args.tail)  # deliberate: traffic after the old tasks are gone
        self.record_tasks()

    def record_tasks(self) -> None:
        """Keeps every task's latest copy (the reaper deletes old ones), for tasks.json."""
        for task in self.client.tasks(service=SERVICE):
            self.tasks[task.id] = task

    def top_up(self) -> None:
        """Lengthens the last goal scenario's tail until (a)-(d) add up to GOAL_REQUESTS at
        the asked rate (at most --deadline seconds more); the report says by how much."""
        wanted = GOAL_REQUESTS * 1.01 / (2 * self.args.rate)
        extra = min(max(0.0, wanted - (time.monotonic() - self.goal_started)), self.args.deadline)
        self.run.scenarios[-1].extra["tail_extended_s"] = extra
        time.sleep(extra)  # deliberate: traffic until the goal's count is reached

    def batches(self, tasks: int, plan: rules.Plan) -> int:
        if tasks <= 0:
            return 0
        return 1 if plan.parallelism == 0 else math.ceil(tasks / plan.parallelism)

    # -- steps

    def start(self) -> None:
        """v1 running and answering through every host's mesh; traffic started."""
        self.deploy(spec_for(self.args, "v1"))
        settle(self.client, self.args.replicas, deadline=self.args.deadline, seen=self.tasks)
        for name in self.hosts.names:
            url = f"http://{self.hosts.host(name).address}:{PORT}/"

            def answers(url: str = url) -> bool:
                return self.hosts.http_get("h1", url).startswith("v1 ")

            eventually(answers, timeout=30, interval=0.2, what=f"{url} answering")
        self.traffic = Traffic(self.hosts, rate=self.args.rate, timeout=self.args.timeout)
        self.run.cpu_start, self.run.load = cpu_times(), (os.getloadavg()[0], 0.0)
        self.backlog = BacklogWatch([self.hosts.host(n).cgroup for n in self.hosts.names])
        self.phase("warmup")
        time.sleep(self.args.lead)  # deliberate: steady traffic before anything changes

    def calibrate(self) -> None:
        """One task's start + health time, under the same traffic (see the module docstring)."""
        assert self.traffic is not None
        self.phase("calibration")
        for _ in range(self.args.calibrations):
            since = time.time()
            self.client.scale(SERVICE, self.args.replicas + 1)

            def healthy_task(since: float = since) -> objects.Task | None:
                return next((t for t in new_tasks(self.client, since) if all(task_times(t))),
                            None)

            task = eventually(healthy_task, timeout=self.args.deadline, interval=0.05,
                              what="the extra task healthy")
            assert task is not None
            running, healthy = task_times(task)
            assert running is not None and healthy is not None
            self.run.calibration.append((running, healthy))
            self.client.scale(SERVICE, self.args.replicas)
            settle(self.client, self.args.replicas, deadline=self.args.deadline, seen=self.tasks)

    def good_update(self) -> None:
        s = self.begin("good_update", "(a) good update")
        called = time.time()
        self.deploy(spec_for(self.args, "v2"))
        w = self.await_update(called, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK, US.STATE_PAUSED})
        s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
        s.batches = self.batches(self.args.replicas, self.plan)
        s.floor_s = s.batches * self.run.task_s
        s.monitor_s = self.plan.monitor_s
        self.finish(s, w, called, self.plan)

    def bad_update(self) -> None:
        s = self.begin("bad_update", "(b) bad update, rolled back")
        called = time.time()
        self.deploy(spec_for(self.args, "v3", broken=True))
        bad_version = self.client.service(SERVICE).spec_version
        w = self.await_update(called, {US.STATE_ROLLED_BACK, US.STATE_COMPLETED,
                                       US.STATE_PAUSED, US.STATE_ROLLBACK_PAUSED})
        s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
        tasks = new_tasks(self.client, called)
        bad = [t for t in tasks if t.spec_version == bad_version]
        running = [r for r in (event_time(t, "state", "running") for t in bad) if r is not None]
        unhealthy = [u for u in (event_time(t, "health", "unhealthy") for t in bad)
                     if u is not None]
        first_failed = min(running) + self.args.probe_interval if running else None
        if first_failed is not None and w.left_active is not None:
            s.extra["detection_s"] = w.left_active - first_failed
        if first_failed is not None and unhealthy:
            s.extra["unhealthy_after_first_failed_check_s"] = min(unhealthy) - first_failed
        s.extra["bad_tasks_count"] = len(bad)
        left = w.left_active if w.left_active is not None else w.ended
        restarted = [t for t in tasks if t.spec_version != bad_version
                     and ts(t.meta.created) >= left - 0.1]
        s.extra["rollback_started_tasks_count"] = len(restarted)
        # Its floor: the bad task started, its checks failing `retries` times, and the tasks
        # the rollback had to start (none when the old ones kept running: start-first).
        s.batches = self.batches(len(restarted), self.rollback_plan)
        s.floor_s = (self.run.start_s + PROBE_RETRIES * self.args.probe_interval
                     + s.batches * self.run.task_s)
        s.monitor_s = self.rollback_plan.monitor_s if restarted else 0.0
        self.finish(s, w, called, self.rollback_plan)

    def manual_rollback(self) -> None:
        s = self.begin("manual_rollback", "(c) manual rollback")
        called = time.time()
        self.client.rollback(SERVICE)
        w = self.await_update(called, {US.STATE_ROLLED_BACK, US.STATE_ROLLBACK_PAUSED,
                                       US.STATE_COMPLETED})
        s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
        s.batches = self.batches(self.args.replicas, self.rollback_plan)
        s.floor_s = s.batches * self.run.task_s
        s.monitor_s = self.rollback_plan.monitor_s
        self.finish(s, w, called, self.rollback_plan)

    def canary(self) -> None:
        """Deploy with a canary, until CANARY; --canary-hold; promote, until COMPLETED. The
        hold is left out of its time (an operator's pause, not the updater's)."""
        s = self.begin("canary", "(d) canary, then promote")
        called = time.time()
        self.deploy(spec_for(self.args, "v4", canary=1))
        w = self.await_update(called, {US.STATE_CANARY, US.STATE_ROLLED_BACK, US.STATE_PAUSED,
                                       US.STATE_COMPLETED})
        s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
        s.replaced_s = s.seconds  # the canary healthy: its part is done
        s.extra["to_canary_s"] = w.seconds
        assert w.final is not None
        if w.final.update_status.state == US.STATE_CANARY:
            time.sleep(self.args.canary_hold)  # deliberate: the canary serves beside v1
            promoted = time.time()
            self.client.promote(SERVICE)
            w = self.await_update(promoted, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK,
                                             US.STATE_PAUSED})
            s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
            s.extra["promote_s"] = w.seconds
        s.batches = 1 + self.batches(self.args.replicas - 1, self.plan)
        s.floor_s = s.batches * self.run.task_s
        s.monitor_s = self.plan.monitor_s
        self.finish(s, w, called, self.plan, canary=True)

    def naive_update(self) -> None:
        s = self.begin("naive_update", "baseline: stop-first, all at once")
        called = time.time()
        self.deploy(spec_for(self.args, "v5", naive=True))
        w = self.await_update(called, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK, US.STATE_PAUSED})
        s.add(seconds=w.seconds, replaced_s=w.replaced_s, min_ready=w.min_ready)
        s.batches = 1
        s.floor_s = self.run.task_s
        s.monitor_s = self.plan.monitor_s
        self.finish(s, w, called, rules.plan(spec_for(self.args, "v5", naive=True)))


# -- the report -------------------------------------------------------------------------------


@contextmanager
def cluster(root: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(root, hosts=3) as hosts:
        # Connection-per-request load across veths: reuse TIME_WAIT ports for outgoing
        # connections in the client's and the meshes' namespaces, and a wide port range for
        # the client (see /work/shared/ENVIRONMENT.md).
        settings = ["net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000"]
        for netns in [hosts.mgr_netns, *(hosts.host(n).netns for n in hosts.names)]:
            for setting in settings:
                subprocess.run([*system.netns_exec(netns), "sysctl", "-q", "-w", setting],
                               check=True, capture_output=True, timeout=30)
        yield hosts


def run(args: argparse.Namespace, root: pathlib.Path) -> dict[str, Any]:
    started = time.monotonic()
    with (cluster(root) as hosts,
          Client(hosts.address, credentials=hosts.credentials, timeout=10) as client):
        bench = Bench(args, hosts, client)
        results: dict[str, Any] | None = None
        try:
            bench.start()
            bench.calibrate()
            bench.good_update()
            bench.bad_update()
            bench.manual_rollback()
            bench.canary()
            bench.top_up()
            if not args.no_naive:
                bench.naive_update()
            assert bench.traffic is not None
            bench.run.cpu_end = cpu_times()
            bench.run.load = (bench.run.load[0], os.getloadavg()[0])
            results = bench.traffic.stop()
            assert bench.backlog is not None
            bench.run.listen_overflows = bench.backlog.stop()
        finally:
            if bench.traffic is not None:
                bench.traffic.close()
            if bench.backlog is not None:
                bench.backlog.stop()
            if args.dir:
                write_timeline(root / "timeline.json", bench, results)
        f = figures(args, bench.run, results, time.monotonic() - started)
        f["_table"] = table(args, bench.run, f)
        return f


def write_timeline(path: pathlib.Path, bench: Bench, results: dict[str, Any] | None) -> None:
    """For --dir: every task's versions, node, slot, creation and status history, and the
    generators' output, to line slow or failed requests up with what the cluster did. Best
    effort: it runs on the way out, also after a failure, which it must not hide."""
    try:
        nodes = {n.id: n.description.name for n in bench.client.nodes()}
    except Exception as err:
        print(f"timeline without node names: {err!r}", file=sys.stderr)
        nodes = {}
    tasks = [{
        "id": t.id, "slot": t.slot, "canary": t.canary, "spec_version": t.spec_version,
        "node": nodes.get(t.node_id, t.node_id), "created": ts(t.meta.created),
        "desired": objects.TaskState.Name(t.desired_state),
        "events": [[ts(e.time), e.kind, e.message] for e in t.status.history],
    } for t in sorted(bench.tasks.values(), key=lambda t: ts(t.meta.created))]
    path.write_text(json.dumps({"tasks": tasks, "traffic": results}, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--rate", type=float, default=700.0,
                        help="requests/s of each generator (two: new connection, keep-alive)")
    parser.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    parser.add_argument("--parallelism", type=int, default=None)
    parser.add_argument("--monitor", type=float, default=None, help="seconds")
    parser.add_argument("--probe-interval", type=float, default=0.25)
    parser.add_argument("--lead", type=float, default=4.0,
                        help="seconds of traffic in each phase before its call")
    parser.add_argument("--tail", type=float, default=4.0,
                        help="seconds of traffic in each phase after the old tasks are gone")
    parser.add_argument("--canary-hold", type=float, default=6.0)
    parser.add_argument("--calibrations", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=120.0, help="per wait, seconds")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--dir", default=None, help="keep the hosts' logs here, and "
                        "timeline.json (every task's history and the traffic's phases); default: "
                        "a temporary directory, removed")
    args = parser.parse_args()
    if not (3 <= args.replicas <= 30 and 1 <= args.rate <= 5000 and 0.1 <= args.timeout <= 30
            and (args.parallelism is None or 0 <= args.parallelism <= 30)
            and (args.monitor is None or 0 <= args.monitor <= 60)
            and 0.05 <= args.probe_interval <= 5 and 0 <= args.lead <= 60
            and 0 <= args.tail <= 60 and 0 <= args.canary_hold <= 120
            and 1 <= args.calibrations <= 10 and 10 <= args.deadline <= 600):
        parser.error("3 <= --replicas <= 30, 1 <= --rate <= 5000, 0.1 <= --timeout <= 30, "
                     "0 <= --parallelism <= 30, 0 <= --monitor <= 60, 0.05 <= --probe-interval "
                     "<= 5, --lead and --tail within 0..60, 0 <= --canary-hold <= 120, "
                     "1 <= --calibrations <= 10, 10 <= --deadline <= 600")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # torn down on SIGTERM too
    try:
        if args.dir:
            f = run(args, pathlib.Path(args.dir).resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="podium-update-") as tmp:
                f = run(args, pathlib.Path(tmp) / "hosts")
    except KeyboardInterrupt:
        print("interrupted: the hosts, their containers and the load generators are gone",
              file=sys.stderr)
        return 130
    text = f.pop("_table")
    if args.json:
        print(text, file=sys.stderr)  # for people; stdout holds the JSON alone
        print(json.dumps(f))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
