"""Update rules: the settings an update runs with (plan), what the Control API refuses in a spec's
update_config / rollback_config / canary (config_problem), which changes replace tasks, and the
one-line description of a change that `podium history` shows."""

from __future__ import annotations

import math

import pytest

from podium.rules import update
from podium.v1 import objects

UC = objects.UpdateConfig
PortConfig = objects.PortConfig
ServiceSpec = objects.ServiceSpec


def _spec(**fields: object) -> ServiceSpec:
    spec = ServiceSpec(**{"name": "web", "replicas": 3, **fields})  # type: ignore[arg-type]
    spec.container.image = "web:1"
    return spec


# -- plan ------------------------------------------------------------------------------------


def test_a_spec_without_configs_gets_podiums_defaults() -> None:
    forward, back = update.plan(_spec()), update.plan(_spec(), rollback=True)
    assert forward == update.Plan(
        parallelism=1, delay_s=0.0, failure_action=UC.FAILURE_ACTION_ROLLBACK, monitor_s=5.0,
        max_failure_ratio=0.0, start_first=True, healthy_deadline_s=300.0, order_note="",
    )  # fmt: skip
    # A rollback that fails pauses: it is never rolled back in turn.
    assert back == update.Plan(
        parallelism=1, delay_s=0.0, failure_action=UC.FAILURE_ACTION_PAUSE, monitor_s=5.0,
        max_failure_ratio=0.0, start_first=True, healthy_deadline_s=300.0, order_note="",
    )  # fmt: skip


def test_the_default_configs_plan_as_a_spec_without_configs() -> None:
    """What the Compose parser writes for a file without the keys runs as the manager's
    defaults for a spec without them."""
    spec = _spec()
    spec.update_config.CopyFrom(update.default_config())
    spec.rollback_config.CopyFrom(update.default_config(rollback=True))
    assert update.plan(spec) == update.plan(_spec())
    assert update.plan(spec, rollback=True) == update.plan(_spec(), rollback=True)


def test_a_given_config_is_followed() -> None:
    spec = _spec()
    config = spec.update_config
    config.parallelism, config.failure_action = 0, UC.FAILURE_ACTION_CONTINUE
    config.max_failure_ratio, config.order = 0.25, UC.ORDER_STOP_FIRST
    config.delay.FromMilliseconds(1500)
    config.monitor.FromSeconds(30)
    config.healthy_deadline.FromSeconds(60)
    assert update.plan(spec) == update.Plan(
        parallelism=0, delay_s=1.5, failure_action=UC.FAILURE_ACTION_CONTINUE, monitor_s=30.0,
        max_failure_ratio=0.25, start_first=False, healthy_deadline_s=60.0, order_note="",
    )  # fmt: skip
    # The rollback config is its own: left out, the rollback runs with the defaults.
    assert update.plan(spec, rollback=True).failure_action == UC.FAILURE_ACTION_PAUSE
    assert update.plan(spec, rollback=True).monitor_s == 5.0


def test_rollback_failure_action_rollback_is_read_as_pause() -> None:
    spec = _spec(rollback_config=UC(failure_action=UC.FAILURE_ACTION_ROLLBACK))
    assert update.plan(spec, rollback=True).failure_action == UC.FAILURE_ACTION_PAUSE


@pytest.mark.parametrize("order", [UC.ORDER_DEFAULT, UC.ORDER_START_FIRST])
def test_start_first_unless_the_config_says_stop_first(order: int) -> None:
    spec = _spec(update_config=UC(order=order))  # type: ignore[arg-type]
    assert update.plan(spec).start_first and update.plan(spec).order_note == ""


@pytest.mark.parametrize("order", [UC.ORDER_DEFAULT, UC.ORDER_START_FIRST, UC.ORDER_STOP_FIRST])
def test_a_fixed_host_mode_port_forces_stop_first_and_says_why(order: int) -> None:
    ports = [PortConfig(target_port=80, published_port=8080),  # ingress: the mesh binds it
             PortConfig(target_port=443, published_port=8443,
                        mode=PortConfig.PUBLISH_MODE_HOST)]  # fmt: skip
    spec = _spec(ports=ports, update_config=UC(order=order))
    for rollback in (False, True):
        planned = update.plan(spec, rollback=rollback)
        assert not planned.start_first
        assert planned.order_note == (
            "host-mode port 8443 cannot be bound twice on one node: stop-first")
    assert update.stop_first_reason(spec) == planned.order_note


