"""Benchmark: rolling updates, automatic and manual rollback and a canary, under steady traffic
through the mesh, next to each scenario's floor and a naive all-at-once update in the same run.

    python bench/update.py [--json] [--rate 700] [--parallelism N] [--monitor S]
                           [--probe-interval 0.25] [--lead 4] [--tail 4] [--canary-hold 6]
                           [--calibrations 3] [--no-naive] [--dir DIR]

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
call and --tail seconds after its update ended and the old tasks are gone.

Scenarios (through podium.client.Client and the Control API), in this order:
  (a) good update: VERSION v1 -> v2, until update_status COMPLETED;
  (b) bad update: v3 with its health check failing, until ROLLED_BACK (automatic);
  (c) manual rollback (RollbackService, the previous version), until ROLLED_BACK;
  (d) canary then promote: v4 with x-podium-canary count 1, until CANARY; --canary-hold seconds
      with the canary in rotation; PromoteService, until COMPLETED;
  and the baseline: the same kind of change as (a) with `order: stop-first, parallelism: 6`
  (every replica at once), its failed requests reported next to (a)'s.
Update settings: Podium's defaults (parallelism 1, start-first, monitor 5 s, failure action
rollback) unless --parallelism / --monitor are given; the rollback config gets the same.

Figures:
- requests sent and failed per scenario and mode; achieved rate and late starts of the
  generators (so that a generator that could not keep its rate shows).
- each scenario's time: from the call (deploy, rollback, promote) to update_status.completed of
  its terminal state (the manager's clock; same machine), and its floor: one task's start +
  health time times the batches its settings need: (a) and (c) ceil(replicas / parallelism),
  (d) 1 (the canary) + ceil((replicas - 1) / parallelism) with the canary hold left out, (b) one
  task's start time (created -> running) + retries x probe interval (its checks failing) + the
  batches of tasks the rollback itself had to start (0 when start-first left the old tasks
  running). One task's start + health time is measured in the same run under the same traffic:
  the service is scaled to replicas + 1 and the new task timed from its creation (Task.meta.created,
  the manager's clock) to its "healthy" event (its status history, the agent's clock), median
  of --calibrations trials; each scenario's own new tasks are shown beside it.
- detection of the bad version: from its first failed check to the first poll (every 20 ms) that
  sees the update leave UPDATING. The first failed check is computed, not observed (the agent
  records health changes, not each check): the task's "running" event (when its prober starts)
  plus one probe interval, the earliest the first check can run (the prober wakes on a 0.1 s
  grid, so it may run up to 0.1 s later): detection is never understated.
- the lowest count of ready replicas in rotation during each scenario (polled every 100 ms).

Goals (the issue's): 0 failed of >= 100,000 requests over (a)-(d); detection <= monitor + 1 s;
each scenario within 1.5x its floor. `--json` prints one JSON object whose keys end in their
units. Everything (generators, containers, namespaces, processes) is torn down at the end,
on failure and on Ctrl-C or SIGTERM. The run is bounded: every wait has a deadline (--deadline
per scenario, 120 s) and the generators stop by themselves after 20 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.client import Client
from podium.client.compose import load_stack
from podium.lab import _system as system
from podium.lab.hosts import HostCluster
from podium.lab.local import IMAGE, eventually
from podium.rules import update as rules
from podium.v1 import control, control_grpc, objects

PORT = 8080
SERVICE = "web"
HEALTH_PATH = "/healthz"
PROBE_RETRIES = 3
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
GOAL_REQUESTS = 100_000
GOAL_RATIO = 1.5
GOAL_DETECTION_MARGIN_S = 1.0


# -- the service ------------------------------------------------------------------------------


def compose(*, version: str, health_file: str, replicas: int, interval: float) -> str:
    return f"""services:
  {SERVICE}:
    image: {IMAGE}
    command: ["sh", "-c", {json.dumps(COMMAND)}]
    environment:
      VERSION: {version}
      HEALTH_FILE: {health_file}
    init: true
    stop_grace_period: 2s
    ports: ["{PORT}:80"]
    x-podium-probe:
      http: {{port: 80, path: {HEALTH_PATH}}}
      interval: {interval}s
      timeout: 1s
      retries: {PROBE_RETRIES}
    deploy:
      replicas: {replicas}
