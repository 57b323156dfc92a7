"""DockerExecutor: the Executor protocol on a Docker engine, as a thin adapter over aiodocker.

Translation between tasks and the engine's documents lives in podium.agent._container (pure);
this module only makes the calls and maps the engine's errors:

- create() never pulls (containers.create, not run()); 404 -> ExecutorError("No such image: X"),
  409 (the deterministic name is taken) -> the existing container's id, 400 -> permanent error;
  a spec value container_config() refuses (ValueError) -> permanent error, nothing created;
  a bind mount whose source is missing -> permanent "bind mount source P does not exist on node N";
  so is a volume declared external that the engine does not have (checked before create).
- stop() passes the task's grace as the timeout: the engine sends the container's StopSignal
  (the spec's stop_signal, else SIGTERM), then SIGKILL once the grace is over.
- start() of a running container (304), stop() of a stopped (304) or missing (404) one and
  remove() of a missing one succeed.
- Every call has a deadline (call_timeout, 20 s by default; stop(): its grace plus
  STOP_MARGIN_S) and fails with EngineTimeout past it, so a wedged engine stalls no caller for
  good. ping() is GET /_ping with the caller's deadline.
- events() holds one streaming GET /events per iterator, filtered by the engine to this node's
  containers. The stream itself has no deadline (it is idle while nothing happens), but opening
  it has one, and an engine that dies closes its socket, which ends the stream. On every
  (re)connection it first yields ACTION_RESYNC: the caller re-lists. The stream is opened with
  `since` set to the engine's clock read just before connecting, so events between that instant
  and the subscription are replayed, not lost: a re-list made after the resync misses nothing.
  When the stream drops it reconnects with jittered backoff until close().

The client owns its connector: limit=0, because every open event stream holds one pooled
connection and a full pool blocks every other call (see ENVIRONMENT.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from podium.agent import _networks
from podium.agent._container import (
    bind_source_missing,
    container_config,
    container_event,
    container_name,
    container_state,
    external_volumes,
    parse_time_ns,
)
from podium.agent.executor import (
    ACTION_RESYNC,
    ENGINE_ACTIONS,
    LABEL_NODE,
    ContainerEvent,
    ContainerState,
    EngineInfo,
    EngineTimeout,
    ExecutorError,
    LogEntry,
)
from podium.agent.secretfiles import SecretFiles
from podium.v1 import objects

log = logging.getLogger(__name__)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
_RECONNECT_MIN = 0.1  # seconds; doubles per failed attempt
_RECONNECT_MAX = 5.0
_INSPECT_CONCURRENCY = 16  # list_containers() inspects this many containers at once
# create(): how long to wait for a concurrent create of the same name to finish.
_CREATE_RETRY_MIN = 0.02
_CREATE_RETRY_FOR = 30.0
# The deadline of every engine call but stop() and the event stream. Generous: 50 containers
# started at once keep a 2-core engine busy ~5 s, and a slow answer is still an answer.
CALL_TIMEOUT_S = 20.0
# stop() waits the grace period (the engine's own wait before SIGKILL) plus this.
STOP_MARGIN_S = 10.0


class DockerExecutor:
    """Runs a node's containers on one Docker engine. Implements podium.agent.executor.Executor.

    The aiohttp client is created on first use (so the executor may be constructed outside an
    event loop) and released by close(); use `async with` or call close().
    """

    def __init__(self, *, node_id: str, docker_host: str | None = None,
                 call_timeout: float = CALL_TIMEOUT_S,
                 secret_files: SecretFiles | None = None, node_name: str = "") -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        if call_timeout <= 0:
            raise ValueError(f"call_timeout must be > 0 seconds, got {call_timeout}")
        self._node_id = node_id
        self._node_name = node_name or node_id  # for messages
        self._timeout = call_timeout
        # Where the files of tasks' secrets and configs are written (None: no task may use one).
        self._files = secret_files
        host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._url, self._socket_path = _parse_host(host)
        self._connector: aiohttp.BaseConnector | None = None
        self._docker: aiodocker.Docker | None = None
        self._closed = False
        self._closing = asyncio.Event()
        self._streams: set[aiohttp.ClientResponse] = set()
        # The containers' name server (the agent's; set from the session), and the engine
        # networks this executor has made or found.
        self.resolver = ""
        self._networks: dict[str, str] = {}  # Podium network -> engine network id
        self._networks_lock = asyncio.Lock()

    @property
    def node_id(self) -> str:
        return self._node_id

    async def __aenter__(self) -> DockerExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def info(self) -> EngineInfo:
        async with self._call("GET /info"):
            data = await self._client().system.info()
        return EngineInfo(
            version=str(data.get("ServerVersion", "")),
            nano_cpus=int(data.get("NCPU", 0)) * 1_000_000_000,
            memory_bytes=int(data.get("MemTotal", 0)),
        )

    async def ping(self, deadline: float) -> None:
        async with self._call("GET /_ping", seconds=deadline):
            response = await self._client()._do_query("_ping", method="GET", versioned_api=False)
            try:
                await response.read()
            finally:
                response.release()

    async def list_containers(self) -> list[ContainerState]:
        filters = json.dumps({"label": [f"{LABEL_NODE}={self._node_id}"]})
        async with self._call("GET /containers/json"):
            summaries = await self._client().containers.list(all=True, filters=filters)
        # The summaries lack exit codes, times and errors: inspect each, a few at a time.
        limit = asyncio.Semaphore(_INSPECT_CONCURRENCY)

        async def inspect_one(container_id: str) -> ContainerState | None:
            async with limit:
                return await self.inspect(container_id)

        states = await asyncio.gather(*(inspect_one(s.id) for s in summaries))
        # None: removed between the list and its inspection.
        found = [state for state in states if state is not None]
        if self._files is not None:
            self._files.prune(s.task_id for s in found)
        return found

    async def inspect(self, container_id: str) -> ContainerState | None:
        data: dict[str, Any] | None = None
        async with self._call("inspect", ok=(404,)):
            data = await self._client().containers.container(container_id).show()
        return None if data is None else container_state(data)

    async def create(self, task: objects.Task) -> str:
        name = container_name(task, self._node_id)
        try:
            container_config(task, self._node_id)  # a value the engine would refuse?
        except ValueError as err:  # retrying cannot help
            raise ExecutorError(str(err), permanent=True) from err
        for volume in external_volumes(task.spec.container):
            await self._check_external(volume)
        ids = [await self._make_network(a.name) for a in task.spec.networks]
        config = container_config(task, self._node_id, self.resolver, ids)
        if not (task.spec.container.secrets or task.spec.container.configs):
            container_id = await self._create(task, name, config)
        elif self._files is None:
            raise ExecutorError("this agent cannot mount secrets or configs", permanent=True)
        else:
            made: str | None = None
            try:
                config["HostConfig"].setdefault("Mounts", []).extend(self._files.prepare(task))
                container_id = made = await self._create(task, name, config)
            finally:
                self._files.created(task.id, made)
        for network_id in ids[1:]:
            await self._connect(container_id, network_id)
        return container_id

    async def _check_external(self, volume: str) -> None:
        """An external volume must exist: the engine would create it, empty, on first use."""
        found: object = None
        async with self._call("inspect volume", ok=(404,)):
            found = await self._client().volumes.get(volume)  # type: ignore[no-untyped-call]
        if found is None:
            raise ExecutorError(f"volume {volume} is declared external but does not exist on "
                                f"node {self._node_name}: create it there first", permanent=True)

    async def _create(self, task: objects.Task, name: str, config: dict[str, Any]) -> str:
        containers = self._client().containers
        delay = _CREATE_RETRY_MIN
        deadline = time.monotonic() + _CREATE_RETRY_FOR
        while True:
            try:
                async with _deadline(self._timeout, "create"):
                    return (await containers.create(config, name=name)).id
            except DockerError as err:
                if err.status == 404:
                    raise ExecutorError(f"No such image: {task.spec.container.image}") from err
                if err.status != 409:
                    if missing := bind_source_missing(err.message or ""):
                        raise ExecutorError(f"bind mount source {missing} does not exist on "
                                            f"node {self._node_name}", permanent=True) from err
                    raise _executor_error(err) from err
            # 409: the task's container exists already (an earlier attempt, or a previous run
            # of this agent): adopt it.
            existing: dict[str, Any] | None = None
            async with self._call("inspect", ok=(404,)):
                existing = await containers.container(name).show()
            if existing is not None:
                return str(existing["Id"])
            # The name is reserved but the container not yet visible: another create of the
            # same task is in progress (it can take seconds on a busy engine), or the container
            # was removed meanwhile. Either way, try again shortly.
            if time.monotonic() > deadline:
                raise ExecutorError(f"container name {name} is taken but no container has it")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _make_network(self, network: str) -> str:
        """The id of the engine network for a Podium network, made unless it exists. One at a
        time: the engine's own check for a duplicate name is racy."""
        async with self._networks_lock:
            if network in self._networks:
                return self._networks[network]
            filters = {"label": [f"{_networks.LABEL_NETWORK}={network}",
                                 f"{LABEL_NODE}={self._node_id}"]}
            async with self._call("GET /networks"):
                found = await self._client().networks.list(filters=filters)
            if found:  # made by this node's agent earlier
                network_id = str(min(found, key=lambda n: str(n.get("Created", "")))["Id"])
            else:
                body = _networks.create_body(network, self._node_id)
                async with self._call("create network"):
                    made = await self._client().networks.create(body)
                network_id = made.id
            self._networks[network] = network_id
            return network_id

    async def _connect(self, container_id: str, network_id: str) -> None:
        """Connects a created container to a further network (idempotent)."""
        net = aiodocker.networks.DockerNetwork(self._client(), network_id)  # type: ignore[no-untyped-call]
        try:
            async with self._call("connect network"):
                await net.connect({"Container": container_id})
        except ExecutorError as err:
            if not _networks.is_already_connected(str(err)):
                raise

    async def network_members(self) -> dict[str, frozenset[str]]:
        """Container address -> the Podium networks its container is on, over every Podium
        network on the engine (those other agents on the same engine made included)."""
        filters = {"label": [_networks.LABEL_NETWORK]}
        async with self._call("GET /networks"):
            summaries = await self._client().networks.list(filters=filters)
        inspected = []
        for summary in summaries:
            net = aiodocker.networks.DockerNetwork(self._client(), str(summary["Id"]))  # type: ignore[no-untyped-call]
            async with self._call("inspect network", ok=(404,)):
                inspected.append(await net.show())
        return _networks.members(inspected)

    async def start(self, container_id: str) -> None:
        # 304 Not Modified (already running) is not an error status for aiodocker.
        async with self._call("start"):
            await self._client().containers.container(container_id).start()

    async def stop(self, container_id: str, grace: float) -> None:
        # The engine counts the grace in whole seconds; round up so a short grace is not zero.
        seconds = max(0, math.ceil(grace))
        async with self._call("stop", ok=(304, 404), seconds=seconds + STOP_MARGIN_S):
            await self._client().containers.container(container_id).stop(t=seconds)

    async def remove(self, container_id: str) -> None:
        container = self._client().containers.container(container_id)
        async with self._call("remove", ok=(404,)):
            try:
                # v: also remove the container's anonymous volumes, which nothing else would reuse.
                await container.delete(force=True, v=True)
            except DockerError as err:
                if not (err.status == 409 and "already in progress" in err.message):
                    raise
                # else a concurrent remove() is doing the work
        if self._files is not None:
            self._files.release(container_id)

    def events(self) -> AsyncIterator[ContainerEvent]:
        return self._events()

    async def logs(self, container_id: str, *, follow: bool, since_ns: int = 0,
                   tail: int = 0) -> AsyncIterator[LogEntry]:
        client = self._client()
        async with self._call("inspect"):
            data = await client.containers.container(container_id).show()
        tty = bool((data.get("Config") or {}).get("Tty"))
        params = {"stdout": "1", "stderr": "1", "timestamps": "1",
                  "follow": "1" if follow else "0", "tail": str(tail) if tail > 0 else "all"}
        if since_ns > 0:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        # The deadline covers the response's headers, not the stream (idle while the container
        # writes nothing); an engine that dies closes the socket, which ends it.
        async with self._call("GET /containers/logs"):
            response = await client._do_query(
                f"containers/{container_id}/logs", method="GET", params=params,
                timeout=aiohttp.ClientTimeout())
        self._streams.add(response)
        try:
            with _engine_errors():
                async for entry in _log_entries(response.content, tty=tty):
                    yield entry
        finally:
            self._streams.discard(response)
            response.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        # Closing a response wakes its iterator, which sees _closed and returns.
        for response in list(self._streams):
            response.close()
        if self._docker is not None:
            await self._docker.close()  # does not close a connector it was given
        if self._connector is not None:
            await self._connector.close()

    @contextlib.asynccontextmanager
    async def _call(self, what: str, *, ok: tuple[int, ...] = (),
                    seconds: float | None = None) -> AsyncIterator[None]:
        """One engine call: its deadline (`seconds`, call_timeout by default) and its errors
        translated, the statuses in `ok` swallowed."""
        with _engine_errors(ok=ok):
            async with _deadline(self._timeout if seconds is None else seconds, what):
                yield

    def _client(self) -> aiodocker.Docker:
        if self._closed:
            raise ExecutorError("the executor is closed")
        if self._docker is None:
            if self._socket_path is not None:
                self._connector = aiohttp.UnixConnector(self._socket_path, limit=0)
            else:
                self._connector = aiohttp.TCPConnector(limit=0)
            # No total timeout here: each call sets its own deadline (_deadline), and the event
            # stream has none.
            self._docker = aiodocker.Docker(
                url=self._url,
                connector=self._connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._docker

    async def _events(self) -> AsyncIterator[ContainerEvent]:
        delay = _RECONNECT_MIN
        while not self._closed:
            try:
                client = self._client()
                async with _deadline(self._timeout, "GET /info"):
                    info = await client.system.info()
                since_ns = parse_time_ns(str(info.get("SystemTime", "")))
                # The deadline covers connecting and the response's headers, not the stream.
                async with _deadline(self._timeout, "GET /events"):
                    response = await client._do_query(
                        "events", method="GET", params=self._event_params(since_ns),
                        timeout=aiohttp.ClientTimeout(),
                    )
                self._streams.add(response)
                try:
                    if self._closed:
                        return  # close() ran while we connected; it missed this response
                    delay = _RECONNECT_MIN
                    yield ContainerEvent(
                        task_id="",
                        container_id="",
                        action=ACTION_RESYNC,
                        exit_code=None,
                        time_ns=time.time_ns() if since_ns is None else since_ns,
                    )
                    async for line in response.content:
                        event = _parse_event_line(line)
                        if event is not None:
                            yield event
                finally:
                    self._streams.discard(response)
                    response.close()
                if not self._closed:
                    log.warning("engine event stream ended; reconnecting")
            except (DockerError, ExecutorError, aiohttp.ClientError, OSError, ValueError) as err:
                # EngineTimeout (an ExecutorError): the engine is wedged; keep trying.
                # ValueError: a line that is not JSON, or longer than the reader's limit.
                if self._closed:
                    return
                log.warning("engine event stream failed (%s); reconnecting in %.1fs", err, delay)
            except Exception:
                if self._closed:
                    return  # close() tore the client down under a call in flight
                raise
            if self._closed:
                return
            await self._pause(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _RECONNECT_MAX)

    def _event_params(self, since_ns: int | None) -> dict[str, str]:
        filters = {
            "type": ["container"],
            "label": [f"{LABEL_NODE}={self._node_id}"],
            "event": sorted(ENGINE_ACTIONS),
        }
        params = {"filters": json.dumps(filters)}
        if since_ns is not None:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        return params

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when close() is called."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()


@contextlib.asynccontextmanager
async def _deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Fails the body with EngineTimeout when it takes more than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as err:
        raise EngineTimeout(
            f"Docker engine did not answer ({what}) within {seconds:g}s"
        ) from err


@contextlib.contextmanager
def _engine_errors(*, ok: tuple[int, ...] = ()) -> Iterator[None]:
    """Translate aiodocker/aiohttp failures to ExecutorError; swallow the statuses in `ok`."""
    try:
        yield
    except DockerError as err:
        if err.status not in ok:
            raise _executor_error(err) from err
    except aiohttp.ClientError as err:
        raise ExecutorError(f"Docker engine connection failed: {err}") from err


def _executor_error(err: DockerError) -> ExecutorError:
    # 400: the engine rejected the request itself (invalid config, executable not found).
    return ExecutorError(err.message or f"engine error {err.status}", permanent=err.status == 400)


def _parse_event_line(line: bytes) -> ContainerEvent | None:
    line = line.strip()
    if not line:
        return None
    message = json.loads(line)
    return container_event(message) if isinstance(message, Mapping) else None


async def _log_entries(content: aiohttp.StreamReader, *, tty: bool) -> AsyncIterator[LogEntry]:
    """The lines of a logs response. Without a tty the engine frames the output: an 8-byte
    header (stream 1 stdout or 2 stderr, then the payload's length, big-endian) before each
    message; with one, it is the terminal's bytes, all of them stdout."""
    if tty:
        rest = b""
        async for data in content.iter_any():
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                yield _log_entry(line, stderr=False)
        if rest:
            yield _log_entry(rest, stderr=False)
        return
    while True:
        try:
            header = await content.readexactly(8)
            payload = await content.readexactly(int.from_bytes(header[4:8], "big"))
        except asyncio.IncompleteReadError:
            return
        # A message the engine split (a line over 16 KiB) comes as several, each stamped.
        for line in payload.removesuffix(b"\n").split(b"\n"):
            yield _log_entry(line, stderr=header[0] == 2)


def _log_entry(line: bytes, *, stderr: bool) -> LogEntry:
    """A line as the engine sends it with timestamps=1: an RFC 3339 time, a space, the text."""
    text = line.removesuffix(b"\r")
    stamp, _, rest = text.partition(b" ")
    time_ns = parse_time_ns(stamp.decode("ascii", "replace"))
    if time_ns is None:
        return LogEntry(time.time_ns(), stderr, text)
    return LogEntry(time_ns, stderr, rest)


def _parse_host(host: str) -> tuple[str, str | None]:
    """(base url for aiodocker, unix socket path or None) for a DOCKER_HOST value."""
    if host.startswith("unix://"):
        # aiodocker builds request URLs from this dummy host; the connector picks the socket.
        return "unix://localhost", host.removeprefix("unix://")
    if host.startswith("tcp://"):
        return "http://" + host.removeprefix("tcp://"), None
    if host.startswith(("http://", "https://")):
        return host, None
    raise ValueError(f"unsupported docker_host {host!r}: want unix://PATH or tcp://HOST:PORT")
