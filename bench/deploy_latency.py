"""Benchmark: wall time of `podium deploy` of 10 replicas on one agent, against the raw engine.

    .venv/bin/python bench/deploy_latency.py [--json] [--trials N] [--replicas N]

The bench starts its own manager and one agent (podium.lab.local.Cluster, real processes, temp dir)
on the local engine and, per trial and in a rotating order:

- podium: the wall time of the whole `podium deploy -f stack.yaml` CLI invocation (it waits for
  convergence itself, woken by the manager's event stream) of a service of N replicas of
  podium/web:latest with init: true and port "80" published on an engine-chosen host port.
  Also, from the same start instant: the last container's State.StartedAt (the engine's clock)
  and the last task's running timestamp (set by the agent), which leave out the CLI's wait; and
  when the manager accepted the service (its meta.created), which splits the time into the CLI
  process's share (interpreter, imports, two RPCs) and the cluster's (accepted -> last started).
- raw sequential / raw concurrent: aiodocker create+start of N containers with the same
  config as the agent sends (same image, Init, port binding, restart policy "no", log options,
  a label, on a bridge network of their own as the stack's services are on its default
  network; the network is made once, before any clock, as the agent keeps its own), one after
  another / all at once with asyncio.gather.
- cli floor: one `podium services` invocation (interpreter start, import, one RPC), the fixed
  cost any CLI timing carries.

The CLI runs as an installed Podium's does: with its modules' bytecode compiled, which pip does
at install time (deploy/install.sh) and which a source checkout gets at its first run, unless
PYTHONDONTWRITEBYTECODE is set, as it is on some machines: the bench compiles it first.

Between trials everything is removed (podium rm, then waiting until the agent has removed its
containers; raw containers by label). Figures are medians over the trials. Everything is cleaned
up on exit, Ctrl-C included. With --json, one JSON object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import pathlib
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import aiodocker
import aiohttp

import podium
from podium.agent._container import container_config
from podium.client import Client
from podium.client.compose import load_stack
from podium.lab.local import IMAGE, Cluster, docker, eventually, one_node_cluster
from podium.v1 import objects

NODE = "bench-node"
SERVICE = "bench"
RAW_LABEL = "io.podium.bench"
SOCKET = "/var/run/docker.sock"


def stack(replicas: int) -> str:
    return f"""
services:
  {SERVICE}:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    ports: ["80"]
    deploy:
      replicas: {replicas}
"""


def raw_network(run_id: str) -> str:
    return f"podium-bench-{run_id}"


def raw_config(run_id: str) -> dict[str, Any]:
    """What the agent's container_config() sends for this stack, with a bench label instead
    and the bench's network."""
    [spec] = load_stack(stack(1))
    config = container_config(objects.Task(spec=spec), node_id="bench",
                              network_ids=[raw_network(run_id)])
    config["Labels"] = {RAW_LABEL: run_id}
    return config


async def raw_create_start(run_id: str, count: int, *, concurrent: bool) -> float:
    """Seconds to create and start `count` containers; the client is set up before the clock."""
    connector = aiohttp.UnixConnector(SOCKET, limit=0)
    client = aiodocker.Docker(url="unix://localhost", connector=connector)
    try:
        config = raw_config(run_id)

        async def one(i: int) -> None:
            container = await client.containers.create(config, name=f"podium-bench-{run_id}-{i}")
            await container.start()

        await client.version()  # open the connection outside the timed part
        started = time.monotonic()
        if concurrent:
            await asyncio.gather(*(one(i) for i in range(count)))
        else:
            for i in range(count):
                await one(i)
        return time.monotonic() - started
    finally:
        await client.close()
        await connector.close()


def remove_raw(run_id: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={RAW_LABEL}={run_id}").split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def make_raw_network(run_id: str) -> None:
    docker("network", "create", "--driver", "bridge", "--label", f"{RAW_LABEL}={run_id}",
           raw_network(run_id))


def remove_raw_network(run_id: str) -> None:
    subprocess.run(["docker", "network", "rm", raw_network(run_id)], capture_output=True,
                   check=False)


def engine_time(text: str) -> float:
    """An engine timestamp (RFC 3339, nanoseconds) as epoch seconds."""
    whole, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))


