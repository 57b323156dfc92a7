"""An in-process cluster: a real Manager and N real Agents (on FakeExecutors) in the test's own
event loop, over real gRPC on 127.0.0.1 (port 0), as dask's `gen_cluster` does.

For the logic of the dispatcher, control API, worker, session and reaper without an engine:
each test takes well under a second. At teardown it checks what must hold whatever the test did:
- no live task left PENDING without a reason in its status message (waited for briefly: the
  scheduler may not have run yet);
- at most one live task per slot of a replicated service;
- after everything stopped, no asyncio task and no thread left behind that was not there
  before the cluster started.

    async def test_x(mini: InProcessCluster) -> None:     # manager + node-a, node-b
        await mini.create("web", replicas=3)
        await mini.wait_running("web", 3)

Options for every agent of a cluster: `agent_args` (extra Agent keyword arguments, e.g.
engine_ping), `executor_args` (FakeExecutor's, e.g. call_timeout) and `prepare`, called with
each Agent after it is built and before it starts (to swap in a double). Any other keyword
argument goes to the Manager.

Plaintext by default: these tests are about scheduling, sessions and state, not the transport,
and fixed node ids (no join) keep them short; tests/security/ checks mutual TLS, joins and roles
on real processes, and every process-level cluster (podium.lab) runs with TLS. With
`plaintext=False` the cluster is secured as a real one is (the CLI needs it): agents join with
the token, `credentials` is the admin's credentials file.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc

from podium.agent.agent import Agent
from podium.agent.certificate import NodeCertificate
from podium.lab.local import secure_channel
from podium.manager.manager import Manager
from podium.rules import awaiting
from podium.rules.taskstate import is_live
from podium.v1 import control, control_grpc, objects
from tests.fakes import FakeExecutor
from tests.helpers import eventually_async

RUNNING = objects.TASK_STATE_RUNNING
PENDING = objects.TASK_STATE_PENDING


class InProcessCluster:
    def __init__(self, root: pathlib.Path, *, agent_args: dict[str, Any] | None = None,
                 executor_args: dict[str, Any] | None = None,
                 prepare: Callable[[Agent], None] | None = None, **manager_args: Any) -> None:
        self.root = root
        self.manager_args = manager_args
        self.agent_args = agent_args or {}
        self.executor_args = executor_args or {}
        self.prepare = prepare
        self.port = 0
        self.plaintext = True
        self.credentials = root / "admin.credentials"
        self.manager: Manager | None = None
        self.agents: dict[str, Agent] = {}
        self.executors: dict[str, FakeExecutor] = {}
        self.node_ids: dict[str, str] = {}
        self._channel: grpc.aio.Channel | None = None
        self.api: control_grpc.ControlStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def store_view(self) -> Any:
        assert self.manager is not None
        return self.manager.store.view()

    async def start_manager(self) -> None:
        args = dict(self.manager_args)
        self.plaintext = args.pop("plaintext", True)
        if not self.plaintext:
            args.update(admin_credentials=self.credentials, join_listen="127.0.0.1:0")
        self.manager = Manager(listen=f"127.0.0.1:{self.port}", data_dir=self.root / "manager",
                               plaintext=self.plaintext, **args)
        await self.manager.start()
        self.port = self.manager.port
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address) if self.plaintext else \
                secure_channel(self.address, self.credentials)
            self.api = control_grpc.ControlStub(self._channel)

    async def stop_manager(self) -> None:
        if self.manager is not None:
            await self.manager.stop()
            self.manager = None

    async def start_agent(self, name: str, *, executor: FakeExecutor | None = None,
                          labels: dict[str, str] | None = None, wait: bool = True,
                          **agent_args: Any) -> Agent:
        """Starts node `name` (the same node id, and executor, as its last run if it had one).
        `agent_args` add to (and override) the cluster's `agent_args`."""
        executor = (executor or self.executors.get(name)
                    or FakeExecutor(**self.executor_args))
        node_id = self.node_ids.setdefault(name, f"{name}-{len(self.node_ids):04d}")
        certificate = None
        if not self.plaintext:
            assert self.manager is not None and self.manager.authority is not None
            certificate = NodeCertificate(
                data_dir=self.root / name, node_id=node_id, manager=self.address,
                join_address=f"127.0.0.1:{self.manager.join_port}",
                token=self.manager.authority.token())
            await certificate.ensure()
        agent = Agent(manager=self.address, name=name, node_id=node_id, executor=executor,
                      labels=labels, certificate=certificate, **(self.agent_args | agent_args))
        if self.prepare is not None:
            self.prepare(agent)
        self.executors[name], self.agents[name] = executor, agent
        await agent.start()
        if wait:
            await eventually_async(lambda: self.node_state(name) == "ready",
                                   what=f"{name} ready")
        return agent

    async def stop_agent(self, name: str) -> None:
        """Stops the agent; its FakeExecutor's containers stay, as on a real host."""
        agent = self.agents.pop(name)
        await agent.stop()
        # Agent.stop() closes the executor; a restarted agent gets a fresh event stream.
        self.executors[name]._events = asyncio.Queue()

    def node_state(self, name: str) -> str:
        node = self.store_view.node_by_name(name)
        if node is None:
            return ""
        return str(objects.NodeStatus.State.Name(node.status.state)[6:].lower())

    # -- the control API --------------------------------------------------------------------

    async def create(self, name: str, *, replicas: int = 1, image: str = "app:1",
                     **fields: Any) -> objects.Service:
        spec = objects.ServiceSpec(name=name, replicas=replicas, **fields)
        spec.container.image = image
        reply = await self.api.CreateService(control.CreateServiceRequest(spec=spec))
        return reply.service

    async def scale(self, name: str, replicas: int) -> None:
        await self.api.ScaleService(control.ScaleServiceRequest(ref=name, replicas=replicas))

    def tasks(self, service: str) -> list[objects.Task]:
        found = self.store_view.service_by_name(service)
        return [] if found is None else self.store_view.tasks_of_service(found.id)

    def running(self, service: str) -> list[objects.Task]:
        return [t for t in self.tasks(service)
                if is_live(t) and t.status.state == RUNNING]

    async def wait_running(self, service: str, count: int) -> list[objects.Task]:
        await eventually_async(lambda: len(self.running(service)) == count,
                               what=f"{count} tasks of {service} running")
        return self.running(service)

    def placement(self, service: str) -> dict[str, str]:
        """Task id -> node name of the service's running tasks."""
        names = {n.id: n.description.name for n in self.store_view.nodes()}
        return {t.id: names.get(t.node_id, "") for t in self.running(service)}

    def containers(self, name: str) -> dict[str, bool]:
        """Task id -> running, for every container on node `name`'s executor."""
        return {c.task_id: c.running for c in self.executors[name]._containers.values()}

    # -- teardown ---------------------------------------------------------------------------

    def check_invariants(self) -> list[str]:
        """What must hold at any quiet moment; returns the violations."""
        if self.manager is None:
            return []
        problems: list[str] = []
        # Two tasks share a slot only while an update replaces one version with another.
        slots: Counter[tuple[str, int, int]] = Counter()
        for task in self.store_view.tasks():
            if not is_live(task):
                continue
            if task.status.state == PENDING and not task.status.message:
                problems.append(f"task {task.id} ({task.service_name}) pending without a reason")
            if task.slot:
                slots[(task.service_id, task.slot, task.spec_version)] += 1
        problems += [f"slot {slot} of service {sid} has {n} live tasks of version {v}"
                     for (sid, slot, v), n in slots.items() if n > 1]
        return problems

    async def close(self) -> None:
        """Stops everything; a step that hangs fails with every pending task's stack."""
        # A wedged engine would hold each agent's stop for its executor's call deadline.
        for executor in self.executors.values():
            executor.unwedge()
        for name in list(self.agents):
            await _bounded(self.stop_agent(name), f"stopping agent {name}")
        await _bounded(self.stop_manager(), "stopping the manager")
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


