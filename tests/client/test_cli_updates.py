"""The CLI's side of rolling updates, against a stand-in manager (tests/fakecontrol.py) that plays
the update states: `podium deploy` waits for each changed service's update and exits 0 when it
completed (or its canaries are healthy) and 1 with the reason when it rolled back or paused;
`--force`, `--detach`, `podium history`, `rollback`, `promote`, and the update state in
`services`, `inspect` and `events`."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from podium.client import Client
from podium.client.cli import main
from podium.v1 import control, control_grpc, objects
from tests.fakecontrol import FakeControl, FakeManager, Step, running_task

US = objects.UpdateStatus
STACK = """
services:
  web:
    image: podium/web:{tag}
    deploy:
      replicas: 2
"""
TWO = STACK + """
  db:
    image: podium/db:{tag}
"""


class Run:
    def __init__(self, fake: FakeManager, capsys: pytest.CaptureFixture[str],
                 tmp_path: pathlib.Path) -> None:
        self.fake = fake
        self.capsys = capsys
        self.tmp_path = tmp_path

    @property
    def control(self) -> FakeControl:
        return self.fake.control

    def __call__(self, *argv: str) -> tuple[int, list[str], str]:
        """The exit status, stdout's lines and stderr of `podium ARGV`."""
        code = main(["--manager", self.fake.address, *argv])
        out, err = self.capsys.readouterr()
        return code, out.splitlines(), err

    def deploy(self, text: str, *argv: str, tag: str = "2") -> tuple[int, list[str], str]:
        path = self.tmp_path / "stack.yaml"
        path.write_text(text.format(tag=tag))
        return self("deploy", "-f", str(path), "--timeout", "10", *argv)


@pytest.fixture
def run(fake: FakeManager, capsys: pytest.CaptureFixture[str],
        tmp_path: pathlib.Path) -> Run:
    return Run(fake, capsys, tmp_path)


def added(run: Run, name: str = "web", **kwargs: object) -> objects.Service:
    """The service as the stack file at tag 1 deploys it (so that tag 2 is a change)."""
    code, _, err = run.deploy(STACK if name == "web" else TWO, "--detach", tag="1")
    assert code == 0, err
    return run.control.service(name)


# -- deploy -------------------------------------------------------------------------------------


def test_a_created_service_is_waited_for_until_it_converged(run: Run) -> None:
    code, out, err = run.deploy(STACK)
    assert code == 0, err
    assert out == ["created service web", "web: 2/2 running", "converged"]
    (request,) = run.control.sent(control.CreateServiceRequest)
    assert re.fullmatch(r"[0-9a-f]{32}", request.deploy_id)


def test_a_completed_update_exits_0_showing_each_step_once(run: Run) -> None:
    added(run)
    run.control.script(
        "web",
        Step(US.STATE_UPDATING, "updating 0/2: started web.1", done=0),
        Step(US.STATE_UPDATING, "updating 0/2: web.1 starting", done=0),
        Step(US.STATE_UPDATING, "updating 0/2: web.1 starting", done=0),
        Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1),
        Step(US.STATE_COMPLETED, "updated to version 2", done=2),
    )
    code, out, err = run.deploy(STACK)
    assert code == 0, err
    assert out == [
        "updated service web: version 2 (container.image podium/web:1 -> podium/web:2)",
        "web: updating 0/2: started web.1",
        "web: updating 0/2: web.1 starting",
        "web: updating 1/2: web.2 starting",
        "web: updated to version 2",
        "converged",
    ]
    (request,) = run.control.sent(control.UpdateServiceRequest)
    assert re.fullmatch(r"[0-9a-f]{32}", request.deploy_id)


