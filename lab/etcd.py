"""etcd members on this machine's loopback, for the tests and benchmarks of managers that share
an etcd store: `EtcdCluster(n)` starts n members (Debian's `etcd`, installed by
deploy/bootstrap.sh) in a temporary directory, each on its own free client and peer ports, and
can stop, kill and start each one again. Every member listens on 127.0.0.1 only.

With `tls_dir`, the members serve clients over TLS and require a client certificate of the CA
in TLS_DIR/ca.crt (--client-cert-auth), each with TLS_DIR/NAME.crt and NAME.key (as
`podium manager etcd-cert --name etcdN --out TLS_DIR` writes them); `url` is then etcds://.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from podium.lab.local import eventually

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: pathlib.Path
    log_path: pathlib.Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """n etcd members on loopback. Use as a context manager, or call start() and stop()."""

    def __init__(self, size: int = 1, *, root: pathlib.Path | None = None,
                 tls_dir: pathlib.Path | None = None) -> None:
        if not os.path.exists(ETCD):
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server; "
                               "deploy/bootstrap.sh installs it)")
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="podium-etcd-")
        self.root = root or pathlib.Path(self._tmp.name)  # type: ignore[union-attr]
        self.root.mkdir(parents=True, exist_ok=True)
        self.tls_dir = tls_dir
        self.members = [
            Member(f"etcd{i}", _free_port(), _free_port(), self.root / f"etcd{i}",
                   self.root / f"etcd{i}.log")
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        """host:port of every member's client listener."""
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The store URL a manager is given: etcd://host:port,host:port,..."""
        return ("etcds://" if self.tls_dir else "etcd://") + ",".join(self.endpoints)

    def _argv(self, member: Member, *, new: bool) -> list[str]:
        peers = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        scheme, tls = "http", []
        if self.tls_dir is not None:
            scheme = "https"
            tls = ["--cert-file", str(self.tls_dir / f"{member.name}.crt"),
                   "--key-file", str(self.tls_dir / f"{member.name}.key"),
                   "--client-cert-auth", "--trusted-ca-file", str(self.tls_dir / "ca.crt")]
        return [
            ETCD, "--name", member.name, "--data-dir", str(member.data_dir), *tls,
            "--listen-client-urls", f"{scheme}://{member.endpoint}",
            "--advertise-client-urls", f"{scheme}://{member.endpoint}",
            "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster", peers,
            "--initial-cluster-state", "new" if new else "existing",
            "--initial-cluster-token", f"podium-{self.root.name}",
            # Elections in well under a second, as a real cluster on a LAN would be tuned.
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            # One store write is one transaction, however many objects it holds (a deploy of
            # many replicas): etcd's default of 128 operations is too few.
            "--max-txn-ops", "65536", "--max-request-bytes", str(32 * 1024 * 1024),
            "--logger", "zap", "--log-outputs", str(member.log_path),
        ]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for member in self.members:
            self.start_member(member, wait=False)
        for member in self.members:
            eventually(lambda m=member: _accepts(m.client_port), timeout=timeout,  # type: ignore[misc]
                       what=f"etcd member {member.name} accepting on {member.endpoint}")
        self.wait_healthy(timeout=timeout)
        return self

    def start_member(self, member: Member, *, wait: bool = True) -> None:
        if member.running:
            return
        new = not member.data_dir.exists()
        with member.log_path.open("ab") as log:
            member.process = subprocess.Popen(
                self._argv(member, new=new), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        if wait:
            eventually(lambda: _accepts(member.client_port), timeout=30,
                       what=f"etcd member {member.name} accepting on {member.endpoint}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until a running member says it is healthy (the cluster has a leader)."""
        def healthy() -> bool:
            for member in self.members:
                if member.running:
                    with contextlib.suppress(OSError, ValueError):
                        url, context = f"http://{member.endpoint}/health", None
                        if self.tls_dir is not None:  # the member's own certificate will do
                            url = f"https://{member.endpoint}/health"
                            context = ssl.create_default_context(
                                cafile=str(self.tls_dir / "ca.crt"))
                            context.load_cert_chain(self.tls_dir / f"{member.name}.crt",
                                                    self.tls_dir / f"{member.name}.key")
                        with urllib.request.urlopen(url, timeout=2,
                                                    context=context) as answer:
                            if json.load(answer).get("health") == "true":
                                return True
            return False
        eventually(healthy, timeout=timeout, interval=0.3, what="a healthy etcd member")

    def signal_member(self, member: Member, sig: int) -> None:
        if member.process is not None and member.process.poll() is None:
            os.killpg(member.process.pid, sig)

    def stop_member(self, member: Member, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with `kill`) one member and reap it; its data stays."""
        if member.process is None:
            return
        if member.process.poll() is None:
            self.signal_member(member, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                member.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.signal_member(member, signal.SIGKILL)
                member.process.wait(timeout=10)
        member.process = None

    def stop(self) -> None:
        for member in self.members:
            # A stopped (SIGSTOP) member must be woken to die of SIGTERM.
            with contextlib.suppress(ProcessLookupError):
                self.signal_member(member, signal.SIGCONT)
            self.stop_member(member)
        if self._tmp is not None:
            self._tmp.cleanup()

    def logs(self) -> str:
        parts = []
        for member in self.members:
            with contextlib.suppress(OSError):
                parts.append(f"--- {member.name}\n" + member.log_path.read_text()[-4000:])
        return "\n".join(parts)

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def etcd_cluster(size: int = 1) -> Iterator[EtcdCluster]:
    with EtcdCluster(size) as cluster:
        yield cluster

