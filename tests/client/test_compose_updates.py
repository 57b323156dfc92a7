"""Compose keys for updates: deploy.update_config, deploy.rollback_config, x-podium-canary and
x-podium-healthy-deadline -> the spec's configs (always written, with Podium's defaults for what a
file leaves out) and canary, and what each invalid value's error says."""

from __future__ import annotations

import textwrap

import pytest
from google.protobuf.duration_pb2 import Duration

from podium.client.compose import SpecError, load_stack
from podium.rules import update
from podium.v1 import objects

UC = objects.UpdateConfig


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def _one(keys: str, *, deploy: str = "") -> objects.ServiceSpec:
    """Service 'web' (image: nginx) with `keys` under it and `deploy` under its deploy key."""
    body = textwrap.indent(textwrap.dedent(keys).rstrip("\n") + "\n", "    ")
    if deploy:
        body += "    deploy:\n" + textwrap.indent(textwrap.dedent(deploy), "      ")
    (spec,) = load_stack(f"services:\n  web:\n    image: nginx\n{body}")
    return spec


def _error(keys: str, *, deploy: str = "") -> str:
    with pytest.raises(SpecError) as info:
        _one(keys, deploy=deploy)
    message = str(info.value)
    assert message.startswith("<spec>: service 'web': "), message
    return message


def test_a_file_without_the_keys_gets_both_default_configs() -> None:
    spec = _one("")
    assert spec.HasField("update_config") and spec.HasField("rollback_config")
    assert spec.update_config == UC(
        parallelism=1, delay=_seconds(0), failure_action=UC.FAILURE_ACTION_ROLLBACK,
        monitor=_seconds(5), max_failure_ratio=0.0,
    )  # fmt: skip
    assert spec.rollback_config == UC(
        parallelism=1, delay=_seconds(0), failure_action=UC.FAILURE_ACTION_PAUSE,
        monitor=_seconds(5), max_failure_ratio=0.0,
    )  # fmt: skip
    assert spec.update_config == update.default_config()
    assert spec.rollback_config == update.default_config(rollback=True)
    assert not spec.HasField("canary")
    # Written or left to the manager, the update runs the same way.
    assert update.plan(spec) == update.plan(objects.ServiceSpec(container=spec.container))
    assert update.config_problem(spec) is None


def test_every_field_of_both_configs() -> None:
    spec = _one(
        "",
        deploy="""
        replicas: 4
        update_config:
          parallelism: 2
          delay: 10s
          failure_action: pause
          monitor: 1m
          max_failure_ratio: 0.25
          order: stop-first
        rollback_config:
          parallelism: 0
          delay: 500ms
          failure_action: continue
          monitor: 2
          max_failure_ratio: 1
          order: start-first
        """,
    )
    assert spec.update_config == UC(
        parallelism=2, delay=_seconds(10), failure_action=UC.FAILURE_ACTION_PAUSE,
        monitor=_seconds(60), max_failure_ratio=0.25, order=UC.ORDER_STOP_FIRST,
    )  # fmt: skip
    assert spec.rollback_config == UC(
        parallelism=0, delay=_seconds(0.5), failure_action=UC.FAILURE_ACTION_CONTINUE,
        monitor=_seconds(2), max_failure_ratio=1.0, order=UC.ORDER_START_FIRST,
    )  # fmt: skip
    assert update.config_problem(spec) is None


def test_fields_left_out_take_the_defaults_of_their_config() -> None:
    spec = _one("", deploy="update_config: {parallelism: 3}\nrollback_config: {delay: 1s}\n")
    expected = update.default_config()
    expected.parallelism = 3
    assert spec.update_config == expected
    expected = update.default_config(rollback=True)
    expected.delay.FromSeconds(1)
    assert spec.rollback_config == expected
    assert spec.rollback_config.failure_action == UC.FAILURE_ACTION_PAUSE
    # An empty mapping is all defaults.
    assert _one("", deploy="update_config: {}\n").update_config == update.default_config()


