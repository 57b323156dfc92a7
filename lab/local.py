"""A Podium cluster on this machine, for trying things and for the tests and benchmarks: a
manager and agents as real processes on the local engine (`Cluster`, `one_node_cluster`), the
`podium` CLI against it (`CliClient`), and `eventually`, the polling wait with a deadline that
everything here uses. Needs a checkout of the repository (deploy/build-image.sh builds the
example image).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

IMAGE = "podium/web:latest"
REPO = pathlib.Path(__file__).resolve().parents[1]
PODIUM = [sys.executable, "-m", "podium.client.cli"]
def eventually(fn: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> T:
    """Polls `fn` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s; last: {last!r}")
        time.sleep(interval)


def consistently(fn: Callable[[], object], *, duration: float, interval: float = 0.2,
                 what: str = "condition") -> None:
    """Polls `fn` for `duration` seconds; every call must return a truthy value."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert fn(), f"{what} stopped holding"
        time.sleep(interval)


def ensure_image() -> str:
    """Builds the test image unless the engine has it (deploy/build-image.sh is idempotent)."""
    subprocess.run(["bash", str(REPO / "deploy" / "build-image.sh")], check=True,
                   capture_output=True, timeout=120)
    return IMAGE


@contextlib.contextmanager
def one_node_cluster(node: str, *, prefix: str) -> Iterator[tuple[Cluster, pathlib.Path]]:
    """A manager and one agent in a temporary directory, for benchmarks; SIGTERM arrives as
    KeyboardInterrupt so that the cluster is always torn down."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    ensure_image()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = pathlib.Path(tmp)
        cluster = Cluster(root)
        try:
            cluster.start_manager()
            cluster.start_agent(node)
            yield cluster, root
        finally:
            cluster.close()


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def containers_of(node_ids: list[str], *, all: bool = True) -> dict[str, str]:
    """Container id -> name for every container of these nodes."""
    found: dict[str, str] = {}
    for node_id in node_ids:
        out = docker("ps", *(["-a"] if all else []), "--no-trunc", "--filter",
                     f"label=io.podium.node.id={node_id}", "--format", "{{.ID}} {{.Names}}")
        for line in out.splitlines():
            cid, name = line.split(" ", 1)
            found[cid] = name
    return found


def remove_containers_of(node_ids: list[str]) -> None:
    """Removes the nodes' containers, then the engine networks of Podium networks that no
    container uses any more (agents leave them on the node)."""
    ids = list(containers_of(node_ids))
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    subprocess.run(["docker", "network", "prune", "-f", "--filter", "label=io.podium.network"],
                   capture_output=True)


