"""The security rules, one test each, on a real manager process (no engine needed): agents are
NodeCertificate joins and sessions spoken by hand (tests.fakes.RawAgent), users are the CLI and
gRPC channels with their credentials files.

How a refusal shows: plaintext or a certificate the cluster CA did not sign fails the TLS
handshake (UNAVAILABLE); a certificate whose identity was deleted is UNAUTHENTICATED; a caller
the manager knows but whose role (or node) does not allow the call is PERMISSION_DENIED.

Failed joins are counted per address (10 a minute, then the address waits): every test here
joins from 127.0.0.1, so the module makes fewer than that in all.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from podium.agent.certificate import JoinError, NodeCertificate
from podium.lab.local import PODIUM, Cluster
from podium.manager.pki import USER_LIFETIME, ClusterCA
from podium.rules.certs import JoinToken, new_secret
from podium.rules.credentials import CHANNEL_OPTIONS, Credentials
from podium.rules.files import write_private
from podium.v1 import control, control_grpc, objects
from tests.fakes import RawAgent
from tests.helpers import eventually_async

# Real manager processes: the security lane (README, Tests), not the fast lane.
pytestmark = pytest.mark.security

OK = grpc.StatusCode.OK


def _start(root: pathlib.Path, *manager_args: str) -> Cluster:
    cluster = Cluster(root, manager_args=manager_args)
    cluster.start_manager()
    return cluster


def _stop(cluster: Cluster) -> None:
    proc = cluster.procs.pop("manager")
    proc.terminate()
    assert proc.wait(timeout=15) == 0


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = _start(tmp_path_factory.mktemp("secured"))
    try:
        yield cluster
    finally:
        _stop(cluster)


# -- helpers -----------------------------------------------------------------------------------

def _join_address(cluster: Cluster) -> str:
    return f"127.0.0.1:{cluster.join_port}"


def _token(cluster: Cluster) -> JoinToken:
    return JoinToken.parse(cluster.token_file().read_text())


def _node(cluster: Cluster, node_id: str, data_dir: pathlib.Path,
          token: JoinToken | None = None) -> NodeCertificate:
    return NodeCertificate(data_dir=data_dir, node_id=node_id, manager=cluster.address,
                           join_address=_join_address(cluster),
                           token=token if token is not None else _token(cluster))


def _user_credentials(path: pathlib.Path) -> Any:
    return Credentials.load(path).channel_credentials()


@asynccontextmanager
async def _control(cluster: Cluster, credentials: Any) -> AsyncIterator[Any]:
    async with grpc.aio.secure_channel(cluster.address, credentials,
                                       options=CHANNEL_OPTIONS) as channel:
        yield control_grpc.ControlStub(channel)


async def _code(call: Any) -> grpc.StatusCode:
    """The status an awaited call ends with."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return OK


async def _list_nodes(cluster: Cluster, credentials: Any) -> grpc.StatusCode:
    """How the manager answers ListNodes with these credentials: OK for a user, PERMISSION_DENIED
    for a node whose certificate it accepts, UNAUTHENTICATED for a revoked one, UNAVAILABLE for
    one refused at the handshake."""
    async with _control(cluster, credentials) as stub:
        return await _code(stub.ListNodes(control.ListNodesRequest(), timeout=10))


async def _session(cluster: Cluster, node_id: str, credentials: Any) -> grpc.StatusCode:
    """OK when a session registering `node_id` is answered (SessionInfo), else its status."""
    async with RawAgent(cluster.address, f"n-{node_id}", node_id,
                        credentials=credentials) as raw:
        await eventually_async(lambda: raw.received or raw.error, timeout=10,
                               what=f"session of {node_id} answered")
        return raw.error.code() if raw.error is not None else OK


def _spec(name: str, replicas: int = 0, *constraints: str) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name=name, replicas=replicas)
    spec.container.image = "app:1"
    spec.placement.constraints.extend(constraints)
    return spec


