"""Jepsen-style faults on highly available managers: `FaultLab` (3 etcd members, 3 managers each
in a network namespace of its own, agents on the fake executor in another) and `Nemesis`, which
applies faults to it at random (seeded) and heals each after a few seconds. Needs root.

    with FaultLab(root, agents=4) as lab:
        nemesis = Nemesis(lab, seed=7)
        nemesis.run(duration=60)              # fault, heal, pause, ... ; nemesis.events: history
        nemesis.heal_all()

The network (routes by podium.lab._nsbridge, one process in the root namespace):
- the root namespace (the test, the workload, the CLI) reaches manager i at 127.0.0.1:PORT_i
  (and its join port), forwarded into namespace podium-<id>-m<i>, where the manager listens on
  the same loopback address;
- inside manager i's namespace, 127.0.0.1:ETCD_k is forwarded to etcd member k (root loopback);
- the agents' namespace podium-<id>-agents reaches each manager the same way, but arrives from
  source 127.0.0.2, so that iptables in a manager's namespace can drop the agents alone.
The managers advertise 127.0.0.1:PORT_i, which means manager i from both client namespaces.

With `mesh_port`, a real agent (`real`, on the local engine) runs in the root namespace too, with
a service of two web replicas published on that port, for requests through its mesh while the
faults go on (faultcheck.HttpLoop). It reaches the managers as the test does, so the partition
from the agents does not cut it off; every other fault reaches it.

Faults (Nemesis.KINDS):
- kill_leader: kill -9 of the leading manager, started again at the heal;
- partition_leader_etcd: iptables DROP, inside the leader's namespace, of every packet to or from
  the etcd ports (its connections hang; it must step down before its lease ends);
- partition_leader_agents: iptables DROP of every packet to or from 127.0.0.2 there (the agents'
  sessions hang; the followers keep pointing them at the leader they cannot reach);
- kill_etcd: kill -9 of one etcd member (at random), started again at the heal;
- restart_all: kill -9 of every manager and every etcd member, then all started again.
Each fault lasts a random 3-7 s (`hold`), then a pause of 2-4 s; each event records when it was
applied and healed and what was seen meanwhile (the time to a new leader, to an agent marked
down, from the heal to every agent ready again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import random
import secrets
import subprocess
import sys
import time
import urllib.request
from typing import Any

from podium.lab import _system as system
from podium.lab.etcd import EtcdCluster
from podium.lab.hosts import hostname_stack
from podium.lab.local import ensure_image, eventually
from podium.lab.managers import ManagerGroup

AGENT_SOURCE = "127.0.0.2"
REAL_AGENT = "real"


class FaultLab:
    """Etcd members, managers in namespaces, agents in a namespace, and the routes between
    them; see the module docstring. Use as a context manager, or start() and close()."""

    def __init__(self, root: pathlib.Path, *, agents: int = 4, managers: int = 3,
                 etcd_members: int = 3, run_id: str | None = None,
                 mesh_port: int | None = None) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.prefix = f"podium-{run_id or secrets.token_hex(3)}"
        self.manager_netns = [f"{self.prefix}-m{i}" for i in range(managers)]
        self.agents_netns = f"{self.prefix}-agents"
        self.agent_count = agents
        self.mesh_port = mesh_port
        self.etcd = EtcdCluster(etcd_members, root=self.root / "etcd")
        self.group = ManagerGroup(self.root, self.etcd, size=managers,
                                  manager_args=("--log-format", "json"),
                                  netns=self.manager_netns)
        self._bridge: subprocess.Popen[bytes] | None = None
        self._agents: subprocess.Popen[bytes] | None = None
        self._made: list[str] = []

    # -- setup ---------------------------------------------------------------------------

    def _routes(self) -> list[dict[str, Any]]:
        routes: list[dict[str, Any]] = []
        for ns, port, join in zip(self.manager_netns, self.group.ports, self.group.join_ports,
                                  strict=True):
            target = f"/run/netns/{ns}"
            for p in (port, join):
                routes.append({"listen": f"127.0.0.1:{p}", "connect_ns": target,
                               "connect": f"127.0.0.1:{p}"})
                routes.append({"listen_ns": f"/run/netns/{self.agents_netns}",
                               "listen": f"127.0.0.1:{p}", "connect_ns": target,
                               "connect": f"127.0.0.1:{p}", "source": AGENT_SOURCE})
            for member in self.etcd.members:
                routes.append({"listen_ns": target, "listen": member.endpoint,
                               "connect": member.endpoint})
        return routes

    def start(self) -> FaultLab:
        for ns in [*self.manager_netns, self.agents_netns]:
            system.ip("netns", "add", ns)
            self._made.append(ns)
            system.ip("-n", ns, "link", "set", "lo", "up")
        self.etcd.start()
        routes = self.root / "routes.json"
        routes.write_text(json.dumps(self._routes()))
        ready = self.root / "bridge.out"
        with ready.open("wb") as out, (self.root / "bridge.log").open("ab") as log:
            self._bridge = subprocess.Popen(
                [sys.executable, "-m", "podium.lab._nsbridge", str(routes)], stdout=out,
                stderr=log, start_new_session=True)
        eventually(lambda: b"ready" in ready.read_bytes(), timeout=20, what="the routes open")
        self.group.start()
        self.start_agents()
        if self.mesh_port is not None:
            self.start_mesh(self.mesh_port)
        return self

    def start_mesh(self, port: int) -> None:
        """A real agent (REAL_AGENT, in the root namespace, on the local engine) and a service
        of two busybox httpd replicas on it, published on `port`: `mesh_url` answers through
        that agent's mesh."""
        ensure_image()
        self.group.start_agent(REAL_AGENT)
        stack = self.root / "web.yaml"
        stack.write_text(hostname_stack(replicas=2, port=port).replace(
            "    deploy:\n", f"    deploy:\n      placement:\n        constraints: "
            f"[\"node.name == {REAL_AGENT}\"]\n"))
        self.group.ok("deploy", "-f", str(stack))

        def serves() -> bool:
            try:
                with urllib.request.urlopen(self.mesh_url, timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        eventually(serves, timeout=90, what="the web service answering through the mesh")

    @property
    def mesh_url(self) -> str:
        return f"http://127.0.0.1:{self.mesh_port}/"

    def start_agents(self) -> None:
        token = self.group.token_file()
        ready = self.root / "agents.out"
        joins = ",".join(f"127.0.0.1:{p}" for p in self.group.join_ports)
        with ready.open("wb") as out, (self.root / "agents.log").open("ab") as log:
            self._agents = subprocess.Popen(
                [*system.netns_exec(self.agents_netns), sys.executable, "-m",
                 "podium.lab._fakeagents", "--managers", self.group.address, "--joins", joins,
                 "--token-file", str(token), "--data-dir", str(self.root / "agents"),
                 "--count", str(self.agent_count)],
                stdout=out, stderr=log, start_new_session=True)
        eventually(lambda: b"ready" in ready.read_bytes(), timeout=60, what="the agents started")
        eventually(lambda: self.all_nodes_ready(self.agent_count), timeout=60,
                   what="every agent ready")

    def all_nodes_ready(self, count: int | None = None) -> bool:
        """Whether `count` nodes (default: every agent of the lab) are known, all ready."""
        try:
            with self.group.client() as client:
                nodes = client.nodes()
        except Exception:  # no manager answers now: not ready
            return False
        wanted = count if count is not None else self.agent_count + (self.mesh_port is not None)
        return len(nodes) == wanted and all(
            n.status.state == n.status.STATE_READY for n in nodes)

    # -- faults --------------------------------------------------------------------------

    def iptables(self, index: int, *rule: str) -> None:
        result = subprocess.run([*system.netns_exec(self.manager_netns[index]), "iptables",
                                 "-w", *rule], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(rule)} in manager{index}'s namespace: "
                               f"{result.stderr.strip()}")

    def cut_from_etcd(self, index: int) -> None:
        ports = ",".join(str(m.client_port) for m in self.etcd.members)
        for way in ("--dports", "--sports"):
            self.iptables(index, "-A", "OUTPUT", "-p", "tcp", "-m", "multiport", way, ports,
                          "-j", "DROP")

    def cut_from_agents(self, index: int) -> None:
        for way in ("-s", "-d"):
            self.iptables(index, "-A", "OUTPUT", way, AGENT_SOURCE, "-j", "DROP")

    def mend(self, index: int) -> None:
        self.iptables(index, "-F", "OUTPUT")

    def close(self) -> None:
        for proc in (self._agents, self._bridge):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.group.close()
        self.etcd.stop()
        for ns in self._made:
            with contextlib.suppress(RuntimeError):
                system.delete_netns(ns)
        self._made = []

    def __enter__(self) -> FaultLab:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass(slots=True)
