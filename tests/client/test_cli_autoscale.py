"""The CLI's side of autoscaling: `podium deploy` of an autoscaled service says when the manager
kept the autoscaler's count over the file's and waits for that count; `podium services`,
`inspect` and `events` show the policy, each target next to its current value, and the decisions;
`podium scale` on an autoscaled service prints the manager's refusal and exits non-zero.

Against the scripted Control server (tests/fakecontrol.py), and against a real manager process
(no agents, no engine) for what its Control API decides: the count a redeploy keeps and the
refusal of `scale`."""

from __future__ import annotations

import json
import pathlib
import re
import time

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from podium.client._waits import converged
from podium.client.cli import main
from podium.v1 import control, objects
from tests.fakecontrol import FakeManager, Step, scale_refusal

STACK = """
services:
  web:
    image: podium/web:{tag}
    deploy:
      replicas: {replicas}
    x-podium-autoscale:
      min: 2
      max: {max}
      cpu: 60%
"""


class Run:
    def __init__(self, address: str, capsys: pytest.CaptureFixture[str],
                 tmp_path: pathlib.Path) -> None:
        self.address = address
        self.capsys = capsys
        self.tmp_path = tmp_path

    def __call__(self, *argv: str) -> tuple[int, list[str], str]:
        """The exit status, stdout's lines and stderr of `podium ARGV`."""
        code = main(["--manager", self.address, *argv])
        out, err = self.capsys.readouterr()
        return code, out.splitlines(), err

    def deploy(self, *argv: str, tag: str = "1", replicas: int = 2,
               max: int = 10) -> tuple[int, list[str], str]:
        path = self.tmp_path / "stack.yaml"
        path.write_text(STACK.format(tag=tag, replicas=replicas, max=max))
        return self("deploy", "-f", str(path), "--timeout", "10", *argv)