@pytest.mark.parametrize("steps, reason", [
    ([Step(US.STATE_ROLLING_BACK, "web.2 unhealthy: exit code 1; rolling back to version 1",
           from_version=2, to_version=1, spec_version=1),
      Step(US.STATE_ROLLED_BACK, "web.2 unhealthy: exit code 1; rolled back to version 1")],
     "web: web.2 unhealthy: exit code 1; rolled back to version 1"),
    ([Step(US.STATE_PAUSED, "web.1 exited (exit code 3); update paused")],
     "web: web.1 exited (exit code 3); update paused"),
    ([Step(US.STATE_ROLLING_BACK, "web.2 unhealthy; rolling back to version 1",
           from_version=2, to_version=1, spec_version=1),
      Step(US.STATE_ROLLBACK_PAUSED, "web.1 exited; rollback paused")],
     "web: web.1 exited; rollback paused"),
], ids=["rolled-back", "paused", "rollback-paused"])
def test_a_failed_update_exits_1_with_the_reason(run: Run, steps: list[Step],
                                                 reason: str) -> None:
    added(run)
    run.control.script("web", Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1),
                       *steps)
    code, out, err = run.deploy(STACK)
    assert code == 1, (out, err)
    assert err.strip() == f"error: {reason}"
    assert out[-1] == reason and "converged" not in out


def test_healthy_canaries_end_the_deploy_with_how_to_promote(run: Run) -> None:
    added(run)
    run.control.script(
        "web",
        Step(US.STATE_UPDATING, "canary: 0/1 healthy"),
        Step(US.STATE_CANARY, "canary: 1 healthy; promote with `podium promote web`"),
    )
    code, out, err = run.deploy(STACK)
    assert code == 0, err
    assert out[-2] == "web: canary: 1 healthy; promote with `podium promote web`"
    assert "podium promote web" in out[-1] and "podium rollback web" in out[-1]
    assert "converged" not in out


def test_one_deploy_waits_for_every_service_it_changed(run: Run) -> None:
    """db fails and rolls back; web, which had completed, is rolled back with it: the deploy
    reports both and shares one deploy id between them."""
    added(run, "db")
    run.control.script(
        "web",
        Step(US.STATE_COMPLETED, "updated to version 2", done=2),
        Step(US.STATE_COMPLETED, "updated to version 2", done=2),
        Step(US.STATE_ROLLING_BACK, "db failed in the same deploy (db.1 unhealthy); rolling "
             "back to version 1", from_version=2, to_version=1, spec_version=1),
        Step(US.STATE_ROLLED_BACK, "db failed in the same deploy (db.1 unhealthy); rolled "
             "back to version 1"),
    )
    run.control.script(
        "db",
        Step(US.STATE_UPDATING, "updating 0/1: db.1 starting"),
        Step(US.STATE_ROLLING_BACK, "db.1 unhealthy; rolling back to version 1",
             from_version=2, to_version=1, spec_version=1),
        Step(US.STATE_ROLLED_BACK, "db.1 unhealthy; rolled back to version 1"),
    )
    code, out, err = run.deploy(TWO)
    assert code == 1, out
    assert err.splitlines() == [
        "error: web: db failed in the same deploy (db.1 unhealthy); rolled back to version 1",
        "error: db: db.1 unhealthy; rolled back to version 1",
    ]
    assert "web: updated to version 2" in out
    ids = {r.deploy_id for r in run.control.sent(control.UpdateServiceRequest)}
    assert len(ids) == 1 and "" not in ids


def test_an_unchanged_service_is_not_waited_for(run: Run) -> None:
    added(run, "db")
    run.control.script("web", Step(US.STATE_UPDATING, "updating 0/2"))  # never ends
    code, out, err = run.deploy(TWO, tag="1")
    assert code == 0, err
    assert out == ["unchanged service web", "unchanged service db"]


def test_a_deploy_run_again_follows_the_update_it_started(run: Run) -> None:
    added(run)
    code, _, err = run.deploy(STACK, "--detach")
    assert code == 0, err
    run.control.script("web", Step(US.STATE_UPDATING, "updating 0/2: web.1 starting"),
                       Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1),
                       Step(US.STATE_COMPLETED, "updated to version 2", done=2), at_once=True)
    code, out, err = run.deploy(STACK)
    assert code == 0, err
    assert out == ["unchanged service web", "web: updating 1/2: web.2 starting",
                   "web: updated to version 2", "converged"]


