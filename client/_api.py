"""The Control API as Python calls: what the `podium` CLI, scripts and other tools use.

    from podium.client import Client

    with Client("127.0.0.1:7070") as podium:
        for task in podium.tasks(service="web"):
            print(task.id, task.node_id, task.status.state)

Every call is a blocking gRPC call (podium.client._wire: HTTP/2 on TLS, without grpcio) with a
deadline (`timeout`, 10 s by default) and returns the
API's own messages (podium.v1.objects). Failures are `PodiumError`s that tell a manager that
cannot be reached (`ManagerUnreachable`, naming its address) apart from a refusal
(`NotFound`, `InvalidArgument`, `AlreadyExists`, `Conflict`, `Unavailable`); `str(err)` is fit
to show a user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from google.protobuf.message_factory import GetMessageClass

from podium.client import default_manager
from podium.client._wire import Call, Channel, RpcError, StatusCode
from podium.rules import managers
from podium.rules.credentials import MANAGER_NAME, Credentials, CredentialsError, locate
from podium.v1 import control, objects

M = TypeVar("M")

AVAILABILITY = {
    "active": objects.NodeSpec.AVAILABILITY_ACTIVE,
    "pause": objects.NodeSpec.AVAILABILITY_PAUSE,
    "drain": objects.NodeSpec.AVAILABILITY_DRAIN,
}


class PodiumError(Exception):
    """A call failed; str(err) says why."""


class ManagerUnreachable(PodiumError):
    """No manager answered at the address (not running, wrong address, or a network fault)."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(
            f"cannot reach the manager at {address} ({detail}); start one with `podium manager` "
            "or point to it with --manager HOST:PORT or PODIUM_MANAGER"
        )
        self.address = address


class NotFound(PodiumError):
    """No service, task or node has that name or id."""


class InvalidArgument(PodiumError):
    """The manager refused the request's content; the message names the field."""


class AlreadyExists(PodiumError):
    """The name is taken."""


class Conflict(PodiumError):
    """The object changed since it was read (a stale version): read it again and retry."""


class Unavailable(PodiumError):
    """The manager answered but refused for another reason (e.g. a client fell behind)."""


class Denied(PodiumError):
    """The caller's credentials do not allow this (a role without the right, a revoked or
    unknown certificate)."""


_ERRORS: dict[StatusCode, type[PodiumError]] = {
    StatusCode.NOT_FOUND: NotFound,
    StatusCode.INVALID_ARGUMENT: InvalidArgument,
    StatusCode.FAILED_PRECONDITION: InvalidArgument,
    StatusCode.ALREADY_EXISTS: AlreadyExists,
    StatusCode.ABORTED: Conflict,
    StatusCode.PERMISSION_DENIED: Denied,
    StatusCode.UNAUTHENTICATED: Denied,
}
_CONTROL = control.DESCRIPTOR.services_by_name["Control"]


def error_of(err: RpcError, address: str) -> PodiumError:
    """The PodiumError for a failed call to the manager at `address`."""
    code = err.code
    details = err.details or code.name
    if code in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED):
        return ManagerUnreachable(address, details)
    if code == StatusCode.UNIMPLEMENTED:
        return Unavailable(f"the manager at {address} does not offer this call ({details}): "
                           "it runs an older Podium")
    return _ERRORS.get(code, Unavailable)(details)


class Stream(Generic[M]):
    """An open stream of responses (`WatchEvents`: `control.Event`s, `Logs`:
    `control.LogsResponse`s): iterate for them; `close()` ends it (also from another thread).
    A stream refused before its first response by a manager that does not lead (or that cannot
    be reached) is opened again on the leader, or the next manager, as calls are."""

    def __init__(self, open_call: Callable[[], tuple[Call, str]], parse: Callable[[bytes], M],
                 retry: Callable[[RpcError, float], bool] | None = None) -> None:
        self._open = open_call
        self._parse = parse
        self._retry = retry
        self._call, self._address = open_call()
        self._closed = False

    def __iter__(self) -> Iterator[M]:
        started = False
        deadline = time.monotonic() + 10.0
        while True:
            try:
                for item in self._call:
                    started = True
                    yield self._parse(item)
                return
            except RpcError as err:
                if err.code == StatusCode.CANCELLED:
                    return
                if (started or self._closed or self._retry is None
                        or not self._retry(err, deadline)):
                    raise error_of(err, self._address) from None
                self._call, self._address = self._open()

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> Stream[M]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Failed(Call):
    """A stream that could not be opened: reading it raises why (and the reader moves on to
    another manager, as after a refusal)."""

    def __init__(self, error: RpcError) -> None:
        self._error = error

    def __iter__(self) -> Iterator[bytes]:
        raise self._error

    def cancel(self) -> None:
        pass


