"""Several simulated Docker hosts on one machine: a manager, and N hosts each with its own
network namespace, Docker engine and agent, for end-to-end tests and demos.

    with HostCluster(tmp_path / "hosts", hosts=3) as c:
        c.ok("deploy", "-f", path)                  # the podium CLI, against the manager
        c.docker("h2", "ps")                        # the docker CLI, against h2's engine
        c.crash("h3"); c.partition("h2"); c.heal("h2"); c.restart_host("h3")
        c.power_off("h3")                           # link down first, then crash: no FIN out
        c.pause_engine("h2"); c.resume_engine("h2")  # a wedged engine
        c.restart_engine("h2")    # kill -9 of dockerd, started again (kill_engine, start_engine)

Layout of one run (run id: 6 hex digits; every name starts with podium-<run id>):
- netns podium-<id>-mgr holds the bridge br0 (10.231.<x>.1/24, x chosen per run), the manager
  (listening on 0.0.0.0:7070 there) and a TCP forwarder (below).
- netns podium-<id>-h<i> is host h<i>: eth0 = 10.231.<x>.<10+i>/24, whose veth peer `h<i>` is a
  port of br0 in the manager's namespace (partition() takes that end down); its own dockerd and
  its own agent (node name h<i>, label host=h<i>), both joining the manager at 10.231.<x>.1:7070.
- The test process (root namespace) reaches the Control API at 127.0.0.1:<port>: the harness binds
  that listening socket itself and hands it to a forwarder started in the manager's namespace,
  which connects each client to the manager there. So the root namespace gets no link, address,
  route or firewall rule: only a loopback listener, the namespace files in /run/netns, the engines'
  cgroup parents (/sys/fs/cgroup/*/podium-<id>-h<i>) and the directories below.
- Files: `root` (given) holds each host's engine data-root, agent data and the logs;
  /run/podium-<id>/h<i> holds its engine socket, exec-root and pidfile (kept short: a unix socket
  path is limited to 107 bytes).

Mount namespaces: every `ip netns exec` unshares a new mount namespace and remounts /sys for the
target netns, without the cgroup hierarchies. dockerd and the agent are each started through
`ip netns exec NS sh -c 'mount ...; exec "$@"'`, which mounts a copy of the root namespace's cgroup
hierarchies first (read from /proc/self/mountinfo, so v1, hybrid or v2). dockerd's wrapper also
binds root/h<i>/etc-docker over /etc/docker (else every engine has the same engine ID, from
/etc/docker/key.json) and /run/<id>/h<i>/containerd over /run/containerd (so that dockerd never
adopts a system containerd and the shims' sockets stay private to the host, yet an engine
started again after restart_engine() finds the shims of the containers that outlived it; crash()
wipes it, as a power-off wipes /run). Those mounts live only in the wrapper's namespace
(`ip netns exec` makes / a slave): they vanish with its last process.

A host's processes are found without pid files: those in its netns (dockerd, containerd, shims,
docker-proxy, agent) plus those in its engine's cgroup parent (the containers, which have netns
of their own). crash() SIGKILLs all of them (through pidfds, re-checking membership, so a reused
pid is never hit) and wipes what a power-off wipes (exec-root, pidfile, socket, cgroups).
close() does that for every host, then removes the namespaces, /run/podium-<id> and the data
(keeping the *.log files); it runs when the body or start() fails halfway, and is idempotent.

Also a small CLI, for deploy/hosts.sh: `python -m podium.lab.hosts up N | down | crash h2 | ...`,
keeping its state in --dir (default var/hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import pathlib
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from podium.agent.executor import LABEL_TASK
from podium.lab import _system as system
from podium.lab.local import IMAGE, PODIUM, REPO, CliClient, eventually

MANAGER_PORT = 7070
STATE_FILE = "state.json"


# A sequential HTTP client for a host's namespace (`python -c SEQUENTIAL_CLIENT URL SECONDS MOST`):
# one new connection per request, bounded in time and count; prints one JSON object with the number
# of requests, the answers per replica (the body: a container's hostname) and each failure with its
# time.
SEQUENTIAL_CLIENT = r"""
import json, sys, time, urllib.request
url, seconds, most = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
answers, failures, count = {}, [], 0
end = time.time() + seconds
while time.time() < end and count < most:
    count += 1
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            body = reply.read().decode().strip()
            answers[body] = answers.get(body, 0) + 1
    except Exception as exc:
        failures.append([time.time(), repr(exc)[:120]])
    time.sleep(0.01)