"""


def update_config(args: argparse.Namespace, *, naive: bool = False) -> objects.UpdateConfig:
    config = rules.default_config()
    if args.parallelism is not None:
        config.parallelism = args.parallelism
    if args.monitor is not None:
        config.monitor.FromNanoseconds(int(args.monitor * 1e9))
    if naive:
        config.parallelism = args.replicas
        config.order = objects.UpdateConfig.ORDER_STOP_FIRST
    return config


def spec_for(args: argparse.Namespace, version: str, *, broken: bool = False, canary: int = 0,
             naive: bool = False) -> objects.ServiceSpec:
    text = compose(version=version, health_file="health" if broken else "healthz",
                   replicas=args.replicas, interval=args.probe_interval)
    spec = load_stack(text, source="bench")[0]
    spec.update_config.CopyFrom(update_config(args, naive=naive))
    rollback = update_config(args)
    rollback.failure_action = objects.UpdateConfig.FAILURE_ACTION_PAUSE
    spec.rollback_config.CopyFrom(rollback)
    if canary:
        spec.canary.count = canary
    return spec


# -- traffic ----------------------------------------------------------------------------------


class Traffic:
    """The two generators, in the manager's namespace; see the module docstring."""

    MODES = ("new", "keepalive")

    def __init__(self, hosts: HostCluster, *, rate: float, timeout: float) -> None:
        targets = [f"{hosts.host(name).address}:{PORT}" for name in hosts.names]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        for mode in self.MODES:
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
    final: objects.Service | None = None
    ended: float = 0.0  # update_status.completed, else when polling saw the end

    @property
    def seconds(self) -> float:
        return self.ended - self.called


def converged(service: objects.Service, tasks: list[objects.Task], replicas: int,
              since: float) -> bool:
    """Exactly `replicas` tasks run, all ready and of the service's version, one at least
    created after `since`, and no other task of the service runs."""
    running = [t for t in tasks if t.status.state == objects.TASK_STATE_RUNNING]
    return (len(running) == replicas and all(in_rotation(t) for t in running)
            and all(t.spec_version == service.spec_version for t in running)
            and any(ts(t.meta.created) >= since for t in running))


def watch(client: Client, w: Watch, *, until: set[int], deadline: float,
          replicas: int) -> Watch:
    """Polls the service until its update reaches one of `until` after the call: an active
    state seen first, or a `started` at or after the call. A manager without an updater
    (update_status never leaves NONE: every task replaced at once, the previous design) ends
    the wait when the service converged on its new version instead."""
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
        tasks: list[objects.Task] | None = None
        if now - last_tasks >= TASKS_POLL_S:
            last_tasks = now
            tasks = client.tasks(service=SERVICE)
            ready = sum(1 for t in tasks if in_rotation(t))
            w.min_ready = min(w.min_ready, ready)
            w.max_ready = max(w.max_ready, ready)
        fresh = seen_active or ts(status.started) >= w.called - 0.001
        if status.state in until and fresh:
            w.final = service
            done = ts(status.completed)
            w.ended = done if done >= w.called else now
            return w
        if (status.state == US.STATE_NONE and tasks is not None
                and converged(service, tasks, replicas, w.called)):
            w.final, w.ended = service, now
            return w
        time.sleep(POLL_S)
    raise TimeoutError(f"update of {SERVICE} not in "
                       f"{'/'.join(STATE_NAMES[s] for s in until)} within {deadline:g} s; "
                       f"states seen: {w.states}")


def settle(client: Client, replicas: int, *, deadline: float) -> None:
    """Waits until exactly `replicas` tasks run, all of the service's version, and no other
    task of it runs (the old ones are stopped)."""
    def settled() -> bool:
        return converged(client.service(SERVICE), client.tasks(service=SERVICE), replicas, 0.0)

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


