"""Benchmark: one manager under many simulated agents, each on its own real gRPC session, with
mutual TLS (the design) next to plaintext (the previous design) in the same run.

    python bench/many_agents.py [--json] [--agents 1000] [--window 60] [--processes 4]
                                [--design both|tls|plaintext] [--tasks-per-agent 1]
                                [--heartbeats-per-second 1500] [--no-phases]
                                [--phases status,burst,restart]

Agents are podium.agent.Agent instances with the in-memory FakeExecutor, split over --processes
worker processes (at niceness 10: the manager, which the bench measures, comes first on the
shared cores, as it would on its own host); each holds its own channel to the manager,
heartbeats at the period the manager gives it and streams load. With TLS, every agent first
joins at once: its own key, a signing request over the join port with the token, then its
session with its node certificate.
--tasks-per-agent services of one replica per agent give them work. Over --window seconds the
bench counts nodes that left READY (each a node wrongly declared suspect or down: every agent
stays healthy) and measures the manager's cpu share and RSS (and the RSS the tasks added, per
task); the manager idle, with no agent, is measured first. Then, unless --no-phases:
- status changes: 200 containers crash on the agents, paced over ~20 s; the time from each crash
  to WatchEvents showing its task restarting or failed (p50, p99);
- a burst: a new service of 10,000 replicas, until all run;
- a reconnect storm: the manager is killed (-9) and started again on the same data; the time
  until every node is READY again with a session to the new manager, and the registrations
  that failed meanwhile (sessions the agents lost, beyond the one to the killed manager), and
  the nodes the restarted manager took out of READY until RESTART_SETTLE_S after that.
--phases picks some of them (comma-separated: status, burst, restart).
For a post-mortem: KEEP_MANAGER_LOG=PATH keeps the manager's log (and PATH.lag, its loop stalls);
BENCH_PROFILE=PATH samples the manager's main thread (either design), written as PATH.PID at its end
and each worker's as PATH.simN (bench/_sampler.py reads them);
KEEP_AGENT_LOGS=DIR writes each worker's agents' log there (DIR/simN.log); with BENCH_PROFILE,
kill -USR1 of the plaintext manager writes PATH.PID.census (what its collector tracks, by type),
and the profiles start again (kill -USR2) when the burst begins;
BENCH_GC_THRESHOLD=A,B,C sets the plaintext manager's collector thresholds (an experiment).
The plaintext manager is the same code with TLS off (`Manager(plaintext=True)`, which only
in-process tests and this baseline use: the daemon has no such flag).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import grpc

from bench._proc import cpu_seconds, status_value
from podium.lab.local import eventually, free_port, secure_channel
from podium.v1 import control, control_grpc, objects

REPO = pathlib.Path(__file__).resolve().parents[1]
PHASES = ("status", "burst", "restart")
WORKER_NICENESS = 10
# After the restart storm, how long the bench goes on watching for nodes taken out of READY.
RESTART_SETTLE_S = 10.0

# The previous design's manager: plaintext, same code otherwise.
PLAIN_MANAGER = """
import asyncio, gc, logging, os, pathlib, signal, sys, time
from podium.manager.manager import Manager
from podium.rules import daemon

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

async def main():
    # The bench's probe: every stall of the loop over 50 ms, appended to a file (time, seconds,
    # "loop"), and every pause of the cyclic collector over 10 ms (time, seconds, "gc").
    out = open(sys.argv[4], "a", buffering=1)
    began = [0.0]

    def collecting(phase, info):
        if phase == "start":
            began[0] = time.perf_counter()
        elif (took := time.perf_counter() - began[0]) > 0.01:
            out.write(f"{time.time()} {took} gc\\n")
    gc.callbacks.append(collecting)

    async def watch_lag():
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            late = loop.time() - before - 0.02
            if late > 0.05:
                out.write(f"{time.time()} {late} loop\\n")
    lagging = asyncio.get_running_loop().create_task(watch_lag())
    if os.environ.get("BENCH_GC_THRESHOLD"):  # an experiment: the collector's thresholds
        gc.set_threshold(*map(int, os.environ["BENCH_GC_THRESHOLD"].split(",")))
    sampler = None
    if os.environ.get("BENCH_PROFILE"):  # where the manager's time goes: see bench/_sampler.py
        sys.path.insert(0, os.environ["BENCH_ROOT"])
        from bench._sampler import Sampler
        sampler = Sampler(pathlib.Path(f"{os.environ['BENCH_PROFILE']}.{os.getpid()}"))
        sampler.start()

        def census():  # kill -USR1: what the collector tracks, by type
            import collections
            counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
            pathlib.Path(f"{os.environ['BENCH_PROFILE']}.{os.getpid()}.census").write_text(
                f"{gc.get_stats()} {gc.get_count()} frozen {gc.get_freeze_count()}\\n"
                + "\\n".join(f"{n} {name}" for name, n in counts.most_common(40)) + "\\n")
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, census)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, sampler.reset)
    await daemon.serve_until_signalled(
        Manager(listen=sys.argv[1], data_dir=sys.argv[2], plaintext=True,
                heartbeats_per_second=float(sys.argv[3])))
    lagging.cancel()
    if sampler is not None:
        sampler.stop()

