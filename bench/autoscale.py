"""Benchmark: autoscaling under a load that steps up 4x and back down, for a cpu target and for a
requests_per_second target, next to what the Kubernetes HPA's defaults give on the same trace.

    python bench/autoscale.py [--json] [--steady 300] [--scenarios cpu,rps] [--png autoscale.png]
                              [--lead 20] [--settle 60] [--tail 20] [--turns 3000] [--cpus 0.25]
                              [--demand 1.375] [--low-rate R] [--window S] [--dir DIR]

Layout: three simulated hosts (podium.lab.hosts: network namespaces, each with its own engine
and agent) and a manager. The service `burn` runs podium/web:latest (busybox httpd) with a cpus
limit of --cpus (0.25) and no reservation, published on the ingress port 8080 (every host's mesh
serves it), under x-podium-autoscale {min: 2, max: 10, and the scenario's target}. Each request
is GET /cgi-bin/burn?n=--turns: a CGI shell loop that burns a fixed amount of cpu (about 10 ms
at 3000 turns here) and answers "hello from <hostname>".

Load: bench/_httpload.py in the manager's namespace (the way an outside client reaches the
hosts), one new connection per request, the three hosts' mesh ports in turn, open loop at a fixed
rate: --lead s at the low rate, 4x the low rate for --settle + --steady s, then the low rate again
until the count is back at min (at most the scale-down window + 90 s) and --tail s more. The
steady phase starts --settle (60) s after the step: the step's response is over by then, an
overshoot (replicas saturated before the step's new replicas serve drain their backlog at full
cpu, which asks for more than the load needs) undone after one scale-down window included. A request
fails on any error, a status outside 2xx, or no answer within --timeout (10 s: a saturated replica
answers slowly, which is latency, not failure).

Calibration: first, on the same hosts, a service without autoscaling (2 replicas) takes
CALIBRATION_RATE requests/s for CALIBRATION_S; the cpu one request costs is the service's cpu
(GetLoad, summed over its tasks, each second) over the requests answered. The low rate is chosen
so that the demand is --demand targets (1.375: 2 replicas at 69 % of the target; 4x is 5.5
targets: 6 replicas at 92 %), half-way between two counts, so that the steady phase measures
noise, not a count boundary; the requests_per_second target is the low rate / --demand, the same
ratios. The machine's speed drifts (by 15 % within minutes here): the cpu scenario measures the
cost again over its lead and, when the low rate it gives differs by more than 5 %, runs REBASE_S
more seconds at that rate before the step. --low-rate overrides the rate.

Recorded each second (a poller thread): spec.replicas, ready replicas, the manager's figures
(Service.autoscale_status.metrics), the service's cpu and request rates from GetLoad; every
decision from the manager's `service` events (autoscale_status.last_time, from, to, reason); every
task seen (for the new replicas' hostnames). bench/_autoscalereport.py turns that into the figures
(its docstring says how each is measured), the HPA model's figures on the same demand
(bench/_hpa.py), a replay of the recorded figures through podium.manager.scaling with scale-down
windows 0-60 s (how the default window was chosen), and the chart (bench/_plot.py): count, ready,
the HPA model's count and the load over time, one panel per scenario, written to --png.

Goals (the issue's): decision <= 3 s after the load step; new replicas serving through the mesh
<= 5 s after the decision; 0 changes in the steady phase; scale-down starts within the window +
2 s of the load drop; 0 failed requests. `--json` prints one JSON object whose names end in their
units (the table goes to stderr). Everything is torn down at the end, on failure and on Ctrl-C or
SIGTERM. A run with the defaults takes about 17 minutes; --steady 60 about 9. `--from DIR`
prints the figures and draws the chart again from what a run kept with --dir DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import _autoscalereport as report
from bench import _plot
from bench.update import cluster
from podium.client import Client, NotFound
from podium.client.compose import load_stack
from podium.lab import _system as system
from podium.lab.hosts import HostCluster
from podium.lab.local import IMAGE, ensure_image, eventually
from podium.rules import autoscale as rules
from podium.v1 import objects

SERVICE = "burn"
PORT = 8080
LOADGEN = pathlib.Path(__file__).resolve().parent / "_httpload.py"
# About the rate each replica takes in the steady phase (13 req/s), on 2 replicas.
CALIBRATION_RATE = 26.0
CALIBRATION_S = 20.0
MIN, MAX = 2, 10
CPU_TARGET = 0.6
LEAD_SKIP_S = 5.0  # the lead's first figures, left out of its cost (not a whole second of load)
REBASE_S = 10.0
STEP = 4.0
SCENARIOS = {"cpu": "cpu", "rps": "requests_per_second"}


def compose(args: argparse.Namespace, *, target: str = "", value: float = 0.0,
            replicas: int = MIN) -> str:
    """The service's Compose file; `target` empty: no autoscaling (the calibration)."""
    text = f"""services:
  {SERVICE}:
    image: {IMAGE}
    init: true
    stop_grace_period: 5s
    ports: ["{PORT}:80"]
    deploy:
      replicas: {replicas}
      resources:
        limits: {{cpus: {args.cpus:g}}}
"""
    if target:
        shown = f"{value * 100:g}%" if target == "cpu" else f"{value:g}"
        text += f"""    x-podium-autoscale:
      min: {MIN}
      max: {MAX}
      {target}: {shown}
"""
        if args.window is not None:
            text += f"      scale_down_window: {args.window:g}s\n"
    return text