print(json.dumps({"count": count, "answers": answers, "failures": failures}))
"""


# A web replica's command: it answers every GET with its hostname (its short container id), which
# is what SEQUENTIAL_CLIENT counts answers by.
HOSTNAME_HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"


def hostname_stack(*, replicas: int, port: int) -> str:
    """A compose file: service `web`, `replicas` of the test image running HOSTNAME_HTTPD,
    published on the ingress `port` (served by every host's mesh)."""
    return f"""services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HOSTNAME_HTTPD}"]
    init: true
    stop_grace_period: 1s
    ports: ["{port}:80"]
    deploy:
      replicas: {replicas}
"""


def requests_result(client: subprocess.Popen[str], *, timeout: float = 180) -> dict[str, Any]:
    """What a start_requests() client printed: count, answers per replica, failures."""
    out, _ = client.communicate(timeout=timeout)
    result: dict[str, Any] = json.loads(out)
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    name: str  # node name, label host=<name>
    netns: str
    address: str  # on the cluster subnet
    link: str  # its veth end on the bridge, in the manager's namespace
    data: pathlib.Path  # engine data-root, agent data dir, logs
    run: pathlib.Path  # engine socket, exec-root, pidfile
    cgroup: str  # the engine's --cgroup-parent (relative to each hierarchy's root)
    bip: str

    @property
    def socket(self) -> pathlib.Path:
        return self.run / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


class HostCluster(CliClient):
    """A manager and `hosts` simulated hosts; see the module docstring. Needs root."""

    def __init__(self, root: pathlib.Path, *, hosts: int = 3, run_id: str | None = None,
                 subnet: int | None = None, port: int = 0) -> None:
        if not 1 <= hosts <= 200:
            raise ValueError("hosts must be within 1..200")
        self.root = root.resolve()
        self.run_id = run_id or secrets.token_hex(3)
        self.subnet = random.randrange(256) if subnet is None else subnet
        self.prefix = f"podium-{self.run_id}"
        self.mgr_netns = f"{self.prefix}-mgr"
        self.run_dir = pathlib.Path("/run") / self.prefix
        net = f"10.231.{self.subnet}"
        # The manager as the hosts (and any process in the manager's namespace) reach it.
        self.manager_address = f"{net}.1:{MANAGER_PORT}"
        self.port = port  # of the root-namespace forwarder; known once started
        self.credentials = self.root / "admin.credentials"  # the manager writes it
        self.hosts: dict[str, Host] = {}
        for i in range(1, hosts + 1):
            name = f"h{i}"
            self.hosts[name] = Host(
                name=name, netns=f"{self.prefix}-{name}", address=f"{net}.{10 + i}", link=name,
                data=self.root / name, run=self.run_dir / name, cgroup=f"{self.prefix}-{name}",
                bip=f"172.31.{i}.1/24",
            )
        self._procs: list[subprocess.Popen[bytes]] = []
        self.manager_args: tuple[str, ...] = ()
        self._closed = False
        self.timings: dict[str, float] = {}

    # -- public surface ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The Control API as the root namespace reaches it (through the forwarder)."""
        return f"127.0.0.1:{self.port}"

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> HostCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Brings everything up; the caller must close() even when this fails."""
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self.save_state()  # first, so that `down` can clean up a run that died halfway
        self._make_network()
        self.timings["network"] = time.monotonic() - t0
        self._start_manager()
        for host in self.hosts.values():
            self._start_engine(host)
        image = self._save_root_image()
        for host in self.hosts.values():
            self._wait_engine(host)
        self.timings["engines"] = time.monotonic() - t0
        self._load_image(list(self.hosts.values()), image)
        if image is not None:
            image.unlink()
        self.timings["images"] = time.monotonic() - t0
        eventually(lambda: system.listening(self.mgr_netns, MANAGER_PORT), timeout=20,
                   interval=0.05, what="manager listening")
        for host in self.hosts.values():
            self._spawn_agent(host)
        self._wait_ready(self.names)
        self.timings["total"] = time.monotonic() - t0

    def crash(self, host: str) -> None:
        """SIGKILL every process of the host (agent, engine, containers) and wipe its volatile
        state. Its data (engine data-root, agent data dir) stays, for restart_host(). Its kernel
        stays up and reachable: its sessions end with a FIN or RST and its address still answers
        (refused), which is what an agent and engine crash look like, not a power cut. The agent
        dies last: when its session ends, nothing else of the host is left (killed one by one,
        the engine's proxies could otherwise still answer the manager for a few milliseconds)."""
        h = self.hosts[host]
        self._kill_all(h.netns, h.cgroup, spare=frozenset(self._agent_pids(h)))
        self._kill_all(h.netns, h.cgroup)
        shutil.rmtree(h.run, ignore_errors=True)
        system.unmount(h.data / "agent" / "secrets")  # memory: gone with the power
        system.remove_cgroup(h.cgroup)

    def power_off(self, host: str) -> None:
        """A power cut as the others see it: the host's link goes down first, then every
        process dies (crash()), so no FIN or RST reaches anyone and its address answers nothing.
        restart_host() brings the link back up."""
        self.partition(host)
        self.crash(host)

    def restart_host(self, host: str) -> None:
        """Boots a crashed (or powered-off) host again: its link, its engine, then its agent,
        with the same data."""
        h = self.hosts[host]
        self.heal(host)
        self._start_engine(h)
        self._wait_engine(h)
        self.start_agent(host)

    def partition(self, host: str) -> None:
        system.ip("-n", self.mgr_netns, "link", "set", self.hosts[host].link, "down")

    def heal(self, host: str) -> None:
        system.ip("-n", self.mgr_netns, "link", "set", self.hosts[host].link, "up")

    def stop_agent(self, host: str, *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signals the agent and waits until it is gone (SIGKILL after `timeout`)."""
        h = self.hosts[host]

        def gone() -> bool:
            self._reap()
            return not self._agent_pids(h)

        self._signal_agent(host, sig)
        self._signal_agent(host, signal.SIGCONT)  # a paused agent acts on it too
        try:
            eventually(gone, timeout=timeout, interval=0.05, what=f"{host} agent gone")
        except AssertionError:
            self._signal_agent(host, signal.SIGKILL)
            eventually(gone, timeout=5, interval=0.05, what=f"{host} agent killed")

    def pause_agent(self, host: str) -> None:
        """SIGSTOP: a hung agent (its connections stay open, it answers nothing)."""
        self._signal_agent(host, signal.SIGSTOP)

    def resume_agent(self, host: str) -> None:
        self._signal_agent(host, signal.SIGCONT)

    def pause_engine(self, host: str) -> None:
        """SIGSTOP of the host's dockerd: a wedged engine (its socket accepts connections, it
        answers nothing). Its containers keep running (containerd and the shims are not
        stopped)."""
        self._signal_engine(host, signal.SIGSTOP)

    def resume_engine(self, host: str) -> None:
        self._signal_engine(host, signal.SIGCONT)

    def restart_engine(self, host: str) -> None:
        """kill_engine() then start_engine(), as a package upgrade restarts the engine."""
        self.kill_engine(host)
        self.start_engine(host)

    def kill_engine(self, host: str) -> None:
        """kill -9 of the host's dockerd; its containerd follows it, the containers and their
        shims outlive both. The agent is left alone."""
        h = self.hosts[host]
        self._signal_engine(host, signal.SIGKILL)

        def gone() -> bool:
            self._reap()
            return not self._engine_pids(h, "dockerd") and not self._engine_pids(h, "containerd")

        eventually(gone, timeout=15, interval=0.05, what=f"{host} engine gone")
        # The killed containerd is reparented to pid 1, which here reaps no orphans: it stays a
        # zombie whose pid the new dockerd would take for a live containerd (and wait for it
        # forever). A host's init reaps it at once; forget it as that would.
        (h.run / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def start_engine(self, host: str) -> None:
        """Starts the host's engine again on its data (after kill_engine()), until it answers."""
        h = self.hosts[host]
        self._start_engine(h)
        self._wait_engine(h)

    def _signal_engine(self, host: str, sig: int) -> None:
        h = self.hosts[host]
        pids = self._engine_pids(h, "dockerd")
        assert pids, f"{host} has no dockerd"
        for pid in pids:
            system.signal_pid(pid, sig, lambda pid: pid in self._engine_pids(h, "dockerd"))

    def _engine_pids(self, h: Host, program: str) -> set[int]:
        """The host's processes whose program is `program` (dockerd, containerd)."""
        return {pid for pid in system.netns_pids(h.netns)
                if os.path.basename(system.cmdline(pid).split(b"\0", 1)[0]) == program.encode()}

    def _signal_agent(self, host: str, sig: int) -> None:
        h = self.hosts[host]
        for pid in self._agent_pids(h):
            system.signal_pid(pid, sig, lambda pid: pid in self._agent_pids(h))

    def start_agent(self, host: str, *, wait: bool = True) -> None:
        """Starts the agent; with `wait`, until the manager shows a new session of it ready."""
        before = self._nodes().get(host, {}).get("addr") if wait else None
        self._spawn_agent(self.hosts[host])
        if wait:
            # A new session comes from a new port: an old one may still be shown as ready.
            self._wait_ready([host], not_addr=before)

    def pids(self, host: str) -> set[int]:
        """Every live process of the host: in its netns or in its engine's cgroups."""
        h = self.hosts[host]
        return system.netns_pids(h.netns) | system.cgroup_pids(h.cgroup)

    def deploy(self, stack: str, *args: str, name: str = "stack") -> str:
        """Writes the compose text `stack` to root/<name>.yaml and deploys it (`podium deploy
        -f`, then `args`); the CLI's output."""
        path = self.root / f"{name}.yaml"
        path.write_text(stack)
        return self.ok("deploy", "-f", str(path), *args)

    def docker(self, host: str, *args: str, timeout: float = 60) -> str:
        """The docker CLI against the host's engine; raises CalledProcessError on failure."""
        return subprocess.run(["docker", "-H", self.hosts[host].docker_host, *args], check=True,
                              capture_output=True, text=True, timeout=timeout).stdout

    def containers(self, host: str, *, all: bool = True) -> list[str]:
        """Ids of the podium containers on the host's engine."""
        out = self.docker(host, "ps", "-q", "--no-trunc", *(["-a"] if all else []),
                          "--filter", f"label={LABEL_TASK}")
        return out.split()

    def in_host(self, host: str, *argv: str,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs a command in the host's network namespace (not in its engine's mounts)."""
        return subprocess.run(["ip", "netns", "exec", self.hosts[host].netns, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def start_mesh_requests(self, host: str, port: int, *, seconds: float,
                            most: int = 20_000) -> subprocess.Popen[str]:
        """Requests to `host`'s own published mesh port from inside it (a sequential client,
        one new connection each); read the outcome with requests_result()."""
        url = f"http://{self.hosts[host].address}:{port}/"
        return self.start_requests(host, url, seconds=seconds, most=most)

    def start_requests(self, host: str, url: str, *, seconds: float,
                       most: int) -> subprocess.Popen[str]:
        """SEQUENTIAL_CLIENT run inside `host` against `url`; read it with requests_result()."""
        return subprocess.Popen(
            [*system.netns_exec(self.hosts[host].netns), sys.executable, "-I", "-c",
             SEQUENTIAL_CLIENT,
             url, str(seconds), str(most)], stdout=subprocess.PIPE, text=True)

    def http_get(self, host: str, url: str, *, timeout: float = 3) -> str:
        """GET `url` from inside the host's namespace; raises AssertionError on failure."""
        result = self.in_host(host, sys.executable, "-I", "-c", _HTTP_GET, url, str(timeout),
                              timeout=timeout + 10)
        assert result.returncode == 0, f"GET {url} from {host}: {result.stderr.strip()}"
        return result.stdout

    def reachable(self, host: str, address: str, port: int, *, timeout: float = 1) -> bool:
        """Whether a TCP connection from inside the host's namespace to address:port succeeds."""
        result = self.in_host(host, sys.executable, "-I", "-c", _CONNECT, address, str(port),
                              str(timeout), timeout=timeout + 10)
        return result.returncode == 0

    def leftovers(self) -> list[str]:
        """What of this run still exists: empty after close()."""
        found: list[str] = []
        namespaces = [self.mgr_netns, *(h.netns for h in self.hosts.values())]
        found += [f"netns {ns}" for ns in namespaces if os.path.exists(f"/run/netns/{ns}")]
        for h in self.hosts.values():
            found += [f"process {pid} of {h.name}" for pid in sorted(self.pids(h.name))]
            found += [f"cgroup {path}" for path in system.cgroup_dirs(h.cgroup)]
            found += [f"data {path}" for path in system.data_paths(h.data) if path.exists()]
        found += [f"process {pid} of the manager"
                  for pid in sorted(system.netns_pids(self.mgr_netns))]
        found += [f"data {p}" for p in (self.root / "manager", self.root / "image.tar")
                  if p.exists()]
        found += [f"mount {point}" for point in system.mounts_under(self.root, self.run_dir)]
        if self.run_dir.exists():
            found.append(f"directory {self.run_dir}")
        return found

    def close(self) -> None:
        """Tears everything down; idempotent, and safe after a start() that failed halfway."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []

        def step(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as err:  # keep going: the next steps must still run
                errors.append(f"{what}: {err!r}")

        hosts = list(self.hosts.values())
        for proc in self._procs:  # first: one may not have entered its namespace yet
            step("kill", proc.kill)
        for h in hosts:
            step(f"kill {h.name}", functools.partial(self._kill_all, h.netns, h.cgroup))
        step("kill manager", functools.partial(self._kill_all, self.mgr_netns, None))
        for proc in self._procs:
            step("reap", functools.partial(proc.wait, timeout=5))
        for h in hosts:
            step(f"cgroups of {h.name}", functools.partial(system.remove_cgroup, h.cgroup))
        for ns in [*(h.netns for h in hosts), self.mgr_netns]:
            step(f"delete {ns}", functools.partial(system.delete_netns, ns))
        step("unmount", functools.partial(system.unmount_under, self.root, self.run_dir))
        step(f"remove {self.run_dir}", functools.partial(system.remove, self.run_dir))
        garbage = [p for h in hosts for p in system.data_paths(h.data)]
        garbage += [self.root / "manager", self.root / "image.tar"]
        for path in garbage:
            step(f"remove {path}", functools.partial(system.remove, path))
        if errors:
            raise RuntimeError("cleanup incomplete: " + "; ".join(errors))

    def save_state(self) -> None:
        state = {"run_id": self.run_id, "hosts": len(self.hosts), "subnet": self.subnet,
                 "port": self.port, "root": str(self.root)}
        (self.root / STATE_FILE).write_text(json.dumps(state) + "\n")

    @classmethod
    def from_state(cls, root: pathlib.Path) -> HostCluster:
        """The run described by root/state.json (written by start()), to act on or close."""
        state = json.loads((root / STATE_FILE).read_text())
        return cls(pathlib.Path(state["root"]), hosts=int(state["hosts"]),
                   run_id=str(state["run_id"]), subnet=int(state["subnet"]),
                   port=int(state["port"]))

    # -- bring-up ------------------------------------------------------------------------

    def _make_network(self) -> None:
        mgr = self.mgr_netns
        system.ip("netns", "add", mgr)
        for h in self.hosts.values():
            system.ip("netns", "add", h.netns)
        commands = [
            "link set lo up",
            "link add br0 type bridge",
            f"addr add {self.manager_address.split(':')[0]}/24 dev br0",
            "link set br0 up",
        ]
        system.ip("-n", mgr, "-batch", "-", stdin="\n".join(commands) + "\n")
        for h in self.hosts.values():
            # Created straight inside the two namespaces: the root namespace never sees them.
            system.ip("link", "add", h.link, "netns", mgr, "type", "veth", "peer", "name", "eth0",
                "netns", h.netns)
            system.ip("-n", mgr, "link", "set", h.link, "master", "br0", "up")
            system.ip("-n", h.netns, "-batch", "-", stdin="\n".join([
                "link set lo up", f"addr add {h.address}/24 dev eth0", "link set eth0 up"]) + "\n")

    def _spawn_manager(self) -> None:
        self._spawn([*system.netns_exec(self.mgr_netns), *PODIUM, "manager",
                     "--listen", f"0.0.0.0:{MANAGER_PORT}", *self.manager_args,
                     "--admin-credentials", str(self.credentials),
                     "--data-dir", str(self.root / "manager")], self.root / "manager.log")
        self._manager = self._procs[-1]

    def restart_manager(self) -> None:
        """kill -9 of the manager, then a new one on the same data (hosts untouched)."""
        self._manager.kill()
        self._manager.wait(timeout=30)
        self._spawn_manager()
        eventually(lambda: self.run("nodes", timeout=30).returncode == 0, timeout=30,
                   interval=0.1, what="manager back")

    def _start_manager(self) -> None:
        self._spawn_manager()
        with socket.create_server(("127.0.0.1", self.port)) as listener:
            self.port = int(listener.getsockname()[1])
            self.save_state()
            # The listener belongs to the root namespace (where it was made); the forwarder's
            # own connections are made in the manager's namespace.
            self._spawn([*system.netns_exec(self.mgr_netns), sys.executable, "-m",
                         "podium.lab.hosts",
                         "forward", "--fd", str(listener.fileno()), "--to", self.manager_address],
                        self.root / "forwarder.log", pass_fds=(listener.fileno(),))

    def _start_engine(self, h: Host) -> None:
        (h.data / "etc-docker").mkdir(parents=True, exist_ok=True)
        h.run.mkdir(parents=True, exist_ok=True)
        (h.run / "containerd").mkdir(mode=0o700, exist_ok=True)
        for stale in (h.socket, h.run / "docker.pid"):
            stale.unlink(missing_ok=True)
        # The agent's secrets tmpfs, mounted here before the engine's namespace copies the
        # mounts: one the agent made in its own namespace would stay out of its engine's sight.
        system.mount_tmpfs(h.data / "agent" / "secrets")
        setup = [
            *system.cgroup_mount_commands(),
            "[ -d /etc/docker ] || mkdir -p /etc/docker",
            f"mount --bind {shlex.quote(str(h.data / 'etc-docker'))} /etc/docker",
            "[ -d /run/containerd ] || mkdir -p -m 700 /run/containerd",
            f"mount --bind {shlex.quote(str(h.run / 'containerd'))} /run/containerd",
        ]
        self._spawn(system.host_exec(h.netns, setup, [
            "dockerd", "--data-root", str(h.data / "docker"), "--exec-root", str(h.run / "exec"),
            "--pidfile", str(h.run / "docker.pid"), "-H", h.docker_host, "--bip", h.bip,
            "--cgroup-parent", f"/{h.cgroup}"]), h.data / "dockerd.log")

    def _wait_engine(self, h: Host) -> None:
        eventually(lambda: system.engine_answers(h.socket), timeout=30, interval=0.05,
                   what=f"{h.name} engine up (log: {h.data / 'dockerd.log'})")

    def _save_root_image(self) -> pathlib.Path | None:
        """The root engine's copy of the image as a tar (read only: nothing changes there),
        or None when it has none. Loading it (~0.08 s per engine, measured) keeps the image id
        the same on every host, as a registry pull would; building it costs ~0.11 s."""
        tar = self.root / "image.tar"
        result = subprocess.run(["docker", "save", "-o", str(tar), IMAGE], capture_output=True,
                                timeout=60)
        return tar if result.returncode == 0 else None

    def _load_image(self, hosts: list[Host], tar: pathlib.Path | None) -> None:
        running: list[tuple[Host, subprocess.Popen[bytes]]] = []
        for h in hosts:
            if tar is not None:
                argv = ["docker", "-H", h.docker_host, "load", "-q", "-i", str(tar)]
            else:  # build-image.sh talks to $DOCKER_HOST, as the docker CLI does
                argv = ["bash", str(REPO / "deploy" / "build-image.sh")]
            running.append((h, subprocess.Popen(
                argv, env={**os.environ, "DOCKER_HOST": h.docker_host},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for h, proc in running:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"image for {h.name}: {out.decode(errors='replace')}")

    def _spawn_agent(self, h: Host) -> None:
        self._spawn(system.host_exec(h.netns, system.cgroup_mount_commands(), [
            *PODIUM, "agent", "--join", self.manager_address, "--name", h.name,
            "--data-dir", str(h.data / "agent"), "--docker-host", h.docker_host,
            "--token-file", str(self.token_file()),
            "--label", f"host={h.name}"]), h.data / "agent.log")

    def _nodes(self) -> dict[str, dict[str, Any]]:
        """`podium nodes` by name; empty while the manager does not answer."""
        result = self.run("nodes", "-o", "json", timeout=30)
        return {n["name"]: n for n in json.loads(result.stdout)} if result.returncode == 0 else {}

    def _wait_ready(self, names: list[str], *, not_addr: str | None = None) -> None:
        def ready() -> bool:
            nodes = self._nodes()
            return all(name in nodes and nodes[name]["state"] == "ready"
                       and nodes[name]["addr"] != not_addr for name in names)

        eventually(ready, timeout=30, interval=0.1, what=f"nodes {', '.join(names)} ready")

    def _spawn(self, argv: list[str], log: pathlib.Path, *,
               pass_fds: tuple[int, ...] = ()) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {shlex.join(argv)}\n".encode())
            out.flush()
            self._procs.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=pass_fds, cwd=REPO))

    # -- teardown ------------------------------------------------------------------------

    def _kill_all(self, netns: str, cgroup: str | None, *, timeout: float = 15,
                  spare: frozenset[int] = frozenset()) -> None:
        """SIGKILLs every process in the netns and the cgroup (but `spare`) until none is left."""
        def members() -> set[int]:
            in_cgroup = system.cgroup_pids(cgroup) if cgroup else set()
            return (system.netns_pids(netns) | in_cgroup) - spare

        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            pids = members()
            if not pids:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {netns} survive SIGKILL: {sorted(pids)}")
            for pid in pids:
                system.signal_pid(pid, signal.SIGKILL, lambda pid: pid in members())
            time.sleep(0.02)

    def _reap(self) -> None:
        """Collects our exited children (else they stay zombies until we exit)."""
        self._procs = [p for p in self._procs if p.poll() is None]

    def _agent_pids(self, h: Host) -> set[int]:
        return {pid for pid in system.netns_pids(h.netns)
                if b"podium.client.cli\0agent\0" in system.cmdline(pid)}


# Small programs run inside a host's namespace (argv: url timeout / address port timeout).
_HTTP_GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as reply:
    sys.stdout.write(reply.read().decode())
"""
_CONNECT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
"""


# -- the forwarder ---------------------------------------------------------------------------


async def _forward(listen_fd: int, target: str) -> None:
    host, port = target.rsplit(":", 1)
    listener = socket.socket(fileno=listen_fd)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(serve, sock=listener)
    async with server:
        await server.serve_forever()


# -- command line (deploy/hosts.sh) ------------------------------------------------------------


def _usage(c: HostCluster, script: str) -> str:
    took = f" (up in {c.timings['total']:.1f} s)" if "total" in c.timings else ""
    lines = [f"podium hosts: run {c.run_id}, manager {c.manager_address} in netns {c.mgr_netns}, "
             f"Control API at {c.address}{took}", ""]
    for h in c.hosts.values():
        lines.append(f"  {h.name}: {h.address}  netns {h.netns}  engine {h.docker_host}")
    first, other = c.host(c.names[0]), c.host(c.names[-1])
    lines += [
        "",
        f"  export PODIUM_MANAGER={c.address} PODIUM_CREDENTIALS={c.credentials}",
        f"  podium nodes                  (or: {script} podium nodes)",
        "  podium deploy -f examples/web.yaml; podium ps web",
        f"  docker -H {other.docker_host} ps",
        f"  ip netns exec {first.netns} wget -qO- http://{other.address}:PORT/   "
        f"({first.name} -> {other.name})",
        f"  {script} crash {other.name} | power-off {other.name} | restart {other.name} | "
        f"partition {other.name} | heal {other.name}",
        f"  {script} stop-agent {other.name} | kill-agent {other.name} | "
        f"start-agent {other.name} | pause-agent {other.name} | resume-agent {other.name}",
        f"  {script} pause-engine {other.name} | resume-engine {other.name} | "
        f"restart-engine {other.name} | kill-engine {other.name} | start-engine {other.name}",
        f"  {script} status | down",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podium.lab.hosts", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
    p.add_argument("--dir", default=str(REPO / "var" / "hosts"), help="state and data")
    p.add_argument("--script", default="python -m podium.lab.hosts", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a manager and N hosts")
    up.add_argument("n", type=int, nargs="?", default=3)
    sub.add_parser("down", help="tear everything down")
    sub.add_parser("status", help="show the hosts and the nodes")
    sub.add_parser("env", help="print export PODIUM_MANAGER=...")
    for name in ("crash", "power-off", "restart", "partition", "heal", "stop-agent",
                 "kill-agent", "start-agent", "pause-agent", "resume-agent", "pause-engine",
                 "resume-engine", "restart-engine", "kill-engine", "start-engine"):
        sub.add_parser(name).add_argument("host")
    fwd = sub.add_parser("forward", help=argparse.SUPPRESS)
    fwd.add_argument("--fd", type=int, required=True)
    fwd.add_argument("--to", required=True)
    args = p.parse_args(argv)

    if args.command == "forward":
        asyncio.run(_forward(args.fd, args.to))
        return 0
    root = pathlib.Path(args.dir)
    if args.command == "up":
        if (root / STATE_FILE).exists():
            print(f"already up (state in {root / STATE_FILE}): run down first", file=sys.stderr)
            return 1
        c = HostCluster(root, hosts=args.n)
        # Ctrl-C or a SIGTERM halfway through start() must still tear down what is up.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            c.start()
        except BaseException as err:
            for sig in (signal.SIGINT, signal.SIGTERM):  # let the teardown finish
                signal.signal(sig, signal.SIG_IGN)
            print(f"start failed ({err!r}): tearing down", file=sys.stderr)
            c.close()
            (root / STATE_FILE).unlink()
            if isinstance(err, KeyboardInterrupt):
                return 130
            raise
        print(_usage(c, args.script))
        return 0
    if not (root / STATE_FILE).exists():
        print(f"not up (no {root / STATE_FILE})", file=sys.stderr)
        return 1
    c = HostCluster.from_state(root)
    if args.command == "down":
        c.close()
        (root / STATE_FILE).unlink()
        print(f"podium hosts down: run {c.run_id} removed")
        return 0
    if args.command == "env":
        print(f"export PODIUM_MANAGER={c.address} PODIUM_CREDENTIALS={c.credentials}")
        return 0
    if args.command == "status":
        print(_usage(c, args.script))
        for h in c.hosts.values():
            link = "up" if _link_up(c.mgr_netns, h.link) else "DOWN (partitioned)"
            print(f"  {h.name}: {len(c.pids(h.name))} processes, link {link}")
        print(c.ok("nodes"))
        return 0
    if args.host not in c.hosts:
        print(f"no host {args.host} (hosts: {' '.join(c.names)})", file=sys.stderr)
        return 2
    action: dict[str, Callable[[str], None]] = {
        "crash": c.crash, "power-off": c.power_off, "restart": c.restart_host,
        "partition": c.partition, "heal": c.heal, "stop-agent": c.stop_agent,
        "kill-agent": functools.partial(c.stop_agent, sig=signal.SIGKILL),
        "start-agent": c.start_agent,
        "pause-agent": c.pause_agent, "resume-agent": c.resume_agent,
        "pause-engine": c.pause_engine, "resume-engine": c.resume_engine,
        "restart-engine": c.restart_engine, "kill-engine": c.kill_engine,
        "start-engine": c.start_engine,
    }
    action[args.command](args.host)
    print(f"{args.command} {args.host}: done")
    return 0


def _link_up(netns: str, link: str) -> bool:
    result = subprocess.run(["ip", "-n", netns, "-o", "link", "show", link],
                            capture_output=True, text=True, timeout=30)
    return ",UP" in result.stdout or "<UP" in result.stdout


if __name__ == "__main__":
    sys.exit(main())
