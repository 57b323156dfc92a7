"""The service keys of a Compose file that say how a task is checked, restarted and replaced.

`set_checks(data, spec, service)` and `set_updates(data, spec, service)` read them from one
service's mapping (which compose.py has checked to hold only supported keys, and whose deploy
mode and replicas it has read into `spec`) into `spec`, raising SpecError as compose.py does:

- `healthcheck` (Compose) -> spec.container.healthcheck, the check the engine runs in the
  container. `test` is a string (run by the container's shell: ["CMD-SHELL", string]) or a list
  ["CMD", ARG, ...], ["CMD-SHELL", COMMAND] or ["NONE"]; `disable: true` means ["NONE"]. The
  durations (interval, timeout, start_period, start_interval) are 0 or at least 1ms, as the engine
  requires; retries is a non-negative integer. Fields the file leaves out stay unset (HasField is
  false), so the engine's defaults apply, and without `test` the image's HEALTHCHECK command runs.
- `x-podium-probe` (a Podium extension) -> spec.probe, the check the agent runs against the
  container's address: exactly one of `http: {port, path ("/"), status ("200-399")}` or
  `tcp: {port}`, and interval (10s), timeout (2s), retries (3), start_period (0) and
  start_interval (unset: the interval). The defaults are written into the Probe, so the agent
  runs what the spec says rather than defaults of its own.
- `deploy.restart_policy` (Compose) -> spec.restart_policy: condition none | on-failure | any
  (the default), delay, max_attempts and window; left out, delay, max_attempts and window stay
  unset for the restart logic's defaults.
- `deploy.update_config` and `deploy.rollback_config` (Compose) -> spec.update_config and
  spec.rollback_config, both always written: the fields a file gives over
  podium.rules.update.default_config(rollback=...), so the stored spec shows the settings in
  effect. parallelism is a non-negative integer (0: all at once), delay and monitor durations,
  failure_action rollback | pause | continue (rollback_config: pause | continue, as a rollback is
  never rolled back), max_failure_ratio a number from 0 to 1, order start-first | stop-first
  (start-first is accepted with a fixed host-mode port: the manager then updates stop-first and
  says why, podium.rules.update.stop_first_reason).
- `x-podium-healthy-deadline` (a Podium extension): a duration > 0 written into both configs'
  healthy_deadline; left out, healthy_deadline stays 0 (podium.rules.update.HEALTHY_DEADLINE_S).
- `x-podium-canary` (a Podium extension) -> spec.canary: `count` (required, 1 to the replica
  count; not on a global service) and `auto_promote_after` (a duration > 0; left out, canaries
  wait for `podium promote`).
- `x-podium-autoscale` (a Podium extension) -> spec.autoscale, the count following the load:
  `min` (an integer >= 1) and `max` (an integer >= min) are required, and at least one target
  per ready replica: `cpu` (a share of the cpus limit, else of one core) and `memory` (a share
  of the memory limit, which the service must set), each a percentage "60%" or a fraction 0.6,
  and `requests_per_second` and `connections`, numbers above 0. Tuning, left out for
  podium.rules.autoscale's defaults: `tolerance` (a share above 0 and below 1), `scale_down_window`
  (a duration) and `max_step_up` / `max_step_down` (positive integers). `deploy.replicas` is the
  starting count and must lie within min..max; left out, it is `min`. Not on a global service.
  The result always passes podium.rules.autoscale.config_problem, the Control API's check.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from podium.client.compose import (
    _AUTOSCALE_KEY,
    _CANARY_KEY,
    _DEADLINE_KEY,
    _PROBE_KEY,
    SpecError,
    _At,
    _choice,
    _count,
    _mapping,
    _nanos,
    _port,
)
from podium.rules import autoscale
from podium.rules import probe as defaults
from podium.rules import update as updates
from podium.rules.units import cpus
from podium.v1 import objects

__all__ = ["set_autoscale", "set_checks", "set_updates"]


def set_checks(data: dict[str, object], spec: objects.ServiceSpec, service: str) -> None:
    """Sets spec's healthcheck, probe and restart_policy from the mapping of service `service` (its
    key in the file), each only when its key is given (an empty mapping sets an empty message:
    HasField is true)."""
    at = _At(service)
    if "healthcheck" in data:
        check = _healthcheck(data["healthcheck"], at.sub("healthcheck"))
        spec.container.healthcheck.CopyFrom(check)
    if _PROBE_KEY in data:
        spec.probe.CopyFrom(_probe(data[_PROBE_KEY], at.sub(_PROBE_KEY)))
    deploy = data.get("deploy")
    if isinstance(deploy, dict) and "restart_policy" in deploy:
        where = at.sub("deploy").sub("restart_policy")
        spec.restart_policy.CopyFrom(_restart_policy(deploy["restart_policy"], where))


_HEALTH_TEST = "a command string, or a list ['CMD', ARG, ...], ['CMD-SHELL', COMMAND] or ['NONE']"
_DURATIONS = ("interval", "timeout", "start_period", "start_interval")


def _health_test(value: object, at: _At) -> list[str]:
    test = ["CMD-SHELL", value] if isinstance(value, str) else value
    if isinstance(test, list) and test and all(isinstance(word, str) for word in test):
        kind, args = test[0], test[1:]
        if (
            (kind == "CMD" and args)
            or (kind == "CMD-SHELL" and len(args) == 1 and args[0].strip())
            or (kind == "NONE" and not args)
        ):
            return list(test)
    raise at.error(_HEALTH_TEST, value)


def _healthcheck(value: object, at: _At) -> objects.HealthCheck:
    data = _mapping(value, at, "healthcheck")
    test = _health_test(data["test"], at.sub("test")) if "test" in data else []
    disable = data.get("disable", False)
    if not isinstance(disable, bool):
        raise at.sub("disable").error("true or false", disable)
    if disable and test not in ([], ["NONE"]):
        raise SpecError(f"{at.sub('disable')}: not allowed with a test other than ['NONE']")
    check = objects.HealthCheck(test=["NONE"] if disable else test)
    for key in _DURATIONS:
        if key in data:
            nanos = _nanos(data[key], at.sub(key))
            if 0 < nanos < 1_000_000:  # the engine would refuse to create the container
                raise at.sub(key).error("0 or at least 1ms (the engine's minimum)", data[key])
            getattr(check, key).FromNanoseconds(nanos)
    if "retries" in data:
        check.retries = _count(data["retries"], at.sub("retries"))
    return check


_PROBE_KINDS = {"http": objects.Probe.KIND_HTTP, "tcp": objects.Probe.KIND_TCP}
_PROBE_DEFAULTS: dict[str, object] = {
    "interval": defaults.INTERVAL_S, "timeout": defaults.TIMEOUT_S,
    "start_period": defaults.START_PERIOD_S,
}
_STATUS = re.compile(r"([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?")
_STATUS_FORM = "an HTTP status such as 200, or a range such as '200-299' (100 to 599)"


def _status_range(value: object, at: _At) -> tuple[int, int]:
    """status: 200 or "200" -> (200, 200); "200-299" -> (200, 299)."""
    scalar = isinstance(value, int | str) and not isinstance(value, bool)
    match = _STATUS.fullmatch(str(value)) if scalar else None
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
    if low > high:
        raise at.error(_STATUS_FORM, value)
    return low, high


def _probe(value: object, at: _At) -> objects.Probe:
    data = _mapping(value, at, _PROBE_KEY)
    kinds = [kind for kind in _PROBE_KINDS if kind in data]
    if len(kinds) != 1:
        given = "both" if kinds else "neither"
        raise SpecError(f"{at}: expected exactly one of 'http' or 'tcp', got {given}")
    kind, where = kinds[0], at.sub(kinds[0])
    target = _mapping(data[kind], where, f"{_PROBE_KEY}.{kind}")
    if "port" not in target:
        raise SpecError(f"{where}: 'port' is required")
    probe = objects.Probe(kind=_PROBE_KINDS[kind], port=_port(target["port"], where.sub("port")))
    if kind == "http":
        path = target.get("path", "/")
        if not isinstance(path, str) or not re.fullmatch(r"/\S*", path):
            raise where.sub("path").error("a path starting with '/', without spaces", path)
        probe.path = path
        if "status" in target:
            status = _status_range(target["status"], where.sub("status"))
        else:
            status = defaults.STATUS_MIN, defaults.STATUS_MAX
        probe.status_min, probe.status_max = status
    for key in _DURATIONS:
        if key in data or key in _PROBE_DEFAULTS:
            duration = data.get(key, _PROBE_DEFAULTS.get(key))
            nanos = _nanos(duration, at.sub(key), positive=key in ("interval", "timeout"))
            getattr(probe, key).FromNanoseconds(nanos)
    # 0 would be read by the agent as 1: ask for what is meant.
    probe.retries = _count(data.get("retries", defaults.RETRIES), at.sub("retries"),
                           positive=True)
    return probe


_CONDITIONS = {
    "none": objects.RestartPolicy.CONDITION_NONE,
    "on-failure": objects.RestartPolicy.CONDITION_ON_FAILURE,
    "any": objects.RestartPolicy.CONDITION_ANY,
}


def _restart_policy(value: object, at: _At) -> objects.RestartPolicy:
    data = _mapping(value, at, "deploy.restart_policy")
    condition = _choice(data.get("condition", "any"), _CONDITIONS, at.sub("condition"))
    policy = objects.RestartPolicy(condition=_CONDITIONS[condition])
    for key in ("delay", "window"):
        if key in data:
            getattr(policy, key).FromNanoseconds(_nanos(data[key], at.sub(key)))
    if "max_attempts" in data:
        policy.max_attempts = _count(data["max_attempts"], at.sub("max_attempts"))
    return policy


_UPDATE_KEYS = ("update_config", "rollback_config")


def set_updates(data: dict[str, object], spec: objects.ServiceSpec, service: str) -> None:
    """Sets spec's update_config and rollback_config (always) and canary (when given) from the
    mapping of service `service`; spec.mode and spec.replicas must already be set."""
    at = _At(service)
    deadline = 0
    if _DEADLINE_KEY in data:
        deadline = _nanos(data[_DEADLINE_KEY], at.sub(_DEADLINE_KEY), positive=True)
    deploy = data.get("deploy")
    for key in _UPDATE_KEYS:
        rollback = key == "rollback_config"
        config = updates.default_config(rollback=rollback)
        if isinstance(deploy, dict) and key in deploy:
            _update_config(deploy[key], config, at.sub("deploy").sub(key), key)
        if deadline:
            config.healthy_deadline.FromNanoseconds(deadline)
        getattr(spec, key).CopyFrom(config)
    if _CANARY_KEY in data:
        spec.canary.CopyFrom(_canary(data[_CANARY_KEY], spec, at.sub(_CANARY_KEY)))


def _update_config(value: object, config: objects.UpdateConfig, at: _At, key: str) -> None:
    """Writes the fields `value` (deploy.KEY) gives over `config` (the defaults)."""
    data = _mapping(value, at, f"deploy.{key}")
    rollback = key == "rollback_config"
    if "parallelism" in data:
        config.parallelism = _count(data["parallelism"], at.sub("parallelism"))
    for field in ("delay", "monitor"):
        if field in data:
            getattr(config, field).FromNanoseconds(_nanos(data[field], at.sub(field)))
    if "failure_action" in data:
        where, action = at.sub("failure_action"), data["failure_action"]
        actions = updates.ROLLBACK_FAILURE_ACTIONS if rollback else updates.FAILURE_ACTIONS
        if rollback and action == "rollback":
            accepted = " or ".join(repr(name) for name in actions)
            raise SpecError(f"{where}: expected {accepted}, got 'rollback': a rollback that "
                            "fails is never rolled back")
        config.failure_action = actions[_choice(action, actions, where)]
    if "max_failure_ratio" in data:
        ratio = data["max_failure_ratio"]
        # bool is an int; nan fails both comparisons.
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise at.sub("max_failure_ratio").error("a number from 0 to 1, such as 0.2", ratio)
        config.max_failure_ratio = ratio
    if "order" in data:
        order = _choice(data["order"], updates.ORDERS, at.sub("order"))
        config.order = updates.ORDERS[order]


def _canary(value: object, spec: objects.ServiceSpec, at: _At) -> objects.Canary:
    data = _mapping(value, at, _CANARY_KEY)
    if spec.mode == objects.ServiceSpec.MODE_GLOBAL:
        raise SpecError(f"{at}: not allowed with mode: global (one task per node: no room for "
                        "canaries beside it)")
    if "count" not in data:
        raise SpecError(f"{at}: 'count' is required (canary tasks, from 1 to deploy.replicas)")
    count = data["count"]
    if spec.replicas == 0:
        raise SpecError(f"{at.sub('count')}: not allowed with deploy.replicas: 0 (a canary "
                        "runs beside the service's tasks)")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= spec.replicas:
        raise at.sub("count").error(f"an integer from 1 to {spec.replicas} (deploy.replicas)",
                                    count)
    canary = objects.Canary(count=count)
    if "auto_promote_after" in data:
        after = _nanos(data["auto_promote_after"], at.sub("auto_promote_after"), positive=True)
        canary.auto_promote_after.FromNanoseconds(after)
    return canary


_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+) ?%")
_SHARES = {  # key -> what is accepted, with an example
    "cpu": "a percentage above 0 such as '60%', or a fraction such as 0.6 (of the cpus limit, "
           "else of one core)",
    "memory": "a percentage above 0 up to 100% such as '70%', or a fraction such as 0.7 (of the "
              "memory limit)",
    "tolerance": "a percentage above 0 and below 100% such as '10%', or a fraction such as 0.1",
}  # fmt: skip
_RATES = {
    "requests_per_second": "a number of requests per second above 0 (per ready replica), "
                           "such as 300",
    "connections": "a number of concurrent connections above 0 (per ready replica), such as 50",
}  # fmt: skip
_STEPS = {"max_step_up": "a positive integer (the most replicas one decision adds)",
          "max_step_down": "a positive integer (the most replicas one decision removes)"}


def set_autoscale(data: dict[str, object], spec: objects.ServiceSpec, service: str) -> None:
    """Sets spec.autoscale from the mapping of service `service` when it has x-podium-autoscale,
    and spec.replicas to `min` when its deploy leaves replicas out; spec.mode, spec.replicas and
    spec.resources must already be set."""
    if _AUTOSCALE_KEY not in data:
        return
    at = _At(service).sub(_AUTOSCALE_KEY)
    fields = _mapping(data[_AUTOSCALE_KEY], at, _AUTOSCALE_KEY)
    if spec.mode == objects.ServiceSpec.MODE_GLOBAL:
        raise SpecError(f"{at}: not allowed with mode: global (one task per node: only "
                        "replicated services scale)")
    for key, meaning in (("min", "the fewest replicas, >= 1"), ("max", "the most, >= min")):
        if key not in fields:
            raise SpecError(f"{at}: '{key}' is required ({meaning})")
    policy = objects.Autoscale()
    policy.min = _replicas(fields["min"], at.sub("min"), low=1, what="")
    policy.max = _replicas(fields["max"], at.sub("max"), low=policy.min, what=" (min)")
    for key in autoscale.TARGETS:
        if key in fields:
            setattr(policy, key, _target(key, fields[key], at.sub(key), spec))
    if "tolerance" in fields:
        policy.tolerance = _share("tolerance", fields["tolerance"], at.sub("tolerance"))
    if "scale_down_window" in fields:
        window = _nanos(fields["scale_down_window"], at.sub("scale_down_window"))
        policy.scale_down_window.FromNanoseconds(window)
    for key, accepted in _STEPS.items():
        if key in fields:
            step = fields[key]
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step < 2**32:
                raise at.sub(key).error(accepted, step)
            setattr(policy, key, step)
    spec.autoscale.CopyFrom(policy)
    deploy = data.get("deploy")
    if not isinstance(deploy, dict) or "replicas" not in deploy:
        spec.replicas = policy.min
    elif not policy.min <= spec.replicas <= policy.max:
        raise _At(service).sub("deploy").sub("replicas").error(
            f"an integer from {policy.min} to {policy.max} (x-podium-autoscale min..max: the "
            "starting count)", deploy["replicas"])
    # The Control API's own check: whatever it refuses, the file is refused here first, in the
    # file's terms ("spec.autoscale.memory" is x-podium-autoscale.memory).
    if problem := autoscale.config_problem(spec):
        raise _in_file_terms(problem, at, fields)


def _replicas(value: object, at: _At, *, low: int, what: str) -> int:
    if (isinstance(value, bool) or not isinstance(value, int)
            or not low <= value <= autoscale.MAX_REPLICAS):
        raise at.error(f"an integer from {low}{what} to {autoscale.MAX_REPLICAS}", value)
    return value


def _share(key: str, value: object, at: _At) -> float:
    """A percentage "60%" or a fraction 0.6 -> 0.6: above 0; tolerance below 1, memory up
    to 1 (a share of the limit), cpu any (of one core without a limit: it may use more)."""
    share = math.nan
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value.strip())):
        share = float(Decimal(match[1]) / 100)
    elif isinstance(value, int | float) and not isinstance(value, bool) and value <= 1:
        share = float(value)  # a plain number is a fraction: 60 for "60%" would be 6000 %
    high_ok = {"tolerance": share < 1, "memory": share <= 1}.get(key, math.isfinite(share))
    if not (share > 0 and high_ok):  # nan fails every comparison
        raise at.error(_SHARES[key], value)
    return share


def _target(key: str, value: object, at: _At, spec: objects.ServiceSpec) -> float:
    if key in _RATES:
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else -1
        if not (number > 0 and math.isfinite(number)):
            raise at.error(_RATES[key], value)
        return float(number)
    share = _share(key, value, at)
    limit = spec.resources.limits.nano_cpus
    if key == "cpu" and limit and share > 1:
        raise at.error(f"at most '100%' of the cpus limit ({cpus(limit)}): a replica never uses "
                       "more", value)
    return share


def _in_file_terms(problem: str, at: _At, fields: dict[str, object]) -> SpecError:
    """A message of podium.rules.autoscale.config_problem ("spec.autoscale.max 1: expected at
    least min (2)") as a message about the file ("service 'web': x-podium-autoscale.max:
    expected at least min (2), got 1")."""
    match = re.fullmatch(r"spec\.autoscale(?:\.(\w+))?(?: [^:]*)?: (.*)", problem, re.DOTALL)
    if match is None:  # about another field (spec.replicas is checked above): said as it is
        return SpecError(f"service {at.service!r}: {problem}")
    key, rest = match.groups()
    where = at.sub(key) if key else at
    if key in fields and rest.startswith("expected "):
        return where.error(rest.removeprefix("expected "), fields[key])
    return SpecError(f"{where}: {rest}")