def spec_for(args: argparse.Namespace, **kw: Any) -> objects.ServiceSpec:
    spec = load_stack(compose(args, **kw), source="bench/autoscale.py")[0]
    if kw.get("target") and not rules.enabled(spec):
        raise SystemExit("this Podium's Compose parser left x-podium-autoscale out of the spec")
    return spec


# -- the cluster side ---------------------------------------------------------------------------


def ready_tasks(tasks: list[objects.Task]) -> list[objects.Task]:
    return [t for t in tasks if t.desired_state <= objects.TASK_STATE_RUNNING
            and t.status.state == objects.TASK_STATE_RUNNING and t.status.ready]


def deploy_and_wait(client: Client, hosts: HostCluster, spec: objects.ServiceSpec,
                    replicas: int) -> None:
    client.deploy(spec)
    eventually(lambda: len(ready_tasks(client.tasks(service=SERVICE))) == replicas, timeout=120,
               interval=0.2, what=f"{replicas} replicas of {SERVICE} ready")
    for name in hosts.names:
        url = f"http://{hosts.host(name).address}:{PORT}/cgi-bin/burn?n=1"

        def answers(url: str = url) -> bool:
            return hosts.http_get("h1", url).startswith("hello from ")

        eventually(answers, timeout=30, interval=0.2, what=f"{url} answering through the mesh")


def remove(client: Client) -> None:
    try:
        client.remove_service(SERVICE)
    except NotFound:
        return
    eventually(lambda: not [t for t in client.tasks() if t.service_name == SERVICE],
               timeout=120, interval=0.2, what=f"every task of {SERVICE} gone")