def test_an_unchanged_service_whose_update_paused_fails(run: Run) -> None:
    added(run)
    run.control.script("web", Step(US.STATE_PAUSED, "web.1 exited; update to version 2 paused"))
    code, _, err = run.deploy(STACK)
    assert code == 1
    code, out, err = run.deploy(STACK)
    assert code == 1
    assert out[0] == "unchanged service web"
    assert err.strip() == "error: web: web.1 exited; update to version 2 paused"


def test_force_replaces_tasks_of_an_unchanged_spec(run: Run) -> None:
    service = added(run)
    service.spec.force_update = 3  # two earlier --force deploys
    run.control.set_service(service)
    run.control.script("web", Step(US.STATE_COMPLETED, "updated to version 2", done=2))
    code, out, err = run.deploy(STACK, "--force", tag="1")
    assert code == 0, err
    assert out[0] == "updated service web (forced): version 2"
    assert out[-1] == "converged"
    (request,) = run.control.sent(control.UpdateServiceRequest)
    assert request.spec.force_update == 4
    # A plain redeploy afterwards keeps the count: nothing changes.
    code, out, err = run.deploy(STACK, tag="1")
    assert code == 0, err
    assert out == ["unchanged service web"]
    assert run.control.sent(control.UpdateServiceRequest)[-1].spec.force_update == 4


def test_an_update_overtaken_by_another_fails_naming_it(run: Run) -> None:
    added(run)
    run.control.script("web", Step(US.STATE_UPDATING, "updating to version 3: ...",
                                   from_version=1, to_version=3, spec_version=3))
    code, _, err = run.deploy(STACK)
    assert code == 1
    assert err.strip() == ("error: web: version 2 was replaced by version 3 (updating to "
                           "version 3: ...)")


def test_detach_returns_at_once(run: Run) -> None:
    added(run)
    run.control.script("web", Step(US.STATE_UPDATING, "updating 0/2"))  # never ends
    code, out, err = run.deploy(STACK, "--detach")
    assert code == 0, err
    assert out == ["updated service web: version 2 "
                   "(container.image podium/web:1 -> podium/web:2)"]


def test_an_update_that_does_not_end_in_time_fails_naming_where_it_stands(run: Run) -> None:
    added(run)
    run.control.script("web", Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1))
    path = run.tmp_path / "stack.yaml"
    path.write_text(STACK.format(tag="2"))
    code, _, err = run("deploy", "-f", str(path), "--timeout", "0.5")
    assert code == 1
    assert err.startswith("error: web not done within 0.5 s: web: updating 1/2: web.2 starting")


def test_deploy_retries_when_the_service_changed_since_it_was_read(run: Run) -> None:
    added(run)
    run.control.conflicts = 2  # the updater wrote the service in between, twice
    code, out, err = run.deploy(STACK, "--detach")
    assert code == 0, err
    assert out[0].startswith("updated service web: version 2")
    assert len(run.control.sent(control.UpdateServiceRequest)) == 3


def test_the_library_reports_what_a_deploy_did(fake: FakeManager) -> None:
    spec = objects.ServiceSpec(name="api", replicas=1)
    spec.container.image = "podium/api:1"
    with Client(fake.address) as podium:
        assert podium.deploy(spec)[1] == "created"
        assert podium.deploy(spec)[1] == "unchanged"
        service, outcome = podium.deploy(spec, force=True, deploy_id="d1")
        assert outcome == "updated (forced)"
        assert service.spec.force_update == 1 and service.spec_version == 2
        assert service.update_status.deploy_id == "d1"


# -- scale still waits for convergence -----------------------------------------------------------


def test_scale_waits_for_convergence(run: Run) -> None:
    added(run)
    code, out, err = run("scale", "web=3", "--timeout", "10")
    assert code == 0, err
    assert out == ["web scaled to 3", "web: 3/3 running", "converged"]


# -- history, rollback, promote -----------------------------------------------------------------


