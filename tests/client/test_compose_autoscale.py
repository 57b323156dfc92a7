"""Compose's `x-podium-autoscale` -> ServiceSpec.autoscale: what a valid policy becomes (and the
starting count), what each invalid value's error says, and that the parser never writes a policy
the Control API refuses (podium.rules.autoscale.config_problem)."""

from __future__ import annotations

import textwrap

import pytest
from google.protobuf.duration_pb2 import Duration

from podium.client.compose import SpecError, load_stack
from podium.rules import autoscale
from podium.v1 import objects

KEY = "x-podium-autoscale"


def _one(policy: str, *, deploy: str = "", extra: str = "") -> objects.ServiceSpec:
    """Service 'web' (image: nginx) with `policy` as its x-podium-autoscale, `deploy` under its
    deploy key and `extra` keys beside them."""
    body = f"    {KEY}: {policy}\n" if policy else ""
    if extra:
        body += textwrap.indent(textwrap.dedent(extra).rstrip("\n") + "\n", "    ")
    if deploy:
        body += "    deploy:\n" + textwrap.indent(textwrap.dedent(deploy), "      ")
    (spec,) = load_stack(f"services:\n  web:\n    image: nginx\n{body}")
    return spec


def _error(policy: str, *, deploy: str = "", extra: str = "") -> str:
    with pytest.raises(SpecError) as info:
        _one(policy, deploy=deploy, extra=extra)
    message = str(info.value)
    assert message.startswith("<spec>: service 'web': "), message
    return message.removeprefix("<spec>: service 'web': ")


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def test_every_key() -> None:
    spec = _one("", extra="""
        x-podium-autoscale:
          min: 2
          max: 10
          cpu: 60%
          memory: 0.7
          requests_per_second: 300
          connections: 50.5
          tolerance: 5%
          scale_down_window: 1m30s
          max_step_up: 4
          max_step_down: 2
        """, deploy="replicas: 3\nresources: {limits: {memory: 64m}}\n")
    assert spec.autoscale == objects.Autoscale(
        min=2, max=10, cpu=0.6, memory=0.7, requests_per_second=300, connections=50.5,
        tolerance=0.05, scale_down_window=_seconds(90), max_step_up=4, max_step_down=2)
    assert spec.replicas == 3  # the starting count, within min..max
    assert autoscale.config_problem(spec) is None


def test_tuning_left_out_is_left_to_the_defaults() -> None:
    spec = _one("{min: 1, max: 4, requests_per_second: 100}")
    assert not spec.autoscale.HasField("scale_down_window")
    assert spec.autoscale.tolerance == 0 and spec.autoscale.max_step_up == 0
    settings = autoscale.settings(spec.autoscale)
    assert settings.tolerance == autoscale.TOLERANCE
    assert settings.scale_down_window_s == autoscale.SCALE_DOWN_WINDOW_S
    assert settings.targets == {"requests_per_second": 100.0}


def test_replicas_left_out_start_at_min() -> None:
    assert _one("{min: 3, max: 10, cpu: 50%}").replicas == 3
    # Also with a deploy section that does not give replicas.
    assert _one("{min: 2, max: 10, cpu: 50%}", deploy="labels: {a: b}\n").replicas == 2


@pytest.mark.parametrize(("written", "share"), [
    ("60%", 0.6), ("'60%'", 0.6), ("'60 %'", 0.6), ("12.5%", 0.125), (".5%", 0.005),
    ("0.6", 0.6), ("1", 1.0), ("150%", 1.5),
])  # fmt: skip
def test_cpu_is_a_percentage_or_a_fraction(written: str, share: float) -> None:
    assert _one(f"{{min: 1, max: 2, cpu: {written}}}").autoscale.cpu == share


def test_a_cpu_target_above_the_limit_is_refused_and_up_to_it_accepted() -> None:
    assert _one("{min: 1, max: 2, cpu: 100%}",
                deploy="resources: {limits: {cpus: 0.5}}\n").autoscale.cpu == 1.0
    assert _error("{min: 1, max: 2, cpu: 120%}", deploy="resources: {limits: {cpus: 0.5}}\n") \
        == f"{KEY}.cpu: expected at most '100%' of the cpus limit (0.5 cpus): a replica never " \
           "uses more, got '120%'"


def test_an_anchor_can_share_a_policy() -> None:
    text = """
x-scale: &scale {min: 2, max: 6, connections: 40}
services:
  web: {image: nginx, x-podium-autoscale: *scale}
  api: {image: nginx, x-podium-autoscale: {<<: *scale, max: 8}}
"""
    web, api = load_stack(text)
    assert web.autoscale == objects.Autoscale(min=2, max=6, connections=40)
    assert api.autoscale == objects.Autoscale(min=2, max=8, connections=40)