@dataclass(slots=True)
class Scenario:
    key: str  # JSON key stem: good_update, bad_update, manual_rollback, canary, naive_update
    title: str
    want: str  # the terminal state expected
    seconds: float = 0.0
    floor_s: float | None = None
    batches: int = 0
    state: str = ""
    message: str = ""
    versions: str = ""
    min_ready: int = 0
    task_ready_s: list[float] = field(default_factory=list)  # its new tasks: created -> healthy
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, hosts: HostCluster, client: Client,
                 stub: Any) -> None:
        self.args = args
        self.hosts = hosts
        self.client = client
        self.stub = stub
        self.traffic: Traffic | None = None
        self.scenarios: list[Scenario] = []
        self.calibration: list[tuple[float, float]] = []  # (created->running, created->healthy)

    # -- helpers

    def deploy(self, spec: objects.ServiceSpec) -> None:
        _, outcome = self.client.deploy(spec)
        assert outcome != "unchanged", "the bench's spec change was not taken"

    def phase(self, name: str) -> None:
        assert self.traffic is not None
        self.traffic.phase(name)

    def await_update(self, called: float, until: set[int]) -> Watch:
        return watch(self.client, Watch(called), until=until, deadline=self.args.deadline,
                     replicas=self.args.replicas)

    def finish(self, scenario: Scenario, w: Watch, since: float) -> None:
        assert w.final is not None
        status = w.final.update_status
        scenario.seconds += w.seconds
        scenario.state = STATE_NAMES.get(status.state, str(status.state))
        scenario.message = status.message
        scenario.versions = f"{status.from_version} -> {status.to_version}"
        scenario.min_ready = min(scenario.min_ready or w.min_ready, w.min_ready)
        settle(self.client, self.args.replicas, deadline=self.args.deadline)
        scenario.task_ready_s = sorted(h for _, h in map(task_times, new_tasks(self.client, since))
                                       if h is not None)
        time.sleep(self.args.tail)  # deliberate: traffic after the old tasks are gone

    # -- steps

    def start(self) -> None:
        """v1 running and answering through every host's mesh; traffic started."""
        self.deploy(spec_for(self.args, "v1"))
        settle(self.client, self.args.replicas, deadline=self.args.deadline)
        for name in self.hosts.names:
            url = f"http://{self.hosts.host(name).address}:{PORT}/"

            def answers(url: str = url) -> bool:
                return self.hosts.http_get("h1", url).startswith("v1 ")

            eventually(answers, timeout=30, interval=0.2, what=f"{url} answering")
        self.traffic = Traffic(self.hosts, rate=self.args.rate, timeout=self.args.timeout)
        self.phase("warmup")
        time.sleep(self.args.lead)  # deliberate: steady traffic before anything changes

    def calibrate(self) -> None:
        """One task's start + health time, under the same traffic (see the module docstring)."""
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
            self.calibration.append((running, healthy))
            self.client.scale(SERVICE, self.args.replicas)
            settle(self.client, self.args.replicas, deadline=self.args.deadline)

    @property
    def task_s(self) -> float:
        return statistics.median(h for _, h in self.calibration)

    @property
    def start_s(self) -> float:
        return statistics.median(r for r, _ in self.calibration)

    def batches(self, tasks: int, *, rollback: bool = False) -> int:
        parallelism = rules.plan(spec_for(self.args, "v1"), rollback=rollback).parallelism
        if tasks <= 0:
            return 0
        return 1 if parallelism == 0 else math.ceil(tasks / parallelism)

    def good_update(self) -> None:
        s = Scenario("good_update", "(a) good update", "COMPLETED")
        self.phase("good_update")
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        called = time.time()
        self.deploy(spec_for(self.args, "v2"))
        w = self.await_update(called, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK, US.STATE_PAUSED})
        s.batches = self.batches(self.args.replicas)
        s.floor_s = s.batches * self.task_s
        self.finish(s, w, called)
        self.scenarios.append(s)

    def bad_update(self) -> None:
        s = Scenario("bad_update", "(b) bad update, rolled back", "ROLLED_BACK")
        self.phase("bad_update")
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        called = time.time()
        self.deploy(spec_for(self.args, "v3", broken=True))
        bad_version = self.client.service(SERVICE).spec_version
        w = self.await_update(called, {US.STATE_ROLLED_BACK, US.STATE_COMPLETED,
                                       US.STATE_PAUSED, US.STATE_ROLLBACK_PAUSED})
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
        rolled_back = [t for t in tasks if t.spec_version != bad_version
                       and w.left_active is not None and ts(t.meta.created) >= w.left_active - 1]
        s.extra["rollback_started_tasks_count"] = len(rolled_back)
        s.batches = self.batches(len(rolled_back), rollback=True)
        s.floor_s = (self.start_s + PROBE_RETRIES * self.args.probe_interval
                     + s.batches * self.task_s)
        self.finish(s, w, called)
        s.task_ready_s = []  # the bad tasks never get healthy; the rollback's are few
        self.scenarios.append(s)

    def manual_rollback(self) -> None:
        s = Scenario("manual_rollback", "(c) manual rollback", "ROLLED_BACK")
        self.phase("manual_rollback")
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        called = time.time()
        self.stub.RollbackService(control.RollbackServiceRequest(ref=SERVICE), timeout=10)
        w = self.await_update(called, {US.STATE_ROLLED_BACK, US.STATE_ROLLBACK_PAUSED,
                                       US.STATE_COMPLETED})
        s.batches = self.batches(self.args.replicas, rollback=True)
        s.floor_s = s.batches * self.task_s
        self.finish(s, w, called)
        self.scenarios.append(s)

    def canary(self) -> None:
        s = Scenario("canary", "(d) canary, then promote", "COMPLETED")
        self.phase("canary")
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        called = time.time()
        self.deploy(spec_for(self.args, "v4", canary=1))
        w = self.await_update(called, {US.STATE_CANARY, US.STATE_ROLLED_BACK, US.STATE_PAUSED,
                                       US.STATE_COMPLETED})
        s.extra["to_canary_s"] = w.seconds
        s.seconds += w.seconds
        s.min_ready = w.min_ready
        assert w.final is not None
        if w.final.update_status.state == US.STATE_CANARY:
            time.sleep(self.args.canary_hold)  # deliberate: the canary serves beside v1
            promoted = time.time()
            self.stub.PromoteService(control.PromoteServiceRequest(ref=SERVICE), timeout=10)
            w = self.await_update(promoted, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK,
                                             US.STATE_PAUSED})
            s.extra["promote_s"] = w.seconds
        s.batches = 1 + self.batches(self.args.replicas - 1)
        s.floor_s = s.batches * self.task_s
        self.finish(s, w, called)
        self.scenarios.append(s)

    def naive_update(self) -> None:
        s = Scenario("naive_update", "baseline: stop-first, all at once", "COMPLETED")
        self.phase("naive_update")
        time.sleep(self.args.lead)  # deliberate: the phase's traffic before the change
        called = time.time()
        self.deploy(spec_for(self.args, "v5", naive=True))
        w = self.await_update(called, {US.STATE_COMPLETED, US.STATE_ROLLED_BACK, US.STATE_PAUSED})
        s.batches = 1
        s.floor_s = self.task_s
        self.finish(s, w, called)
        self.scenarios.append(s)