class Load:
    """One generator (bench/_httpload.py) in the manager's namespace; see the module docstring."""

    def __init__(self, hosts: HostCluster, *, rate: float, turns: int, timeout: float,
                 seconds: float) -> None:
        argv = [*system.netns_exec(hosts.mgr_netns), sys.executable, str(LOADGEN),
                "--mode", "new", "--rate", f"{rate:g}", "--timeout", f"{timeout:g}",
                "--seconds", f"{seconds:g}", "--path", f"/cgi-bin/burn?n={turns}",
                "--answer-word", "2"]
        for name in hosts.names:
            argv += ["--target", f"{hosts.host(name).address}:{PORT}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.started = time.time()

    def change(self, phase: str, rate: float) -> float:
        """Starts phase `phase` at `rate`; the wall-clock time it was asked."""
        assert self.proc.stdin is not None
        at = time.time()
        self.proc.stdin.write(f"phase {phase}\nrate {rate:g}\n")
        self.proc.stdin.flush()
        return at

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() would flush it
        out, _ = self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator exited with {self.proc.returncode}")
        result: dict[str, Any] = json.loads(out)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def ts(t: Any) -> float:
    return float(t.seconds + t.nanos / 1e9)


class Recorder:
    """A poller (one Sample a second) and an event watcher (every decision), in two threads,
    until stop(). Times are seconds from `t0` (wall clock, as the manager's timestamps)."""

    def __init__(self, client: Client, trace: report.Trace, t0: float) -> None:
        self.client = client
        self.trace = trace
        self.t0 = t0
        self.rate = trace.low_rate
        self.tasks: dict[str, objects.Task] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._events = client.events(["service"])
        self._threads = [threading.Thread(target=self._poll, name="poller"),
                         threading.Thread(target=self._watch, name="decisions")]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._events.close()
        for thread in self._threads:
            thread.join(timeout=30)

    def _watch(self) -> None:
        seen: set[float] = set()
        try:
            for event in self._events:
                status = event.service.autoscale_status
                if event.service.spec.name != SERVICE or not status.last_decision:
                    continue
                at = ts(status.last_time)
                if at not in seen:
                    seen.add(at)
                    self.trace.decisions.append(report.Decision(
                        at - self.t0, int(status.from_replicas), int(status.to_replicas),
                        status.last_decision))
        except Exception as err:  # recorded, and the run goes on with what was seen
            if not self._stop.is_set():
                self.errors.append(f"events: {err!r}")

    def _poll(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.trace.samples.append(self._sample())
            except Exception as err:  # a missed second is a gap in the record, not the end
                self.errors.append(f"poll at {time.time() - self.t0:.1f}s: {err!r}")
            due += 1.0
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _sample(self) -> report.Sample:
        t = time.time() - self.t0
        service = self.client.service(SERVICE)
        tasks = self.client.tasks(service=SERVICE)
        load = {x.task_id: x for x in self.client.load().tasks}
        for task in tasks:
            self.tasks[task.id] = task
        ready = ready_tasks(tasks)
        name, cpus = self.trace.target_name, self.trace.cpus
        if name == "cpu":
            total = sum(load[x.id].latest.cpu_cores / cpus for x in ready if x.id in load)
        else:
            total = sum(load[x.id].requests_per_second for x in ready if x.id in load)
        metric = next((m for m in service.autoscale_status.metrics if m.name == name), None)
        return report.Sample(
            t=t, replicas=int(service.spec.replicas), ready=len(ready), total=total,
            current=None if metric is None else metric.current,
            partial=bool(metric is not None and metric.partial), rate=self.rate,
            cpu_cores=sum(load[x.id].latest.cpu_cores for x in tasks if x.id in load),
            served_per_s=sum(load[x.id].requests_per_second for x in tasks if x.id in load),
            holding=service.autoscale_status.holding)


def serving(trace: report.Trace, tasks: list[objects.Task], first_answers: dict[str, float],
            t0: float) -> list[tuple[float, float | None]]:
    """Per scale-up decision after the step: when the last of its new replicas first answered
    through the mesh (a replica's hostname is its container id's first 12 characters)."""
    ups = [d for d in trace.decisions if d.t >= trace.step_up and d.after > d.before]
    out: list[tuple[float, float | None]] = []
    for i, d in enumerate(ups):
        until = ups[i + 1].t if i + 1 < len(ups) else float("inf")
        new = [t for t in tasks if d.before < t.slot <= d.after
               and d.t - 1.0 <= ts(t.meta.created) - t0 < until]
        answered = [first_answers.get(t.status.container_id[:12]) for t in new]
        if len(new) < d.after - d.before or any(a is None for a in answered):
            out.append((d.t, None))
        else:
            out.append((d.t, max(a for a in answered if a is not None) - t0))
    return out


# -- the run ------------------------------------------------------------------------------------


def calibrate(args: argparse.Namespace, hosts: HostCluster, client: Client) -> float:
    """Seconds of cpu one request costs (see the module docstring)."""
    deploy_and_wait(client, hosts, spec_for(args), MIN)
    load = Load(hosts, rate=CALIBRATION_RATE, turns=args.turns, timeout=args.timeout,
                seconds=CALIBRATION_S + 30)
    cores: list[float] = []
    try:
        time.sleep(3)  # deliberate: the replicas' cpu figures cover a whole second of load
        end = time.monotonic() + CALIBRATION_S - 3
        while time.monotonic() < end:
            found = client.load().tasks
            ids = {t.id for t in client.tasks(service=SERVICE)}
            cores.append(sum(t.latest.cpu_cores for t in found if t.task_id in ids))
            time.sleep(1)  # deliberate: one figure a second, as the agents report them
        result = load.stop()
    finally:
        load.close()
    remove(client)
    failed = sum(p["failed_count"] for p in result["phases"])
    if failed or not cores:
        raise SystemExit(f"calibration: {failed} failed requests, {len(cores)} cpu figures")
    return statistics.median(cores) / CALIBRATION_RATE


def rebase(args: argparse.Namespace, trace: report.Trace, load: Load,
           recorder: Recorder) -> float:
    """The low rate again from the cost measured during the lead (the machine's speed drifts
    by 15 % in minutes here); when it moved by more than 5 %, REBASE_S more seconds at it."""
    low = trace.low_rate
    figures = [s.cpu_cores for s in list(trace.samples) if s.t >= LEAD_SKIP_S]
    if len(figures) < 5 or statistics.median(figures) <= 0:
        return low
    cost = statistics.median(figures) / low
    again = float(round(args.demand * CPU_TARGET * args.cpus / cost, 1))
    if abs(again / low - 1) <= 0.05:
        return low
    print(f"cpu: {cost * 1000:.2f} ms of cpu a request in the lead: low rate {again:g} req/s",
          file=sys.stderr, flush=True)
    trace.low_rate, trace.high_rate, recorder.rate = again, again * STEP, again
    load.change("rebased", again)
    time.sleep(REBASE_S)  # deliberate: the new low rate, steady, before the step
    return again


def scenario(args: argparse.Namespace, hosts: HostCluster, client: Client, key: str,
             low: float, cost: float) -> report.Trace:
    name = SCENARIOS[key]
    value = CPU_TARGET if name == "cpu" else round(low / args.demand, 2)
    spec = spec_for(args, target=name, value=value)
    settings = rules.settings(spec.autoscale)
    trace = report.Trace(
        target_name=name, target=value, tolerance=settings.tolerance,
        window_s=settings.scale_down_window_s, min=MIN, max=MAX, cpus=args.cpus,
        low_rate=low, high_rate=low * STEP, step_up=0.0, steady_from=0.0, step_down=0.0,
        end=0.0, cpu_per_request_s=cost)
    deploy_and_wait(client, hosts, spec, MIN)
    longest = args.lead + args.settle + args.steady + trace.window_s + 90 + args.tail + 60
    load = Load(hosts, rate=low, turns=args.turns, timeout=args.timeout, seconds=longest)
    t0 = load.started
    recorder = Recorder(client, trace, t0)
    try:
        time.sleep(args.lead)  # deliberate: the low load, steady, before the step
        if name == "cpu" and not args.low_rate:
            low = rebase(args, trace, load, recorder)
        recorder.rate = trace.high_rate
        trace.step_up = load.change("high", trace.high_rate) - t0
        trace.steady_from = trace.step_up + args.settle
        print(f"{key}: load x{STEP:g} at {trace.step_up:.1f}s", file=sys.stderr, flush=True)
        time.sleep(args.settle + args.steady)  # deliberate: the high load, held
        recorder.rate = low
        trace.step_down = load.change("low", low) - t0
        print(f"{key}: load back to {low:g} req/s at {trace.step_down:.1f}s", file=sys.stderr,
              flush=True)
        deadline = time.monotonic() + trace.window_s + 90
        while time.monotonic() < deadline and client.service(SERVICE).spec.replicas > MIN:
            time.sleep(0.5)  # deliberate: polling for the scale-down, bounded
        time.sleep(args.tail)  # deliberate: the low load after the scale-down
        result = load.stop()
        trace.end = time.time() - t0
    finally:
        recorder.stop()
        load.close()
    for error in recorder.errors[:5]:
        print(f"{key}: recorder: {error}", file=sys.stderr)
    firsts: dict[str, float] = {}
    for phase in result["phases"]:
        trace.requests += phase["sent_count"]
        trace.failed += phase["failed_count"]
        for kind, n in phase["failure_kinds"].items():
            trace.failure_kinds[kind] = trace.failure_kinds.get(kind, 0) + n
        for word, at in phase["first_answers_unix_s"].items():
            firsts[word] = min(at, firsts.get(word, at))
    trace.decisions.sort(key=lambda d: d.t)
    trace.serving = serving(trace, list(recorder.tasks.values()), firsts, t0)
    steady = [s for s in trace.samples if trace.steady_from <= s.t < trace.step_down]
    if steady and name == "cpu":
        # The cost per request under this run's load, for the HPA model's demand.
        trace.cpu_per_request_s = statistics.median(s.cpu_cores for s in steady) / trace.high_rate
    remove(client)
    if args.dir:
        path = pathlib.Path(args.dir) / f"timeline-{key}.json"
        path.write_text(json.dumps({"trace": report.trace_to_json(trace), "generator": result},
                                   indent=1) + "\n")
    return trace


def figures_of(args: argparse.Namespace, traces: list[report.Trace]) -> dict[str, Any]:
    """Every scenario's figures, the table (key "_table") and the chart, written to --png."""
    figures: dict[str, Any] = {}
    tables, charts = [], []
    for trace in traces:
        f, typical = report.scenario_figures(trace)
        figures |= f
        tables.append(report.table(trace, f))
        charts.append(report.chart(trace, typical, f))
    png = pathlib.Path(args.png).resolve()
    _plot.write_png(png, _plot.stack(charts))
    figures["png_text"] = str(png)
    figures["_table"] = "\n\n".join(tables) + f"\n\nchart: {png}"
    return figures


def run(args: argparse.Namespace, root: pathlib.Path) -> dict[str, Any]:
    started = time.monotonic()
    ensure_image()
    with (cluster(root) as hosts,
          Client(hosts.address, credentials=hosts.credentials, timeout=10) as client):
        cost = calibrate(args, hosts, client)
        low = args.low_rate or round(args.demand * CPU_TARGET * args.cpus / cost, 1)
        print(f"calibration: {cost * 1000:.2f} ms of cpu a request; low rate {low:g} req/s",
              file=sys.stderr, flush=True)
        traces = [scenario(args, hosts, client, key, low, cost) for key in args.scenarios]
    figures = figures_of(args, traces)
    figures["calibration_cpu_per_request_ms"] = round(cost * 1000, 2)
    figures["bench_wall_s"] = round(time.monotonic() - started, 1)
    # Other work on a shared machine shows here (the simulated hosts share its cores).
    figures["machine_load_average_count"] = round(os.getloadavg()[0], 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scenarios", default="cpu,rps",
                        help="comma-separated, in order: cpu, rps")
    parser.add_argument("--steady", type=float, default=300.0,
                        help="seconds of steady high load in which changes are counted")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds after the step before the steady phase starts (the step "
                        "response, an overshoot undone after one scale-down window included)")
    parser.add_argument("--lead", type=float, default=20.0, help="seconds of low load first")
    parser.add_argument("--tail", type=float, default=20.0,
                        help="seconds of low load after the scale-down")
    parser.add_argument("--turns", type=int, default=3000, help="loop turns per request")
    parser.add_argument("--cpus", type=float, default=0.25, help="each replica's cpus limit")
    parser.add_argument("--demand", type=float, default=1.375,
                        help="the low load in targets (4x that at the step)")
    parser.add_argument("--low-rate", type=float, default=0.0,
                        help="requests/s of the low load (default: from the calibration)")
    parser.add_argument("--window", type=float, default=None,
                        help="x-podium-autoscale scale_down_window, seconds (default: Podium's)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--png", default="autoscale.png", help="where the chart goes")
    parser.add_argument("--dir", default=None, help="keep the hosts' logs and each scenario's "
                        "timeline-<scenario>.json here (default: a temporary directory)")
    parser.add_argument("--from", dest="source", default=None, metavar="DIR",
                        help="no run: the figures, table and chart again from the timelines "
                        "an earlier run kept with --dir DIR")
    args = parser.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not (args.scenarios and set(args.scenarios) <= set(SCENARIOS)
            and 10 <= args.steady <= 1800 and 0 <= args.settle <= 300
            and 5 <= args.lead <= 300 and 0 <= args.tail <= 300 and 1 <= args.turns <= 1_000_000
            and 0.05 <= args.cpus <= 4 and 0.5 <= args.demand <= 2.5
            and 0 <= args.low_rate <= 2000 and (args.window is None or 0 <= args.window <= 600)
            and 1 <= args.timeout <= 60):
        parser.error("--scenarios from cpu,rps; 10 <= --steady <= 1800, 0 <= --settle <= 300, "
                     "5 <= --lead <= 300, 0 <= --tail <= 300, 1 <= --turns <= 10^6, "
                     "0.05 <= --cpus <= 4, 0.5 <= --demand <= 2.5, 0 <= --low-rate <= 2000, "
                     "0 <= --window <= 600, 1 <= --timeout <= 60")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # torn down on SIGTERM too
    try:
        if args.source:
            paths = [pathlib.Path(args.source) / f"timeline-{key}.json" for key in args.scenarios]
            if not any(p.exists() for p in paths):
                parser.error(f"--from {args.source}: no timeline-<scenario>.json there")
            f = figures_of(args, [report.trace_from_json(json.loads(p.read_text())["trace"])
                                  for p in paths if p.exists()])
        elif args.dir:
            pathlib.Path(args.dir).mkdir(parents=True, exist_ok=True)
            f = run(args, pathlib.Path(args.dir).resolve() / "hosts")
        else:
            with tempfile.TemporaryDirectory(prefix="podium-autoscale-") as tmp:
                f = run(args, pathlib.Path(tmp) / "hosts")
    except KeyboardInterrupt:
        print("interrupted: the hosts, their containers and the load generator are gone",
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
