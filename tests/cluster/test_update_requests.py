"""Updates through the control API on the in-process cluster: a real manager (store, updater,
orchestrator, scheduler, dispatcher) and agents on the fake executor."""

from __future__ import annotations

import grpc
import pytest

from podium.rules.taskstate import is_live
from podium.v1 import control, objects
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster

US = objects.UpdateStatus


def _fast(spec: objects.ServiceSpec) -> None:
    # The fake executor's tasks have no check: healthy after running for `monitor`.
    spec.update_config.CopyFrom(objects.UpdateConfig(parallelism=2))
    spec.update_config.monitor.FromMilliseconds(200)
    spec.rollback_config.CopyFrom(spec.update_config)
    spec.rollback_config.failure_action = objects.UpdateConfig.FAILURE_ACTION_PAUSE


async def _deploy(mini: InProcessCluster, name: str, image: str, deploy_id: str = "d"
                  ) -> objects.Service:
    current = (await mini.api.GetService(control.GetRequest(ref=name))).service
    spec = objects.ServiceSpec()
    spec.CopyFrom(current.spec)
    spec.container.image = image
    reply = await mini.api.UpdateService(control.UpdateServiceRequest(
        service_id=current.id, version=current.meta.version, spec=spec, deploy_id=deploy_id))
    return reply.service


def _status(mini: InProcessCluster, name: str) -> objects.UpdateStatus:
    return mini.store_view.service_by_name(name).update_status  # type: ignore[no-any-return]


def _images(mini: InProcessCluster, name: str) -> set[str]:
    return {t.spec.container.image for t in mini.tasks(name) if is_live(t)}


async def _create(mini: InProcessCluster, name: str, replicas: int) -> None:
    spec = objects.ServiceSpec(name=name, replicas=replicas)
    spec.container.image = "app:1"
    _fast(spec)
    await mini.api.CreateService(control.CreateServiceRequest(spec=spec))
    await mini.wait_running(name, replicas)


async def test_update_completes_and_keeps_versions(mini: InProcessCluster) -> None:
    await _create(mini, "web", 4)
    service = await _deploy(mini, "web", "app:2")
    assert service.spec_version == 2 and service.update_status.state == US.STATE_UPDATING
    await eventually_async(lambda: _status(mini, "web").state == US.STATE_COMPLETED,
                           what="update completed")
    assert _images(mini, "web") == {"app:2"} and len(mini.running("web")) == 4
    service = mini.store_view.service_by_name("web")
    assert [(v.version, v.change) for v in service.versions] == [
        (1, "created"), (2, "container.image app:1 -> app:2")]
    # The same spec again: nothing changes.
    again = await _deploy(mini, "web", "app:2")
    assert again.spec_version == 2 and again.meta.version == service.meta.version


async def test_a_version_that_cannot_start_is_rolled_back(mini: InProcessCluster) -> None:
    await _create(mini, "web", 3)
    await _deploy(mini, "web", "missing/app:2")
    await eventually_async(lambda: _status(mini, "web").state == US.STATE_ROLLED_BACK,
                           what="rolled back")
    status = _status(mini, "web")
    assert "No such image: missing/app:2" in status.message
    assert status.message.endswith("rolled back to version 1")
    await eventually_async(lambda: _images(mini, "web") == {"app:1"}
                           and len(mini.running("web")) == 3, what="back on app:1")


async def test_rollback_and_promote_requests(mini: InProcessCluster) -> None:
    await _create(mini, "web", 2)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mini.api.RollbackService(control.RollbackServiceRequest(ref="web"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no version before 1" in (err.value.details() or "")
    await _deploy(mini, "web", "app:2")
    await eventually_async(lambda: _status(mini, "web").state == US.STATE_COMPLETED,
                           what="update completed")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mini.api.RollbackService(control.RollbackServiceRequest(ref="web", version=7))
    assert "keeps versions 1, 2" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mini.api.PromoteService(control.PromoteServiceRequest(ref="web"))
    assert "no canaries waiting" in (err.value.details() or "")
    reply = await mini.api.RollbackService(control.RollbackServiceRequest(ref="web"))
    assert reply.service.spec_version == 1
    assert reply.service.update_status.state == US.STATE_ROLLING_BACK
    await eventually_async(lambda: _status(mini, "web").state == US.STATE_ROLLED_BACK,
                           what="rolled back")
    assert _status(mini, "web").manual
    await eventually_async(lambda: _images(mini, "web") == {"app:1"}, what="back on app:1")


async def test_a_restarted_manager_finishes_the_update(mini: InProcessCluster) -> None:
    await _create(mini, "web", 6)
    await _deploy(mini, "web", "app:2")
    await eventually_async(lambda: _status(mini, "web").done >= 2, what="two slots done")
    await mini.stop_manager()
    await mini.start_manager()
    await eventually_async(lambda: _status(mini, "web").state == US.STATE_COMPLETED,
                           what="update completed after the restart")
    live = [t for t in mini.tasks("web") if is_live(t)]
    assert len(live) == 6 and _images(mini, "web") == {"app:2"}
    assert sorted(t.slot for t in live) == [1, 2, 3, 4, 5, 6]
    await eventually_async(
        lambda: sum(len(mini.containers(n)) for n in ("node-a", "node-b")) == 6,
        what="old containers removed")