def test_history_lists_the_kept_versions_and_marks_the_current_one(run: Run) -> None:
    service = run.control.add("web", versions=3)
    service.spec_version = 2  # rolled back from 3
    run.control.set_service(service)
    code, out, err = run("history", "web")
    assert code == 0, err
    assert out[0].split() == ["VERSION", "TIME", "CHANGE"]
    assert [line.split()[0] for line in out[1:]] == ["1", "2", "3"]
    assert out[1].endswith("created")
    assert "2 (current)" in out[2] and "(current)" not in out[1] + out[3]
    assert out[3].endswith("container.image podium/web:2 -> podium/web:3")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out[1])
    code, out, err = run("history", "web", "-o", "json")
    rows = json.loads("\n".join(out))
    assert [(r["version"], r["current"]) for r in rows] == [(1, False), (2, True), (3, False)]


def test_rollback_to_a_version_waits_until_rolled_back(run: Run) -> None:
    run.control.add("web", versions=3)
    run.control.script(
        "web",
        Step(US.STATE_ROLLING_BACK, "rolling back 1/2", done=1),
        Step(US.STATE_ROLLED_BACK, "rolled back to version 1", done=2),
    )
    code, out, err = run("rollback", "web", "--to", "1", "--timeout", "10")
    assert code == 0, err
    assert out == ["web: rolling back from version 3 to version 1",
                   "web: rolling back 1/2", "web: rolled back to version 1", "converged"]
    (request,) = run.control.sent(control.RollbackServiceRequest)
    assert (request.ref, request.version) == ("web", 1)


def test_rollback_defaults_to_the_previous_version_and_can_detach(run: Run) -> None:
    run.control.add("web", versions=3)
    code, out, err = run("rollback", "web", "--detach")
    assert code == 0, err
    assert out == ["web: rolling back from version 3 to version 2"]
    assert run.control.sent(control.RollbackServiceRequest)[0].version == 0


def test_a_rollback_that_pauses_exits_1(run: Run) -> None:
    run.control.add("web", versions=2)
    run.control.script("web", Step(US.STATE_ROLLBACK_PAUSED,
                                   "web.1 exited (exit code 1); rollback paused"))
    code, _, err = run("rollback", "web", "--timeout", "10")
    assert code == 1
    assert err.strip() == "error: web: web.1 exited (exit code 1); rollback paused"


def test_promote_waits_for_the_rest_of_the_update(run: Run) -> None:
    service = run.control.add("web", versions=2)
    service.update_status.state = US.STATE_CANARY
    service.update_status.from_version, service.update_status.to_version = 1, 2
    run.control.set_service(service)
    run.control.script(
        "web",
        Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1),
        Step(US.STATE_COMPLETED, "updated to version 2", done=2),
    )
    code, out, err = run("promote", "web", "--timeout", "10")
    assert code == 0, err
    assert out == ["web: canaries promoted; updating the other tasks to version 2",
                   "web: updating 1/2: web.2 starting", "web: updated to version 2",
                   "converged"]
    assert len(run.control.sent(control.PromoteServiceRequest)) == 1


def test_promote_without_canaries_is_refused(run: Run) -> None:
    run.control.add("web")
    code, _, err = run("promote", "web")
    assert code == 2 and "no canaries" in err


# -- update state in services, inspect and events -----------------------------------------------


