"""Benchmark: how soon a deploy shows on an open dashboard page, beside how soon the Control API
shows it.

    .venv/bin/python bench/dashboard.py [--json] [--trials N] [--replicas N]

The bench starts its own manager and one agent (podium.lab.local, real processes on the local
engine, a temporary directory), signs in to the manager's dashboard in headless Chromium
(podium.lab.browser) through a login link (Control.DashboardLogin, as `podium dashboard`), opens
the services page and, per trial, creates a service of N replicas of podium/web:latest with the
client library. From the instant that call returns:

- dashboard: when the service's row first shows on the page, and when it first reads N/N
  running (timed in the page by a MutationObserver on the table, on this machine's clock);
- baseline, in the same trial: when a WatchEvents stream opened before the call delivers the
  service's creation (what the page's event stream is made from), when ListServices (polled
  every 5 ms) lists it, and when ListTasks (polled every 20 ms) shows N running.

Between trials the service is removed and its containers are gone. Figures are medians over
the trials; with --json, one JSON object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.client import Client
from podium.lab.browser import WATCH_SERVICES, Chromium, dashboard_pin
from podium.lab.local import IMAGE, Cluster, eventually, one_node_cluster
from podium.rules.credentials import Credentials
from podium.rules.taskstate import is_live
from podium.v1 import objects

NODE = "bench-node"
LIVE = "document.querySelector('#live') && document.querySelector('#live').textContent === 'live'"
FIGURES = (
    ("deploy_to_dashboard_s", "dashboard: the service's row shows"),
    ("deploy_to_watch_event_s", "  baseline: a WatchEvents stream delivers its creation"),
    ("deploy_to_api_list_s", "  baseline: ListServices lists it"),
    ("deploy_to_dashboard_running_s", "dashboard: the row reads N/N running"),
    ("deploy_to_api_running_s", "  baseline: ListTasks shows N running"),
)


def _spec(name: str, replicas: int) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name=name, replicas=replicas)
    spec.container.image = IMAGE
    spec.container.init = True
    spec.container.stop_grace_period.FromSeconds(2)
    return spec


class _Baseline:
    """The Control API's view of one deploy, from threads of their own: the event stream
    (opened before the deploy) and the two polls (started once it returned)."""

    def __init__(self, cluster: Cluster, name: str, replicas: int) -> None:
        self.name, self.replicas = name, replicas
        self.times: dict[str, float] = {}
        self._clients = [cluster.client() for _ in range(3)]
        self._stream = self._clients[0].events(["service"])
        self._threads = [threading.Thread(target=self._watch, daemon=True)]
        self._threads[0].start()
        # The stream is open on the manager once its call arrived there: a moment, given
        # here, before the deploy (a stream not yet open would miss the creation).
        time.sleep(0.3)

    def started(self) -> None:
        for target in (self._listed, self._running):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch(self) -> None:
        for event in self._stream:
            if event.HasField("service") and event.service.spec.name == self.name:
                self.times["watch_event"] = time.time()
                return

    def _listed(self) -> None:
        client = self._clients[1]
        while not any(s.spec.name == self.name for s in client.services()):
            time.sleep(0.005)
        self.times["api_list"] = time.time()

    def _running(self) -> None:
        client = self._clients[2]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tasks = client.tasks(service=self.name)
            if sum(1 for t in tasks if is_live(t) and
                   t.status.state == objects.TASK_STATE_RUNNING) == self.replicas:
                self.times["api_running"] = time.time()
                return
            time.sleep(0.02)

    def join(self) -> None:
        for thread in self._threads[1:]:
            thread.join(timeout=130)
        self._threads[0].join(timeout=10)
        self._stream.close()
        for client in self._clients:
            client.close()


async def measure(cluster: Cluster, trials: int, replicas: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {key: [] for key, _ in FIGURES}
    with cluster.client() as admin:
        ca = Credentials.load(cluster.credentials).ca
        pin = await dashboard_pin("127.0.0.1", cluster.dashboard_port, ca)
        async with Chromium(trust=pin) as chromium:
            page = await chromium.new_page()
            await page.open(lambda: admin.dashboard_login()[0], until=LIVE, timeout=60)
            for trial in range(trials):
                name = f"dash{trial}"
                await page.evaluate(WATCH_SERVICES)
                baseline = await asyncio.to_thread(_Baseline, cluster, name, replicas)
                await asyncio.to_thread(admin.create_service, _spec(name, replicas))
                returned = time.time()
                baseline.started()
                shown = await page.wait_for(f"window.__seen[{name!r}]", timeout=30)
                running = await page.wait_for(f"window.__converged[{name!r}]", timeout=120)
                await asyncio.to_thread(baseline.join)
                samples["deploy_to_dashboard_s"].append(shown / 1000 - returned)
                samples["deploy_to_dashboard_running_s"].append(running / 1000 - returned)
                for key in ("watch_event", "api_list", "api_running"):
                    if key not in baseline.times:
                        raise RuntimeError(f"trial {trial + 1}: no {key} time (the baseline's "
                                           "stream or poll did not see the service)")
                    samples[f"deploy_to_{key}_s"].append(baseline.times[key] - returned)
                await asyncio.to_thread(_remove, cluster, admin, name)
                print(f"trial {trial + 1}/{trials} done", file=sys.stderr, flush=True)
            if page.errors:
                raise RuntimeError(f"the page reported errors: {page.errors}")
    return samples


def _remove(cluster: Cluster, client: Client, name: str) -> None:
    client.remove_service(name)
    eventually(lambda: not cluster.containers(), timeout=60, what=f"{name}'s containers gone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    if args.trials < 1 or not 1 <= args.replicas <= 20:
        parser.error("--trials >= 1 and 1 <= --replicas <= 20")
    try:
        with one_node_cluster(NODE, prefix="podium-bench-dashboard-") as (cluster, _):
            samples = asyncio.run(measure(cluster, args.trials, args.replicas))
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    figures: dict[str, Any] = {key: round(statistics.median(values), 4)
                               for key, values in samples.items()}
    figures |= {"replicas": args.replicas, "trials": args.trials}
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(label) for _, label in FIGURES)
    print(f"from the create call returning ({args.replicas} replicas, {args.trials} trials)")
    print(f"{'':<{width}}  {'median s':>9}  trials (s)")
    for key, label in FIGURES:
        trials = " ".join(f"{v:.3f}" for v in samples[key])
        print(f"{label:<{width}}  {figures[key]:>9.4f}  {trials}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
