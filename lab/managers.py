"""Several managers as real processes on one etcd store, for the tests and benchmarks of highly
available managers: `ManagerGroup(root, etcd, size=3)`.

The first manager starts alone and makes the cluster's CA (DATA_DIR/pki) and secrets key ring
(DATA_DIR/keys); each other manager's data dir gets a copy of both before its first start, the
copy step README "Three managers on etcd" documents. Every manager listens on 127.0.0.1 (its
Control port, the next port for joins) and advertises that address. `address` names all of
them, `HOST:PORT,HOST:PORT,...`, so the CLI and agents given it find the leader themselves.
Agents are real `podium agent` processes on the local engine (start_agent), or whatever the
caller runs against `address` with the token (token_file()). With `etcd` None: one manager on
its own SQLite store (the baseline the benchmarks compare with).
"""

from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from podium.lab.etcd import EtcdCluster
from podium.lab.local import (
    PODIUM,
    CliClient,
    _read,
    eventually,
    free_port,
    remove_containers_of,
    stop_processes,
)


class ManagerGroup(CliClient):
    def __init__(self, root: pathlib.Path, etcd: EtcdCluster | None, *, size: int = 3,
                 manager_args: tuple[str, ...] = (), netns: Sequence[str] = ()) -> None:
        if etcd is None and size != 1:
            raise ValueError("managers without etcd: exactly one (SQLite)")
        self.root = root
        self.etcd = etcd
        self.manager_args = manager_args
        if netns and len(netns) != size:
            raise ValueError(f"netns: one namespace per manager ({size}), got {len(netns)}")
        self.netns = list(netns)
        self.ports = [free_port() for _ in range(size)]
        self.join_ports = [free_port() for _ in range(size)]
        self.credentials = root / "admin.credentials"
        self._address = ",".join(self.addresses)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.node_ids: dict[str, str] = {}

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def data_dir(self, index: int) -> pathlib.Path:
        return self.root / f"manager{index}"

    def _spawn(self, key: str, args: list[str], prefix: Sequence[str] = ()) -> None:
        with open(self.root / f"{key}.log", "ab") as log:
            self.procs[key] = subprocess.Popen([*prefix, *PODIUM, *args], stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> ManagerGroup:
        """Starts every manager (the first alone, then the others with its CA and keys) and
        waits until one leads."""
        self.start_manager(0)
        eventually(lambda: self.credentials.exists(), timeout=30, what="the admin credentials")
        for index in range(1, len(self.ports)):
            self.start_manager(index)
        eventually(lambda: self.leader() is not None, timeout=30, what="a leader")
        return self

    def start_manager(self, index: int) -> None:
        data = self.data_dir(index)
        if index and not (data / "pki").exists():
            data.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.data_dir(0) / "pki", data / "pki")
            shutil.copytree(self.data_dir(0) / "keys", data / "keys")
        credentials = str(self.credentials) if index == 0 else "none"
        self._spawn(f"manager{index}", [
            "manager", "--listen", self.addresses[index],
            "--join-listen", f"127.0.0.1:{self.join_ports[index]}",
            "--advertise", self.addresses[index],
            "--store", self.etcd.url if self.etcd is not None else "sqlite",
            "--admin-credentials", credentials, "--data-dir", str(data),
            "--metrics-listen", "off", "--dashboard", "off", *self.manager_args],
            ["ip", "netns", "exec", self.netns[index]] if self.netns else ())

    def leader(self) -> int | None:
        """The index of the manager that leads now (it answers GetLoad, which only the leader
        serves), or None."""
        import grpc

        from podium.lab.local import secure_channel
        from podium.v1 import control, control_grpc

        if not self.credentials.exists():
            return None
        for index, address in enumerate(self.addresses):
            if f"manager{index}" not in self.procs:
                continue
            with secure_channel(address, self.credentials, aio=False) as channel:
                try:
                    control_grpc.ControlStub(channel).GetLoad(control.GetLoadRequest(),
                                                              timeout=1.0)
                except grpc.RpcError:
                    continue
                return index
        return None

    def kill(self, key: str, sig: int = signal.SIGKILL) -> float:
        """Signals a process ("manager0", an agent's name) and reaps it; the time it died
        (time.monotonic())."""
        proc = self.procs.pop(key)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        return time.monotonic()

    def start_agent(self, name: str, *labels: str) -> None:
        """A real agent on the local engine, given every manager."""
        data = self.root / name
        args = ["agent", "--join", self.address, "--name", name, "--data-dir", str(data),
                "--relay-port", "0", "--metrics-listen", "127.0.0.1:0",
                "--join-address", ",".join(f"127.0.0.1:{p}" for p in self.join_ports),
                "--token-file", str(self.token_file())]
        for label in labels:
            args += ["--label", label]
        self._spawn(name, args)
        node_id = eventually(lambda: _read(data / "node_id"), timeout=10, what=f"{name} id")
        self.node_ids[name] = node_id.strip()
        eventually(lambda: self.node_state(name) == "ready", timeout=30, what=f"{name} ready")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def close(self) -> None:
        stop_processes(self.procs)
        if self.node_ids:
            remove_containers_of(list(self.node_ids.values()))
            for name in self.node_ids:
                subprocess.run(["umount", "-l", str(self.root / name / "secrets")],
                               capture_output=True, timeout=30)

    def __enter__(self) -> ManagerGroup:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()
