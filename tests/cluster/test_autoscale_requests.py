"""An autoscaled service through the control API on the in-process cluster: the count is the
autoscaler's (a redeploy keeps it, `scale` is refused), reads show its figures, bad policies are
refused with the field at fault."""

from __future__ import annotations

import grpc
import pytest

from podium.manager.store import WriteTx
from podium.v1 import control, objects
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster


def _spec(replicas: int = 2, **policy: float) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name="web", replicas=replicas)
    spec.container.image = "app:1"
    spec.autoscale.CopyFrom(objects.Autoscale(min=2, max=6, cpu=0.6))
    for key, value in policy.items():
        setattr(spec.autoscale, key, value)
    return spec


async def _chosen(mini: InProcessCluster, count: int) -> None:
    """Sets the count as the autoscaler would (the fake executor reports no cpu)."""
    manager = mini.manager
    assert manager is not None

    def write(tx: WriteTx) -> None:
        service = tx.service_by_name("web")
        assert service is not None
        service.spec.replicas = count
        tx.update(service)

    await manager.store.update(write)


async def test_a_redeploy_keeps_the_count_the_autoscaler_chose(mini: InProcessCluster) -> None:
    await mini.api.CreateService(control.CreateServiceRequest(spec=_spec(replicas=2)))
    await mini.wait_running("web", 2)
    await _chosen(mini, 5)
    await mini.wait_running("web", 5)
    current = (await mini.api.GetService(control.GetRequest(ref="web"))).service
    again = _spec(replicas=2)  # the file still says 2
    reply = await mini.api.UpdateService(control.UpdateServiceRequest(
        service_id=current.id, version=current.meta.version, spec=again))
    assert reply.service.spec.replicas == 5
    narrower = _spec(replicas=2)
    narrower.autoscale.max = 4  # new bounds: the kept count moves inside them
    reply = await mini.api.UpdateService(control.UpdateServiceRequest(
        service_id=current.id, version=reply.service.meta.version, spec=narrower))
    assert reply.service.spec.replicas == 4 and reply.service.spec_version == 1
    await eventually_async(lambda: len(mini.running("web")) == 4, what="4 running")
    manual = _spec(replicas=3)
    manual.ClearField("autoscale")  # no longer autoscaled: the file's count again
    reply = await mini.api.UpdateService(control.UpdateServiceRequest(
        service_id=current.id, version=reply.service.meta.version, spec=manual))
    assert reply.service.spec.replicas == 3


async def test_scale_is_refused_with_how_to_change_the_bounds(mini: InProcessCluster) -> None:
    await mini.api.CreateService(control.CreateServiceRequest(spec=_spec(replicas=3)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mini.api.ScaleService(control.ScaleServiceRequest(ref="web", replicas=5))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "autoscaled (2..6 replicas, 3 now)" in (err.value.details() or "")
    assert "x-podium-autoscale min/max" in (err.value.details() or "")


async def test_reads_show_each_target_with_its_current_figure(mini: InProcessCluster) -> None:
    await mini.api.CreateService(control.CreateServiceRequest(spec=_spec(replicas=2)))
    await mini.wait_running("web", 2)

    async def shown() -> bool:
        reply = await mini.api.ListServices(control.ListServicesRequest())
        status = reply.services[0].autoscale_status
        return [m.name for m in status.metrics] == ["cpu"] and status.desired == 2

    await eventually_async(shown, what="the autoscaler's figures in ListServices")
    status = (await mini.api.GetService(control.GetRequest(ref="web"))).service.autoscale_status
    assert status.metrics[0].target == pytest.approx(0.6)


@pytest.mark.parametrize(("edit", "message"), [
    ({"max": 1}, "spec.autoscale.max 1: expected at least min (2)"),
    ({"min": 0}, "spec.autoscale.min 0: expected at least 1"),
    ({"cpu": 0}, "spec.autoscale: no target: set at least one of cpu, memory"),
    ({"memory": 0.7}, "spec.autoscale.memory: a share of the memory limit, and the service "
                      "sets none"),
    ({"tolerance": 1.5}, "spec.autoscale.tolerance 1.5: expected a number from 0 to 1"),
    ({"cpu": float("nan")}, "spec.autoscale.cpu nan: expected a number above 0"),
    ({"replicas": 9}, "spec.replicas 9: an autoscaled service starts within min..max (2..6)"),
])
async def test_bad_policies_are_refused_naming_the_field(
        mini: InProcessCluster, edit: dict[str, float], message: str) -> None:
    spec = _spec(replicas=int(edit.pop("replicas", 2)), **edit)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mini.api.CreateService(control.CreateServiceRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")
    assert not list(mini.store_view.services())