def test_ports_two_tasks_can_share_leave_start_first() -> None:
    ports = [PortConfig(target_port=80, published_port=8080),  # ingress
             PortConfig(target_port=81, mode=PortConfig.PUBLISH_MODE_HOST)]  # engine picks one
    spec = _spec(ports=ports, update_config=UC(order=UC.ORDER_START_FIRST))
    assert update.stop_first_reason(spec) == ""
    assert update.plan(spec).start_first


def test_a_global_service_updates_stop_first_node_by_node() -> None:
    spec = _spec(mode=ServiceSpec.MODE_GLOBAL, replicas=0,
                 update_config=UC(order=UC.ORDER_START_FIRST))
    planned = update.plan(spec)
    assert not planned.start_first
    assert planned.order_note == "a global service runs one task per node: stop-first, node by node"


def test_names_of_the_compose_spellings() -> None:
    for name, value in update.FAILURE_ACTIONS.items():
        assert update.failure_action_name(value) == name
    for name, value in update.ORDERS.items():
        assert update.order_name(value) == name
    assert update.order_name(UC.ORDER_DEFAULT) == "default"
    assert set(update.ROLLBACK_FAILURE_ACTIONS) == {"pause", "continue"}


# -- config_problem --------------------------------------------------------------------------


def test_specs_without_problems() -> None:
    assert update.config_problem(_spec()) is None
    spec = _spec(update_config=update.default_config(),
                 rollback_config=update.default_config(rollback=True),
                 canary=objects.Canary(count=3))
    spec.canary.auto_promote_after.FromSeconds(60)
    spec.update_config.max_failure_ratio = 1.0
    assert update.config_problem(spec) is None
    # A canary count of 0 is no canary, on any service.
    assert update.config_problem(_spec(mode=ServiceSpec.MODE_GLOBAL, replicas=0,
                                       canary=objects.Canary())) is None


def _with(key: str, **fields: object) -> ServiceSpec:
    spec = _spec()
    config = getattr(spec, key)
    if key != "canary":
        config.CopyFrom(update.default_config(rollback=key == "rollback_config"))
    for name, value in fields.items():
        if isinstance(value, tuple):  # a Duration: (seconds, nanos)
            getattr(config, name).seconds, getattr(config, name).nanos = value
        else:
            setattr(config, name, value)
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (_with("update_config", max_failure_ratio=-0.1),
         "spec.update_config.max_failure_ratio -0.1: expected a number from 0 to 1"),
        (_with("update_config", max_failure_ratio=1.5),
         "spec.update_config.max_failure_ratio 1.5: expected a number from 0 to 1"),
        (_with("rollback_config", max_failure_ratio=math.nan),
         "spec.rollback_config.max_failure_ratio nan: expected a number from 0 to 1"),
        (_with("update_config", max_failure_ratio=math.inf),
         "spec.update_config.max_failure_ratio inf: expected a number from 0 to 1"),
        (_with("update_config", failure_action=7),
         "spec.update_config.failure_action 7: expected FAILURE_ACTION_ROLLBACK or"
         " FAILURE_ACTION_PAUSE or FAILURE_ACTION_CONTINUE"),
        (_with("rollback_config", failure_action=7),
         "spec.rollback_config.failure_action 7: expected FAILURE_ACTION_PAUSE or"
         " FAILURE_ACTION_CONTINUE"),
        (_with("rollback_config", failure_action=UC.FAILURE_ACTION_ROLLBACK),
         "spec.rollback_config.failure_action FAILURE_ACTION_ROLLBACK: a rollback is never"
         " rolled back: expected FAILURE_ACTION_PAUSE or FAILURE_ACTION_CONTINUE"),
        (_with("update_config", order=3),
         "spec.update_config.order 3: expected ORDER_DEFAULT or ORDER_START_FIRST or"
         " ORDER_STOP_FIRST"),
        (_with("update_config", delay=(-1, 0)),
         "spec.update_config.delay -1s: expected a duration >= 0"),
        (_with("rollback_config", monitor=(0, -500_000_000)),
         "spec.rollback_config.monitor -0.5s: expected a duration >= 0"),
        (_with("update_config", healthy_deadline=(-60, 0)),
         "spec.update_config.healthy_deadline -60s: expected a duration >= 0"),
        (_with("update_config", monitor=(1, -5)),
         "spec.update_config.monitor (seconds=1, nanos=-5): not a valid google.protobuf.Duration"),
        (_with("update_config", delay=(0, 2_000_000_000)),
         "spec.update_config.delay (seconds=0, nanos=2000000000): not a valid"),
        (_with("canary", count=4), "spec.canary.count 4: at most spec.replicas (3)"),
        (_with("canary", count=1, auto_promote_after=(-5, 0)),
         "spec.canary.auto_promote_after -5s: expected a duration >= 0"),
    ],
)  # fmt: skip
def test_config_problems_name_the_field_and_what_is_accepted(spec: ServiceSpec,
                                                              expected: str) -> None:
    problem = update.config_problem(spec)
    assert problem is not None and problem.startswith(expected)


