"""What the benchmarks read from wrk: its command-line pieces and the figures of its output.

`parse(out)` returns requests/s, p50 and p99 latency (ms, from `--latency`), the errors (socket
errors plus non-2xx/3xx responses) and wrk's own error line; RuntimeError when the output lacks
a figure. `CLOSE` makes wrk ask for a new connection per request; `PACE_SCRIPT` (format with
`ms`) makes each connection wait that long before each request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLOSE = ["-H", "Connection: close"]
PACE_SCRIPT = "function delay()\n  return {ms}\nend\n"
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True, slots=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    detail: str  # wrk's error line ("Socket errors: ...", "Non-2xx ..."), "" when none


def parse(out: str) -> Figures:
    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        return float(found[1]) * UNITS_MS[found[2]]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx[1]) if non2xx else 0
    detail = re.search(r"^\s*(Socket errors:.*|Non-2xx.*)$", out, re.M)
    return Figures(float(rps[1]), latency("50"), latency("99"), errors,
                   detail[1].strip() if detail else "")