class Client:
    """A connection to the managers, over mutual TLS with a user's credentials file
    (`credentials`: a path, or a Credentials; default $PODIUM_CREDENTIALS, else
    ~/.config/podium/credentials, which the manager writes for the local admin). `address`
    defaults to $PODIUM_MANAGER, else the credentials' manager; it may name several managers,
    `HOST:PORT,HOST:PORT,...` (podium.rules.managers). A call refused by a manager that does not
    lead goes to the leader it names, and one that reaches no manager goes to the next, within
    the call's `timeout`; `address` is the manager the last call went to. Use it as a context
    manager, or call close()."""

    def __init__(self, address: str | None = None, *,
                 credentials: Credentials | str | os.PathLike[str] | None = None,
                 timeout: float = 10.0) -> None:
        try:
            creds = credentials if isinstance(credentials, Credentials) else \
                Credentials.load(locate(credentials))
        except CredentialsError as err:
            raise PodiumError(str(err)) from None
        given = address or os.environ.get("PODIUM_MANAGER") or creds.manager \
            or default_manager()
        try:
            self.addresses = managers.parse(given)
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        self.address = self.addresses[0]
        self.user = creds.user
        self.timeout = timeout
        self._tls = creds.ssl_context()
        self._channels: dict[str, Channel] = {}
        self._failures = 0  # calls that failed in a row, in the current call

    @property
    def _channel(self) -> Channel:
        channel = self._channels.get(self.address)
        if channel is None:
            channel = self._channels[self.address] = Channel(self.address, self._tls,
                                                             server_name=MANAGER_NAME)
        return channel

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._failures = 0
        spec = _CONTROL.methods_by_name[method]
        path, reply = f"/{_CONTROL.full_name}/{method}", GetMessageClass(spec.output_type)
        data = request.SerializeToString()
        while True:
            try:
                answer = self._channel.unary(path, data,
                                             timeout=max(deadline - time.monotonic(), 0.05))
                return reply.FromString(answer)
            except RpcError as err:
                if not self._move_on(err, deadline):
                    raise error_of(err, self._where()) from None

    def _stream(self, method: str, request: Any, parse: Callable[[bytes], M]) -> Stream[M]:
        path, data = f"/{_CONTROL.full_name}/{method}", request.SerializeToString()

        def open_call() -> tuple[Call, str]:
            address = self.address
            try:
                return self._channel.stream(path, data), address
            except RpcError as err:  # no connection: the first read says so
                return _Failed(err), address

        return Stream(open_call, parse, self._move_on)

    def _where(self) -> str:
        """The manager(s) a failed call tried, for its message."""
        if len(self.addresses) == 1:
            return self.address
        return f"{self.address} (tried {', '.join(self.addresses)})"

    def _move_on(self, err: RpcError, deadline: float) -> bool:
        """After `err`: whether to try again, having moved `address` to the leader the refusal
        named or to the next manager (waiting a little after each full round)."""
        if err.code != StatusCode.UNAVAILABLE:
            return False
        hint = managers.leader_hint(err.trailers)
        if hint is None and len(self.addresses) == 1:
            return False  # one manager that cannot be reached: say so at once, as always
        self.address = managers.next_address(self.addresses, self.address, hint)
        self._failures += 1
        delay = managers.delay_after(self._failures, len(self.addresses))
        if time.monotonic() + delay >= deadline:
            return False
        time.sleep(delay)
        return True

    # -- services --------------------------------------------------------------------

    def services(self) -> list[objects.Service]:
        return list(self._call("ListServices", control.ListServicesRequest()).services)

    def service(self, ref: str) -> objects.Service:
        """A service by name, id or unique id prefix; NotFound otherwise."""
        return self._call("GetService", control.GetRequest(ref=ref)).service  # type: ignore[no-any-return]

    def create_service(self, spec: objects.ServiceSpec, *,
                       deploy_id: str = "") -> objects.Service:
        request = control.CreateServiceRequest(spec=spec, deploy_id=deploy_id)
        return self._call("CreateService", request).service  # type: ignore[no-any-return]

    def update_service(self, service: objects.Service, spec: objects.ServiceSpec, *,
                       deploy_id: str = "") -> objects.Service:
        """Replaces the spec of `service` as read; Conflict when it changed meanwhile.
        `deploy_id` ties the updates of one deploy together: should one of them fail and roll
        back, the others roll back too."""
        request = control.UpdateServiceRequest(
            service_id=service.id, version=service.meta.version, spec=spec, deploy_id=deploy_id)
        return self._call("UpdateService", request).service  # type: ignore[no-any-return]

    # A deploy reads the service, then writes it with the version it read; the manager writes
    # the service too while it updates it (its update status), so a read may go stale.
    DEPLOY_ATTEMPTS = 5

    def deploy(self, spec: objects.ServiceSpec, *, deploy_id: str = "",
               force: bool = False) -> tuple[objects.Service, str]:
        """Creates the service or updates the one of that name: (service, "created" |
        "updated" | "updated (forced)" | "unchanged"). A spec equal to the current one changes
        nothing, unless `force`: then every task is replaced all the same (the spec's
        force_update goes one above the current one's). Without `force`, a spec whose
        force_update is 0 keeps the current count, so a plain redeploy after a forced one is
        unchanged. `deploy_id` as in update_service()."""
        for attempt in range(self.DEPLOY_ATTEMPTS):
            try:
                current = self.service(spec.name)
            except NotFound:
                current = None
            if current is None or current.spec.name != spec.name:
                return self.create_service(spec, deploy_id=deploy_id), "created"
            wanted = objects.ServiceSpec()
            wanted.CopyFrom(spec)
            if force:
                wanted.force_update = current.spec.force_update + 1
            elif not spec.force_update:
                wanted.force_update = current.spec.force_update
            try:
                updated = self.update_service(current, wanted, deploy_id=deploy_id)
            except Conflict:
                if attempt + 1 == self.DEPLOY_ATTEMPTS:
                    raise
                continue
            if updated.meta.version == current.meta.version:
                return updated, "unchanged"
            return updated, "updated (forced)" if force else "updated"
        raise AssertionError("unreachable")

    def plan(self, specs: list[objects.ServiceSpec]) -> list[control.ServicePlan]:
        """What deploying `specs` would do, changing nothing: per service its action, the
        changed fields, where new tasks would go, which tasks would be replaced and why some
        would stay pending (Control.PlanDeploy). A secret or config reference without an id
        stands for content a deploy would store first."""
        request = control.PlanDeployRequest(specs=specs)
        return list(self._call("PlanDeploy", request).services)

    def rollback(self, ref: str, version: int = 0) -> objects.Service:
        """Puts the service back on an earlier version of its spec (`version`; 0: the one
        before the current), replacing its tasks under its rollback_config. Returns the
        service as the rollback starts (update_status ROLLING_BACK, `manual` set)."""
        request = control.RollbackServiceRequest(ref=ref, version=version)
        return self._call("RollbackService", request).service  # type: ignore[no-any-return]

    def promote(self, ref: str) -> objects.Service:
        """Promotes the canaries of the service's update: the rest of its tasks are updated."""
        request = control.PromoteServiceRequest(ref=ref)
        return self._call("PromoteService", request).service  # type: ignore[no-any-return]

    def scale(self, ref: str, replicas: int) -> objects.Service:
        request = control.ScaleServiceRequest(ref=ref, replicas=replicas)
        return self._call("ScaleService", request).service  # type: ignore[no-any-return]

    def remove_service(self, ref: str) -> None:
        self._call("RemoveService", control.RemoveServiceRequest(ref=ref))

    # -- tasks and nodes ---------------------------------------------------------------

    def tasks(self, *, service: str = "", node: str = "") -> list[objects.Task]:
        """Tasks, optionally of one service and/or one node (names or ids)."""
        request = control.ListTasksRequest(service=service, node=node)
        return list(self._call("ListTasks", request).tasks)

    def task(self, ref: str) -> objects.Task:
        """A task by id, unique id prefix or name (`web.2`); NotFound otherwise."""
        return self._call("GetTask", control.GetRequest(ref=ref)).task  # type: ignore[no-any-return]

    def nodes(self) -> list[objects.Node]:
        return list(self._call("ListNodes", control.ListNodesRequest()).nodes)

    def node(self, ref: str) -> objects.Node:
        return self._call("GetNode", control.GetRequest(ref=ref)).node  # type: ignore[no-any-return]

    def set_availability(self, ref: str, availability: str) -> objects.Node:
        """`availability` is "active", "pause" (no new tasks) or "drain" (move them away)."""
        if availability not in AVAILABILITY:
            raise InvalidArgument(f"availability {availability!r}: expected one of "
                                  f"{', '.join(AVAILABILITY)}")
        request = control.UpdateNodeRequest(ref=ref, availability=AVAILABILITY[availability])
        return self._call("UpdateNode", request).node  # type: ignore[no-any-return]

    def remove_node(self, ref: str, *, force: bool = False) -> None:
        """Removes a node: its certificate stops working at once, its tasks are replaced
        elsewhere. A ready node only with `force` (InvalidArgument otherwise)."""
        self._call("RemoveNode", control.RemoveNodeRequest(ref=ref, force=force))

    # -- users and tokens (admins) ---------------------------------------------------

    def add_user(self, name: str, role: str) -> Credentials:
        """A new user's credentials (write them with `.save(path)`)."""
        answer = self._call("AddUser", control.AddUserRequest(name=name, role=role))
        return Credentials(manager=",".join(self.addresses), user=answer.user.name,
                           role=answer.user.role, ca=answer.ca, certificate=answer.certificate,
                           key=answer.key)

    def remove_user(self, name: str) -> None:
        self._call("RemoveUser", control.RemoveUserRequest(name=name))

    def users(self) -> list[control.User]:
        return list(self._call("ListUsers", control.ListUsersRequest()).users)

    def join_token(self, *, rotate: bool = False) -> str:
        """The agents' join token; with `rotate`, a new one (the old one stops working)."""
        return str(self._call("GetJoinToken", control.GetJoinTokenRequest(rotate=rotate)).token)

    def dashboard_login(self) -> tuple[str, control.DashboardLoginResponse]:
        """A login link for the manager's dashboard, as this client's user: (the URL, which
        signs in once, within a minute; the response, with the user, role and expiry).
        InvalidArgument when the manager serves no dashboard."""
        answer = self._call("DashboardLogin", control.DashboardLoginRequest())
        host = answer.host or self.address.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{answer.port}/login?token={answer.token}", answer

    def load(self, *, history: int = 0, timeout: float | None = None,
             ) -> control.GetLoadResponse:
        """The latest load of every node and task (with `history` samples each). Only the
        leading manager has it: `timeout` bounds the wait for one (default: the client's)."""
        request = control.GetLoadRequest(history=history)
        return self._call("GetLoad", request, timeout=timeout)  # type: ignore[no-any-return]

    # -- secrets and configs ---------------------------------------------------------------

    def create_secret(self, kind: str, name: str, data: bytes,
                      labels: dict[str, str] | None = None) -> objects.Secret:
        """Stores `data` under `name` (`kind` "secret" or "config"): the version stored, the
        one already holding this content if any (else a new version, with a new id). A
        secret comes back without its data."""
        spec = objects.SecretSpec(kind=_secret_kind(kind), name=name, data=data,
                                  labels=labels or {})
        return self._call("CreateSecret", control.CreateSecretRequest(spec=spec)).secret  # type: ignore[no-any-return]

    def secrets(self, kind: str = "secret") -> list[objects.Secret]:
        """Every version of every secret (or config), by name then version; secrets without
        their data, configs with their content."""
        request = control.ListSecretsRequest(kind=_secret_kind(kind))
        return list(self._call("ListSecrets", request).secrets)

    def remove_secret(self, kind: str, name: str) -> None:
        """Removes every version; InvalidArgument while a service uses one (it names them)."""
        request = control.RemoveSecretRequest(kind=_secret_kind(kind), name=name)
        self._call("RemoveSecret", request)

    def rotate_secrets_key(self) -> tuple[str, int]:
        """Re-encrypts every stored secret and config under a new key, then forgets the old
        keys: (the new key's id, how many were re-encrypted). Admins only."""
        reply = self._call("RotateSecretsKey", control.RotateSecretsKeyRequest())
        return reply.key_id, reply.secrets

    def events(self, kinds: Iterable[str] = ()) -> Stream[control.Event]:
        """The cluster's changes from now on ("node", "service", "task"; empty: all)."""
        request = control.WatchEventsRequest(kinds=list(kinds))
        return self._stream("WatchEvents", request, control.Event.FromString)

    def logs(self, ref: str, *, follow: bool = False, since: float = 0.0,
             tail: int = 0) -> Stream[control.LogsResponse]:
        """Container output of a service's tasks or of one task: responses of lines, each
        tagged with its task (or with an error saying why a task's output cannot be read).
        `since`: unix seconds (0: from the start); `tail`: the last N lines of each task (0:
        all); `follow`: then new lines, and new tasks' lines, until close()."""
        request = control.LogsRequest(ref=ref, follow=follow, tail=tail)
        if since > 0:
            request.since.FromNanoseconds(int(since * 1e9))
        # The first response comes only with output: a missing ref still fails at once.
        return self._stream("Logs", request, control.LogsResponse.FromString)


def _secret_kind(kind: str) -> objects.SecretSpec.Kind:
    if kind == "secret":
        return objects.SecretSpec.KIND_SECRET
    if kind == "config":
        return objects.SecretSpec.KIND_CONFIG
    raise InvalidArgument(f"kind {kind!r}: expected 'secret' or 'config'")
