"""Moving a cluster's state between the stores (`podium manager migrate`), and the
certificates of etcd members (`podium manager etcd-cert`).

to_etcd copies every object of a stopped manager's DATA_DIR/state.db into an etcd prefix that
must be empty, as it is: versions, times and authors kept, secrets sealed under the same key
ring (each manager on etcd needs a copy of that data dir's keys/ and pki/). It writes in
transactions of at most BATCH objects (etcd's default limit on a transaction's operations is
128), each checking that its keys are still absent; a copy that fails part way deletes what it
wrote. from_etcd is the way back: an etcd store's objects into a new state.db.
"""

from __future__ import annotations

import datetime
import pathlib
import shutil
from typing import Any

from aetcd import rpc

from podium.manager.store._base import Obj
from podium.manager.store._etcd import EtcdStore, encode_value, object_key, prefix_end
from podium.manager.store._etcdconn import EtcdConnection, Stubs, parse_url
from podium.manager.store._open import EtcdTlsFiles, tls_material
from podium.manager.store._sealing import KeyRing
from podium.manager.store._sqlite import SqliteStore

BATCH = 100
ETCD_CERT_LIFETIME = datetime.timedelta(days=3 * 365)


class MigrateError(Exception):
    """The copy cannot be made (the text says why and what to do)."""


async def to_etcd(data_dir: pathlib.Path, url: str, tls_files: EtcdTlsFiles | None = None) -> int:
    """Copies DATA_DIR/state.db into the empty prefix of `url`; how many objects."""
    db = data_dir / "state.db"
    if not db.exists():
        raise MigrateError(f"no state in {data_dir} ({db} does not exist)")
    target = parse_url(url)
    ring = KeyRing.open(data_dir / "keys")
    source = SqliteStore(db, sealer=ring)
    try:
        objs = source.every_object()
    finally:
        source.close()
    tls = tls_material(data_dir, tls_files or EtcdTlsFiles()) if target.tls else None
    conn = EtcdConnection(target.endpoints, tls=tls)
    prefix = target.prefix.encode() + b"/"
    end = prefix_end(prefix)
    try:
        count_request = rpc.RangeRequest(key=prefix, range_end=end, count_only=True)

        async def count(stubs: Stubs, seconds: float) -> Any:
            return await stubs.kv.Range(count_request, timeout=seconds)

        found = (await conn.call(count, what=f"a count of {target.prefix}")).count
        if found:
            raise MigrateError(f"{target.prefix} in etcd ({url}) holds {found} key(s) already: "
                               "migrate into an empty prefix (another one: "
                               f"etcd://{','.join(target.endpoints)}/PREFIX)")
        try:
            for start in range(0, len(objs), BATCH):
                await _put_absent(conn, target.prefix, objs[start:start + BATCH], ring)
        except BaseException:
            delete = rpc.DeleteRangeRequest(key=prefix, range_end=end)

            async def undo(stubs: Stubs, seconds: float) -> Any:
                return await stubs.kv.DeleteRange(delete, timeout=seconds)

            await conn.call(undo, what=f"deleting the partial copy under {target.prefix}")
            raise
    finally:
        await conn.close()
    return len(objs)


async def _put_absent(conn: EtcdConnection, prefix: str, objs: list[Obj],
                      ring: KeyRing) -> None:
    keys = [object_key(prefix, o) for o in objs]
    request = rpc.TxnRequest(
        compare=[rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                             create_revision=0) for k in keys],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=encode_value(o, ring)))
                 for k, o in zip(keys, objs, strict=True)])

    async def txn(stubs: Stubs, seconds: float) -> Any:
        return await stubs.kv.Txn(request, timeout=seconds)

    if not (await conn.call(txn, what=f"writing {len(objs)} object(s)")).succeeded:
        raise MigrateError(f"someone else is writing under {prefix}: stop every manager using "
                           "it and migrate again")


async def from_etcd(url: str, to_data_dir: pathlib.Path, data_dir: pathlib.Path | None,
                    tls_files: EtcdTlsFiles | None = None) -> int:
    """Copies the store at `url` into a new TO_DATA_DIR/state.db; how many objects. The key
    ring (to open the secrets) and the cluster CA are TO_DATA_DIR's, copied there from
    DATA_DIR when it has none."""
    db = to_data_dir / "state.db"
    if db.exists():
        raise MigrateError(f"{db} exists already: migrate into a new data dir")
    for part in ("keys", "pki"):
        if not (to_data_dir / part).exists():
            if data_dir is None or not (data_dir / part).exists():
                raise MigrateError(f"{to_data_dir} has no {part}/: give --data-dir, a data dir "
                                   f"of a manager of this cluster, to copy it from")
            shutil.copytree(data_dir / part, to_data_dir / part)
    target = parse_url(url)
    ring = KeyRing.open(to_data_dir / "keys")
    tls = tls_material(to_data_dir, tls_files or EtcdTlsFiles()) if target.tls else None
    source = await EtcdStore.open(target, sealer=ring, tls=tls)
    try:
        objs = source.every_object()
    finally:
        await source.aclose()
    store = SqliteStore(db, sealer=ring)
    try:
        store.load_objects(objs)
    finally:
        store.close()
    return len(objs)


def issue_etcd_certificate(data_dir: pathlib.Path, name: str, hosts: tuple[str, ...],
                           out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """An etcd member's certificate (server and client: etcd uses it towards its peers too)
    from the cluster CA of DATA_DIR/pki, made there if there is none: (NAME.crt, NAME.key,
    ca.crt) written in `out`."""
    from podium.manager.pki import ClusterCA
    from podium.rules.files import write_private

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"--name {name!r}: expected a plain name (letters, digits, '-', '.')")
    # A new cluster's CA is made here (the first step of a TLS install); copy DATA_DIR/pki to
    # every manager of the cluster.
    ca = ClusterCA.load_or_create(data_dir / "pki")
    names = tuple(dict.fromkeys((name, "localhost", "127.0.0.1", *hosts)))
    issued = ca.issue(name, "manager", lifetime=ETCD_CERT_LIFETIME, names=names, server=True)
    out.mkdir(parents=True, exist_ok=True)
    crt, key, ca_path = out / f"{name}.crt", out / f"{name}.key", out / "ca.crt"
    crt.write_bytes(issued.certificate)
    write_private(key, issued.key)
    ca_path.write_bytes(ca.pem)
    return crt, key, ca_path