@pytest.fixture
def run(fake: FakeManager, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> Run:
    return Run(fake.address, capsys, tmp_path)


def autoscaled_to(fake: FakeManager, count: int, **status: object) -> objects.Service:
    """The manager's autoscaler sets web's count (and its status), as one write."""
    service = fake.control.service("web")
    service.spec.replicas = count
    service.autoscale_status.CopyFrom(objects.AutoscaleStatus(**status))  # type: ignore[arg-type]
    service.meta.version += 1
    fake.control.set_service(service)
    return service


def stamp(seconds: float) -> dict[str, object]:
    """AutoscaleStatus fields for a decision at `seconds` (epoch)."""
    when = Timestamp()
    when.FromNanoseconds(int(seconds * 1e9))
    return {"last_time": when}


# -- deploy -------------------------------------------------------------------------------------


def test_redeploying_the_file_keeps_the_autoscalers_count(run: Run, fake: FakeManager) -> None:
    code, out, err = run.deploy("--detach")
    assert code == 0, err
    assert out == ["created service web"]
    autoscaled_to(fake, 5)
    code, out, err = run.deploy()
    assert code == 0, err
    assert out == ["unchanged service web", "web: autoscaled, 5 replicas kept (2..10)"]
    assert fake.control.service("web").spec.replicas == 5


def test_a_deploy_waits_for_the_count_the_manager_kept(run: Run, fake: FakeManager) -> None:
    """A change that replaces no task (a new max): the deploy waits for the manager's 5
    replicas, not for the file's 2."""
    assert run.deploy("--detach")[0] == 0
    autoscaled_to(fake, 5)
    code, out, err = run.deploy(max=8)
    assert code == 0, err
    assert out == ["updated service web", "web: autoscaled, 5 replicas kept (2..8)",
                   "web: 5/5 running", "converged"]


def test_an_update_of_an_autoscaled_service_keeps_its_count(run: Run, fake: FakeManager) -> None:
    assert run.deploy("--detach")[0] == 0
    autoscaled_to(fake, 4)
    fake.control.script("web", Step(objects.UpdateStatus.STATE_COMPLETED, "updated to version 2",
                                    done=4))
    code, out, err = run.deploy(tag="2")
    assert code == 0, err
    assert out[:2] == [
        "updated service web: version 2 (container.image podium/web:1 -> podium/web:2)",
        "web: autoscaled, 4 replicas kept (2..10)"]
    assert out[-1] == "converged"
    (update,) = [r for r in fake.control.requests if isinstance(r, control.UpdateServiceRequest)]
    assert update.spec.replicas == 4  # as the manager keeps it
    assert fake.control.service("web").update_status.total == 4


def test_no_kept_line_when_the_count_is_the_files(run: Run, fake: FakeManager) -> None:
    assert run.deploy("--detach", replicas=3)[0] == 0
    code, out, err = run.deploy(replicas=3)
    assert code == 0, err
    assert out == ["unchanged service web"]


# -- scale --------------------------------------------------------------------------------------


def test_scale_prints_the_managers_refusal(run: Run, fake: FakeManager) -> None:
    assert run.deploy("--detach")[0] == 0
    code, out, err = run("scale", "web=7")
    assert code == 2
    assert out == []
    assert err == f"error: {scale_refusal(fake.control.service('web').spec)}\n"
    assert fake.control.service("web").spec.replicas == 2


# -- services, inspect, events ------------------------------------------------------------------

CPU = objects.AutoscaleMetric(name="cpu", target=0.6, current=0.45)
RPS = objects.AutoscaleMetric(name="requests_per_second", target=300, current=120,
                              partial=True)


def with_policy(fake: FakeManager, **status: object) -> None:
    """Service web, autoscaled at 5 replicas, with `status` as its AutoscaleStatus."""
    policy = objects.Autoscale(min=2, max=10, cpu=0.6, requests_per_second=300,
                               scale_down_window={"seconds": 90}, max_step_up=3)
    service = fake.control.add("web", replicas=5, autoscale=policy)
    service.autoscale_status.CopyFrom(objects.AutoscaleStatus(**status))  # type: ignore[arg-type]
    fake.control.set_service(service)


def columns(out: list[str]) -> list[dict[str, str]]:
    """The table's rows as header -> cell (cells may hold single spaces)."""
    header = out[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    return [{name: line[start:end].strip() for name, start, end in
             zip(names, starts, [*starts[1:], None], strict=True)} for line in out[1:]]


def test_services_shows_bounds_targets_and_the_last_decision(run: Run, fake: FakeManager) -> None:
    with_policy(fake, metrics=[CPU, RPS], last_decision="web 2→5: cpu 142% of 60% target",
                from_replicas=2, to_replicas=5, **stamp(time.time() - 125))
    fake.control.add("db", replicas=1)
    code, out, err = run("services")
    assert code == 0, err
    rows = {row["NAME"]: row for row in columns(out)}
    assert rows["web"]["AUTOSCALE"] == "2..10 cpu 45%/60%, req/s ~120/300"
    assert rows["web"]["SCALED"] == "2→5 2m ago"
    assert rows["web"]["REPLICAS"] == "5/5"
    assert rows["db"]["AUTOSCALE"] == rows["db"]["SCALED"] == ""


def test_services_before_any_figure_and_at_capacity(run: Run, fake: FakeManager) -> None:
    with_policy(fake, at_capacity="no node has 64 MiB memory free (2 nodes)")
    code, out, err = run("services")
    assert code == 0, err
    (row,) = columns(out)
    assert row["AUTOSCALE"] == "2..10 cpu -/60%, req/s -/300, at capacity"
    assert row["SCALED"] == ""


def test_services_without_autoscaled_services_has_no_autoscale_columns(run: Run,
                                                                        fake: FakeManager) -> None:
    fake.control.add("web")
    code, out, err = run("services")
    assert code == 0, err
    assert out[0].split()[-1] == "UPDATE"


def test_services_json_has_the_policy(run: Run, fake: FakeManager) -> None:
    with_policy(fake, metrics=[CPU])
    code, out, err = run("services", "-o", "json")
    assert code == 0, err
    (row,) = json.loads("\n".join(out))
    assert row["autoscale"]["min"] == 2 and row["autoscale"]["max"] == 10
    assert row["autoscale_text"] == "2..10 cpu 45%/60%, req/s -/300"


def test_inspect_shows_the_policy_its_tuning_and_where_it_stands(run: Run,
                                                                 fake: FakeManager) -> None:
    with_policy(fake, metrics=[CPU, RPS], desired=5, last_decision="web 2→5: cpu 142% of 60% "
                "target", from_replicas=2, to_replicas=5,
                holding="scale-down held: figures missing from node h2", **stamp(time.time() - 30))
    code, out, err = run("inspect", "web")
    assert code == 0, err
    summary = json.loads("\n".join(out))["autoscale"]
    # How long ago: 30 s, or a few more on a slow machine.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(3\ds ago\)", summary.pop("last_time"))
    assert summary == {
        "min": 2, "max": 10, "replicas": 5, "desired": 5,
        "targets": [
            {"name": "cpu", "target": "60%", "current": "45%"},
            {"name": "requests_per_second", "target": "300 req/s",
             "current": "120 req/s (figures missing for some replicas)"},
        ],
        "tuning": {"tolerance": "10% (default)", "scale_down_window": "90s",
                   "max_step_up": "3", "max_step_down": "no limit (default)"},
        "holding": "scale-down held: figures missing from node h2",
        "at_capacity": "",
        "last_decision": "web 2→5: cpu 142% of 60% target",
    }  # fmt: skip


def test_inspect_of_a_service_that_is_not_autoscaled_has_no_policy(run: Run,
                                                                   fake: FakeManager) -> None:
    fake.control.add("web")
    code, out, err = run("inspect", "web")
    assert code == 0, err
    assert "autoscale" not in json.loads("\n".join(out))


def test_events_print_each_new_decision_once(run: Run, fake: FakeManager) -> None:
    now = time.time()
    old = {"last_decision": "web 3→2: cpu 20% of 60% target", "from_replicas": 3,
           "to_replicas": 2, **stamp(now - 600)}
    with_policy(fake, **old)  # decided before `podium events` started: not news
    new = {"last_decision": "web 2→5: cpu 142% of 60% target", "from_replicas": 2,
           "to_replicas": 5, **stamp(now)}
    capacity = {**new, "at_capacity": "no node has 64 MiB memory free (2 nodes)"}
    service = fake.control.service("web")
    for status in (old, new, new, capacity):
        service.autoscale_status.CopyFrom(objects.AutoscaleStatus(**status))  # type: ignore[arg-type]
        fake.control.events.append(control.Event(action=control.Event.ACTION_UPDATE,
                                                 service=service))
    code, out, err = run("events")
    assert code == 0, err
    described = [line.split(" ", 3)[3] for line in out]
    name = f"web ({service.id})"
    assert described == [
        name,
        f"{name} scaled 2→5: cpu 142% of 60% target",
        name,
        f"{name}: at capacity: no node has 64 MiB memory free (2 nodes)",
    ]


# -- against a real manager ---------------------------------------------------------------------


def test_a_real_manager_keeps_the_count_and_refuses_scale(
        manager: str, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    real = Run(manager, capsys, tmp_path)
    code, out, err = real.deploy("--detach", replicas=4)
    assert code == 0, err
    assert out == ["created service web"]
    # The file now says 3: the manager keeps the 4 the service runs (it was and is autoscaled).
    code, out, err = real.deploy("--detach", replicas=3)
    assert code == 0, err
    assert out == ["unchanged service web", "web: autoscaled, 4 replicas kept (2..10)"]
    code, out, err = real("scale", "web=6")
    assert code == 2 and out == []
    assert err.startswith("error: service 'web' is autoscaled (2..10 replicas, 4 now): ")
    assert "x-podium-autoscale" in err
    code, out, err = real("services")
    assert code == 0, err
    (row,) = columns(out)
    assert row["REPLICAS"] == "0/4" and row["AUTOSCALE"].startswith("2..10 cpu ")
    code, out, err = real("rm", "web")
    assert code == 0, err


def _task(slot: int, state: int, message: str = "") -> objects.Task:
    task = objects.Task(id=f"t{slot}", slot=slot, spec_version=1,
                        desired_state=objects.TASK_STATE_RUNNING)
    task.status.state = state  # type: ignore[assignment]
    task.status.message = message
    return task


def test_a_deploy_at_capacity_counts_as_converged_with_the_reason() -> None:
    service = objects.Service(id="s", spec_version=1)
    service.spec.name, service.spec.replicas = "web", 4
    service.spec.autoscale.CopyFrom(objects.Autoscale(min=2, max=10, cpu=0.6))
    reason = "no node has 1 cpu free (2 nodes)"
    tasks = [_task(1, objects.TASK_STATE_RUNNING), _task(2, objects.TASK_STATE_RUNNING),
             _task(3, objects.TASK_STATE_RUNNING), _task(4, objects.TASK_STATE_PENDING, reason)]
    done, _ = converged(service, tasks)
    assert not done  # the autoscaler has not said it is at capacity (yet)
    service.autoscale_status.at_capacity = reason
    done, line = converged(service, tasks)
    assert done and line == f"web: 3/4 running, at capacity ({reason})"
    service.spec.ClearField("autoscale")  # a count set by hand: waits for every task
    assert not converged(service, tasks)[0]