@pytest.mark.parametrize("action", ["rollback", "pause", "continue"])
def test_update_failure_actions(action: str) -> None:
    spec = _one("", deploy=f"update_config: {{failure_action: {action}}}\n")
    assert update.failure_action_name(spec.update_config.failure_action) == action


@pytest.mark.parametrize("order", ["start-first", "stop-first"])
def test_orders(order: str) -> None:
    spec = _one("", deploy=f"rollback_config: {{order: {order}}}\n")
    assert update.order_name(spec.rollback_config.order) == order


def test_start_first_with_a_fixed_host_mode_port_is_accepted() -> None:
    """The manager falls back to stop-first and says why; the file is not wrong."""
    spec = _one("ports: [{target: 80, published: 8080, mode: host}]\n",
                deploy="update_config: {order: start-first}\n")
    assert spec.update_config.order == UC.ORDER_START_FIRST
    planned = update.plan(spec)
    assert not planned.start_first and "host-mode port 8080" in planned.order_note


def test_healthy_deadline_is_written_into_both_configs() -> None:
    spec = _one("x-podium-healthy-deadline: 2m\n", deploy="update_config: {parallelism: 2}\n")
    assert spec.update_config.healthy_deadline == _seconds(120)
    assert spec.rollback_config.healthy_deadline == _seconds(120)
    assert spec.update_config.parallelism == 2
    for rollback in (False, True):
        assert update.plan(spec, rollback=rollback).healthy_deadline_s == 120
    assert not _one("").update_config.HasField("healthy_deadline")  # the manager's default


def test_canary() -> None:
    spec = _one("x-podium-canary: {count: 2, auto_promote_after: 5m}\n", deploy="replicas: 3\n")
    assert spec.canary == objects.Canary(count=2, auto_promote_after=_seconds(300))
    by_hand = _one("x-podium-canary: {count: 1}\n").canary  # replicas 1: count 1 is all
    assert by_hand == objects.Canary(count=1)
    assert not by_hand.HasField("auto_promote_after")  # waits for `podium promote`
    assert update.config_problem(spec) is None


def test_canary_from_an_anchor() -> None:
    text = """
    x-canary: &canary {count: 1}
    services:
      web:
        image: nginx
        x-podium-canary: *canary
    """
    (web,) = load_stack(textwrap.dedent(text))
    assert web.canary.count == 1


UPDATE = "deploy.update_config"
ROLLBACK = "deploy.rollback_config"


