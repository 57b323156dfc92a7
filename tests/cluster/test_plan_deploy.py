"""Control.PlanDeploy on the in-process cluster (node-a and node-b, 4 cpus and 8 GiB each, on the
fake executor): what a deploy would do, placed by the real placement code, with nothing written.
`podium deploy --plan` against the same cluster secured."""

from __future__ import annotations

import asyncio
import pathlib
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from podium.client.cli import main
from podium.v1 import control, objects
from tests.inprocess import InProcessCluster, in_process_cluster

SP = control.ServicePlan
GiB = 1 << 30


def spec(name: str, *, replicas: int = 2, image: str = "app:1",
         memory: int = 0) -> objects.ServiceSpec:
    made = objects.ServiceSpec(name=name, replicas=replicas)
    made.container.image = image
    if memory:
        made.resources.reservations.memory_bytes = memory
    return made


async def plan(mini: InProcessCluster, *specs: objects.ServiceSpec) -> list[control.ServicePlan]:
    reply = await mini.api.PlanDeploy(control.PlanDeployRequest(specs=specs))
    return list(reply.services)


def placed(service: control.ServicePlan) -> list[tuple[int, str]]:
    return [(t.slot, t.node_name) for t in service.new_tasks]


def state(mini: InProcessCluster) -> tuple[object, ...]:
    """Every service's id, object version and spec version, and every task id."""
    view = mini.store_view
    return (sorted((s.id, s.meta.version, s.spec_version) for s in view.services()),
            sorted(t.id for t in view.tasks()))


async def test_a_new_service_is_spread_over_both_nodes(mini: InProcessCluster) -> None:
    [web] = await plan(mini, spec("web", replicas=4))
    assert web.action == SP.ACTION_CREATE and not web.changes and not web.pending
    assert placed(web) == [(1, "node-a"), (2, "node-b"), (3, "node-a"), (4, "node-b")]
    assert mini.store_view.service_by_name("web") is None


async def test_an_image_change_replaces_every_task(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=3)
    old = {t.id for t in await mini.wait_running("web", 3)}
    before = state(mini)
    [web] = await plan(mini, spec("web", replicas=3, image="app:2"))
    assert web.action == SP.ACTION_UPDATE
    assert list(web.changes) == ["container.image: app:1 -> app:2"]
    assert set(web.replaced_tasks) == old
    assert [slot for slot, _ in placed(web)] == [1, 2, 3]
    assert all(node for _, node in placed(web)) and not web.pending
    assert state(mini) == before


async def test_a_replica_change_reconfigures_with_only_the_new_slots(
        mini: InProcessCluster) -> None:
    await mini.create("web", replicas=2)
    running = await mini.wait_running("web", 2)
    [up] = await plan(mini, spec("web", replicas=4))
    assert up.action == SP.ACTION_RECONFIGURE
    assert list(up.changes) == ["replicas: 2 -> 4"]
    assert placed(up) == [(3, "node-a"), (4, "node-b")] and not up.replaced_tasks
    [down] = await plan(mini, spec("web", replicas=1))
    assert down.action == SP.ACTION_RECONFIGURE and not down.new_tasks
    assert list(down.replaced_tasks) == [t.id for t in running if t.slot == 2]
    [same] = await plan(mini, spec("web", replicas=2))
    assert same.action == SP.ACTION_UNCHANGED and not same.changes and not same.new_tasks


async def test_what_does_not_fit_stays_pending_with_the_reason(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=2)
    await mini.wait_running("web", 2)
    before = state(mini)
    big, fill = await plan(mini, spec("db", replicas=1, memory=64 * GiB),
                           spec("cache", replicas=3, memory=5 * GiB))
    assert big.action == SP.ACTION_CREATE and placed(big) == [(1, "")]
    assert list(big.pending) == ["no node has 64 GiB memory free (2 nodes)"]
    # Each 8 GiB node takes one 5 GiB task: the plan's own placements count.
    assert placed(fill) == [(1, "node-a"), (2, "node-b"), (3, "")]
    assert list(fill.pending) == ["no node has 5 GiB memory free (2 nodes)"]
    assert state(mini) == before


async def test_a_plan_checks_specs_as_a_deploy_does(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=1)
    before = state(mini)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await plan(mini, spec("web", image="app:2"), spec("db", image=" "))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.container.image is empty" in str(caught.value.details())
    assert state(mini) == before


STACK = """
services:
  web:
    image: {image}
    deploy:
      replicas: 2
    secrets: [token]
  db:
    image: db:1
    deploy:
      resources: {{reservations: {{memory: 64G}}}}
secrets:
  token: {{file: token.txt}}
"""


async def test_cli_deploy_plan_prints_the_plan_and_changes_nothing(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with in_process_cluster(tmp_path, agents=2, plaintext=False) as secured:
        path = tmp_path / "stack.yaml"
        (tmp_path / "token.txt").write_text("one")
        first = ("services:\n  web:\n    image: app:1\n    deploy: {replicas: 2}\n"
                 "    secrets: [token]\nsecrets:\n  token: {file: token.txt}\n")
        path.write_text(first)

        async def podium(*argv: str) -> tuple[int, list[str], str]:
            argv = ("--manager", secured.address, "--credentials", str(secured.credentials),
                    *argv)
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=1) as pool:
                code = await loop.run_in_executor(pool, main, list(argv))
            out, err = capsys.readouterr()
            return code, out.splitlines(), err

        code, _, err = await podium("deploy", "-f", str(path), "--stack", "s", "--detach")
        assert code == 0, err
        await secured.wait_running("s_web", 2)
        before = state(secured)
        path.write_text(STACK.format(image="app:2"))
        code, out, err = await podium("deploy", "--plan", "-f", str(path), "--stack", "s")
        assert code == 0, err
        assert out[0] == ("s_web: update (new version) - tasks replaced 2 "
                          "(update_config: parallelism 1, start-first)")
        assert out[1] == "  container.image: app:1 -> app:2"
        assert out[2].startswith("  new tasks: s_web.1 -> node-")
        assert out[3:] == ["s_db: create", "  new tasks: s_db.1 -> (pending: no node has 64 GiB "
                           "memory free (2 nodes))"]
        assert state(secured) == before
        path.write_text(first)
        code, out, err = await podium("deploy", "--plan", "-f", str(path), "--stack", "s")
        assert (code, out) == (0, ["s_web: unchanged"]), err
        # New secret content: a new version the deploy would store; the plan stores nothing.
        (tmp_path / "token.txt").write_text("two")
        code, out, err = await podium("deploy", "--plan", "-f", str(path), "--stack", "s")
        assert code == 0, err
        assert out[:2] == ["s_web: update (new version) - tasks replaced 2 (update_config: "
                           "parallelism 1, start-first)",
                           "  container.secrets.s_token: version 1 -> new content, stored at "
                           "deploy"]
        assert [s.version for s in secured.store_view.secrets()] == [1]
        assert state(secured) == before