def _secret(name: str, data: bytes) -> objects.SecretSpec:
    return objects.SecretSpec(kind=objects.SecretSpec.KIND_SECRET, name=name, data=data)


async def _cli(cluster: Cluster, *args: str, credentials: pathlib.Path | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the loop goes on serving the sessions these tests hold open."""
    return await asyncio.to_thread(cluster.run, *args, credentials=credentials)


async def _add_user(cluster: Cluster, name: str, role: str) -> pathlib.Path:
    path = cluster.root / f"{name}.credentials"
    result = await _cli(cluster, "user", "add", name, "--role", role, "--file", str(path))
    assert result.returncode == 0, result.stderr
    return path


# -- the rules ---------------------------------------------------------------------------------

async def test_plaintext_is_refused(secured: Cluster) -> None:
    for address in (secured.address, _join_address(secured)):
        async with grpc.aio.insecure_channel(address) as channel:
            code = await _code(control_grpc.ControlStub(channel).ListNodes(
                control.ListNodesRequest(), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE, address


async def test_a_certificate_from_another_ca_is_refused(secured: Cluster,
                                                        tmp_path: pathlib.Path) -> None:
    """An admin's certificate (same name, same role) signed by another CA: the client trusts
    the real manager, the manager does not trust the client."""
    other = ClusterCA.load_or_create(tmp_path / "other-ca")
    issued = other.issue("root", "admin", lifetime=USER_LIFETIME)
    real = Credentials.load(secured.credentials)
    foreign = tmp_path / "foreign.credentials"
    Credentials(manager=secured.address, user="root", role="admin", ca=real.ca,
                certificate=issued.certificate, key=issued.key).save(foreign)
    assert await _list_nodes(secured, _user_credentials(foreign)) == grpc.StatusCode.UNAVAILABLE
    result = await _cli(secured, "nodes", credentials=foreign)
    assert result.returncode == 1, result
    # The same with the real admin's credentials works: the refusal is the certificate's.
    assert await _list_nodes(secured, real.channel_credentials()) == OK


async def test_wrong_and_rotated_tokens_are_refused(secured: Cluster,
                                                    tmp_path: pathlib.Path) -> None:
    before = _node(secured, "joined-before", tmp_path / "before")
    await before.ensure()
    old = _token(secured)

    # A token with the right CA and a wrong secret: the manager refuses it.
    wrong = JoinToken(old.ca_digest, new_secret())
    with pytest.raises(JoinError, match="PERMISSION_DENIED") as refused:
        await _node(secured, "wrong", tmp_path / "wrong", wrong).ensure()
    assert not refused.value.retry
    # A token that pins another CA: the agent stops before it sends anything.
    foreign = ClusterCA.load_or_create(tmp_path / "other-ca").token(old.secret)
    with pytest.raises(JoinError, match="not the one the token names"):
        await _node(secured, "pinned", tmp_path / "pinned", foreign).ensure()

    rotated = await _cli(secured, "token", "agent", "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = JoinToken.parse(rotated.stdout)
    assert new.ca_digest == old.ca_digest and new.secret != old.secret
    write_private(secured.token_file(), str(new).encode())  # for the other tests
    with pytest.raises(JoinError, match="wrong or rotated join token"):
        await _node(secured, "joined-after", tmp_path / "after", old).ensure()
    after = _node(secured, "joined-after", tmp_path / "after", new)
    await after.ensure()
    assert await _session(secured, "joined-after", after.channel_credentials()) == OK

    # The node joined before the rotation goes on: its session, its renewal.
    assert await _session(secured, "joined-before", before.channel_credentials()) == OK
    first = before.info()
    await before.renew()
    renewed = before.info()
    assert first is not None and renewed is not None and renewed.serial != first.serial
    assert await _session(secured, "joined-before", before.channel_credentials()) == OK


async def test_a_renewal_keeps_the_previous_certificate_until_the_next(
        secured: Cluster, tmp_path: pathlib.Path) -> None:
    node = _node(secured, "renewing", tmp_path)
    await node.ensure()
    key = (tmp_path / "tls" / "node.key").read_bytes()
    first = node.channel_credentials()
    await node.renew()
    second = node.channel_credentials()
    assert await _list_nodes(secured, first) == grpc.StatusCode.PERMISSION_DENIED  # accepted
    await node.renew()
    assert await _list_nodes(secured, first) == grpc.StatusCode.UNAUTHENTICATED
    assert await _list_nodes(secured, second) == grpc.StatusCode.PERMISSION_DENIED
    assert await _session(secured, "renewing", node.channel_credentials()) == OK
    assert (tmp_path / "tls" / "node.key").read_bytes() == key  # the key never changes


async def test_certificates_are_renewed_before_expiry_and_rejoined_after(
        tmp_path: pathlib.Path) -> None:
    """Node certificates that live 10 s: one node renews by itself (at 50-80 % of their life),
    another is away past its certificate's life and rejoins with the token."""
    cluster = await asyncio.to_thread(_start, tmp_path, "--node-cert-lifetime", "10")
    try:
        renewing = _node(cluster, "renews", tmp_path / "renews")
        away = _node(cluster, "away", tmp_path / "away")
        await renewing.ensure()
        await away.ensure()
        first, away_first = renewing.info(), away.info()
        assert first is not None and away_first is not None
        assert first.lifetime() == pytest.approx(10, abs=1)  # from its issue, not not_before
        old = renewing.channel_credentials()
        renewal = asyncio.create_task(renewing.renew_forever())
        try:
            await eventually_async(lambda: renewing.info().serial != first.serial,  # type: ignore[union-attr]
                                   timeout=15, interval=0.2, what="renewed")
            renewed = renewing.info()
            assert renewed is not None and renewed.left() > 0
            assert first.left() > 0, "renewed only after expiry"
            # The new one works; the old one too, until the next renewal.
            assert await _session(cluster, "renews", renewing.channel_credentials()) == OK
            assert await _list_nodes(cluster, old) == grpc.StatusCode.PERMISSION_DENIED

            # The node that was away: its certificate expired, the handshake refuses it.
            await eventually_async(lambda: away_first.left() < 0, timeout=15, interval=0.2,
                                   what="away's certificate expired")
            assert await _list_nodes(cluster, away.channel_credentials()) == \
                grpc.StatusCode.UNAVAILABLE
            without_token = NodeCertificate(
                data_dir=tmp_path / "away", node_id="away", manager=cluster.address,
                join_address=_join_address(cluster), token=None)
            with pytest.raises(JoinError, match="expired"):
                await without_token.ensure()
            key = (tmp_path / "away" / "tls" / "node.key").read_bytes()
            await away.ensure()  # rejoins with the token: same node id, same key
            back = away.info()
            assert back is not None and back.left() > 0 and back.serial != away_first.serial
            assert (tmp_path / "away" / "tls" / "node.key").read_bytes() == key
            assert await _session(cluster, "away", away.channel_credentials()) == OK
        finally:
            renewal.cancel()
            with pytest.raises(asyncio.CancelledError):
                await renewal
    finally:
        await asyncio.to_thread(_stop, cluster)


async def test_a_removed_user_is_refused_at_once(secured: Cluster) -> None:
    path = await _add_user(secured, "eve", "viewer")
    eve = _user_credentials(path)
    admin = _user_credentials(secured.credentials)
    ended: list[grpc.StatusCode] = []
    seen: list[control.Event] = []
    async with _control(secured, eve) as stub, _control(secured, admin) as admin_stub:
        watch = stub.WatchEvents(control.WatchEventsRequest())

        async def follow() -> None:
            try:
                async for event in watch:
                    seen.append(event)
                ended.append(OK)
            except grpc.aio.AioRpcError as err:
                ended.append(err.code())

        reader = asyncio.create_task(follow())
        made = 0

        async def stream_open() -> bool:
            nonlocal made
            made += 1
            await admin_stub.CreateService(
                control.CreateServiceRequest(spec=_spec(f"watched-{made}")), timeout=10)
            return bool(seen)

        await eventually_async(stream_open, timeout=10, interval=0.3, what="eve's events")
        removed = await _cli(secured, "user", "rm", "eve")
        assert removed.returncode == 0, removed.stderr
        await eventually_async(lambda: ended, timeout=10, what="eve's stream ended")
        await reader
        assert ended == [grpc.StatusCode.UNAUTHENTICATED]
    assert await _list_nodes(secured, eve) == grpc.StatusCode.UNAUTHENTICATED
    result = await _cli(secured, "services", credentials=path)
    assert result.returncode == 1 and "revoked" in result.stderr, result


async def test_a_viewer_lists_but_cannot_deploy_nor_read_secrets(secured: Cluster) -> None:
    path = await _add_user(secured, "vic", "viewer")
    async with _control(secured, _user_credentials(secured.credentials)) as admin:
        await admin.CreateSecret(control.CreateSecretRequest(
            spec=_secret("viewer-test", b"s3cret")), timeout=10)
        await admin.CreateService(control.CreateServiceRequest(spec=_spec("listed")),
                                  timeout=10)
    async with _control(secured, _user_credentials(path)) as viewer:
        services = await viewer.ListServices(control.ListServicesRequest(), timeout=10)
        assert "listed" in [s.spec.name for s in services.services]
        listed = await viewer.ListSecrets(control.ListSecretsRequest(), timeout=10)
        (secret,) = [s for s in listed.secrets if s.spec.name == "viewer-test"]
        assert secret.spec.data == b"" and secret.spec.digest.startswith("sha256:")
        assert await _code(viewer.CreateService(control.CreateServiceRequest(
            spec=_spec("by-viewer")), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        assert await _code(viewer.ScaleService(control.ScaleServiceRequest(
            ref="listed", replicas=2), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        assert await _code(viewer.CreateSecret(control.CreateSecretRequest(
            spec=_secret("by-viewer", b"x")), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    result = await _cli(secured, "services", credentials=path)
    assert result.returncode == 0 and "listed" in result.stdout, result


async def test_an_operator_deploys_but_cannot_add_users_nor_get_the_token(
        secured: Cluster) -> None:
    path = await _add_user(secured, "opal", "operator")
    async with _control(secured, _user_credentials(path)) as operator:
        await operator.CreateService(control.CreateServiceRequest(spec=_spec("by-operator")),
                                     timeout=10)
        await operator.CreateSecret(control.CreateSecretRequest(
            spec=_secret("by-operator", b"written, never read back")), timeout=10)
        listed = await operator.ListSecrets(control.ListSecretsRequest(), timeout=10)
        (secret,) = [s for s in listed.secrets if s.spec.name == "by-operator"]
        assert secret.spec.data == b""
        assert await _code(operator.AddUser(control.AddUserRequest(
            name="mallory", role="admin"), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        assert await _code(operator.GetJoinToken(control.GetJoinTokenRequest(),
                                                 timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    result = await _cli(secured, "user", "add", "mallory", "--role", "admin", "--file",
                        str(secured.root / "mallory.credentials"), credentials=path)
    assert result.returncode == 1 and "may not call AddUser" in result.stderr, result
    assert not (secured.root / "mallory.credentials").exists()
    result = await _cli(secured, "token", "agent", credentials=path)
    assert result.returncode == 1 and "PODIUM1-" not in result.stdout, result


async def test_a_node_certificate_cannot_call_control(secured: Cluster,
                                                      tmp_path: pathlib.Path) -> None:
    node = _node(secured, "no-control", tmp_path)
    await node.ensure()
    async with _control(secured, node.channel_credentials()) as stub:
        for call in (stub.ListNodes(control.ListNodesRequest(), timeout=10),
                     stub.CreateService(control.CreateServiceRequest(spec=_spec("by-node")),
                                        timeout=10),
                     stub.GetJoinToken(control.GetJoinTokenRequest(), timeout=10)):
            assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED


async def test_an_agent_cannot_claim_another_node(secured: Cluster,
                                                  tmp_path: pathlib.Path) -> None:
    mine = _node(secured, "claimer", tmp_path / "claimer")
    theirs = _node(secured, "claimed", tmp_path / "claimed")
    await mine.ensure()
    await theirs.ensure()
    # A session for another node id with one's own certificate.
    assert await _session(secured, "claimed", mine.channel_credentials()) == \
        grpc.StatusCode.PERMISSION_DENIED
    # A join for a node id that joined with another key, even with the right token.
    with pytest.raises(JoinError, match="ALREADY_EXISTS"):
        await _node(secured, "claimed", tmp_path / "impostor").ensure()
    assert await _session(secured, "claimed", theirs.channel_credentials()) == OK


async def test_node_rm_revokes_the_node(secured: Cluster, tmp_path: pathlib.Path) -> None:
    node = _node(secured, "removed", tmp_path)
    await node.ensure()
    async with RawAgent(secured.address, "n-removed", "removed",
                        credentials=node.channel_credentials()) as raw:
        await eventually_async(lambda: raw.received, timeout=10, what="session open")
        assert raw.error is None
        result = await _cli(secured, "node", "rm", "removed", "--force")
        assert result.returncode == 0, result.stderr
        error = await eventually_async(lambda: raw.error, timeout=10, what="session ended")
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert await _session(secured, "removed", node.channel_credentials()) == \
        grpc.StatusCode.UNAUTHENTICATED


async def test_events_name_who_made_each_change(secured: Cluster,
                                                tmp_path: pathlib.Path) -> None:
    """`podium events -o json`: the admin's deploy is "user:root"'s, the task status an agent
    reports is "node:<id>"'s."""
    node = _node(secured, "reporter", tmp_path)
    await node.ensure()
    lines: list[dict[str, Any]] = []
    events = await asyncio.create_subprocess_exec(
        *PODIUM, "--manager", secured.address, "--credentials", str(secured.credentials),
        "events", "-o", "json", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert events.stdout is not None

    async def read(stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            lines.append(json.loads(line))

    reader = asyncio.create_task(read(events.stdout))
    try:
        async with _control(secured, _user_credentials(secured.credentials)) as admin, \
                RawAgent(secured.address, "n-reporter", "reporter",
                         credentials=node.channel_credentials()) as raw:
            await eventually_async(lambda: raw.received, timeout=10, what="session open")
            made = 0

            async def following() -> bool:  # the command subscribes a moment after it starts
                nonlocal made
                made += 1
                await admin.CreateService(control.CreateServiceRequest(
                    spec=_spec(f"before-events-{made}")), timeout=10)
                return bool(lines)

            await eventually_async(following, timeout=15, interval=0.3,
                                   what="podium events following")
            await admin.CreateService(control.CreateServiceRequest(
                spec=_spec("audited", 1, "node.id == reporter")), timeout=10)

            async def assigned() -> list[objects.Task]:
                tasks = (await admin.ListTasks(control.ListTasksRequest(service="audited"),
                                               timeout=10)).tasks
                return [t for t in tasks if t.node_id == "reporter"]

            (task,) = await eventually_async(assigned, timeout=10, interval=0.1,
                                             what="task assigned to reporter")
            raw.report((task.id, objects.TaskStatus(state=objects.TASK_STATE_RUNNING,
                                                     message="running")))

            def by(kind: str, actor: str, name: str) -> bool:
                return any(e["kind"] == kind and e["actor"] == actor and name in json.dumps(
                    e["object"]) for e in lines)

            await eventually_async(lambda: by("service", "user:root", "audited"), timeout=10,
                                   what="the deploy's event")
            await eventually_async(lambda: by("task", "node:reporter", task.id), timeout=10,
                                   what="the reported status's event")
    finally:
        events.terminate()
        await events.wait()
        await reader