def test_services_show_where_each_update_stands(run: Run) -> None:
    def status(name: str, state: int, done: int = 0, total: int = 6,
               **spec: object) -> objects.Service:
        service = run.control.add(name, replicas=6, versions=2, **spec)
        service.update_status.state = state  # type: ignore[assignment]
        service.update_status.done, service.update_status.total = done, total
        service.update_status.to_version = 2
        if state == US.STATE_COMPLETED:
            service.update_status.completed.FromSeconds(1)  # long ago
        run.control.set_service(service)
        return service

    status("a-updating", US.STATE_UPDATING, 2)
    status("b-paused", US.STATE_PAUSED, 3)
    status("c-rolling", US.STATE_ROLLING_BACK, 1)
    status("d-rolled", US.STATE_ROLLED_BACK, 6)
    canary = status("e-canary", US.STATE_UPDATING, canary=objects.Canary(count=2))
    run.control.set_tasks("e-canary", [running_task(canary, n, version=1) for n in range(1, 7)]
                          + [running_task(canary, 7, canary=True)])
    status("f-canary", US.STATE_CANARY, canary=objects.Canary(count=2))
    status("g-old", US.STATE_COMPLETED, 6)
    run.control.add("h-none")
    code, out, err = run("services")
    assert code == 0, err
    assert out[0].split()[-1] == "UPDATE"
    update = {line.split()[1]: line[out[0].index("UPDATE"):].strip() for line in out[1:]}
    assert update == {
        "a-updating": "updating 2/6",
        "b-paused": "paused",
        "c-rolling": "rolling back 1/6",
        "d-rolled": "rolled back",
        "e-canary": "canary 1/2 healthy",
        "f-canary": "canary 2 healthy",
        "g-old": "",
        "h-none": "",
    }
    # The canary runs beside the 6 replicas: not one of them.
    assert "6/6" in next(line for line in out if "e-canary" in line)
    code, out, err = run("services", "-o", "json")
    rows = {r["name"]: r for r in json.loads("\n".join(out))}
    assert rows["b-paused"]["update_state"] == "paused"
    assert rows["c-rolling"]["version"] == 2


def test_inspect_names_the_update_state(run: Run) -> None:
    service = run.control.add("web", versions=2)
    service.update_status.state = US.STATE_ROLLING_BACK
    service.update_status.message = "web.2 unhealthy; rolling back to version 1"
    service.update_status.from_version, service.update_status.to_version = 2, 1
    run.control.set_service(service)
    code, out, err = run("inspect", "web")
    assert code == 0, err
    data = json.loads("\n".join(out))
    assert data["update"]["state"] == "rolling back"
    assert data["update"]["message"] == "web.2 unhealthy; rolling back to version 1"
    assert (data["update"]["from_version"], data["update"]["to_version"]) == (2, 1)


def test_events_describe_a_service_with_its_update_message(run: Run) -> None:
    service = run.control.add("web", versions=2)
    events = []
    for message in ("updating 2/6: web.3 healthy", "updated to version 2",
                    "updated to version 2"):
        service.update_status.state = (US.STATE_COMPLETED if message.startswith("updated")
                                       else US.STATE_UPDATING)
        service.update_status.message = message
        events.append(control.Event(action=control.Event.ACTION_UPDATE, service=service))
    run.control.events.extend(events)
    code, out, err = run("events", "--limit", "3")
    assert code == 0, err
    described = [line.split(" ", 1)[1] for line in out]
    assert described == [
        f"service update web ({service.id}): updating 2/6: web.3 healthy",
        f"service update web ({service.id}): updated to version 2",
        f"service update web ({service.id})",  # nothing new to say
    ]


def test_rollback_to_a_bad_version_is_bad_input(run: Run) -> None:
    run.control.add("web", versions=2)
    code, _, err = run("rollback", "web", "--to", "-1")
    assert code == 2 and "--to -1: expected a version number" in err
    code, _, err = run("rollback", "web", "--to", "7")
    assert code == 2 and "version 7" in err


class OlderControl(FakeControl):
    """A manager from before rollbacks: the generated servicer answers UNIMPLEMENTED."""

    RollbackService = control_grpc.ControlServicer.RollbackService


def test_a_manager_without_the_call_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    older = FakeManager(OlderControl())
    try:
        older.control.add("web", versions=2)
        code = main(["--manager", older.address, "rollback", "web", "--timeout", "5"])
    finally:
        older.stop()
    err = capsys.readouterr().err
    assert code == 1
    assert f"the manager at {older.address} does not offer this call" in err


def test_the_parser_loads_no_grpc() -> None:
    """`podium --help` stays fast: the commands' modules load only when one runs."""
    import subprocess
    import sys

    code = ("import sys; from podium.client.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