def podium_deploy(cluster: Cluster, stack_file: str, replicas: int) -> dict[str, float]:
    started_wall = time.time()
    started = time.monotonic()
    result = cluster.run("deploy", "-f", stack_file, "--timeout", "120")
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"podium deploy failed: {result.stdout}{result.stderr}")
    ids = list(cluster.running_containers())
    if len(ids) != replicas:
        raise RuntimeError(f"expected {replicas} running containers, found {len(ids)}")
    out = docker("inspect", "--format", "{{.State.StartedAt}}", *ids)
    last_started = max(engine_time(line) for line in out.split())
    running = [t for t in cluster.json("ps", SERVICE) if t["state"] == "running"]
    last_running = max(float(t["since"]) for t in running)
    # When the manager accepted the service:
    with Client(cluster.address, credentials=cluster.credentials) as client:
        accepted = client.service(SERVICE).meta.created.ToNanoseconds() / 1e9
    cluster.ok("rm", SERVICE)
    eventually(lambda: not cluster.containers(), timeout=60, what="podium containers removed")
    eventually(lambda: cluster.json("ps") == [], timeout=60, what="tasks deleted")
    return {
        "deploy": elapsed,
        "last_started": last_started - started_wall,
        "last_running": last_running - started_wall,
        "accepted": accepted - started_wall,
        "accepted_to_last_started": last_started - accepted,
    }


def cli_floor(cluster: Cluster) -> float:
    started = time.monotonic()
    cluster.ok("services")
    return time.monotonic() - started


def measure(
    cluster: Cluster, root: pathlib.Path, trials: int, replicas: int, run_id: str
) -> dict[str, list[float]]:
    stack_file = root / "stack.yaml"
    stack_file.write_text(stack(replicas))
    samples: defaultdict[str, list[float]] = defaultdict(list)

    def podium() -> None:
        for key, value in podium_deploy(cluster, str(stack_file), replicas).items():
            samples[f"podium_{key}"].append(value)

    def raw(concurrent: bool) -> None:
        try:
            seconds = asyncio.run(raw_create_start(run_id, replicas, concurrent=concurrent))
        finally:
            remove_raw(run_id)
        samples["raw_concurrent" if concurrent else "raw_sequential"].append(seconds)

    steps: list[Callable[[], None]] = [podium, lambda: raw(False), lambda: raw(True)]
    for trial in range(trials):
        # Rotate the order so that no method always runs first (or right after a removal).
        for step in steps[trial % 3 :] + steps[: trial % 3]:
            step()
        samples["cli_floor"].append(cli_floor(cluster))
        print(f"trial {trial + 1}/{trials} done", file=sys.stderr, flush=True)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=10)
    args = parser.parse_args()
    if args.trials < 1 or not 1 <= args.replicas <= 100:
        parser.error("--trials >= 1 and 1 <= --replicas <= 100")
    run_id = f"{int(time.time())}"
    for folder in podium.__path__:
        compileall.compile_dir(folder, quiet=1)
    try:
        make_raw_network(run_id)
        with one_node_cluster(NODE, prefix="podium-bench-") as (cluster, root):
            samples = measure(cluster, root, args.trials, args.replicas, run_id)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        remove_raw(run_id)
        remove_raw_network(run_id)

    med = {k: statistics.median(v) for k, v in samples.items()}
    n = args.replicas
    figures = {
        f"podium_deploy_{n}_s": round(med["podium_deploy"], 3),
        f"podium_last_started_{n}_s": round(med["podium_last_started"], 3),
        f"podium_last_running_{n}_s": round(med["podium_last_running"], 3),
        "podium_cli_to_accepted_s": round(med["podium_accepted"], 3),
        f"podium_accepted_to_last_started_{n}_s": round(med["podium_accepted_to_last_started"], 3),
        f"raw_sequential_{n}_s": round(med["raw_sequential"], 3),
        f"raw_concurrent_{n}_s": round(med["raw_concurrent"], 3),
        "cli_floor_s": round(med["cli_floor"], 3),
        "podium_to_raw_concurrent_ratio": round(med["podium_deploy"] / med["raw_concurrent"], 2),
        "trials": args.trials,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    rows = [
        (f"podium deploy (CLI wall, {n} replicas)", "podium_deploy"),
        ("  deploy start -> last container started", "podium_last_started"),
        ("  deploy start -> last task reported running", "podium_last_running"),
        ("  deploy start -> service accepted (the CLI's share)", "podium_accepted"),
        ("  service accepted -> last container started", "podium_accepted_to_last_started"),
        (f"raw engine, sequential create+start x{n}", "raw_sequential"),
        (f"raw engine, concurrent create+start x{n}", "raw_concurrent"),
        ("cli floor (`podium services`)", "cli_floor"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'method':<{width}}  {'median s':>9}  {'x raw conc':>10}  trials (s)")
    for label, key in rows:
        trials = " ".join(f"{v:.2f}" for v in samples[key])
        ratio = med[key] / med["raw_concurrent"]
        print(f"{label:<{width}}  {med[key]:>9.3f}  {ratio:>10.2f}  {trials}")
    print(
        f"goal: podium deploy within 1.10x raw concurrent; "
        f"measured {figures['podium_to_raw_concurrent_ratio']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
