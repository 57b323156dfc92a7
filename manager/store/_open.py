"""Opening the manager's store from its `--store` URL.

    sqlite                                   DATA_DIR/state.db (one manager; the default)
    etcd://HOST:PORT[,HOST:PORT...][/PREFIX]  etcd, plaintext
    etcds://HOST:PORT[,...][/PREFIX]          etcd over TLS

Over TLS the manager checks the members' certificates against a CA and shows one of its own:
by default the cluster CA (DATA_DIR/pki/ca.crt) and a client certificate that CA issues the
manager at every start (common name "manager"), so that etcd members whose certificates come
from `podium manager etcd-cert` and that run with --client-cert-auth --trusted-ca-file
DATA_DIR/pki/ca.crt accept managers of this cluster and nobody else. --etcd-ca, --etcd-cert and
--etcd-key name other files (PEM).
"""

from __future__ import annotations

import datetime
import pathlib
from dataclasses import dataclass

from podium.manager.store._etcd import EtcdStore
from podium.manager.store._etcdconn import ACCEPTED, TlsMaterial, parse_url
from podium.manager.store._sealing import KeyRing
from podium.manager.store._sqlite import SqliteStore

SQLITE = "sqlite"
AnyStore = SqliteStore | EtcdStore
# The client certificate a manager shows etcd is made anew at every start; it outlives any run.
CLIENT_CERT_LIFETIME = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class EtcdTlsFiles:
    """--etcd-ca, --etcd-cert, --etcd-key (None: the data dir's default)."""
    ca: pathlib.Path | None = None
    certificate: pathlib.Path | None = None
    key: pathlib.Path | None = None

    @property
    def given(self) -> bool:
        return any((self.ca, self.certificate, self.key))


def check_url(url: str) -> str:
    """`url` when it is a store URL; ValueError naming it and what is accepted."""
    if url == SQLITE:
        return url
    if not url.startswith(("etcd://", "etcds://")):
        raise ValueError(f"--store {url!r}: expected {SQLITE!r} (DATA_DIR/state.db) or "
                         f"{ACCEPTED}")
    try:
        parse_url(url)
    except ValueError as err:
        raise ValueError(f"--store: {err}") from None
    return url


def tls_material(data_dir: pathlib.Path, files: EtcdTlsFiles) -> TlsMaterial:
    """The CA, certificate and key to reach etcd with (see the module); ValueError naming a
    file that cannot be read."""
    if (files.certificate is None) != (files.key is None):
        raise ValueError("--etcd-cert and --etcd-key go together: give both or neither")
    ca_path = files.ca or data_dir / "pki" / "ca.crt"
    if files.ca is None and not ca_path.exists():
        raise ValueError(f"no cluster CA in {data_dir / 'pki'} to check the etcd members "
                         "against: `podium manager etcd-cert --data-dir "
                         f"{data_dir} ...` makes one (and the members' certificates), or "
                         "give --etcd-ca")
    ca = _read(ca_path, "--etcd-ca" if files.ca else "the cluster CA certificate")
    if files.certificate is not None and files.key is not None:
        return TlsMaterial(ca, _read(files.certificate, "--etcd-cert"),
                           _read(files.key, "--etcd-key"))
    from podium.manager.pki import ClusterCA

    if not (data_dir / "pki" / "ca.key").exists():
        raise ValueError(f"no cluster CA in {data_dir / 'pki'} to issue the manager's etcd "
                         "client certificate: `podium manager etcd-cert --data-dir "
                         f"{data_dir} ...` makes one (and the members' certificates), or "
                         "give --etcd-cert and --etcd-key")
    issued = ClusterCA.load_or_create(data_dir / "pki").issue(
        "manager", "manager", lifetime=CLIENT_CERT_LIFETIME)
    return TlsMaterial(ca, issued.certificate, issued.key)


def _read(path: pathlib.Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"{what} {path}: {err.strerror or err}") from None


async def open_store(url: str, *, data_dir: pathlib.Path, sealer: KeyRing | None,
                     tls_files: EtcdTlsFiles | None = None) -> AnyStore:
    """The store `url` names (check_url's forms). ValueError for a bad URL or TLS file;
    StoreError when etcd does not answer; SealingError for secrets the ring cannot open."""
    check_url(url)
    tls_files = tls_files or EtcdTlsFiles()
    if url == SQLITE:
        if tls_files.given:
            raise ValueError("--etcd-ca/--etcd-cert/--etcd-key are for an etcds:// store, "
                             "not sqlite")
        return SqliteStore(data_dir / "state.db", sealer=sealer)
    target = parse_url(url)
    if not target.tls and tls_files.given:
        raise ValueError(f"--etcd-ca/--etcd-cert/--etcd-key given with {url!r}: TLS to etcd "
                         "needs an etcds:// URL")
    tls = tls_material(data_dir, tls_files) if target.tls else None
    return await EtcdStore.open(target, sealer=sealer, tls=tls)


async def close_store(store: AnyStore) -> None:
    if isinstance(store, EtcdStore):
        await store.aclose()
    else:
        store.close()