class FaultEvent:
    kind: str
    target: str
    applied: float  # time.time()
    healed: float = 0.0
    # What was seen: seconds from the fault to a new leader, from the heal to every agent
    # ready again, ...
    observed: dict[str, float] = dataclasses.field(default_factory=dict)


class Nemesis:
    """Applies faults to a FaultLab at random; `events` is the history, `deaths` the times
    (time.time()) each manager process was killed (its leadership, if any, ended then)."""

    KINDS = ("kill_leader", "partition_leader_etcd", "partition_leader_agents", "kill_etcd",
             "restart_all")

    def __init__(self, lab: FaultLab, *, seed: int, hold: tuple[float, float] = (3.0, 7.0),
                 pause: tuple[float, float] = (2.0, 4.0), log: Any = None,
                 kinds: tuple[str, ...] = KINDS) -> None:
        unknown = set(kinds) - set(self.KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds {sorted(unknown) or 'none'}: expected some of "
                             f"{', '.join(self.KINDS)}")
        self.kinds = kinds
        self.lab = lab
        self.seed = seed
        self.random = random.Random(seed)
        self.hold = hold
        self.pause = pause
        self.events: list[FaultEvent] = []
        self.deaths: dict[int, list[float]] = {}
        self.exits: list[tuple[str, int]] = []
        self.current: FaultEvent | None = None
        self._log = log or (lambda line: None)
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self, duration: float) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end and not self._stop:
            self.one(self.random.choice(self.kinds))
            self._sleep(self.random.uniform(*self.pause))

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # the faults' own pacing, not a wait for a condition

    def _leader(self, timeout: float = 30.0) -> int:
        def leads() -> list[int] | None:
            index = self.lab.group.leader()
            return None if index is None else [index]

        found = eventually(leads, timeout=timeout, interval=0.1, what="a leader")
        assert found is not None  # eventually returns only a truthy value
        return found[0]

    def _new_leader_after(self, old: int, since: float, timeout: float) -> float | None:
        """Seconds from `since` (monotonic) until a manager other than `old` leads, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.lab.group.leader()
            if now is not None and now != old:
                return time.monotonic() - since
            time.sleep(0.1)
        return None

    def _nodes_down_after(self, since: float, timeout: float) -> float | None:
        """Seconds from `since` (monotonic) until the leader marks an agent down, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.lab.group.client() as client:
                    nodes = client.nodes()
            except Exception:  # no answer now: look again
                nodes = []
            if any(n.status.state == n.status.STATE_DOWN for n in nodes):
                return time.monotonic() - since
            time.sleep(0.2)
        return None

    def _kill_manager(self, index: int) -> None:
        self.lab.group.kill(f"manager{index}")
        self.deaths.setdefault(index, []).append(time.time())

    def one(self, kind: str) -> FaultEvent:
        group, etcd = self.lab.group, self.lab.etcd
        hold = self.random.uniform(*self.hold)
        if kind == "restart_all":
            event = FaultEvent(kind, "all", time.time())
            self.current = event
            for index in list(range(len(group.ports))):
                if f"manager{index}" in group.procs:
                    self._kill_manager(index)
            for member in etcd.members:
                etcd.stop_member(member, kill=True)
            self._sleep(hold)
            started = time.monotonic()
            for member in etcd.members:
                etcd.start_member(member, wait=False)
            for index in range(len(group.ports)):
                group.start_manager(index)
            event.healed = time.time()
            self._leader(timeout=60)
            event.observed["heal_to_leader_s"] = time.monotonic() - started
        elif kind == "kill_etcd":
            member = self.random.choice(etcd.members)
            event = FaultEvent(kind, member.name, time.time())
            etcd.stop_member(member, kill=True)
            self._sleep(hold)
            etcd.start_member(member)
            event.healed = time.time()
        else:
            leader = self._leader(timeout=60)
            event = FaultEvent(kind, f"manager{leader}", time.time())
            self.current = event
            started = time.monotonic()
            if kind == "kill_leader":
                self._kill_manager(leader)
            elif kind == "partition_leader_etcd":
                self.lab.cut_from_etcd(leader)
            else:
                self.lab.cut_from_agents(leader)
            if kind != "partition_leader_agents":
                took = self._new_leader_after(leader, started, timeout=hold)
                if took is not None:
                    event.observed["fault_to_new_leader_s"] = took
            else:
                took = self._nodes_down_after(started, timeout=hold)
                if took is not None:
                    event.observed["fault_to_agent_down_s"] = took
            self._sleep(max(0.0, hold - (time.monotonic() - started)))
            if kind == "kill_leader":
                group.start_manager(leader)
            else:
                self.lab.mend(leader)
            event.healed = time.time()
            if kind == "partition_leader_etcd" and "fault_to_new_leader_s" not in event.observed:
                took = self._new_leader_after(leader, started, timeout=15)
                if took is not None:
                    event.observed["fault_to_new_leader_s"] = took
        healed = time.monotonic()
        with contextlib.suppress(AssertionError):
            eventually(self.lab.all_nodes_ready, timeout=30, interval=0.2,
                       what="every agent ready")
            event.observed["heal_to_agents_ready_s"] = time.monotonic() - healed
        self.events.append(event)
        self.current = None
        self._log(f"{event.applied:.3f} {kind} {event.target}: "
                  f"held {event.healed - event.applied:.1f} s, "
                  + ", ".join(f"{k} {v:.2f}" for k, v in event.observed.items()))
        return event

    def cut_off(self, address: str, when: float, *, catch_up: float = 10.0) -> bool:
        """Whether the manager at `address` was cut off from etcd at `when` (time.time()), or
        had been less than `catch_up` seconds before (its watch resumes after the heal): the
        leader cut from etcd, or every manager while everything restarts."""
        target = f"manager{self.lab.group.addresses.index(address)}" \
            if address in self.lab.group.addresses else ""
        current = [self.current] if self.current is not None else []
        for event in [*self.events, *current]:
            if event.kind in ("partition_leader_etcd", "restart_all") \
                    and event.target in (target, "all") \
                    and event.applied <= when \
                    and (not event.healed or when <= event.healed + catch_up):
                return True
        return False

    def heal_all(self) -> None:
        """Every process running and no rule left (after an error midway)."""
        group, etcd = self.lab.group, self.lab.etcd
        for member in etcd.members:
            if not member.running:
                etcd.start_member(member)
        for index in range(len(group.ports)):
            self.lab.mend(index)
            if f"manager{index}" not in group.procs:
                group.start_manager(index)
        for key, proc in list(group.procs.items()):
            if key.startswith("manager") and proc.poll() is not None:
                # It exited by itself: a finding of the run, kept in the history.
                self.exits.append((key, proc.returncode))
                group.procs.pop(key)
                group.start_manager(int(key.removeprefix("manager")))
        self._leader(timeout=60)