# -- the report -------------------------------------------------------------------------------


def phase_of(results: dict[str, Any], mode: str, name: str) -> dict[str, Any]:
    return next((p for p in results[mode]["phases"] if p["phase"] == name), {})


def figures(args: argparse.Namespace, bench: Bench, results: dict[str, Any],
            wall: float) -> dict[str, Any]:
    plan = rules.plan(spec_for(args, "v1"))
    rollback_plan = rules.plan(spec_for(args, "v1"), rollback=True)
    out: dict[str, Any] = {
        "replicas_count": args.replicas,
        "hosts_count": 3,
        "parallelism_count": plan.parallelism,
        "order": "start-first" if plan.start_first else "stop-first",
        "monitor_s": plan.monitor_s,
        "rollback_parallelism_count": rollback_plan.parallelism,
        "probe_interval_s": args.probe_interval,
        "probe_retries_count": PROBE_RETRIES,
        "rate_per_mode_per_s": args.rate,
        "request_timeout_s": args.timeout,
        "task_start_health_s": round(bench.task_s, 3),
        "task_start_s": round(bench.start_s, 3),
        "task_start_health_trials_s": [round(h, 3) for _, h in bench.calibration],
    }
    goal_keys = [s.key for s in bench.scenarios if s.key != "naive_update"]
    sent = failed = 0
    for s in bench.scenarios:
        per_mode = {m: phase_of(results, m, s.key) for m in Traffic.MODES}
        s_sent = sum(p.get("sent_count", 0) for p in per_mode.values())
        s_failed = sum(p.get("failed_count", 0) + p.get("skipped_count", 0)
                       for p in per_mode.values())
        if s.key in goal_keys:
            sent += s_sent
            failed += s_failed
        out[f"{s.key}_s"] = round(s.seconds, 3)
        out[f"{s.key}_floor_s"] = None if s.floor_s is None else round(s.floor_s, 3)
        out[f"{s.key}_ratio"] = (None if not s.floor_s else round(s.seconds / s.floor_s, 2))
        out[f"{s.key}_requests_count"] = s_sent
        out[f"{s.key}_failed_requests_count"] = s_failed
        out[f"{s.key}_min_ready_count"] = s.min_ready
        out[f"{s.key}_state"] = s.state
        out[f"{s.key}_message"] = s.message
        out[f"{s.key}_versions"] = s.versions
        out[f"{s.key}_batches_count"] = s.batches
        out[f"{s.key}_task_ready_median_s"] = (round(statistics.median(s.task_ready_s), 3)
                                               if s.task_ready_s else None)
        for key, value in s.extra.items():
            out[f"{s.key}_{key}"] = round(value, 3) if isinstance(value, float) else value
        out[f"{s.key}_phases_list"] = per_mode
    out["requests_count"] = sent
    out["failed_requests_count"] = failed
    out["detection_s"] = out.get("bad_update_detection_s")
    out["detection_goal_s"] = plan.monitor_s + GOAL_DETECTION_MARGIN_S
    for mode in Traffic.MODES:
        for p in results[mode]["phases"]:
            if p["phase"] in ("warmup", "calibration"):
                out[f"{p['phase']}_{mode}_phase"] = p
    out["bench_wall_s"] = round(wall, 1)
    return out