class CliClient:
    """The podium CLI against the manager at `self.address` with the local admin's
    credentials (`self.credentials`, which the manager writes), for the test clusters."""

    _address = ""
    root: pathlib.Path  # the cluster's directory
    credentials = pathlib.Path("/nonexistent")

    @property
    def address(self) -> str:
        """The manager's Control API, HOST:PORT."""
        return self._address

    def argv(self, *args: str, credentials: pathlib.Path | None = None) -> list[str]:
        """The command line of `podium ARGS` against this cluster, as the local admin (or
        with another user's `credentials`)."""
        return [*PODIUM, "--manager", self.address, "--credentials",
                str(credentials or self.credentials), *args]

    def run(self, *args: str, timeout: float = 180,
            credentials: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
        """`credentials`: another user's (default: the local admin's)."""
        return subprocess.run(self.argv(*args, credentials=credentials),
                              capture_output=True, text=True, timeout=timeout)

    def env(self) -> dict[str, str]:
        """The environment a `podium` command or a Client needs for this cluster."""
        return {**os.environ, "PODIUM_MANAGER": self.address,
                "PODIUM_CREDENTIALS": str(self.credentials)}

    def client(self) -> Any:
        """A podium.client.Client for this cluster, as its admin."""
        from podium.client import Client

        return Client(self.address, credentials=self.credentials)

    def secure_channel(self, credentials: pathlib.Path | None = None, *,
                       aio: bool = True) -> Any:
        """A grpc.aio (or, not `aio`, a blocking grpc) channel to the manager with a user's
        credentials (default: the admin's)."""
        return secure_channel(self.address, credentials or self.credentials, aio=aio)

    async def node_credentials(self, node_id: str, join_address: str,
                               data_dir: pathlib.Path) -> Any:
        """grpc.ChannelCredentials of a node certificate for `node_id`, joined with the
        cluster's token (for agents spoken by hand, e.g. tests.fakes.RawAgent)."""
        from podium.agent.certificate import NodeCertificate
        from podium.rules.certs import JoinToken

        token = JoinToken.parse(self.token_file().read_text())
        certificate = NodeCertificate(data_dir=data_dir, node_id=node_id, manager=self.address,
                                      join_address=join_address, token=token)
        await certificate.ensure()
        return certificate.channel_credentials()

    def token_file(self) -> pathlib.Path:
        """The agents' join token, in a file in the cluster's directory (fetched once)."""
        path = self.root / "join-token"
        if not path.exists():
            token = self.ok("token", "agent").strip()
            from podium.rules.files import write_private

            write_private(path, token.encode())
        return path

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def node_state(self, name: str) -> str:
        for node in self.json("nodes"):
            if node["name"] == name:
                return str(node["state"])
        return ""


class Cluster(CliClient):
    """A manager and agents as real processes on the local engine."""

    def __init__(self, root: pathlib.Path, *, manager_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.manager_args = manager_args
        self.port = free_port()
        self._address = f"127.0.0.1:{self.port}"
        self.join_port = free_port()
        self.metrics_port = free_port()  # the manager's /metrics
        self.dashboard_port = free_port()  # the manager's dashboard (HTTPS)
        self.credentials = root / "admin.credentials"
        # The manager's data dir; start_manager() reads it, so a test may point a manager it
        # starts again at another one (a restored backup).
        self.manager_data = root / "manager"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.node_ids: dict[str, str] = {}

    def _spawn(self, key: str, args: list[str]) -> None:
        log = open(self.root / f"{key}.log", "ab")
        self.procs[key] = subprocess.Popen(
            [*PODIUM, *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def start_manager(self) -> None:
        self._spawn("manager", ["manager", "--listen", self.address,
                                "--join-listen", f"127.0.0.1:{self.join_port}",
                                "--admin-credentials", str(self.credentials),
                                "--data-dir", str(self.manager_data),
                                "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                                "--dashboard", f"127.0.0.1:{self.dashboard_port}",
                                *self.manager_args])
        eventually(lambda: self.run("nodes").returncode == 0, timeout=20, what="manager up")

    def start_agent(self, name: str, *labels: str) -> None:
        data = self.root / name
        # Agents share the host here: each relays, and serves its metrics, on a port of its own.
        args = ["agent", "--join", self.address, "--name", name, "--data-dir", str(data),
                "--relay-port", "0", "--metrics-listen", "127.0.0.1:0",
                "--join-address", f"127.0.0.1:{self.join_port}",
                "--token-file", str(self.token_file())]
        for label in labels:
            args += ["--label", label]
        self._spawn(name, args)
        node_id = eventually(lambda: _read(data / "node_id"), timeout=10, what=f"{name} id")
        self.node_ids[name] = node_id.strip()
        eventually(lambda: self.node_state(name) == "ready", timeout=20, what=f"{name} ready")

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(key)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def containers(self) -> dict[str, str]:
        return containers_of(list(self.node_ids.values()))

    def running_containers(self) -> dict[str, str]:
        return containers_of(list(self.node_ids.values()), all=False)

    def close(self) -> None:
        stop_processes(self.procs)
        remove_containers_of(list(self.node_ids.values()))
        # The agents' tmpfs for secrets (each mounts one in its data dir), or the removal of
        # the cluster's directory would stop at them.
        for name in self.node_ids:
            subprocess.run(["umount", "-l", str(self.root / name / "secrets")],
                           capture_output=True, timeout=30)


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERMs every process of `procs` (emptying it), SIGKILLs its group after 15 s."""
    for key in list(procs):
        proc = procs.pop(key)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def secure_channel(address: str, credentials: pathlib.Path, *, aio: bool = True,
                   options: list[tuple[str, Any]] | None = None) -> Any:
    """A channel to the manager at `address` with the credentials file `credentials` (and
    gRPC channel `options` besides the client's own)."""
    import grpc

    from podium.rules.credentials import CHANNEL_OPTIONS, Credentials

    creds = Credentials.load(credentials)
    make = grpc.aio.secure_channel if aio else grpc.secure_channel
    return make(address, creds.channel_credentials(), options=[*CHANNEL_OPTIONS, *(options or [])])


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
