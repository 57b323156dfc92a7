"""`podium manager --store`, `migrate` and `etcd-cert` on real etcd: TLS with the cluster's
certificates, bad URLs and unreachable etcd, and a cluster's state moved to etcd and back."""

from __future__ import annotations

import asyncio
import itertools
import os
import pathlib
import subprocess
import sys
import time

import pytest

from podium.lab.etcd import EtcdCluster, _free_port
from podium.manager import secrets
from podium.manager.main import main
from podium.manager.pki import ClusterCA
from podium.manager.store import (
    EtcdStore,
    EtcdTlsFiles,
    KeyRing,
    SqliteStore,
    StoreError,
    close_store,
    open_store,
    parse_url,
)
from podium.v1 import objects
from tests.inprocess import in_process_cluster

pytestmark = pytest.mark.etcd
_prefixes = itertools.count()
PLAIN = b"etcd-plaintext-marker-41d7"  # found in etcd only if a secret is stored in clear


def _tls_cluster_dir(data_dir: pathlib.Path, out: pathlib.Path) -> None:
    """The cluster CA (made by the first etcd-cert) and etcd0's certificate from it."""
    assert main(["etcd-cert", "--data-dir", str(data_dir), "--name", "etcd0",
                 "--out", str(out)]) == 0
    assert (out / "etcd0.key").stat().st_mode & 0o077 == 0
    assert (out / "ca.crt").read_bytes() == (data_dir / "pki" / "ca.crt").read_bytes()


async def test_a_manager_on_etcds_deploys(tmp_path: pathlib.Path) -> None:
    """The daemon's wiring: --store etcds:// with the data dir's CA and nothing else given."""
    _tls_cluster_dir(tmp_path / "manager", tmp_path / "etcd-tls")
    with EtcdCluster(1, tls_dir=tmp_path / "etcd-tls") as etcd:
        async with in_process_cluster(tmp_path, agents=1, store=etcd.url) as cluster:
            await cluster.create("web", replicas=2)
            await cluster.wait_running("web", 2)


async def test_tls_with_the_cluster_certificates_and_nothing_else(tmp_path: pathlib.Path) -> None:
    data_dir, tls = tmp_path / "manager", tmp_path / "etcd-tls"
    _tls_cluster_dir(data_dir, tls)
    with EtcdCluster(1, tls_dir=tls) as etcd:
        assert etcd.url.startswith("etcds://")
        # By default: the CA of DATA_DIR/pki, and a client certificate it issues the manager.
        store = await open_store(etcd.url, data_dir=data_dir, sealer=None)
        svc = objects.Service(id="s1")
        svc.spec.name = "web"
        await store.update(lambda tx: tx.create(svc))
        assert store.view().service_by_name("web") is not None
        await close_store(store)

        # A certificate of another CA, or none at all, is not let in.
        stranger = tmp_path / "stranger"
        issued = ClusterCA.load_or_create(stranger / "pki").issue("manager", "manager")
        (stranger / "c.crt").write_bytes(issued.certificate)
        (stranger / "c.key").write_bytes(issued.key)
        foreign = EtcdTlsFiles(tls / "ca.crt", stranger / "c.crt", stranger / "c.key")
        for url, files in ((etcd.url, foreign),
                           (etcd.url.replace("etcds://", "etcd://"), None)):
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                await EtcdStore.open(parse_url(url), deadline=2.0,
                                     tls=None if files is None else _material(files, data_dir))
            assert time.monotonic() - started < 5
            assert etcd.endpoints[0] in str(caught.value)


def _material(files: EtcdTlsFiles, data_dir: pathlib.Path) -> object:
    from podium.manager.store._open import tls_material
    return tls_material(data_dir, files)