def test_a_canary_counts_against_the_starting_count() -> None:
    spec = _one("{min: 2, max: 6, cpu: 50%}", extra="x-podium-canary: {count: 2}")
    assert spec.replicas == 2 and spec.canary.count == 2
    assert _error("{min: 2, max: 6, cpu: 50%}", extra="x-podium-canary: {count: 3}").startswith(
        "x-podium-canary.count: expected an integer from 1 to 2")


def test_a_service_without_the_key_is_not_autoscaled() -> None:
    spec = _one("")
    assert not spec.HasField("autoscale") and spec.replicas == 1


SHARE = "a percentage above 0 such as '60%', or a fraction such as 0.6 (of the cpus limit, else " \
        "of one core)"
MEMORY = "a percentage above 0 up to 100% such as '70%', or a fraction such as 0.7 (of the " \
         "memory limit)"
TOLERANCE = "a percentage above 0 and below 100% such as '10%', or a fraction such as 0.1"
RPS = "a number of requests per second above 0 (per ready replica), such as 300"
CONNECTIONS = "a number of concurrent connections above 0 (per ready replica), such as 50"
LIMIT = "deploy: {resources: {limits: {memory: 64m}}}"


@pytest.mark.parametrize(("policy", "extra", "expected"), [
    ("5", "", f"{KEY}: expected a mapping, got 5"),
    ("{max: 10, cpu: 60%}", "", f"{KEY}: 'min' is required (the fewest replicas, >= 1)"),
    ("{min: 2, cpu: 60%}", "", f"{KEY}: 'max' is required (the most, >= min)"),
    ("{min: 0, max: 10, cpu: 60%}", "",
     f"{KEY}.min: expected an integer from 1 to 10000, got 0"),
    ("{min: two, max: 10, cpu: 60%}", "",
     f"{KEY}.min: expected an integer from 1 to 10000, got 'two'"),
    ("{min: 1.5, max: 10, cpu: 60%}", "",
     f"{KEY}.min: expected an integer from 1 to 10000, got 1.5"),
    ("{min: true, max: 10, cpu: 60%}", "",
     f"{KEY}.min: expected an integer from 1 to 10000, got True"),
    ("{min: 3, max: 2, cpu: 60%}", "",
     f"{KEY}.max: expected an integer from 3 (min) to 10000, got 2"),
    ("{min: 3, max: 20000, cpu: 60%}", "",
     f"{KEY}.max: expected an integer from 3 (min) to 10000, got 20000"),
    ("{min: 2, max: 10}", "",
     f"{KEY}: no target: set at least one of cpu, memory, requests_per_second, connections"),
    ("{min: 1, max: 2, cpu: 60}", "", f"{KEY}.cpu: expected {SHARE}, got 60"),
    ("{min: 1, max: 2, cpu: 0}", "", f"{KEY}.cpu: expected {SHARE}, got 0"),
    ("{min: 1, max: 2, cpu: 0%}", "", f"{KEY}.cpu: expected {SHARE}, got '0%'"),
    ("{min: 1, max: 2, cpu: -10%}", "", f"{KEY}.cpu: expected {SHARE}, got '-10%'"),
    ("{min: 1, max: 2, cpu: '0.6'}", "", f"{KEY}.cpu: expected {SHARE}, got '0.6'"),
    ("{min: 1, max: 2, cpu: .nan}", "", f"{KEY}.cpu: expected {SHARE}, got nan"),
    ("{min: 1, max: 2, cpu: high}", "", f"{KEY}.cpu: expected {SHARE}, got 'high'"),
    ("{min: 1, max: 2, memory: 70%}", "",
     f"{KEY}.memory: a share of the memory limit, and the service sets none: set "
     "deploy.resources.limits.memory"),
    ("{min: 1, max: 2, memory: 120%}", LIMIT, f"{KEY}.memory: expected {MEMORY}, got '120%'"),
    ("{min: 1, max: 2, memory: 0}", LIMIT, f"{KEY}.memory: expected {MEMORY}, got 0"),
    ("{min: 1, max: 2, requests_per_second: '300'}", "",
     f"{KEY}.requests_per_second: expected {RPS}, got '300'"),
    ("{min: 1, max: 2, requests_per_second: 0}", "",
     f"{KEY}.requests_per_second: expected {RPS}, got 0"),
    ("{min: 1, max: 2, requests_per_second: .inf}", "",
     f"{KEY}.requests_per_second: expected {RPS}, got inf"),
    ("{min: 1, max: 2, connections: -1}", "", f"{KEY}.connections: expected {CONNECTIONS}, got -1"),
    ("{min: 1, max: 2, connections: true}", "",
     f"{KEY}.connections: expected {CONNECTIONS}, got True"),
    ("{min: 1, max: 2, cpu: 60%, tolerance: 0}", "",
     f"{KEY}.tolerance: expected {TOLERANCE}, got 0"),
    ("{min: 1, max: 2, cpu: 60%, tolerance: 100%}", "",
     f"{KEY}.tolerance: expected {TOLERANCE}, got '100%'"),
    ("{min: 1, max: 2, cpu: 60%, tolerance: 10}", "",
     f"{KEY}.tolerance: expected {TOLERANCE}, got 10"),
    ("{min: 1, max: 2, cpu: 60%, scale_down_window: 48h}", "",
     f"{KEY}.scale_down_window: expected a duration from 0 to 24h, got '48h'"),
    ("{min: 1, max: 2, cpu: 60%, scale_down_window: soon}", "",
     f"{KEY}.scale_down_window: expected a duration such as '10s', '1m30s' or '500ms', or a "
     "number of seconds >= 0, got 'soon'"),
    ("{min: 1, max: 2, cpu: 60%, max_step_up: 0}", "",
     f"{KEY}.max_step_up: expected a positive integer (the most replicas one decision adds), "
     "got 0"),
    ("{min: 1, max: 2, cpu: 60%, max_step_down: 1.5}", "",
     f"{KEY}.max_step_down: expected a positive integer (the most replicas one decision "
     "removes), got 1.5"),
    ("{min: 1, max: 2, cpu: 60%, step: 1}", "",
     f"key '{KEY}.step' is not supported by Podium (supported: connections, cpu, max, "
     "max_step_down, max_step_up, memory, min, requests_per_second, scale_down_window, "
     "tolerance)"),
    ("{min: 2, max: 10, cpu: 60%}", "deploy: {replicas: 12}",
     "deploy.replicas: expected an integer from 2 to 10 (x-podium-autoscale min..max: the "
     "starting count), got 12"),
    ("{min: 2, max: 10, cpu: 60%}", "deploy: {replicas: 1}",
     "deploy.replicas: expected an integer from 2 to 10 (x-podium-autoscale min..max: the "
     "starting count), got 1"),
    ("{min: 2, max: 10, cpu: 60%}", "deploy: {mode: global}",
     f"{KEY}: not allowed with mode: global (one task per node: only replicated services "
     "scale)"),
])  # fmt: skip
def test_errors_name_service_key_and_what_is_accepted(policy: str, extra: str,
                                                      expected: str) -> None:
    assert _error(policy, extra=extra) == expected


