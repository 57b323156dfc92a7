"""Secrets and configs through the Control API and the dispatcher: versions, idempotence,
references checked, removal refused while used, data never returned to operators and sent
only to the nodes whose tasks use it."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest

from podium.manager.store import SqliteStore
from podium.v1 import control, dispatcher, objects
from tests.fakes import RawAgent
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

SECRET = objects.SecretSpec.KIND_SECRET
CONFIG = objects.SecretSpec.KIND_CONFIG


async def _create(c: InProcessCluster, name: str, data: bytes,
                  kind: int = SECRET) -> objects.Secret:
    spec = objects.SecretSpec(kind=kind, name=name, data=data)  # type: ignore[arg-type]
    reply = await c.api.CreateSecret(control.CreateSecretRequest(spec=spec))
    secret: objects.Secret = reply.secret
    return secret


def _spec_using(service: str, secret: objects.Secret, **ref: object) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name=service, replicas=1)
    spec.container.image = "app:1"
    spec.container.secrets.add(id=secret.id, **ref)
    return spec


async def test_versions_idempotence_and_no_data_returned(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        first = await _create(c, "db_password", b"hunter2")
        assert first.version == 1 and first.spec.digest.startswith("sha256:")
        assert first.spec.data == b""  # a secret's data never comes back
        again = await _create(c, "db_password", b"hunter2")
        assert again.id == first.id and again.version == 1
        second = await _create(c, "db_password", b"hunter3")
        assert second.id != first.id and second.version == 2
        # A config of the same name is another object; its content may be read back.
        conf = await _create(c, "db_password", b"port=5432", CONFIG)
        assert conf.version == 1 and conf.spec.data == b"port=5432"
        listed = await c.api.ListSecrets(control.ListSecretsRequest(kind=SECRET))
        assert [(s.spec.name, s.version) for s in listed.secrets] == [
            ("db_password", 1), ("db_password", 2)]
        assert all(s.spec.data == b"" for s in listed.secrets)
        configs = await c.api.ListSecrets(control.ListSecretsRequest(kind=CONFIG))
        assert [s.spec.data for s in configs.secrets] == [b"port=5432"]


async def test_bad_names_and_sizes_are_refused(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _create(c, "bad name", b"x")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "secret name 'bad name'" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _create(c, "big", b"x" * (500 * 1024 + 1), CONFIG)
        assert "config 'big': spec.data is 512001 bytes: at most 512000" in (
            err.value.details() or "")


async def test_references_are_checked_and_defaults_filled(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        secret = await _create(c, "token", b"s3cr3t")
        missing = objects.Secret(id="nope")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.api.CreateService(control.CreateServiceRequest(
                spec=_spec_using("web", missing, name="token2")))
        message = err.value.details() or ""
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "service 'web'" in message and "'token2'" in message
        assert "podium secret create token2" in message
        # A config's id where a secret is expected is refused too.
        conf = await _create(c, "conf", b"a=1", CONFIG)
        with pytest.raises(grpc.aio.AioRpcError):
            await c.api.CreateService(control.CreateServiceRequest(
                spec=_spec_using("web", conf)))
        reply = await c.api.CreateService(control.CreateServiceRequest(
            spec=_spec_using("web", secret)))
        (ref,) = reply.service.spec.container.secrets
        assert (ref.name, ref.target, ref.uid, ref.gid, ref.mode) == (
            "token", "token", "0", "0", 0o444)
        # What operators read of the service holds the id and name, never the data.
        got = await c.api.GetService(control.GetRequest(ref="web"))
        assert b"s3cr3t" not in got.SerializeToString()


async def test_remove_is_refused_while_a_service_uses_it(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        await _create(c, "token", b"one")
        used = await _create(c, "token", b"two")
        await c.api.CreateService(control.CreateServiceRequest(spec=_spec_using("web", used)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.api.RemoveSecret(control.RemoveSecretRequest(kind=SECRET, name="token"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "secret 'token' is in use by service 'web'" in (err.value.details() or "")
        await c.api.RemoveService(control.RemoveServiceRequest(ref="web"))
        await c.api.RemoveSecret(control.RemoveSecretRequest(kind=SECRET, name="token"))
        listed = await c.api.ListSecrets(control.ListSecretsRequest(kind=SECRET))
        assert not listed.secrets  # every version went
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.api.RemoveSecret(control.RemoveSecretRequest(kind=SECRET, name="token"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_secrets_survive_a_restart_of_the_store(tmp_path: pathlib.Path) -> None:
    from podium.manager import secrets

    store = SqliteStore(tmp_path / "state.db")
    spec = objects.SecretSpec(kind=SECRET, name="k", data=b"v")
    made = store.update_now(lambda tx: secrets.create(tx, spec))
    store.close()
    again = SqliteStore(tmp_path / "state.db")
    try:
        stored = again.view().get_secret(made.id)
        assert stored is not None and stored.spec.data == b"v" and stored.version == 1
    finally:
        again.close()


def _secrets_received(raw: RawAgent) -> dict[str, bytes]:
    return {s.id: s.spec.data for m in raw.received if m.HasField("assignments")
            for s in m.assignments.secrets}


async def test_only_nodes_running_a_user_get_the_data(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        secret = await _create(c, "token", b"s3cr3t")
        async with RawAgent(c.address, "a", "a" * 20) as a, \
                RawAgent(c.address, "b", "b" * 20) as b:
            await eventually_async(lambda: c.node_state("a") == c.node_state("b") == "ready",
                                   what="both ready")
            spec = _spec_using("web", secret)
            spec.placement.constraints.append("node.hostname == a")
            await c.api.CreateService(control.CreateServiceRequest(spec=spec))
            await eventually_async(lambda: secret.id in _secrets_received(a),
                                   what="a got the secret")
            assert _secrets_received(a)[secret.id] == b"s3cr3t"
            # A second task on the same node does not send it again in this session.
            await c.api.ScaleService(control.ScaleServiceRequest(ref="web", replicas=2))
            await eventually_async(lambda: len([
                t for m in a.received if m.HasField("assignments") for t in m.assignments.tasks
            ]) >= 2, what="second task sent")
            sent = [s for m in a.received if m.HasField("assignments")
                    for s in m.assignments.secrets]
            assert len(sent) == 1
            await asyncio.sleep(0.2)  # deliberate: nothing to wait for but an absence
            assert not _secrets_received(b)
        # A new session gets it again, in its complete set.
        async with RawAgent(c.address, "a", "a" * 20) as again:
            def complete() -> dispatcher.Assignments | None:
                for m in again.received:
                    if m.HasField("assignments"):
                        return m.assignments
                return None

            full = await eventually_async(complete, what="complete set")
            assert [s.spec.data for s in full.secrets] == [b"s3cr3t"]
        await c.api.RemoveService(control.RemoveServiceRequest(ref="web"))


async def test_watch_events_never_carry_secrets(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0) as c:
        call = c.api.WatchEvents(control.WatchEventsRequest())
        seen: list[control.Event] = []

        async def read() -> None:
            async for event in call:
                seen.append(event)

        reader = asyncio.create_task(read())
        try:
            await asyncio.sleep(0.1)  # deliberate: let the watch subscribe before the writes
            secret = await _create(c, "token", b"s3cr3t")
            await c.api.CreateService(control.CreateServiceRequest(
                spec=_spec_using("web", secret)))
            await eventually_async(lambda: any(e.HasField("service") for e in seen),
                                   what="service event")
            assert all(b"s3cr3t" not in e.SerializeToString() for e in seen)
        finally:
            call.cancel()
            reader.cancel()
            with pytest.raises((asyncio.CancelledError, grpc.aio.AioRpcError)):
                await reader