def _manager(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium.manager", "--data-dir", str(tmp_path / "m"),
         "--listen", "127.0.0.1:0", "--join-listen", "127.0.0.1:0", "--metrics-listen", "off",
         "--dashboard", "off", "--admin-credentials", "none", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("url, says", [
    ("etcd://", "is not HOST:PORT"),
    ("etcd://127.0.0.1:99999", "is not HOST:PORT"),
    ("redis://127.0.0.1:6379", "expected 'sqlite'"),
    ("etcd:/127.0.0.1:2379", "expected 'sqlite'"),
])
def test_a_bad_store_url_is_refused_naming_it(tmp_path: pathlib.Path, url: str,
                                              says: str) -> None:
    done = _manager(tmp_path, "--store", url)
    assert done.returncode == 2, done.stderr
    assert url in done.stderr and says in done.stderr and "etcd://HOST:PORT" in done.stderr


def test_a_manager_whose_etcd_does_not_answer_exits_saying_so(tmp_path: pathlib.Path) -> None:
    url = f"etcd://127.0.0.1:{_free_port()},127.0.0.1:{_free_port()}"
    started = time.monotonic()
    done = _manager(tmp_path, "--store", url)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: store {url}: no etcd member answered"), done.stderr
    assert all(e in last for e in url.removeprefix("etcd://").split(","))


async def _cli(argv: list[str]) -> int:
    """`podium manager ARGV` (which runs its own event loop) from a test's loop."""
    return await asyncio.to_thread(main, argv)


async def test_migrate_to_etcd_and_back(tmp_path: pathlib.Path, etcd1: EtcdCluster,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "d"
    ring = KeyRing.open(data_dir / "keys")
    ClusterCA.load_or_create(data_dir / "pki")
    source = SqliteStore(data_dir / "state.db", sealer=ring)
    svc = objects.Service(id="s1")
    svc.spec.name = "web"
    svc.spec.replicas = 2
    source.update_now(lambda tx: tx.create(svc))
    for i in range(250):  # more than one migration batch
        source.update_now(lambda tx, i=i: tx.create(  # type: ignore[misc]
            objects.Task(id=f"t{i}", service_id="s1", slot=i + 1)))
    bumped = source.view().get_task("t7")
    assert bumped is not None
    copy = objects.Task()
    copy.CopyFrom(bumped)
    copy.node_id = "n1"
    source.update_now(lambda tx: tx.update(copy))
    spec = objects.SecretSpec(name="db-password", data=PLAIN)
    source.update_now(lambda tx: secrets.create(tx, spec))
    before = {(type(o).__name__, o.id): o.SerializeToString(deterministic=True)
              for o in source.every_object()}
    source.close()

    url = f"{etcd1.url}/migrated/{next(_prefixes)}"
    assert await _cli(["migrate", "--data-dir", str(data_dir), "--to", url]) == 0
    assert f"copied {len(before)} object(s)" in capsys.readouterr().out
    # Into a prefix that holds keys already: refused, naming it.
    assert await _cli(["migrate", "--data-dir", str(data_dir), "--to", url]) == 1
    err = capsys.readouterr().err
    assert parse_url(url).prefix in err and "empty prefix" in err

    store = await EtcdStore.open(parse_url(url), sealer=ring)
    try:
        got = {(type(o).__name__, o.id): o.SerializeToString(deterministic=True)
               for o in store.every_object()}
        assert got == before  # versions, times, authors and secret content as they were
        task = store.view().get_task("t7")
        assert task is not None and task.meta.version == 2 and task.node_id == "n1"
        # Sealed in etcd as in state.db.
        prefix = parse_url(url).prefix.encode()
        from aetcd import rpc
        kv = store.connection.stubs(etcd1.endpoints[0]).kv
        answer = await kv.Range(rpc.RangeRequest(key=prefix + b"/secret/",
                                                 range_end=prefix + b"/secret0"), timeout=5)
        assert len(answer.kvs) == 1 and PLAIN not in answer.kvs[0].value
        # The copy is a working store: it writes on.
        await store.update(lambda tx: tx.delete(tx.get_task("t0")))  # type: ignore[arg-type]
        del before[("Task", "t0")]
    finally:
        await store.aclose()

    back = tmp_path / "back"
    assert await _cli(["migrate", "--from", url, "--to-data-dir", str(back),
                 "--data-dir", str(data_dir)]) == 0
    assert f"copied {len(before)} object(s)" in capsys.readouterr().out
    again = SqliteStore(back / "state.db", sealer=KeyRing.open(back / "keys"))
    try:
        assert {(type(o).__name__, o.id): o.SerializeToString(deterministic=True)
                for o in again.every_object()} == before
    finally:
        again.close()
    assert PLAIN not in (back / "state.db").read_bytes()
    # Not over an existing state.db.
    assert await _cli(["migrate", "--from", url, "--to-data-dir", str(back)]) == 1
    assert "exists already" in capsys.readouterr().err
