"""A stand-in for the manager's Control API, to test the `podium` CLI without a manager: a real
gRPC server on 127.0.0.1 whose services go through the update states a test scripts.

    fake.add("web", replicas=2)                     # a service at version 1, converged
    fake.script("web", Step(US.STATE_UPDATING, "updating 1/2: web.2 starting", done=1),
                Step(US.STATE_COMPLETED, "updated to version 2", done=2))

Writes behave as the manager's control API does: UpdateService gives a spec change that
replaces tasks the next version number, keeps it in `versions` and starts an update (state
UPDATING, from/to versions, the request's deploy_id), and keeps an autoscaled service's count
(podium.rules.autoscale.starting_replicas); ScaleService refuses an autoscaled service
(FAILED_PRECONDITION, `scale_refusal`); RollbackService starts a manual rollback;
PromoteService marks the canaries promoted. After each such write, every GetService of that
service applies the next scripted step first (one step per read, the last one stays), as the
manager's updater would between two reads. ListTasks answers with the service's tasks (by
default: its replicas running its current version). WatchEvents sends `events` and ends, so the
CLI's waits poll. Every request is kept in `requests`, in order.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from podium.manager.pki import ClusterCA
from podium.rules import autoscale
from podium.rules import update as rules
from podium.rules.credentials import ENV, MANAGER_NAME, Credentials
from podium.v1 import control, control_grpc, objects

US = objects.UpdateStatus
RUNNING = objects.TASK_STATE_RUNNING


@dataclass
class Step:
    """One change to a service's update status (fields left None stay as they are)."""

    state: int
    message: str = ""
    done: int | None = None
    total: int | None = None
    from_version: int | None = None
    to_version: int | None = None
    manual: bool | None = None
    # The version the service runs from this step on (a rollback goes back to an older one).
    spec_version: int | None = None

    def apply(self, service: objects.Service) -> None:
        status = service.update_status
        status.state = self.state  # type: ignore[assignment]
        status.message = self.message
        for name in ("done", "total", "from_version", "to_version", "manual"):
            value = getattr(self, name)
            if value is not None:
                setattr(status, name, value)
        if self.spec_version is not None:
            service.spec_version = self.spec_version
        if self.state in (US.STATE_COMPLETED, US.STATE_ROLLED_BACK):
            status.completed.GetCurrentTime()


@dataclass
class _Entry:
    service: objects.Service
    steps: list[Step] = field(default_factory=list)
    armed: bool = False  # a write happened: reads move the script on
    tasks: list[objects.Task] | None = None  # None: its replicas, running its version


