"""The service keys of a Compose file that say how a task is checked and restarted.

`set_checks(data, spec, service)` reads them from one service's mapping (which compose.py has
checked to hold only supported keys) into `spec`, raising SpecError as compose.py does:

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
"""

from __future__ import annotations

import re

from podium.client.compose import (
    _PROBE_KEY,
    SpecError,
    _At,
    _choice,
    _count,
    _mapping,
    _nanos,
    _port,
)
from podium.rules import probe as defaults
from podium.v1 import objects

__all__ = ["set_checks"]


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