STOP_TIMEOUT_S = 5.0


async def _bounded(step: Any, what: str) -> None:
    job = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({job}, timeout=STOP_TIMEOUT_S)
    if done:
        job.result()
        return
    stacks = awaiting.every_wait()
    job.cancel()
    raise AssertionError(f"{what} took over {STOP_TIMEOUT_S:g} s; tasks:\n" + "\n".join(stacks))


def leaked_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    # grpc.aio's poller thread starts at its first use in the process and lives as long; the
    # event loop's default executor ("asyncio_N", asyncio.to_thread's) lives as long as the loop,
    # which joins it when it closes.
    return {t for t in threading.enumerate()
            if t not in before and t.is_alive() and "_poll_wrapper" not in t.name
            and not t.name.startswith("asyncio_")}


@contextlib.asynccontextmanager
async def in_process_cluster(root: pathlib.Path, *, agents: int = 2,
                             agent_args: dict[str, Any] | None = None,
                             executor_args: dict[str, Any] | None = None,
                             prepare: Callable[[Agent], None] | None = None,
                             **manager_args: Any) -> Any:
    """Yields a started InProcessCluster with `agents` nodes (node-a, node-b, ...); checks the
    invariants and leaks described in the module at exit. `agent_args`, `executor_args` and
    `prepare` apply to every agent the cluster starts (see the module)."""
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    cluster = InProcessCluster(root, agent_args=agent_args, executor_args=executor_args,
                               prepare=prepare, **manager_args)
    ok = False
    try:
        await cluster.start_manager()
        for i in range(agents):
            await cluster.start_agent(f"node-{chr(ord('a') + i)}")
        yield cluster
        ok = True
        await eventually_async(lambda: not cluster.check_invariants() or None, timeout=5,
                               what="cluster invariants")
    except AssertionError:
        if ok:  # the invariants: say which
            raise AssertionError("; ".join(cluster.check_invariants())) from None
        raise
    finally:
        await cluster.close()
    # Leaks: every task and thread the cluster started must be gone once it stopped.
    current = asyncio.current_task()

    def leaked_tasks() -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() - tasks_before if t is not current}

    await eventually_async(lambda: not leaked_tasks(), timeout=5,
                           what=f"no asyncio task left behind: {leaked_tasks()}")
    await eventually_async(lambda: not leaked_threads(threads_before), timeout=5,
                           what=f"no thread left behind: {leaked_threads(threads_before)}")