def test_a_global_service_has_no_canaries() -> None:
    spec = _spec(mode=ServiceSpec.MODE_GLOBAL, replicas=0, canary=objects.Canary(count=1))
    assert update.config_problem(spec) == (
        "spec.canary.count 1: a global service (one task per node) has no canaries: expected 0")


def test_an_unset_rollback_config_is_not_a_rollback_of_a_rollback() -> None:
    """failure_action's zero value is rollback: it only counts when the config is given."""
    spec = _spec(update_config=UC(parallelism=2))
    assert not spec.HasField("rollback_config")
    assert update.config_problem(spec) is None


# -- replaces_tasks and changes --------------------------------------------------------------


def test_only_task_fields_replace_tasks() -> None:
    old = _spec()
    new = _spec(replicas=9, update_config=UC(parallelism=3), canary=objects.Canary(count=1))
    new.rollback_config.CopyFrom(update.default_config(rollback=True))
    assert not update.replaces_tasks(old, new)
    assert update.changes(old, new) == "no change"
    for change in ("image", "env", "force"):
        other = _spec()
        if change == "image":
            other.container.image = "web:2"
        elif change == "env":
            other.container.env["VERSION"] = "2"
        else:
            other.force_update = 1
        assert update.replaces_tasks(old, other), change


def test_changes_describe_each_field_for_people() -> None:
    old = _spec(ports=[PortConfig(target_port=80)])
    old.container.env.update({"VERSION": "1", "GONE": "x"})
    old.container.stop_grace_period.FromSeconds(10)
    new = _spec(mode=ServiceSpec.MODE_GLOBAL, ports=[PortConfig(target_port=81)])
    new.container.image = "web:2"
    new.container.env.update({"VERSION": "2", "NEW": "y"})
    new.container.stop_grace_period.FromSeconds(30)
    new.probe.port = 80
    assert update.changes(old, new, limit=20) == (
        "container.image web:1 -> web:2; container.env.GONE removed; container.env.NEW = y; "
        "container.env.VERSION 1 -> 2; container.stop_grace_period 10s -> 30s; "
        "mode MODE_REPLICATED -> MODE_GLOBAL; ports changed; probe added"
    )
    assert update.changes(old, new) == (
        "container.image web:1 -> web:2; container.env.GONE removed; container.env.NEW = y; "
        "container.env.VERSION 1 -> 2; 4 more"
    )


def test_a_check_given_or_removed_is_a_change_even_when_empty() -> None:
    """healthcheck: {} (the image's HEALTHCHECK with the engine's timing) is not no check: a
    change that replaces tasks also says what changed."""
    old, new = _spec(), _spec()
    new.container.healthcheck.SetInParent()
    new.container.stop_grace_period.FromSeconds(0)
    assert update.replaces_tasks(old, new)
    assert update.changes(old, new) == (
        "container.stop_grace_period unset -> 0s; container.healthcheck added")
    assert update.changes(new, old) == (
        "container.stop_grace_period 0s -> unset; container.healthcheck removed")


def test_long_values_are_cut() -> None:
    old, new = _spec(), _spec()
    new.container.env["KEY"] = "v" * 100
    assert update.changes(old, new) == f"container.env.KEY = {'v' * 37}..."