class FakeControl(control_grpc.ControlServicer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # by name
        self.requests: list[Message] = []
        self.events: list[control.Event] = []
        # UpdateService answers ABORTED (a stale version) this many times first.
        self.conflicts = 0
        self._ids = 0

    # -- what a test sets up -----------------------------------------------------------------

    def add(self, name: str, *, replicas: int = 2, image: str = "podium/web:1",
            versions: int = 1, **spec_fields: Any) -> objects.Service:
        """A service at version `versions` (each earlier one kept, with a change line)."""
        spec = objects.ServiceSpec(name=name, replicas=replicas, **spec_fields)
        spec.container.image = image
        service = self._new(spec)
        for n in range(2, versions + 1):
            spec = objects.ServiceSpec()
            spec.CopyFrom(service.spec)
            spec.container.image = f"{image.rsplit(':', 1)[0]}:{n}"
            self._new_version(service, spec, deploy_id="")
            service.spec.CopyFrom(spec)
        service.update_status.Clear()
        with self._lock:
            self._entries[name] = _Entry(service)
        return service

    def script(self, name: str, *steps: Step, at_once: bool = False) -> None:
        """Steps for the reads after the next write (`at_once`: for every read from now)."""
        with self._lock:
            self._entries[name].steps.extend(steps)
            self._entries[name].armed |= at_once

    def set_tasks(self, name: str, tasks: list[objects.Task]) -> None:
        with self._lock:
            self._entries[name].tasks = tasks

    def service(self, name: str) -> objects.Service:
        with self._lock:
            copy = objects.Service()
            copy.CopyFrom(self._entries[name].service)
            return copy

    def set_service(self, service: objects.Service) -> None:
        with self._lock:
            self._entries[service.spec.name].service = service

    def sent(self, kind: type[Message]) -> list[Any]:
        return [r for r in self.requests if isinstance(r, kind)]

    # -- helpers -----------------------------------------------------------------------------

    def _new(self, spec: objects.ServiceSpec) -> objects.Service:
        self._ids += 1
        service = objects.Service(id=f"{self._ids:012x}{'0' * 13}", spec=spec, spec_version=1,
                                  last_version=1)
        service.meta.version = 1
        kept = service.versions.add(version=1, change="created")
        kept.spec.CopyFrom(spec)
        kept.time.GetCurrentTime()
        return service

    @staticmethod
    def _new_version(service: objects.Service, spec: objects.ServiceSpec,
                     deploy_id: str) -> None:
        old = service.spec_version
        service.last_version += 1
        kept = service.versions.add(version=service.last_version,
                                    change=rules.changes(service.spec, spec))
        kept.spec.CopyFrom(spec)
        kept.time.GetCurrentTime()
        service.spec_version = service.last_version
        status = service.update_status
        status.Clear()
        status.state = US.STATE_UPDATING  # type: ignore[assignment]
        status.started.GetCurrentTime()
        status.from_version, status.to_version = old, service.spec_version
        status.total = spec.replicas
        status.deploy_id = deploy_id
        status.message = f"updating 0/{spec.replicas}"

    def _find(self, ref: str, context: grpc.ServicerContext) -> _Entry:
        for entry in self._entries.values():
            if ref in (entry.service.spec.name, entry.service.id):
                return entry
        context.abort(grpc.StatusCode.NOT_FOUND, f"no service {ref!r}")
        raise AssertionError("unreachable")

    @staticmethod
    def _write(entry: _Entry) -> objects.Service:
        entry.service.meta.version += 1
        entry.armed = True
        copy = objects.Service()
        copy.CopyFrom(entry.service)
        return copy

    # -- the API -----------------------------------------------------------------------------

    def CreateService(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append(request)
            service = self._new(request.spec)
            self._entries[request.spec.name] = _Entry(service)
            return control.ServiceResponse(service=service)

    def UpdateService(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append(request)
            if self.conflicts:
                self.conflicts -= 1
                context.abort(grpc.StatusCode.ABORTED, "service changed: read it again")
            entry = self._find(request.service_id, context)
            service = entry.service
            if service.meta.version != request.version:
                context.abort(grpc.StatusCode.ABORTED, "stale version")
            request.spec.replicas = autoscale.starting_replicas(service.spec, request.spec)
            if request.spec == service.spec:
                return control.ServiceResponse(service=service)
            if rules.replaces_tasks(service.spec, request.spec):
                self._new_version(service, request.spec, request.deploy_id)
            service.spec.CopyFrom(request.spec)
            return control.ServiceResponse(service=self._write(entry))

    def RollbackService(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append(request)
            entry = self._find(request.ref, context)
            service = entry.service
            kept = [v.version for v in service.versions]
            target = request.version or max(v for v in kept if v < service.spec_version)
            if target not in kept:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"version {target} is not kept")
            status = service.update_status
            status.Clear()
            status.state = US.STATE_ROLLING_BACK  # type: ignore[assignment]
            status.manual = True
            status.from_version, status.to_version = service.spec_version, target
            status.message = f"rolling back to version {target}"
            service.spec_version = target
            return control.ServiceResponse(service=self._write(entry))

    def PromoteService(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append(request)
            entry = self._find(request.ref, context)
            status = entry.service.update_status
            if status.state != US.STATE_CANARY:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no canaries to promote")
            status.state = US.STATE_UPDATING  # type: ignore[assignment]
            status.promoted = True
            status.message = "canaries promoted by hand"
            return control.ServiceResponse(service=self._write(entry))

    def ScaleService(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append(request)
            entry = self._find(request.ref, context)
            if autoscale.enabled(entry.service.spec):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              scale_refusal(entry.service.spec))
            entry.service.spec.replicas = request.replicas
            return control.ServiceResponse(service=self._write(entry))

    def GetService(self, request: Any, context: Any) -> Any:
        with self._lock:
            entry = self._find(request.ref, context)
            if entry.armed and entry.steps:
                step = entry.steps.pop(0) if len(entry.steps) > 1 else entry.steps[0]
                step.apply(entry.service)
                entry.service.meta.version += 1
            return control.ServiceResponse(service=entry.service)

    def ListServices(self, request: Any, context: Any) -> Any:
        with self._lock:
            return control.ListServicesResponse(
                services=[e.service for e in self._entries.values()])

    def ListTasks(self, request: Any, context: Any) -> Any:
        with self._lock:
            entries = ([self._find(request.service, context)] if request.service
                       else list(self._entries.values()))
            return control.ListTasksResponse(tasks=[t for e in entries for t in _tasks(e)])

    def ListNodes(self, request: Any, context: Any) -> Any:
        return control.ListNodesResponse()

    def GetLoad(self, request: Any, context: Any) -> Any:
        return control.GetLoadResponse()

    def WatchEvents(self, request: Any, context: Any) -> Iterator[control.Event]:
        with self._lock:
            events = list(self.events)
        yield from events


def scale_refusal(spec: objects.ServiceSpec) -> str:
    """What ScaleService answers for an autoscaled service (the manager's words)."""
    policy = spec.autoscale
    return (f"service {spec.name!r} is autoscaled ({policy.min}..{policy.max} replicas, "
            f"{spec.replicas} now): its count follows the load; change x-podium-autoscale "
            "min/max in its file and deploy it again, or remove x-podium-autoscale to set the "
            "count by hand")


def _tasks(entry: _Entry) -> list[objects.Task]:
    if entry.tasks is not None:
        return entry.tasks
    service = entry.service
    return [running_task(service, slot) for slot in range(1, service.spec.replicas + 1)]


def running_task(service: objects.Service, slot: int, *, canary: bool = False,
                 version: int = 0) -> objects.Task:
    task = objects.Task(id=f"{service.id[:8]}{slot:04d}{'0' * 13}", service_id=service.id,
                        service_name=service.spec.name, slot=slot, canary=canary,
                        spec_version=version or service.spec_version,
                        desired_state=RUNNING)
    task.status.state = RUNNING  # type: ignore[assignment]
    task.status.ready = True
    task.status.message = "running"
    return task


class FakeManager:
    """The FakeControl behind a gRPC server on 127.0.0.1 with mutual TLS, as a manager serves;
    `address` for the CLI. While it runs, $PODIUM_CREDENTIALS names an admin's credentials
    for it (`credentials`)."""

    def __init__(self, control: FakeControl | None = None) -> None:
        self.control = control or FakeControl()
        self._dir = tempfile.TemporaryDirectory(prefix="podium-fake-")
        ca = ClusterCA.load_or_create(pathlib.Path(self._dir.name) / "pki")
        server = ca.issue("manager", "manager", names=(MANAGER_NAME,), server=True)
        admin = ca.issue("root", "admin")
        self._pool = futures.ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._pool)
        control_grpc.add_ControlServicer_to_server(self.control, self._server)
        port = self._server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(server.key, server.certificate)], root_certificates=ca.pem,
            require_client_auth=True))
        self.address = f"127.0.0.1:{port}"
        self.credentials = pathlib.Path(self._dir.name) / "admin.credentials"
        Credentials(self.address, "root", "admin", ca.pem, admin.certificate,
                    admin.key).save(self.credentials)
        self._env = os.environ.get(ENV)
        os.environ[ENV] = str(self.credentials)
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._pool.shutdown(wait=True)
        if self._env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._env
        self._dir.cleanup()