asyncio.run(main())
"""

# With BENCH_PROFILE, the TLS design's daemon runs under the same sampler (written as PATH.PID,
# started again by kill -USR2): the daemon's own `main` with its arguments.
PROFILED_DAEMON = """
import os, pathlib, runpy, signal, sys
sys.path.insert(0, os.environ["BENCH_ROOT"])
from bench._sampler import Sampler
sampler = Sampler(pathlib.Path(f"{os.environ['BENCH_PROFILE']}.{os.getpid()}"))
sampler.start()
signal.signal(signal.SIGUSR2, lambda *_: sampler.reset())
sys.argv[0] = "podium.manager"
try:
    runpy.run_module("podium.manager", run_name="__main__")
finally:
    sampler.stop()
"""


class _SessionLosses(logging.Handler):
    """Keeps the agents' "session to X lost: CODE" warnings: (wall-clock time, code)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[tuple[float, str]] = []
        self.examples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("session to ") and isinstance(record.args, tuple):
            # A connection refused (nobody listening yet) is not a registration that failed.
            if "Connection refused" not in message:
                self.seen.append((record.created, str(record.args[1])))
                self.examples.append(message)

    def since(self, moment: float) -> dict[str, int]:
        codes: dict[str, int] = {}
        for at, code in self.seen:
            if at >= moment:
                codes[code] = codes.get(code, 0) + 1
        return codes


