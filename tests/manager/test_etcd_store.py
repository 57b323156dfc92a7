"""EtcdStore on real etcd members: several stores on one etcd, conflicts between them, members
lost and back, compaction, and a manager running on it."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import signal
import time
from collections.abc import AsyncIterator

import pytest
from aetcd import rpc

from podium.lab.etcd import EtcdCluster
from podium.manager.store import (
    Change,
    ConflictError,
    EtcdStore,
    StoreError,
    WriteTx,
    acting_as,
    parse_url,
)
from podium.v1 import objects
from tests.helpers import eventually_async
from tests.inprocess import in_process_cluster

pytestmark = pytest.mark.etcd
_prefixes = itertools.count()


def _service(id: str, name: str, replicas: int = 1) -> objects.Service:
    svc = objects.Service(id=id)
    svc.spec.name = name
    svc.spec.replicas = replicas
    svc.spec.container.image = "app:1"
    return svc


def _replicas(n: int) -> object:
    def bump(tx: WriteTx) -> None:
        svc = tx.get_service("s1")
        assert svc is not None
        svc.spec.replicas = n
        tx.update(svc)
    return bump


@pytest.fixture
async def two(etcd1: EtcdCluster) -> AsyncIterator[tuple[EtcdStore, EtcdStore]]:
    """Two stores (two managers) on one etcd prefix."""
    target = parse_url(f"{etcd1.url}/two/{next(_prefixes)}")
    a = await EtcdStore.open(target)
    b = await EtcdStore.open(target)
    yield a, b
    await a.aclose()
    await b.aclose()


async def _changes(watch: object, n: int) -> list[Change]:
    return [await asyncio.wait_for(watch.get(), 5) for _ in range(n)]  # type: ignore[attr-defined]


async def test_each_store_sees_the_others_writes_through_its_watch(
        two: tuple[EtcdStore, EtcdStore]) -> None:
    a, b = two
    watch_a, watch_b = a.watch(), b.watch()
    with acting_as("user:alice"):
        await a.update(lambda tx: tx.create(_service("s1", "web")))
    # Another manager's write reaches b's tables soon after, not at once.
    await eventually_async(lambda: b.view().get_service("s1") is not None, timeout=5,
                           what="b seeing s1")
    with acting_as("user:bob"):
        await b.update(_replicas(3))  # type: ignore[arg-type]
        await b.update(lambda tx: tx.delete(tx.get_service("s1")))  # type: ignore[arg-type]
    expected = [("create", "s1", "user:alice", 1), ("update", "s1", "user:bob", 2),
                ("delete", "s1", "user:bob", 2)]
    for watch in (watch_a, watch_b):
        got = await _changes(watch, 3)
        assert [(c.action, c.obj.id, c.actor, c.obj.meta.version) for c in got] == expected
        assert watch.get_nowait() is None  # each change once, from the watch alone
    assert a.view().get_service("s1") is None and b.view().get_service("s1") is None


async def test_conflicting_writes_one_wins_the_other_conflicts_and_sees_it(
        two: tuple[EtcdStore, EtcdStore]) -> None:
    a, b = two
    await a.update(lambda tx: tx.create(_service("s1", "web")))
    await eventually_async(lambda: b.view().get_service("s1") is not None, timeout=5,
                           what="b seeing s1")
    results = await asyncio.gather(a.update(_replicas(2)), b.update(_replicas(5)),  # type: ignore[arg-type]
                                   return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(conflicts) == 1 and results.count(None) == 1, results
    winner = 2 if results[0] is None else 5
    loser = b if results[0] is None else a
    # The loser's tables caught up before it raised: its retry reads the winner's write.
    svc = loser.view().get_service("s1")
    assert svc is not None and svc.spec.replicas == winner and svc.meta.version == 2
    await loser.update(_replicas(7))  # type: ignore[arg-type]
    await eventually_async(
        lambda: all(s.view().get_service("s1").spec.replicas == 7 for s in two),  # type: ignore[union-attr]
        timeout=5, what="both at 7 replicas")


async def test_creating_the_same_object_twice_conflicts(two: tuple[EtcdStore, EtcdStore]) -> None:
    a, b = two
    results = await asyncio.gather(a.update(lambda tx: tx.create(_service("s1", "web"))),
                                   b.update(lambda tx: tx.create(_service("s1", "web"))),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "NoneType"]


async def test_compacted_watch_reloads_and_publishes_the_differences() -> None:
    with EtcdCluster(3) as etcd:
        a = await EtcdStore.open(parse_url(f"etcd://{etcd.endpoints[0]}/compact"))
        b = await EtcdStore.open(parse_url(f"etcd://{etcd.endpoints[1]}/compact"))
        try:
            await b.update(lambda tx: tx.create(_service("s1", "web")))
            await b.update(lambda tx: tx.create(_service("s2", "db")))
            await eventually_async(lambda: a.view().get_service("s2") is not None, timeout=5,
                                   what="a seeing s2")
            watch = a.watch()
            # a's only member stops answering; the others go on and compact their history.
            etcd.signal_member(etcd.members[0], signal.SIGSTOP)
            await b.update(_replicas(4))  # type: ignore[arg-type]
            await b.update(lambda tx: tx.delete(tx.get_service("s2")))  # type: ignore[arg-type]
            await b.update(lambda tx: tx.create(_service("s3", "cache")))
            kv = b.connection.stubs(etcd.endpoints[1]).kv
            await kv.Compact(rpc.CompactionRequest(revision=b.revision, physical=True),
                             timeout=5)
            etcd.signal_member(etcd.members[0], signal.SIGCONT)
            got = {(c.action, c.obj.id) for c in await _changes(watch, 3)}
            assert got == {("update", "s1"), ("delete", "s2"), ("create", "s3")}
            svc = a.view().get_service("s1")
            assert svc is not None and svc.spec.replicas == 4
            assert a.view().get_service("s2") is None
            await a.update(_replicas(5))  # type: ignore[arg-type]  # its revisions are current
        finally:
            etcd.signal_member(etcd.members[0], signal.SIGCONT)
            await a.aclose()
            await b.aclose()


async def test_writes_go_on_with_a_member_killed_and_fail_fast_with_none() -> None:
    with EtcdCluster(3) as etcd:
        store = await EtcdStore.open(parse_url(etcd.url + "/failover"), deadline=3.0)
        other = await EtcdStore.open(parse_url(etcd.url + "/failover"))
        try:
            await store.update(lambda tx: tx.create(_service("s1", "web")))
            # The member in use dies: the next write goes to another one.
            used = next(m for m in etcd.members if m.endpoint == store.connection.current)
            etcd.stop_member(used, kill=True)
            await store.update(_replicas(2))  # type: ignore[arg-type]
            await store.update(_replicas(3))  # type: ignore[arg-type]
            assert store.connection.current != used.endpoint
            await eventually_async(
                lambda: other.view().get_service("s1").spec.replicas == 3,  # type: ignore[union-attr]
                timeout=10, what="the other store seeing replicas=3")

            for member in etcd.members:
                etcd.stop_member(member, kill=True)
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                await store.update(_replicas(4))  # type: ignore[arg-type]
            took = time.monotonic() - started
            assert took < 6.0, took
            assert all(e in str(caught.value) for e in etcd.endpoints), caught.value
            # Writes queued behind one another fail within the deadline too, not one after
            # the other's.
            started = time.monotonic()
            results = await asyncio.gather(*(store.update(_replicas(n))  # type: ignore[arg-type]
                                             for n in (4, 5, 6)), return_exceptions=True)
            assert all(isinstance(r, StoreError) for r in results), results
            assert time.monotonic() - started < 6.0
            await eventually_async(lambda: not store.connected, timeout=5,
                                   what="the store saying it lost etcd")
            lost_at = store.last_contact
            svc = store.view().get_service("s1")  # reads go on from memory
            assert svc is not None and svc.spec.replicas == 3

            for member in etcd.members:
                etcd.start_member(member)
            etcd.wait_healthy()
            # Back: the other store's write reaches this one through its watch, and it writes.
            await eventually_async(lambda: _write_ok(other, 6), timeout=20,
                                   what="a write once etcd is back")
            await eventually_async(
                lambda: store.view().get_service("s1").spec.replicas == 6,  # type: ignore[union-attr]
                timeout=20, what="the store catching up after etcd came back")
            await store.update(_replicas(7))  # type: ignore[arg-type]
            assert store.connected and store.last_contact is not None
            assert lost_at is None or store.last_contact > lost_at
        finally:
            await store.aclose()
            await other.aclose()


async def _write_ok(store: EtcdStore, replicas: int) -> bool:
    """One attempt at a write, for polling until etcd takes writes again."""
    try:
        await store.update(_replicas(replicas))  # type: ignore[arg-type]
    except (StoreError, ConflictError):
        return False
    return True


async def test_a_manager_on_etcd_deploys_and_runs_tasks(tmp_path: pathlib.Path,
                                                       etcd1: EtcdCluster) -> None:
    url = f"{etcd1.url}/manager/{next(_prefixes)}"
    async with in_process_cluster(tmp_path, agents=2, store=url) as cluster:
        await cluster.create("web", replicas=4)
        tasks = await cluster.wait_running("web", 4)
        assert {t.node_id for t in tasks} == set(cluster.node_ids.values())
        await cluster.scale("web", 2)
        await eventually_async(lambda: len(cluster.running("web")) == 2, timeout=15,
                               what="web scaled to 2")
    # The state is in etcd: a store opened on it afresh reads it.
    store = await EtcdStore.open(parse_url(url))
    try:
        svc = store.view().service_by_name("web")
        assert svc is not None and svc.spec.replicas == 2
    finally:
        await store.aclose()


async def test_a_write_whose_answer_was_lost_is_not_reported_as_a_conflict(
        two: tuple[EtcdStore, EtcdStore]) -> None:
    """A transaction times out (its answer lost) and is retried; the retry fails its compare.
    When etcd had applied the first attempt, the store recognises its own write and succeeds;
    when another manager had written instead, it is a conflict."""
    import grpc

    from podium.manager.store._etcdconn import Stubs

    a, b = two
    await a.update(lambda tx: tx.create(_service("s1", "web")))
    conn = a.connection
    real = conn.stubs(conn.current)
    # What the first attempt does before its answer is lost: apply it, or let b write first.
    first: list[str] = []

    class LosingKV:
        async def Txn(self, request: object, **options: object) -> object:
            if first:
                mode = first.pop()
                if mode == "applied":
                    await real.kv.Txn(request, **options)
                else:
                    await eventually_async(lambda: b.view().get_service("s1") is not None,
                                           timeout=5, what="b seeing s1")
                    await b.update(_replicas(9))  # type: ignore[arg-type]
                raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                           grpc.aio.Metadata(), grpc.aio.Metadata(),
                                           "deadline exceeded (the answer was lost)")
            return await real.kv.Txn(request, **options)

        def __getattr__(self, name: str) -> object:
            return getattr(real.kv, name)

    conn.stubs = lambda endpoint: Stubs(LosingKV(), real.watch, real.lease,  # type: ignore[method-assign]
                                        real.maintenance)
    first.append("applied")
    await a.update(_replicas(3))  # type: ignore[arg-type]
    assert not first
    svc = a.view().get_service("s1")
    assert svc is not None and svc.spec.replicas == 3 and svc.meta.version == 2

    first.append("other")
    with pytest.raises(ConflictError):
        await a.update(_replicas(4))  # type: ignore[arg-type]
    svc = a.view().get_service("s1")
    assert svc is not None and svc.spec.replicas == 9 and svc.meta.version == 3


async def test_a_hung_member_is_left_for_the_next_one() -> None:
    """The member in use stops answering (SIGSTOP: a hung host): a write times out there and
    goes to the next member, and the watch follows it, within a few seconds."""
    with EtcdCluster(3) as etcd:
        store = await EtcdStore.open(parse_url(etcd.url + "/hung"))
        used = next(m for m in etcd.members if m.endpoint == store.connection.current)
        try:
            await store.update(lambda tx: tx.create(_service("s1", "web")))
            etcd.signal_member(used, signal.SIGSTOP)
            started = time.monotonic()
            await store.update(_replicas(2))  # type: ignore[arg-type]
            assert time.monotonic() - started < 5.0
            assert store.connection.current != used.endpoint
            svc = store.view().get_service("s1")
            assert svc is not None and svc.spec.replicas == 2
        finally:
            etcd.signal_member(used, signal.SIGCONT)
            await store.aclose()


async def test_secrets_are_sealed_in_etcd_and_the_key_rotates(tmp_path: pathlib.Path,
                                                              etcd1: EtcdCluster) -> None:
    from podium.manager import secrets
    from podium.manager.store import KeyRing, _sealing

    plain = b"etcd-secret-marker-93b2"
    target = parse_url(f"{etcd1.url}/sealed/{next(_prefixes)}")
    ring = KeyRing.open(tmp_path / "keys")
    store = await EtcdStore.open(target, sealer=ring)
    try:
        spec = objects.SecretSpec(name="token", data=plain)
        created = await store.update(lambda tx: secrets.create(tx, spec))
        kv = store.connection.stubs(store.connection.current).kv
        key = f"{target.prefix}/secret/{created.id}".encode()

        async def stored() -> bytes:
            answer = await kv.Range(rpc.RangeRequest(key=key), timeout=5)
            return bytes(answer.kvs[0].value)

        assert plain not in await stored()
        old_key = ring.current
        new_key, count = await store.rotate_key()
        assert count == 1 and new_key != old_key
        assert plain not in await stored()
        # Another manager with a copy of the ring (the file) reads it.
        other = await EtcdStore.open(target, sealer=KeyRing.open(tmp_path / "keys"))
        try:
            got = other.view().get_secret(created.id)
            assert got is not None and got.spec.data == plain
        finally:
            await other.aclose()
        secret, key_id = _sealing.decode_row(await stored(), ring)
        assert key_id == new_key and secret.spec.data == plain
    finally:
        await store.aclose()
