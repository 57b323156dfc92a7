"""A service's autoscaling policy (`x-podium-autoscale`): its targets, the tuning defaults, what
the Control API refuses in it, which count a (re)deploy starts from, and how figures are written
for people. One set for the Compose parser, the manager and the CLI.

The count is the autoscaler's: it lives in spec.replicas, a redeploy of the same file keeps it
(within the new min..max), and ScaleService refuses to set it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from podium.rules.units import number
from podium.v1 import objects

# No change while every target's ratio (current / target) is within 1 ± TOLERANCE (the HPA's).
TOLERANCE = 0.1
# Scale down only to the highest count recommended over this window. The HPA's default is
# 300 s on figures that arrive every 15-60 s; Podium's arrive every second. Replaying the
# steady phases bench/autoscale.py recorded through podium.manager.scaling: windows of 0-5 s
# flapped (up to 43 changes in 300 s on the cpu figure, before the two-readings rule and the
# scale-down hysteresis), 20 s and more rode out every dip, 60 s gained little over 30 s; 30 s
# keeps a margin over the shortest window that sufficed, and is 10x shorter than the HPA's.
SCALE_DOWN_WINDOW_S = 30.0
# Replicas one decision may add or remove; 0: no limit (the count follows the formula).
MAX_STEP_UP = 0
MAX_STEP_DOWN = 0

# Target name -> (how people write it, whether it is a share shown as a percentage).
TARGETS: dict[str, tuple[str, bool]] = {
    "cpu": ("cpu", True),
    "memory": ("memory", True),
    "requests_per_second": ("req/s", False),
    "connections": ("connections", False),
}
MAX_REPLICAS = 10_000


@dataclass(frozen=True, slots=True)
class Settings:
    min: int
    max: int
    targets: dict[str, float]  # name -> target per ready replica, only those set
    tolerance: float
    scale_down_window_s: float
    max_step_up: int
    max_step_down: int

    def bound(self, count: int) -> int:
        """`count` within min..max."""
        return max(self.min, min(self.max, count))


def enabled(spec: objects.ServiceSpec) -> bool:
    return spec.HasField("autoscale")


def settings(policy: objects.Autoscale) -> Settings:
    """The policy with the defaults filled in for what it leaves out."""
    window = policy.scale_down_window
    return Settings(
        min=int(policy.min),
        max=int(policy.max),
        targets={name: getattr(policy, name) for name in TARGETS if getattr(policy, name) > 0},
        tolerance=policy.tolerance or TOLERANCE,
        scale_down_window_s=(window.ToNanoseconds() / 1e9 if policy.HasField("scale_down_window")
                             else SCALE_DOWN_WINDOW_S),
        max_step_up=int(policy.max_step_up) or MAX_STEP_UP,
        max_step_down=int(policy.max_step_down) or MAX_STEP_DOWN,
    )


def starting_replicas(old: objects.ServiceSpec | None, new: objects.ServiceSpec) -> int:
    """The count a deploy of `new` over `old` starts from: the count the autoscaler chose,
    when it chose one and still does (within the new min..max); else the file's."""
    if old is not None and enabled(old) and enabled(new):
        return settings(new.autoscale).bound(int(old.replicas))
    return int(new.replicas)


def show(name: str, value: float) -> str:
    """A figure as people write it: 60%, 300 req/s, 50 connections."""
    unit, share = TARGETS[name]
    return f"{value * 100:.0f}%" if share else f"{number(value)} {unit}"


def describe(name: str, current: float, target: float) -> str:
    """For a decision's reason: "cpu 142% of 60% target", "req/s 610 of 300 target"."""
    label = TARGETS[name][0]
    if TARGETS[name][1]:
        return f"{label} {show(name, current)} of {show(name, target)} target"
    return f"{label} {number(current)} of {number(target)} target"


def _number_problem(value: float, where: str, accepted: str) -> str | None:
    if math.isnan(value) or math.isinf(value) or value < 0:
        return f"{where} {value}: expected {accepted}"
    return None


def config_problem(spec: objects.ServiceSpec) -> str | None:
    """What is wrong with `spec`'s autoscale policy, naming the field and what is accepted
    ("spec.autoscale.max 1: expected at least min (2)"), or None."""
    if not enabled(spec):
        return None
    policy, where = spec.autoscale, "spec.autoscale"
    if spec.mode == objects.ServiceSpec.MODE_GLOBAL:
        return f"{where}: a global service runs one task per node: only replicated services scale"
    if policy.min < 1:
        return f"{where}.min {policy.min}: expected at least 1"
    if policy.max < policy.min:
        return f"{where}.max {policy.max}: expected at least min ({policy.min})"
    if policy.max > MAX_REPLICAS:
        return f"{where}.max {policy.max}: at most {MAX_REPLICAS}"
    for name in TARGETS:
        if problem := _number_problem(getattr(policy, name), f"{where}.{name}",
                                      "a number above 0"):
            return problem
    if not any(getattr(policy, name) > 0 for name in TARGETS):
        return f"{where}: no target: set at least one of {', '.join(TARGETS)}"
    if policy.memory > 0 and not spec.resources.limits.memory_bytes:
        return (f"{where}.memory: a share of the memory limit, and the service sets none: "
                "set deploy.resources.limits.memory")
    if problem := _number_problem(policy.tolerance, f"{where}.tolerance",
                                  "a number from 0 to 1"):
        return problem
    if policy.tolerance >= 1:
        return f"{where}.tolerance {policy.tolerance}: expected a number from 0 to 1"
    window = policy.scale_down_window
    if window.seconds < 0 or window.nanos < 0 or window.seconds > 86_400:
        return (f"{where}.scale_down_window {window.ToNanoseconds() / 1e9:g}s: expected a "
                "duration from 0 to 24h")
    if not policy.min <= spec.replicas <= policy.max:
        return (f"spec.replicas {spec.replicas}: an autoscaled service starts within min..max "
                f"({policy.min}..{policy.max})")
    return None
