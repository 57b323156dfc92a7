"""Benchmark: how long a `podium` command takes to start, and its imports, against the floor.

    .venv/bin/python bench/cli_start.py [--json] [--runs N]

The bench starts its own manager (podium.lab.local.Cluster: a real process, no agent, no engine
needed) and times, each --runs times (default 15), the whole process of:

- `podium --help` (the parser alone);
- `podium services` and `podium ps` against the manager (imports, credentials, TLS, one call).

and, for each, its imports as `python -X importtime` counts them (the sum of the top-level
modules' cumulative times; the issue's measure), the least of 5 runs.

Baselines in the same run: the interpreter alone (`python -c pass`, wall and imports: `site`
and what it loads) and the previous design's imports: the same modules plus grpcio, through
which the client called the manager before
(`python -X importtime -c "import grpc, podium.client._commands"`).

As an installed Podium's CLI (pip compiles its modules' bytecode at install time), the package
is compiled first: a machine with PYTHONDONTWRITEBYTECODE set would otherwise compile it on every
run. Figures are in milliseconds; with --json, one JSON object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import compileall
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import podium
from podium.lab.local import Cluster

GOAL_IMPORTS_MS = 80.0
_TOP = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def wall_ms(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        if result.returncode != 0:
            raise RuntimeError(f"{argv} failed: {result.stderr}")
    return times


def imports_ms(argv: list[str], runs: int = 5) -> float:
    """The least, over `runs`, of the top-level imports' cumulative time of `argv` (a python
    command line: -X importtime goes right after the interpreter)."""
    best = float("inf")
    for _ in range(runs):
        result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True,
                                text=True, timeout=60)
        total = sum(int(m.group(1)) for line in result.stderr.splitlines()
                    if (m := _TOP.match(line)))
        best = min(best, total / 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000:
        parser.error("--runs from 1 to 1000")
    for folder in podium.__path__:
        compileall.compile_dir(folder, quiet=1)
    python = sys.executable
    rows: list[tuple[str, str, list[float], float]] = []
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        cluster = Cluster(pathlib.Path(tmp))
        try:
            cluster.start_manager()
            for name, argv in (("help", cluster.argv("--help")),
                               ("services", cluster.argv("services")),
                               ("ps", cluster.argv("ps"))):
                rows.append((name, f"podium {argv[-1]}", wall_ms(argv, args.runs),
                             imports_ms(argv)))
        finally:
            cluster.close()
    rows.append(("python", "baseline: python -c pass", wall_ms([python, "-c", "pass"], args.runs),
                 imports_ms([python, "-c", "pass"])))
    previous = imports_ms([python, "-c", "import grpc, podium.client._commands"])
    # The same modules loaded by a bare interpreter, with and without grpcio: the wall time
    # the previous design's client added to every command.
    modules = "podium.client.cli, podium.client._commands"
    now_wall = wall_ms([python, "-c", f"import {modules}"], args.runs)
    before_wall = wall_ms([python, "-c", f"import grpc, {modules}"], args.runs)

    figures: dict[str, float | int] = {}
    for name, _, walls, imported in rows:
        figures[f"{name}_wall_ms"] = round(statistics.median(walls), 1)
        figures[f"{name}_imports_ms"] = round(imported, 1)
    figures["previous_design_ps_imports_ms"] = round(previous, 1)
    figures["client_modules_wall_ms"] = round(statistics.median(now_wall), 1)
    figures["previous_design_client_modules_wall_ms"] = round(statistics.median(before_wall), 1)
    figures["runs"] = args.runs
    worst = max(figures["help_imports_ms"], figures["ps_imports_ms"])
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(label) for _, label, _, _ in rows)
    print(f"{'command':<{width}}  {'wall median ms':>14}  {'wall min ms':>11}  {'imports ms':>10}")
    for _, label, walls, imported in rows:
        print(f"{label:<{width}}  {statistics.median(walls):>14.1f}  {min(walls):>11.1f}  "
              f"{imported:>10.1f}")
    print(f"previous design (grpcio client): imports of podium ps {previous:.1f} ms")
    print(f"the client's modules in a bare interpreter: {statistics.median(now_wall):.1f} ms; "
          f"with grpcio, as the previous design loaded: {statistics.median(before_wall):.1f} ms "
          "(wall, median)")
    print(f"goal: podium --help and podium ps within {GOAL_IMPORTS_MS:.0f} ms of imports; "
          f"measured {worst:.1f} ms ({'met' if worst <= GOAL_IMPORTS_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