@pytest.mark.parametrize(
    ("keys", "deploy", "expected"),
    [
        ("", "update_config: pause", f"{UPDATE}: expected a mapping, got 'pause'"),
        ("", "update_config: {parallelism: -1}",
         f"{UPDATE}.parallelism: expected a non-negative integer, got -1"),
        ("", "update_config: {parallelism: 1.5}",
         f"{UPDATE}.parallelism: expected a non-negative integer, got 1.5"),
        ("", "rollback_config: {parallelism: all}",
         f"{ROLLBACK}.parallelism: expected a non-negative integer, got 'all'"),
        ("", "update_config: {delay: soon}", f"{UPDATE}.delay: expected a duration such as"),
        ("", "rollback_config: {delay: -1s}", f"{ROLLBACK}.delay: expected a duration such as"),
        ("", "update_config: {monitor: 5x}", f"{UPDATE}.monitor: expected a duration"),
        ("", "rollback_config: {monitor: 1d}", f"{ROLLBACK}.monitor: expected a duration"),
        ("", "update_config: {failure_action: stop}",
         f"{UPDATE}.failure_action: expected 'rollback' or 'pause' or 'continue', got 'stop'"),
        ("", "update_config: {failure_action: true}",
         f"{UPDATE}.failure_action: expected 'rollback' or 'pause' or 'continue', got True"),
        ("", "rollback_config: {failure_action: rollback}",
         f"{ROLLBACK}.failure_action: expected 'pause' or 'continue', got 'rollback': a rollback"
         " that fails is never rolled back"),
        ("", "rollback_config: {failure_action: stop}",
         f"{ROLLBACK}.failure_action: expected 'pause' or 'continue', got 'stop'"),
        ("", "update_config: {max_failure_ratio: 1.5}",
         f"{UPDATE}.max_failure_ratio: expected a number from 0 to 1, such as 0.2, got 1.5"),
        ("", "update_config: {max_failure_ratio: -0.1}",
         f"{UPDATE}.max_failure_ratio: expected a number from 0 to 1, such as 0.2, got -0.1"),
        ("", "rollback_config: {max_failure_ratio: .nan}",
         f"{ROLLBACK}.max_failure_ratio: expected a number from 0 to 1, such as 0.2, got nan"),
        ("", "update_config: {max_failure_ratio: '0.1'}",
         f"{UPDATE}.max_failure_ratio: expected a number from 0 to 1, such as 0.2, got '0.1'"),
        ("", "update_config: {max_failure_ratio: true}",
         f"{UPDATE}.max_failure_ratio: expected a number from 0 to 1, such as 0.2, got True"),
        ("", "update_config: {order: random}",
         f"{UPDATE}.order: expected 'start-first' or 'stop-first', got 'random'"),
        ("", "rollback_config: {order: start_first}",
         f"{ROLLBACK}.order: expected 'start-first' or 'stop-first', got 'start_first'"),
        ("x-podium-healthy-deadline: 0s", "",
         "x-podium-healthy-deadline: expected a duration greater than 0, got '0s'"),
        ("x-podium-healthy-deadline: never", "",
         "x-podium-healthy-deadline: expected a duration such as '10s'"),
        ("x-podium-canary: 2", "", "x-podium-canary: expected a mapping, got 2"),
        ("x-podium-canary: {auto_promote_after: 1m}", "",
         "x-podium-canary: 'count' is required (canary tasks, from 1 to deploy.replicas)"),
        ("x-podium-canary: {count: 0}", "replicas: 3",
         "x-podium-canary.count: expected an integer from 1 to 3 (deploy.replicas), got 0"),
        ("x-podium-canary: {count: 4}", "replicas: 3",
         "x-podium-canary.count: expected an integer from 1 to 3 (deploy.replicas), got 4"),
        ("x-podium-canary: {count: one}", "",
         "x-podium-canary.count: expected an integer from 1 to 1 (deploy.replicas), got 'one'"),
        ("x-podium-canary: {count: 1}", "replicas: 0",
         "x-podium-canary.count: not allowed with deploy.replicas: 0"),
        ("x-podium-canary: {count: 1}", "mode: global",
         "x-podium-canary: not allowed with mode: global"),
        ("x-podium-canary: {count: 1, auto_promote_after: 0}", "",
         "x-podium-canary.auto_promote_after: expected a duration greater than 0, got 0"),
        ("x-podium-canary: {count: 1, auto_promote_after: later}", "",
         "x-podium-canary.auto_promote_after: expected a duration such as"),
        ("", "x-podium-canary: {count: 1}",
         "deploy.x-podium-canary: only recognized directly under a service"),
        ("", "update_config: {x-podium-healthy-deadline: 1m}",
         "deploy.update_config.x-podium-healthy-deadline: only recognized directly under a"),
    ],
)  # fmt: skip
def test_errors_name_service_key_and_what_is_accepted(keys: str, deploy: str,
                                                      expected: str) -> None:
    assert _error(keys, deploy=deploy).startswith(f"<spec>: service 'web': {expected}")


def test_the_extensions_at_the_top_level_are_errors() -> None:
    for key in ("x-podium-canary: {count: 1}", "x-podium-healthy-deadline: 1m"):
        with pytest.raises(SpecError, match="only recognized directly under a service"):
            load_stack(f"{key}\nservices: {{web: {{image: x}}}}\n")
