"""Probe defaults: a probe from a Compose file that leaves the timing out and one from an API
caller who leaves the fields at zero are run the same way by the agent."""

from __future__ import annotations

from podium.agent.probe import Prober
from podium.client.compose import load_stack
from podium.v1 import objects


def _settings(probe: objects.Probe) -> tuple[object, ...]:
    prober = Prober(probe=probe, address="127.0.0.1", started_at=0.0,
                    on_change=lambda tracker: None)
    return (prober._interval, prober._timeout, prober.tracker.retries, prober._status_min,
            prober._status_max, prober.tracker.start_period)


def test_compose_defaults_equal_the_agents() -> None:
    [spec] = load_stack("services:\n  web:\n    image: x\n"
                        "    x-podium-probe: {http: {port: 80}}\n")
    api = objects.Probe(kind=objects.Probe.KIND_HTTP, port=80)  # every other field zero
    assert _settings(spec.probe) == _settings(api) == (10.0, 2.0, 3, 200, 399, 0.0)