async def run_agents(manager: str, join: str, token: str, root: pathlib.Path, prefix: str,
                     count: int, lifetime: float) -> None:
    """One worker process's agents. Commands on stdin, answers as JSON lines on stdout:
    `crash N GAP` crashes N running containers GAP seconds apart (each `{"task", "t"}` with the
    wall-clock time of the crash, then `{"crashes_done"}`); `losses T` answers
    `{"losses": {code: count}}`, the sessions lost since wall-clock time T."""
    from podium.agent import session as agent_session
    from podium.agent.agent import Agent
    from podium.agent.certificate import NodeCertificate
    from podium.agent.sampler import LoadSampler
    from podium.lab.fakeexec import FakeExecutor
    from podium.rules.certs import JoinToken

    # Each simulated agent on a connection of its own, as on a host of its own: the channels of
    # one process would otherwise share one connection per target (gRPC's global subchannel
    # pool), where a worker that reads late holds up the messages of all its agents at once.
    agent_session.CHANNEL_OPTIONS.append(("grpc.use_local_subchannel_pool", 1))
    # The host's own figures (/proc/stat, /proc/meminfo) are read once a second for all the
    # agents of this process, as one agent on its own host reads them once a period: read by
    # each of hundreds of agents, they cost this process a fifth of its time.
    sample_node = LoadSampler._sample_node
    host: list[Any] = [0.0, None]  # when read, what was read

    def shared_sample(sampler: LoadSampler) -> Any:
        now = time.monotonic()
        if host[1] is None or now - host[0] >= 1.0:
            host[:] = [now, sample_node(sampler)]
        return host[1]
    LoadSampler._sample_node = shared_sample  # type: ignore[method-assign]
    if os.environ.get("BENCH_PROFILE"):
        from bench._sampler import Sampler
        sampler = Sampler(pathlib.Path(f"{os.environ['BENCH_PROFILE']}.{prefix}"))
        sampler.start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, sampler.reset)
    losses = _SessionLosses()
    logging.getLogger("podium.agent.session").addHandler(losses)
    if os.environ.get("KEEP_AGENT_LOGS"):  # for a post-mortem: each worker's session log
        into = logging.FileHandler(pathlib.Path(os.environ["KEEP_AGENT_LOGS"]) / f"{prefix}.log")
        into.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logging.getLogger("podium.agent").addHandler(into)
        logging.getLogger("podium.agent").setLevel(logging.INFO)
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    certificates: list[NodeCertificate | None] = [None] * count
    if token != "-":
        certificates = [NodeCertificate(data_dir=root / name, node_id=name, manager=manager,
                                        join_address=join, token=JoinToken.parse(token))
                        for name in names]
        started = time.monotonic()
        await asyncio.gather(*(c.ensure_with_retries() for c in certificates if c))
        print(f"{prefix}: {count} agents joined in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
    executors = [FakeExecutor() for _ in names]
    agents = [Agent(manager=manager, name=name, node_id=name, executor=executor,
                    certificate=certificate)
              for name, executor, certificate in zip(names, executors, certificates, strict=True)]
    for agent in agents:
        await agent.start()
    # Hundreds of agents share this process, so a full collection walks hundreds of agents'
    # objects and stalls all of them at once (0.5 s and more), which one agent on its own host
    # never sees: what they hold from here on is left out of the cyclic collector's scans.
    gc.freeze()
    collecting = [0.0, 0.0]  # when the running collection started, the longest one (s)

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collecting[1] = max(collecting[1], time.perf_counter() - collecting[0])
    gc.callbacks.append(timed)

    def answer(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    done: set[str] = set()  # tasks crashed already: each is measured once

    async def crash(n: int, gap: float) -> None:
        for _ in range(n):
            running = [(e, c) for e in random.sample(executors, min(20, len(executors)))
                       for c in e._containers.values() if c.running]
            if running:
                executor, state = random.choice(running)
                executor.crash(state.container_id)
                done.add(state.task_id)
                answer({"task": state.task_id, "t": time.time()})
            await asyncio.sleep(gap)
        answer({"crashes_done": n})

    loop = asyncio.get_running_loop()
    lag = [0.0]  # the longest the worker's own loop was late since last asked (`lag`)

    async def watch_lag() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lag[0] = max(lag[0], loop.time() - before - 0.05)

    lagging = loop.create_task(watch_lag())
    commands: asyncio.Queue[str] = asyncio.Queue()
    crashing: set[asyncio.Task[None]] = set()
    threading.Thread(target=lambda: [loop.call_soon_threadsafe(commands.put_nowait, line)
                                     for line in sys.stdin], daemon=True).start()
    try:
        async with asyncio.timeout(lifetime):  # bounded: the parent stops us sooner
            while True:
                words = (await commands.get()).split()
                if words[:1] == ["crash"]:
                    crashing.add(loop.create_task(crash(int(words[1]), float(words[2]))))
                elif words[:1] == ["lag"]:
                    answer({"lag": lag[0], "gc": collecting[1]})
                    lag[0] = collecting[1] = 0.0
                elif words[:1] == ["losses"]:
                    answer({"losses": losses.since(float(words[1])),
                            "examples": losses.examples[-3:]})
    except TimeoutError:
        pass
    finally:
        lagging.cancel()
        for agent in agents:
            await agent.stop()


def count_transitions(channel: grpc.Channel, stop: threading.Event, seen: list[str]) -> None:
    """Follows node events; records each node that left READY."""
    left = (objects.NodeStatus.STATE_SUSPECT, objects.NodeStatus.STATE_AGENT_DOWN,
            objects.NodeStatus.STATE_DOWN)
    call = control_grpc.ControlStub(channel).WatchEvents(
        control.WatchEventsRequest(kinds=["node"]))
    try:
        for event in call:
            if stop.is_set():
                break
            if event.node.status.state in left:
                seen.append(f"{event.node.description.name} "
                            f"{objects.NodeStatus.State.Name(event.node.status.state)}")
    except grpc.RpcError:
        pass  # cancelled at the end, or the manager was killed


def failures_seen(channel: grpc.Channel, stop: threading.Event,
                  seen: dict[str, float]) -> grpc.Future:
    """Follows task events; records when each task was first seen failed, restarting or
    restarted after its container exited (wall clock)."""
    call = control_grpc.ControlStub(channel).WatchEvents(
        control.WatchEventsRequest(kinds=["task"]))

    def follow() -> None:
        try:
            for event in call:
                # Restarting, failed, or (the agent's reports of one task coalesce while it
                # lags) already restarted: each task the bench crashes had not restarted before.
                status = event.task.status
                if status.state == objects.TASK_STATE_FAILED or status.restarts \
                        or status.message.startswith("restarting"):
                    seen.setdefault(event.task.id, time.time())
                if stop.is_set():
                    break
        except grpc.RpcError:
            pass
    threading.Thread(target=follow, daemon=True).start()
    return call


def cpu_share(pid: int, window: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)  # the measurement window itself, not a wait for a condition
    return 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


class Workers:
    """The agents' worker processes: commands to their stdin, JSON answers from their stdout."""

    def __init__(self, argv_of: list[list[str]]) -> None:
        self.processes = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True) for argv in argv_of]
        self.answers: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        for process in self.processes:
            threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.answers.append(json.loads(line))

    def tell(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()

    def take(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            taken = [a for a in self.answers if key in a]
            self.answers = [a for a in self.answers if key not in a]
        return taken

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(design: str, agents: int, window: float, processes: int, *, tasks_per_agent: int,
            per_second: float, phases: set[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        root = pathlib.Path(tmp)
        address = f"127.0.0.1:{free_port()}"
        join = f"127.0.0.1:{free_port()}"
        credentials = root / "admin.credentials"
        if design == "tls":
            command = [sys.executable, *(("-c", PROFILED_DAEMON) if os.environ.get(
                "BENCH_PROFILE") else ("-m", "podium.manager")), "--listen", address,
                       "--join-listen", join, "--admin-credentials", str(credentials),
                       "--metrics-listen", "off", "--dashboard", "off",
                       "--heartbeats-per-second", str(per_second),
                       "--data-dir", str(root / "manager")]
        else:
            command = [sys.executable, "-c", PLAIN_MANAGER, address, str(root / "manager"),
                       str(per_second), str(root / "manager.lag")]

        def start_manager() -> subprocess.Popen[bytes]:
            with open(root / "manager.log", "ab") as log:
                return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "BENCH_ROOT": str(REPO)})

        def connect() -> grpc.Channel:
            options = [("grpc.max_receive_message_length", 256 << 20)]
            if design == "tls":
                eventually(credentials.exists, timeout=30, what="manager up")
                made = secure_channel(address, credentials, aio=False, options=options)
            else:
                made = grpc.insecure_channel(address, options=options)
            # In a reconnect storm the bench's connection waits in line with 5,000 agents'.
            grpc.channel_ready_future(made).result(timeout=180)
            return made

        manager = start_manager()
        workers: Workers | None = None
        stop = threading.Event()
        seen: list[str] = []
        channel: grpc.Channel | None = None
        try:
            channel = connect()
            api = control_grpc.ControlStub(channel)
            token = api.GetJoinToken(control.GetJoinTokenRequest()).token \
                if design == "tls" else "-"

            def ready(since: float = 0.0) -> int:
                """Nodes READY (with a session opened at wall-clock time `since` or later:
                a restarted manager lists the nodes its store holds as READY until they
                are found missing, which says nothing of their sessions)."""
                nodes = api.ListNodes(control.ListNodesRequest(), timeout=60).nodes
                return sum(n.status.state == objects.NodeStatus.STATE_READY
                           and n.status.timestamp.ToNanoseconds() >= since * 1e9
                           for n in nodes)

            def running(service: str) -> int:
                tasks = api.ListTasks(control.ListTasksRequest(service=service), timeout=120)
                return sum(t.status.state == objects.TASK_STATE_RUNNING for t in tasks.tasks)

            def create(name: str, replicas: int) -> None:
                spec = objects.ServiceSpec(name=name, replicas=replicas)
                spec.container.image = "fake/app:1"
                api.CreateService(control.CreateServiceRequest(spec=spec), timeout=60)

            def all_running(wanted: dict[str, int]) -> bool:
                for name in [n for n, count in wanted.items() if count]:
                    if running(name) < wanted[name]:
                        return False
                    wanted[name] = 0  # done: not listed again
                return True

            figures["manager_idle_cpu_share_pct"] = round(cpu_share(manager.pid, 5.0), 1)
            lifetime = window + 900
            per = -(-agents // processes)
            started = time.monotonic()
            workers = Workers([
                [sys.executable, __file__, "--worker", address, join, token, tmp, f"sim{p}",
                 str(min(per, agents - p * per)), str(lifetime)] for p in range(processes)])
            eventually(lambda: ready() == agents, timeout=300, interval=0.5,
                       what="all agents ready")
            figures["all_ready_after_s"] = round(time.monotonic() - started, 1)
            rss_without_tasks = status_value(manager.pid, "VmRSS") / 1024
            # One service per task an agent runs, each with a replica per agent: the lists
            # the bench polls stay a few MB each.
            wanted = {f"sim{k}": agents for k in range(tasks_per_agent)}
            started = time.monotonic()
            for name, replicas in wanted.items():
                create(name, replicas)
            eventually(lambda: all_running(wanted), timeout=900, interval=2,
                       what="every replica running")
            figures["all_running_after_s"] = round(time.monotonic() - started, 1)
            follower = threading.Thread(target=count_transitions, args=(channel, stop, seen),
                                        daemon=True)
            follower.start()
            figures["manager_cpu_share_pct"] = round(cpu_share(manager.pid, window), 1)
            rss = status_value(manager.pid, "VmRSS") / 1024
            figures["manager_rss_mb"] = round(rss, 1)
            tasks = agents * tasks_per_agent
            figures["memory_per_task_kb"] = round((rss - rss_without_tasks) * 1024 / tasks, 2)
            if "status" in phases:
                began = time.time()
                figures.update(status_latency(channel, workers, processes))
                figures["manager_worst_loop_lag_ms"] = worst_lag(root / "manager.lag", began)
                figures["manager_worst_gc_pause_ms"] = worst_lag(root / "manager.lag", began,
                                                                 "gc")
            if "burst" in phases:
                if os.environ.get("BENCH_PROFILE"):
                    # The profiles from here on are the burst's (and what follows it).
                    for pid in [manager.pid, *(w.pid for w in workers.processes)]:
                        os.kill(pid, signal.SIGUSR2)
                figures.update(burst(api, create))
            figures["wrongly_not_ready_count"] = len(seen)
            figures["wrongly_not_ready"] = seen[:5]
            figures["ready_at_end_count"] = ready()
            if "restart" in phases:
                channel.close()
                channel = None
                agents_lag(workers, processes)  # measured from here on
                killing = time.time()
                manager.kill()  # kill -9: the reconnect storm of every agent at once
                manager.wait(timeout=30)
                restarted, killed = time.monotonic(), time.time()
                manager = start_manager()
                channel = connect()
                api = control_grpc.ControlStub(channel)
                # Nodes the restarted manager takes out of READY: each agent is healthy and
                # comes back; its node should not even look suspect.
                left_after: list[str] = []
                threading.Thread(target=count_transitions, args=(channel, stop, left_after),
                                 daemon=True).start()
                eventually(lambda: ready(since=killed) == agents, timeout=300, interval=0.5,
                           what="every agent's session open again after the manager's restart")
                figures["restart_all_ready_s"] = round(time.monotonic() - restarted, 1)
                time.sleep(RESTART_SETTLE_S)  # late verdicts on sessions that were slow to beat
                # Simulated agents share two cores with the manager: a worker's loop that ran
                # behind by more than three heartbeat periods starved its agents, which the
                # manager rightly cannot tell from hung ones.
                figures["restart_agents_worst_loop_lag_ms"] = agents_lag(workers, processes)[0]
                figures["restart_wrongly_not_ready_count"] = len(left_after)
                figures["restart_wrongly_not_ready"] = left_after[:5]
                figures["restart_wrongly_down_count"] = sum(
                    1 for line in left_after if line.endswith(" STATE_DOWN"))
                # Every agent loses its session to the killed manager once (when it notices,
                # which may be after the new one listens); any other loss is a registration
                # with the new manager that failed.
                lost = losses(workers, processes, killing)
                figures["restart_failed_registrations_count"] = max(
                    0, sum(lost.values()) - agents)
                figures["restart_failed_registrations"] = lost
                figures["restart_running_count"] = sum(running(f"sim{k}")
                                                       for k in range(tasks_per_agent))
        finally:
            stop.set()
            if channel is not None:
                channel.close()
            # The manager first: agents stopped first would be thousands of hosts down at once,
            # whose tasks a manager would go on replacing (nowhere) for minutes.
            manager.send_signal(signal.SIGTERM)
            try:
                manager.wait(timeout=120)
            except subprocess.TimeoutExpired:
                print("the manager did not stop within 120 s of SIGTERM: killed", file=sys.stderr)
                manager.kill()
                manager.wait(timeout=30)
            if workers is not None:
                workers.stop()
            if os.environ.get("KEEP_MANAGER_LOG"):  # for a post-mortem: the log outlives the run
                (root / "manager.log").replace(os.environ["KEEP_MANAGER_LOG"])
                if (root / "manager.lag").exists():
                    (root / "manager.lag").replace(os.environ["KEEP_MANAGER_LOG"] + ".lag")
    return figures


def worst_lag(path: pathlib.Path, since: float, kind: str = "loop") -> float | str:
    """The manager's longest loop stall (`kind` "loop") or collector pause ("gc") since `since`
    (ms) from the plaintext manager's probe ("-": no probe, the TLS design runs the daemon as
    shipped)."""
    if not path.exists():
        return "-"
    stalls = [float(late) for at, late, what in
              (line.split() for line in path.read_text().splitlines())
              if float(at) >= since and what == kind]
    return round(1000 * max(stalls, default=0.0), 1)


def losses(workers: Workers, processes: int, since: float) -> dict[str, int]:
    """The agents' session losses since `since` (wall clock) by gRPC code, summed over the
    workers."""
    workers.tell(f"losses {since}")
    found: list[dict[str, Any]] = []

    def answered() -> bool:
        found.extend(workers.take("losses"))
        return len(found) >= processes
    eventually(answered, timeout=60, what="every worker's losses")
    total: dict[str, int] = {}
    for answer in found:
        for code, n in answer["losses"].items():
            total[code] = total.get(code, 0) + n
        if answer["losses"]:
            print("session losses seen, e.g.:", *answer["examples"], sep="\n  ", file=sys.stderr)
    return total


def status_latency(channel: grpc.Channel, workers: Workers, processes: int,
                   crashes: int = 200, gap: float = 0.1) -> dict[str, Any]:
    """Containers crash on the agents, paced; how long until WatchEvents shows each task
    FAILED (wall clock, one machine)."""
    stop = threading.Event()
    seen: dict[str, float] = {}
    call = failures_seen(channel, stop, seen)
    time.sleep(0.5)  # the watch attaches before the first crash (a stream has no ack)
    per = -(-crashes // processes)
    workers.tell("lag")  # from now on
    workers.tell(f"crash {per} {gap * processes}")
    crashed: dict[str, float] = {}
    progress: list[int] = []

    done: list[dict[str, Any]] = []

    def all_seen() -> bool:
        crashed.update({a["task"]: a["t"] for a in workers.take("task")})
        done.extend(workers.take("crashes_done"))
        progress[:] = [len(crashed), sum(t in seen for t in crashed), len(seen)]
        return len(done) == processes and all(t in seen for t in crashed)
    try:
        eventually(all_seen, timeout=per * gap * processes + 60, interval=0.2,
                   what="every crash seen through WatchEvents")
    except AssertionError as err:
        raise AssertionError(f"{err} (crashed, seen of those, failures seen: {progress})") \
            from None
    finally:
        stop.set()
        call.cancel()
    delays = [1000 * (seen[t] - at) for t, at in crashed.items()]
    lag, gc_pause = agents_lag(workers, processes)
    return {"status_change_p50_ms": round(statistics.median(delays), 1),
            "agents_worst_loop_lag_ms": lag,
            "agents_worst_gc_pause_ms": gc_pause,
            "status_change_p99_ms": round(percentile(delays, 0.99), 1),
            "status_change_count": len(delays)}


def agents_lag(workers: Workers, processes: int) -> tuple[float, float]:
    """The worker processes' longest loop stall and collector pause (ms) since they were last
    asked, and starts the next measurement."""
    workers.take("lag")
    workers.tell("lag")
    lags: list[dict[str, Any]] = []
    eventually(lambda: lags.extend(workers.take("lag")) or len(lags) >= processes, timeout=60,
               what="every worker's loop lag")
    return (round(1000 * max(a["lag"] for a in lags), 1),
            round(1000 * max(a["gc"] for a in lags), 1))


def burst(api: control_grpc.ControlStub, create: Any, count: int = 10_000) -> dict[str, Any]:
    """A new service of `count` replicas on the loaded cluster: until all are placed (assigned
    to a node) and until all run."""
    started, wall = time.monotonic(), time.time()
    create("burst", count)
    placed: list[float] = []

    def all_running() -> bool:
        tasks = api.ListTasks(control.ListTasksRequest(service="burst"), timeout=120).tasks
        if not placed and sum(t.status.state >= objects.TASK_STATE_ASSIGNED
                              for t in tasks) >= count:
            placed.append(time.monotonic() - started)
        return sum(t.status.state == objects.TASK_STATE_RUNNING for t in tasks) >= count
    # Each look lists 10,000 tasks: every half second, not more (the manager serves it).
    eventually(all_running, timeout=300, interval=0.5, what=f"{count} new tasks running")
    seen = time.monotonic() - started
    # When the last of them was created (the manager's clock) and started (its agent's clock;
    # one machine): what the polling above adds shows as the difference.
    tasks = api.ListTasks(control.ListTasksRequest(service="burst"), timeout=120).tasks
    started = [(t.node_id, t.status.timestamp.ToNanoseconds() / 1e9 - wall) for t in tasks]
    started_at = sorted(at for _, at in started)
    names = {n.id: n.description.name
             for n in api.ListNodes(control.ListNodesRequest(), timeout=60).nodes}
    by_worker: dict[str, float] = {}
    for node_id, at in started:
        worker = names.get(node_id, "?").partition("-")[0]
        by_worker[worker] = max(by_worker.get(worker, 0.0), at)
    return {"burst_tasks_count": count,
            # Whether one worker process of simulated agents is the late one.
            "burst_started_by_worker_s": {w: round(v, 1) for w, v in sorted(by_worker.items())},
            # A steady rate, or a tail of late agents: when half and nine in ten had started.
            "burst_started_p50_s": round(percentile(started_at, 0.5), 1),
            "burst_started_p90_s": round(percentile(started_at, 0.9), 1),
            "burst_created_after_s": round(max(t.meta.created.ToNanoseconds() for t in tasks)
                                           / 1e9 - wall, 1),
            "burst_placed_after_s": round(placed[0], 1) if placed else "-",
            "burst_started_after_s": round(started_at[-1], 1),
            "burst_running_after_s": round(seen, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--design", choices=("both", "tls", "plaintext"), default="both")
    parser.add_argument("--tasks-per-agent", type=int, default=1,
                        help="replicas of the one service per agent (default 1)")
    parser.add_argument("--heartbeats-per-second", type=float, default=1500.0,
                        help="the manager's flag: 0 keeps every period at 1 s (the previous "
                        "design); default 1500")
    parser.add_argument("--no-phases", action="store_true",
                        help="only the steady state: no crashes, burst or manager restart")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="the phases after the steady state, comma-separated (default "
                        "%(default)s)")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS,
                        metavar=("MANAGER", "JOIN", "TOKEN", "ROOT", "PREFIX", "COUNT",
                                 "LIFETIME"))
    args = parser.parse_args()
    if args.worker:
        manager, join, token, root, prefix, count, lifetime = args.worker
        # The simulated agents run at a lower priority than the manager: on a real cluster each
        # is on its own host, and none takes the manager's cpu as these 5,000 do here.
        os.nice(WORKER_NICENESS)
        asyncio.run(run_agents(manager, join, token, pathlib.Path(root), prefix, int(count),
                               float(lifetime)))
        return 0
    if not (1 <= args.agents <= 5000 and 1 <= args.window <= 600 and 1 <= args.processes <= 16
            and 1 <= args.tasks_per_agent <= 100 and args.heartbeats_per_second >= 0):
        parser.error("1 <= --agents <= 5000, 1 <= --window <= 600, 1 <= --processes <= 16, "
                     "1 <= --tasks-per-agent <= 100, --heartbeats-per-second >= 0")
    phases = set() if args.no_phases else {p for p in args.phases.split(",") if p}
    if phases - set(PHASES):
        parser.error(f"--phases: unknown {', '.join(sorted(phases - set(PHASES)))}; "
                     f"choose among {','.join(PHASES)}")
    designs = ["plaintext", "tls"] if args.design == "both" else [args.design]
    results = {d: measure(d, args.agents, args.window, args.processes,
                          tasks_per_agent=args.tasks_per_agent,
                          per_second=args.heartbeats_per_second, phases=phases)
               for d in designs}
    figures: dict[str, Any] = {"agents_count": args.agents, "window_s": args.window,
                               "tasks_count": args.agents * args.tasks_per_agent,
                               "heartbeats_per_second_limit": args.heartbeats_per_second}
    for design, found in results.items():
        prefix = "" if design == "tls" else "plaintext_"
        figures.update({f"{prefix}{k}": v for k, v in found.items()
                        if k not in ("wrongly_not_ready", "restart_failed_registrations",
                                     "restart_wrongly_not_ready")})
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{args.agents} simulated agents over {args.processes} processes, "
              f"{args.window:g} s window (cpu: % of one core)")
        rows = [("all agents ready after (s)", "all_ready_after_s"),
                ("then every task running after (s)", "all_running_after_s"),
                ("nodes that left READY (goal 0)", "wrongly_not_ready_count"),
                ("ready at the end", "ready_at_end_count"),
                ("manager cpu, agents heartbeating", "manager_cpu_share_pct"),
                ("manager cpu, idle (no agents)", "manager_idle_cpu_share_pct"),
                ("manager RSS (MB)", "manager_rss_mb"),
                ("manager memory per task (KB)", "memory_per_task_kb"),
                ("status change -> WatchEvents p50 (ms)", "status_change_p50_ms"),
                ("status change -> WatchEvents p99 (ms)", "status_change_p99_ms"),
                ("  agents' worst event-loop lag (ms)", "agents_worst_loop_lag_ms"),
                ("  agents' worst collector pause (ms)", "agents_worst_gc_pause_ms"),
                ("  manager's worst loop stall > 50 ms (ms)", "manager_worst_loop_lag_ms"),
                ("  manager's worst collector pause (ms)", "manager_worst_gc_pause_ms"),
                ("10,000 new tasks created after (s)", "burst_created_after_s"),
                ("10,000 new tasks placed after (s)", "burst_placed_after_s"),
                ("  half of them started, by their agents (s)", "burst_started_p50_s"),
                ("  nine in ten started (s)", "burst_started_p90_s"),
                ("  the last one started, by its agent (s)", "burst_started_after_s"),
                ("10,000 new tasks running after (s)", "burst_running_after_s"),
                ("kill -9 + restart: all ready after (s)", "restart_all_ready_s"),
                ("  failed registrations (goal 0)", "restart_failed_registrations_count"),
                ("  nodes that left READY (goal 0)", "restart_wrongly_not_ready_count"),
                ("  of them DOWN (tasks replaced)", "restart_wrongly_down_count"),
                ("  tasks running after the restart", "restart_running_count")]
        rows = [(label, key) for label, key in rows if all(key in results[d] for d in designs)]
        print(f"{'':40}" + "".join(f"{d:>14}" for d in designs)
              + ("" if len(designs) < 2 else f"{'tls/plain':>12}"))
        for label, key in rows:
            line = f"{label:40}" + "".join(f"{results[d][key]:>14}" for d in designs)
            if len(designs) == 2 and results["plaintext"][key]:
                line += f"{results['tls'][key] / results['plaintext'][key]:>11.2f}x"
            print(line)
        for design in designs:
            if results[design]["wrongly_not_ready"]:
                print(f"{design}: left READY: {results[design]['wrongly_not_ready']}")
            if results[design].get("restart_wrongly_not_ready"):
                print(f"{design}: left READY after the restart: "
                      f"{results[design]['restart_wrongly_not_ready']}")
            if results[design].get("restart_failed_registrations_count"):
                print(f"{design}: sessions lost after the kill (one each to the killed "
                      "manager, the rest failed registrations), by code: "
                      f"{results[design]['restart_failed_registrations']}")
    return 0 if all(r["wrongly_not_ready_count"] == 0
                    and not r.get("restart_failed_registrations_count")
                    and not r.get("restart_wrongly_not_ready_count")
                    for r in results.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
