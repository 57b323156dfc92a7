"""The executor: what the agent needs from a container engine, and nothing more.

The agent's task runners drive containers only through the `Executor` protocol; `DockerExecutor`
(podium.agent._docker) implements it on a Docker engine, and tests may substitute a fake.

Contract:
- Containers are found again by their labels (LABEL_*) and deterministic names, so a restarted
  agent adopts the containers it left running instead of recreating them. An executor sees only
  containers labelled with its own node id.
- Every operation is idempotent: create() returns the existing container when the task's
  container already exists; start() of a running, stop() of a stopped and stop()/remove() of a
  vanished container succeed.
- Engine failures surface as ExecutorError, whose str() is fit to show the user. `permanent` says
  that retrying the same spec cannot help (the engine rejected the configuration); a missing
  image is not permanent, since the image may be loaded later.
- Every call has a deadline: a wedged engine makes it fail with EngineTimeout (an ExecutorError),
  never hang. stop() waits its grace period plus a margin; events() is exempt (it is a stream),
  but it notices a dead engine and reconnects. ping() is the cheap call that tells whether the
  engine answers at all.
- events() yields container lifecycle events as hints, possibly duplicated or stale. After every
  (re)connection of the engine's event stream, the first event is ACTION_RESYNC: the caller must
  then re-list (list_containers()) because events may have been missed while disconnected. The
  stream is subscribed before the resync is yielded, so nothing that happens after the re-list
  can be missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from podium.v1 import objects

LABEL_TASK = "io.podium.task.id"
LABEL_SERVICE = "io.podium.service.id"
LABEL_SERVICE_NAME = "io.podium.service.name"
LABEL_NODE = "io.podium.node.id"
LABEL_SLOT = "io.podium.task.slot"

# ContainerEvent.action values. Engine actions not listed here are dropped.
ACTION_CREATE = "create"
ACTION_START = "start"
ACTION_DIE = "die"
ACTION_OOM = "oom"
ACTION_DESTROY = "destroy"
# The engine-run health check changed state ("health_status: healthy" from the engine).
ACTION_HEALTH = "health_status"
# Not from the engine: the event stream was (re)connected; re-list to catch up.
ACTION_RESYNC = "resync"

ENGINE_ACTIONS = frozenset(
    {ACTION_CREATE, ACTION_START, ACTION_DIE, ACTION_OOM, ACTION_DESTROY, ACTION_HEALTH}
)


class ExecutorError(Exception):
    """An engine operation failed; str(err) is a message fit for the user.

    For example 'No such image: nosuch:latest'. `permanent` is true when retrying the same spec
    cannot help (the engine rejected the configuration as invalid).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class EngineTimeout(ExecutorError):
    """The engine did not answer a call within its deadline (wedged or overloaded)."""


@dataclass(slots=True, frozen=True)
class ContainerState:
    """A container as the engine last reported it."""

    container_id: str
    task_id: str
    name: str
    running: bool
    # None while running or never started. A container whose start failed reports the engine's
    # code (126, 127, ...) together with `error`.
    exit_code: int | None
    error: str  # the engine's State.Error, or ""
    oom_killed: bool
    started_at: float | None  # unix seconds
    finished_at: float | None
    # Actual host bindings (the engine chose published_port where the spec said 0); one entry
    # per host address the engine bound, e.g. both 0.0.0.0 and :: for one port.
    ports: tuple[objects.PortBinding, ...]
    # The engine-run health check: "" (none), "starting", "healthy" or "unhealthy", and the
    # output of the last failed run.
    health: str = ""
    health_output: str = ""
    # The container's init pid (0 when not running) and its address on its network.
    pid: int = 0
    ip_address: str = ""


@dataclass(slots=True, frozen=True)
class ContainerEvent:
    """One lifecycle event of a container of this node, or ACTION_RESYNC."""

    task_id: str  # "" for ACTION_RESYNC
    container_id: str  # "" for ACTION_RESYNC
    action: str  # one of ENGINE_ACTIONS, or ACTION_RESYNC
    exit_code: int | None  # for "die"
    time_ns: int  # the engine's timeNano (engine clock; for RESYNC, when the stream was joined)


@dataclass(slots=True, frozen=True)
class LogEntry:
    """One line of a container's output, without its line break."""

    time_ns: int  # when the engine read it (unix nanoseconds)
    stderr: bool
    text: bytes  # as the container wrote it (not necessarily UTF-8)


@dataclass(slots=True, frozen=True)
class EngineInfo:
    version: str
    nano_cpus: int
    memory_bytes: int


class Executor(Protocol):
    async def info(self) -> EngineInfo:
        """The engine's version and capacity."""
        ...

    async def ping(self, deadline: float) -> None:
        """Returns when the engine answers a trivial request; raises ExecutorError (EngineTimeout
        after `deadline` seconds) when it does not."""
        ...

    async def list_containers(self) -> list[ContainerState]:
        """All containers (running or not) labelled with this executor's node id."""
        ...

    def logs(self, container_id: str, *, follow: bool, since_ns: int = 0,
             tail: int = 0) -> AsyncIterator[LogEntry]:
        """The container's output in order: lines from `since_ns` on (0: from the start), the
        last `tail` of them (0: all); with `follow`, then each new line until the container
        stops. Raises ExecutorError when there is no such container (its message says so)."""
        ...

    async def inspect(self, container_id: str) -> ContainerState | None:
        """The container's state, or None if it is gone."""
        ...

    async def create(self, task: objects.Task) -> str:
        """Create the task's container and return its id.

        If a container with the task's deterministic name exists, return its id instead. Never
        pulls: raises ExecutorError("No such image: X") when the image is not present.
        """
        ...

    async def start(self, container_id: str) -> None:
        """Start the container; no error if it is already running."""
        ...

    async def stop(self, container_id: str, grace: float) -> None:
        """Signal the container, kill it after `grace` seconds; no error if stopped or gone."""
        ...

    async def remove(self, container_id: str) -> None:
        """Force-remove the container; no error if it is gone."""
        ...

    def events(self) -> AsyncIterator[ContainerEvent]:
        """Lifecycle events of this node's containers, until close().

        Reconnects when the engine's stream drops; the first event after every connection
        (including the first) is ACTION_RESYNC, upon which the caller re-lists.
        """
        ...

    async def close(self) -> None:
        """Release the engine connection and end every events() iterator; idempotent."""
        ...