def table(args: argparse.Namespace, bench: Bench, f: dict[str, Any]) -> str:
    lines = [
        f"update bench: 3 simulated hosts, {args.replicas} replicas of {SERVICE} ({IMAGE}), "
        f"ingress port {PORT} reached through h1, h2 and h3",
        f"update settings: parallelism {f['parallelism_count']}, order {f['order']}, "
        f"monitor {f['monitor_s']:g} s, failure action rollback; rollback: parallelism "
        f"{f['rollback_parallelism_count']}; readiness: GET {HEALTH_PATH} every "
        f"{args.probe_interval:g} s, {PROBE_RETRIES} retries",
        f"one task's start + health time: {f['task_start_health_s']:.2f} s (created -> healthy, "
        f"median of {', '.join(f'{x:.2f}' for x in f['task_start_health_trials_s'])}); "
        f"start alone {f['task_start_s']:.2f} s",
    ]
    for mode, label in (("new", "new connection per request"), ("keepalive", "keep-alive")):
        phases = [f[f"{s.key}_phases_list"][mode] for s in bench.scenarios]
        rates = [p["achieved_rate_per_s"] for p in phases if p.get("achieved_rate_per_s")]
        late = max((p.get("late_start_p99_ms") or 0 for p in phases), default=0)
        lines.append(f"traffic, {label}: {args.rate:g}/s asked, achieved "
                     f"{min(rates, default=0):.0f}-{max(rates, default=0):.0f}/s per scenario, "
                     f"late starts p99 <= {late:.1f} ms")
    ka = [f[f"{s.key}_phases_list"]["keepalive"] for s in bench.scenarios]
    lines.append(
        "keep-alive: server announced close on "
        f"{sum(p.get('server_close_count', 0) for p in ka):,} of "
        f"{sum(p.get('ok_count', 0) for p in ka):,} answers, "
        f"{sum(p.get('reused_count', 0) for p in ka):,} requests on a reused connection, "
        f"{sum(p.get('retried_closed_keepalive_count', 0) for p in ka):,} retried on a closed "
        "keep-alive connection")
    lines.append("")
    head = (f"{'scenario':36}{'requests':>10}{'failed':>8}{'new/ka':>12}{'time s':>9}"
            f"{'floor s':>9}{'ratio':>7}  {'min ready':>9}  result")
    lines.append(head)
    for s in bench.scenarios:
        k = s.key
        per = f[f"{k}_phases_list"]
        split = "/".join(str(per[m].get("failed_count", 0)) for m in Traffic.MODES)
        ratio = f[f"{k}_ratio"]
        lines.append(
            f"{s.title:36}{f[f'{k}_requests_count']:>10,}{f[f'{k}_failed_requests_count']:>8,}"
            f"{split:>12}{s.seconds:>9.2f}{(s.floor_s or 0):>9.2f}"
            f"{(f'{ratio:.2f}' if ratio else '-'):>7}  {s.min_ready:>9}  {s.state} "
            f"({s.versions})")
    lines.append("")
    ok_failed = f["failed_requests_count"] == 0
    ok_count = f["requests_count"] >= GOAL_REQUESTS
    lines.append(f"failed requests over (a)-(d): {f['failed_requests_count']:,} of "
                 f"{f['requests_count']:,} (goal 0 of >= {GOAL_REQUESTS:,}: "
                 f"{'met' if ok_failed and ok_count else 'NOT met'})")
    if "naive_update_failed_requests_count" in f:
        lines.append("baseline, stop-first all at once: "
                     f"{f['naive_update_failed_requests_count']:,} failed of "
                     f"{f['naive_update_requests_count']:,}")
    ratios = [f[f"{s.key}_ratio"] for s in bench.scenarios if s.key != "naive_update"]
    if ratios and all(r is not None for r in ratios):
        worst = max(ratios)
        lines.append(f"slowest scenario: {worst:.2f}x its floor (goal <= {GOAL_RATIO:g}x: "
                     f"{'met' if worst <= GOAL_RATIO else 'NOT met'})")
    if f["detection_s"] is not None:
        det, goal = f["detection_s"], f["detection_goal_s"]
        after = f.get("bad_update_unhealthy_after_first_failed_check_s")
        verdict = f"; the agent's verdict (unhealthy) came {after:.2f} s after it" if after else ""
        lines.append(f"bad version detected {det:.2f} s after its first failed check (goal <= "
                     f"monitor + 1 s = {goal:g} s: {'met' if det <= goal else 'NOT met'}){verdict}")
    for s in bench.scenarios:
        if s.task_ready_s:
            lines.append(f"{s.title}: its new tasks created -> healthy "
                         f"{', '.join(f'{x:.2f}' for x in s.task_ready_s)} s")
    failures = [(s.title, m, f[f"{s.key}_phases_list"][m]) for s in bench.scenarios
                for m in Traffic.MODES if f[f"{s.key}_phases_list"][m].get("failed_count")]
    for title, mode, p in failures:
        lines.append(f"{title}, {mode}: {p['failure_kinds']}, first: {p['failure_samples'][:3]}")
    lines.append(f"bench wall time {f['bench_wall_s']:.0f} s")
    return "\n".join(lines)


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
    with cluster(root) as hosts, Client(hosts.address, timeout=10) as client, \
            grpc.insecure_channel(hosts.address) as channel:
        bench = Bench(args, hosts, client, control_grpc.ControlStub(channel))
        try:
            bench.start()
            bench.calibrate()
            bench.good_update()
            if bench.scenarios[-1].state != "NONE":
                bench.bad_update()
                bench.manual_rollback()
                bench.canary()
                if not args.no_naive:
                    bench.naive_update()
            else:  # no updater: (a) was the previous design's redeploy; nothing else applies
                bench.scenarios[-1].title = "(a) redeploy without an updater"
            assert bench.traffic is not None
            results = bench.traffic.stop()
        finally:
            if bench.traffic is not None:
                bench.traffic.close()
        f = figures(args, bench, results, time.monotonic() - started)
        f["_table"] = table(args, bench, f)
        return f


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
    parser.add_argument("--calibrations", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=120.0, help="per wait, seconds")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--dir", default=None, help="keep the hosts' logs here (default: a "
                        "temporary directory, removed)")
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
    if args.dir:
        f = run(args, pathlib.Path(args.dir).resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="podium-update-") as tmp:
            f = run(args, pathlib.Path(tmp) / "hosts")
    text = f.pop("_table")
    print(json.dumps(f) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