def test_the_key_is_read_only_directly_under_a_service() -> None:
    assert _error("", deploy="x-podium-autoscale: {min: 1, max: 2, cpu: 50%}\n") \
        == f"deploy.{KEY}: only recognized directly under a service"
    with pytest.raises(SpecError, match="only recognized directly under a service"):
        load_stack(f"{KEY}: {{min: 1, max: 2, cpu: 50%}}\nservices: {{web: {{image: x}}}}\n")


def test_every_rule_of_the_control_api_is_refused_in_the_files_terms() -> None:
    """Each policy the Control API's check refuses, written in a file, is refused by the parser
    with a message about the file, never with the API's field names."""
    for policy, deploy in [
        ("{min: 1, max: 2, memory: 50%}", ""),                      # no memory limit
        ("{min: 1, max: 2}", ""),                                   # no target
        ("{min: 1, max: 2, cpu: 50%, scale_down_window: 25h}", ""),  # window too long
        ("{min: 3, max: 2, cpu: 50%}", ""),                         # max below min
        ("{min: 2, max: 4, cpu: 50%}", "replicas: 5\n"),            # starting count outside
        ("{min: 2, max: 4, cpu: 50%}", "mode: global\n"),           # a global service
    ]:
        message = _error(policy, deploy=deploy)
        assert "spec." not in message, message


def test_what_the_parser_writes_the_control_api_accepts() -> None:
    """Valid files across the keys' ranges all pass podium.rules.autoscale.config_problem."""
    for policy in ["{min: 1, max: 1, cpu: 1%}", "{min: 10000, max: 10000, connections: 0.5}",
                   "{min: 1, max: 3, cpu: 200%, tolerance: 99%, scale_down_window: 24h}",
                   "{min: 1, max: 3, requests_per_second: 1000000, scale_down_window: 0}",
                   "{min: 1, max: 3, memory: 100%, max_step_up: 1, max_step_down: 4294967295}"]:
        spec = _one(policy, deploy="resources: {limits: {memory: 64m}}\n")
        assert autoscale.config_problem(spec) is None, policy
