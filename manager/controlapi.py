"""Control API: the operators' gRPC service (used by the `podium` CLI).

It validates what it is given, writes the desired state to the store and
returns at once; the orchestrators and the scheduler converge on it. A ref in a
request is an object id, a unique id prefix or a name.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import grpc

from podium.manager import ids, logs, plan, secrets, versions
from podium.manager.loadbook import HISTORY, LoadBook
from podium.manager.requestguard import Refused
from podium.manager.store import (
    ConflictError,
    ExistsError,
    ReadTx,
    SealingError,
    Store,
    StoreError,
    WatchOverflowError,
    WriteTx,
)
from podium.rules import autoscale, network
from podium.rules import update as update_rules
from podium.rules.constraints import parse_constraint
from podium.rules.mounts import check_mounts
from podium.rules.names import RULE as NAME_RULE
from podium.rules.names import is_valid_name
from podium.rules.routing import ingress_ports
from podium.rules.taskstate import is_live
from podium.rules.update import config_problem
from podium.v1 import control, control_grpc, objects

if TYPE_CHECKING:
    from podium.manager.security import Authority

MAX_REPLICAS = 10_000
# Changes that may wait unread for one WatchEvents client before it is cut off. Twice the
# largest burst one request causes (MAX_REPLICAS tasks created in one transaction), so a client
# that keeps up is never cut off by a burst; a stalled one holds at most this many changes
# (about 1.3 KB each for a task: ~26 MB), not every change until it reads again.
WATCH_LIMIT = 2 * MAX_REPLICAS
EVENT_KINDS = frozenset({"node", "service", "task"})  # what WatchEvents forwards

O = TypeVar("O", objects.Node, objects.Service, objects.Task)  # noqa: E741
R = TypeVar("R")
# (the caller's identity, the serial of the certificate it called with) -> its login.
DashboardLogin = Callable[[objects.Identity, str], control.DashboardLoginResponse]


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def validate_spec(spec: objects.ServiceSpec) -> None:
    """Raises RequestError(INVALID_ARGUMENT) naming the field at fault."""

    def bad(message: str) -> RequestError:
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)

    if not is_valid_name(spec.name):
        raise bad(f"spec.name {spec.name!r}: expected {NAME_RULE}")
    where = f"service {spec.name!r}"
    if not spec.container.image.strip():
        raise bad(f"{where}: spec.container.image is empty: name an image present on the nodes")
    if spec.mode == objects.ServiceSpec.MODE_REPLICATED and spec.replicas > MAX_REPLICAS:
        raise bad(f"{where}: spec.replicas {spec.replicas}: at most {MAX_REPLICAS}")
    for expr in spec.placement.constraints:
        try:
            parse_constraint(expr)
        except ValueError as err:
            raise bad(f"{where}: spec.placement.constraints: {err}") from None
    for i, port in enumerate(spec.ports):
        if not 1 <= port.target_port <= 65535:
            raise bad(f"{where}: spec.ports[{i}].target_port {port.target_port}: expected 1-65535")
        if port.published_port > 65535:
            raise bad(
                f"{where}: spec.ports[{i}].published_port {port.published_port}: expected 0-65535"
            )
    for kind in ("reservations", "limits"):
        res = getattr(spec.resources, kind)
        if res.nano_cpus < 0 or res.memory_bytes < 0:
            raise bad(f"{where}: spec.resources.{kind}: cpus and memory must not be negative")
    if problem := (config_problem(spec) or autoscale.config_problem(spec)
                   or network.check_networks(spec) or check_mounts(spec)):
        raise bad(f"{where}: {problem}")


def resolve(items: Iterable[O], ref: str, name_of: Callable[[O], str], kind: str) -> O:
    """Finds an object by id, name or unique id prefix."""
    if not ref:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"ref: name or id of a {kind} needed")
    candidates = list(items)
    for obj in candidates:
        if obj.id == ref or name_of(obj) == ref:
            return obj
    matches = [obj for obj in candidates if obj.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{kind} {ref!r} is ambiguous: {len(matches)} match"
        )
    raise RequestError(grpc.StatusCode.NOT_FOUND, f"no {kind} {ref!r}")


def _service_name(s: objects.Service) -> str:
    return s.spec.name


def _node_name(n: objects.Node) -> str:
    return n.description.name


def _task_name(t: objects.Task) -> str:
    return f"{t.service_name}.{t.slot or t.node_id}"


def find_service(view: ReadTx, ref: str) -> objects.Service:
    found = view.service_by_name(ref)
    return found if found is not None else resolve(view.services(), ref, _service_name, "service")


def find_node(view: ReadTx, ref: str) -> objects.Node:
    found = view.node_by_name(ref)
    return found if found is not None else resolve(view.nodes(), ref, _node_name, "node")


def find_task(view: ReadTx, ref: str) -> objects.Task:
    found = view.get_task(ref)
    if found is not None:
        return found
    for task in view.tasks():  # "web.2" names the live task of a slot
        if is_live(task) and _task_name(task) == ref:
            return task
    return resolve(view.tasks(), ref, lambda t: t.id, "task")


class ControlAPI(control_grpc.ControlServicer):
    def __init__(self, *, store: Store, load: LoadBook, watch_limit: int = WATCH_LIMIT,
                 autoscale_view: Callable[[objects.Service], None] | None = None,
                 virtual_ip_range: str = network.DEFAULT_RANGE,
                 authority: Authority | None = None,
                 rotate_secrets_key: Callable[[], tuple[str, int] | Awaitable[tuple[str, int]]]
                 | None = None,
                 logs_from: logs.LogSource | None = None,
                 dashboard_login: DashboardLogin | None = None) -> None:
        """`authority`: users, node removal and join tokens (None: a plaintext manager, for
        in-process tests, which has none of them). `logs_from`: the agents' sessions, which
        carry container output (None: Logs is unavailable). `dashboard_login`: makes a login
        token for a user (None: the manager serves no dashboard)."""
        self._logs_from = logs_from
        self._dashboard_login = dashboard_login
        self._authority = authority
        self._store = store
        # Re-seals the stored secrets under a new key: (its id, how many); None: a store that
        # keeps them in plaintext.
        self._rotate_secrets_key = rotate_secrets_key
        self._virtual_ip_range = virtual_ip_range
        self._load = load
        self._watch_limit = watch_limit
        # Adds the autoscaler's current figures to a service being read (never stored).
        self._autoscale_view = autoscale_view or (lambda service: None)

    async def _write(self, context: grpc.aio.ServicerContext, fn: Callable[[WriteTx], R]) -> R:  # type: ignore[type-arg]
        try:
            return await self._store.update(fn)
        except (RequestError, secrets.SecretError) as err:
            await context.abort(err.code, str(err))
        except ExistsError as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        except ConflictError as err:
            await context.abort(grpc.StatusCode.ABORTED, str(err))
        except StoreError as err:
            if type(err) is not StoreError:
                raise
            # The store cannot write now (etcd out of reach): another try may well succeed.
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        raise AssertionError("unreachable")

    async def _read(self, context: grpc.aio.ServicerContext, fn: Callable[[ReadTx], R]) -> R:  # type: ignore[type-arg]
        try:
            return fn(self._store.view())
        except (RequestError, secrets.SecretError) as err:
            await context.abort(err.code, str(err))
        raise AssertionError("unreachable")

    @staticmethod
    def _check_ports_free(tx: ReadTx, spec: objects.ServiceSpec, service_id: str) -> None:
        """An ingress port is served by every node: two services cannot publish the same one."""
        mine = {(p.protocol, p.published_port) for p in ingress_ports(spec)}
        if not mine:
            return
        for other in tx.services():
            if other.id == service_id:
                continue
            taken = mine & {(p.protocol, p.published_port) for p in ingress_ports(other.spec)}
            if taken:
                _, port = sorted(taken)[0]
                raise RequestError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"service {spec.name!r}: published port {port} is already the ingress port "
                    f"of service {other.spec.name!r}; pick another or use mode: host",
                )

    async def CreateService(self, request, context):  # type: ignore[no-untyped-def]
        spec = request.spec

        def apply(tx: WriteTx) -> objects.Service:
            validate_spec(spec)
            secrets.check_references(tx, spec)
            service = objects.Service(id=ids.new_id())
            self._check_ports_free(tx, spec, service.id)
            service.spec.CopyFrom(spec)
            service.spec_version = versions.add_version(service, spec, "created")
            service.update_status.deploy_id = request.deploy_id
            self._give_virtual_ip(tx, service)
            tx.create(service)
            return service

        return control.ServiceResponse(service=await self._write(context, apply))

    def _give_virtual_ip(self, tx: WriteTx, service: objects.Service) -> None:
        """Gives the service the lowest free virtual IP (once: it keeps it for its life)."""
        if service.virtual_ip:
            return
        try:
            service.virtual_ip = network.allocate(
                self._virtual_ip_range, (s.virtual_ip for s in tx.services()))
        except ValueError as err:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None

    async def UpdateService(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Service:
            service = tx.get_service(request.service_id)
            if service is None:
                validate_spec(request.spec)
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"no service {request.service_id!r}")
            # An autoscaled service keeps the count its autoscaler chose (within the new bounds):
            # redeploying the file does not reset it.
            request.spec.replicas = autoscale.starting_replicas(service.spec, request.spec)
            validate_spec(request.spec)
            secrets.check_references(tx, request.spec)
            if service.meta.version != request.version:
                raise ConflictError(
                    f"service {service.spec.name!r} is at version {service.meta.version}, "
                    f"not {request.version}: read it again"
                )
            if request.spec.name != service.spec.name:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"spec.name: a service cannot be renamed ({service.spec.name!r})",
                )
            if request.spec == service.spec:
                return service
            self._check_ports_free(tx, request.spec, service.id)
            if update_rules.replaces_tasks(service.spec, request.spec):
                versions.begin_update(service, request.spec, request.deploy_id)
            else:
                service.spec.CopyFrom(request.spec)
            self._give_virtual_ip(tx, service)
            tx.update(service)
            return service

        return control.ServiceResponse(service=await self._write(context, apply))

    async def PlanDeploy(self, request, context):  # type: ignore[no-untyped-def]
        def build(view: ReadTx) -> list[control.ServicePlan]:
            specs = [self._planned_spec(view, spec) for spec in request.specs]
            return plan.plan_deploy(view, specs, time.time())

        return control.PlanDeployResponse(services=await self._read(context, build))

    def _planned_spec(self, view: ReadTx, given: objects.ServiceSpec) -> objects.ServiceSpec:
        """`given` checked and completed as CreateService or UpdateService would (a copy: the
        same errors, naming the field). Two differences: a spec whose force_update is 0 keeps
        the current one's (as `podium deploy` sends it), and a secret or config reference
        without an id stands for content `podium deploy` would store first."""
        spec = objects.ServiceSpec()
        spec.CopyFrom(given)
        current = view.service_by_name(spec.name) if spec.name else None
        if current is not None:
            spec.replicas = autoscale.starting_replicas(current.spec, spec)
            if not spec.force_update:
                spec.force_update = current.spec.force_update
        validate_spec(spec)
        unstored = []
        for field, kind in (("secrets", objects.SecretSpec.KIND_SECRET),
                            ("configs", objects.SecretSpec.KIND_CONFIG)):
            for ref in getattr(spec.container, field):
                if not ref.id and ref.name:
                    ref.id = f"{plan.PLANNED}{ref.name}"
                    unstored.append(objects.Secret(
                        id=ref.id, spec=objects.SecretSpec(kind=kind, name=ref.name)))
        secrets.check_references(plan.with_secrets(view, unstored), spec)
        for ref in list(spec.container.secrets) + list(spec.container.configs):
            if ref.id.startswith(plan.PLANNED):
                ref.id = ""
        self._check_ports_free(view, spec, current.id if current is not None else "")
        return spec

    async def RollbackService(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Service:
            service = find_service(tx, request.ref)
            name = service.spec.name
            kept = sorted(v.version for v in service.versions)
            version = request.version
            if not version:
                earlier = [v for v in kept if v < service.spec_version]
                if not earlier:
                    raise RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"service {name!r} has no version before {service.spec_version} to go "
                        "back to (`podium history` lists them)")
                version = earlier[-1]
            if version not in kept:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"version {version}: service {name!r} keeps versions "
                    f"{', '.join(map(str, kept))}")
            if version == service.spec_version \
                    and service.update_status.state not in versions.UNSETTLED:
                return service  # already there
            versions.start_rollback(tx, service, version, reason="", manual=True)
            return service

        return control.ServiceResponse(service=await self._write(context, apply))

    async def PromoteService(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Service:
            service = find_service(tx, request.ref)
            status = service.update_status
            if status.promoted and status.state == versions.US.STATE_UPDATING:
                return service
            if status.state not in (versions.US.STATE_UPDATING, versions.US.STATE_CANARY) \
                    or not service.spec.canary.count:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"service {service.spec.name!r} has no canaries waiting to be promoted")
            versions.promote(tx, service, by="on request")
            return service

        return control.ServiceResponse(service=await self._write(context, apply))

    async def ScaleService(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Service:
            service = find_service(tx, request.ref)
            if service.spec.mode == objects.ServiceSpec.MODE_GLOBAL:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"service {service.spec.name!r} is global (one task per node): "
                    "only replicated services scale",
                )
            if request.replicas > MAX_REPLICAS:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"replicas {request.replicas}: at most {MAX_REPLICAS}",
                )
            if autoscale.enabled(service.spec):
                policy = service.spec.autoscale
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"service {service.spec.name!r} is autoscaled ({policy.min}..{policy.max} "
                    f"replicas, {service.spec.replicas} now): its count follows the load; change "
                    "x-podium-autoscale min/max in its file and deploy it again, or remove "
                    "x-podium-autoscale to set the count by hand",
                )
            if service.spec.replicas != request.replicas:
                service.spec.replicas = request.replicas
                tx.update(service)
            return service

        return control.ServiceResponse(service=await self._write(context, apply))

    async def RemoveService(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Service:
            service = find_service(tx, request.ref)
            tx.delete(service)
            return service

        await self._write(context, apply)
        return control.RemoveServiceResponse()

    async def GetService(self, request, context):  # type: ignore[no-untyped-def]
        found = await self._read(context, lambda v: find_service(v, request.ref))
        response = control.ServiceResponse(service=found)  # a copy: the store's stays as it is
        self._autoscale_view(response.service)
        return response

    async def ListServices(self, request, context):  # type: ignore[no-untyped-def]
        services = sorted(self._store.view().services(), key=_service_name)
        response = control.ListServicesResponse(services=services)
        for service in response.services:
            self._autoscale_view(service)
        return response

    async def GetTask(self, request, context):  # type: ignore[no-untyped-def]
        return control.TaskResponse(
            task=await self._read(context, lambda v: find_task(v, request.ref))
        )

    async def ListTasks(self, request, context):  # type: ignore[no-untyped-def]
        def select(view: ReadTx) -> list[objects.Task]:
            service_id = find_service(view, request.service).id if request.service else ""
            node_id = find_node(view, request.node).id if request.node else ""
            if service_id:
                tasks = view.tasks_of_service(service_id)
                if node_id:
                    tasks = [t for t in tasks if t.node_id == node_id]
            elif node_id:
                tasks = view.tasks_of_node(node_id)
            else:
                tasks = list(view.tasks())
            return sorted(
                tasks,
                key=lambda t: (t.service_name, t.slot, t.node_id, -t.meta.created.ToNanoseconds()),
            )

        return control.ListTasksResponse(tasks=await self._read(context, select))

    async def GetNode(self, request, context):  # type: ignore[no-untyped-def]
        return control.NodeResponse(
            node=await self._read(context, lambda v: find_node(v, request.ref))
        )

    async def ListNodes(self, request, context):  # type: ignore[no-untyped-def]
        nodes = sorted(self._store.view().nodes(), key=_node_name)
        return control.ListNodesResponse(nodes=nodes)

    async def UpdateNode(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> objects.Node:
            if request.availability not in objects.NodeSpec.Availability.values():
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"availability {request.availability}: expected active, pause or drain",
                )
            node = find_node(tx, request.ref)
            if node.spec.availability != request.availability:
                node.spec.availability = request.availability
                tx.update(node)
            return node

        return control.NodeResponse(node=await self._write(context, apply))

    async def CreateSecret(self, request, context):  # type: ignore[no-untyped-def]
        created = await self._write(context, lambda tx: secrets.create(tx, request.spec))
        return control.SecretResponse(secret=secrets.public(created))

    async def ListSecrets(self, request, context):  # type: ignore[no-untyped-def]
        found = secrets.listing(self._store.view(), request.kind)
        return control.ListSecretsResponse(secrets=found)

    async def RemoveSecret(self, request, context):  # type: ignore[no-untyped-def]
        def apply(tx: WriteTx) -> None:
            if not request.name:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"name: the name of a {secrets.kind_word(request.kind)} needed")
            secrets.remove(tx, request.kind, request.name)

        await self._write(context, apply)
        return control.RemoveSecretResponse()

    async def RotateSecretsKey(self, request, context):  # type: ignore[no-untyped-def]
        if self._rotate_secrets_key is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this manager's store keeps secrets without encryption")
            raise AssertionError("unreachable")
        try:
            rotated = self._rotate_secrets_key()
            key_id, count = await rotated if inspect.isawaitable(rotated) else rotated
        except (SealingError, StoreError, OSError) as err:
            await context.abort(grpc.StatusCode.INTERNAL, f"rotating the secrets key: {err}")
            raise AssertionError("unreachable") from None
        return control.RotateSecretsKeyResponse(key_id=key_id, secrets=count)

    async def GetLoad(self, request, context):  # type: ignore[no-untyped-def]
        return self._load.snapshot(history=min(request.history, HISTORY))

    async def WatchEvents(  # type: ignore[no-untyped-def]
        self, request, context
    ) -> AsyncIterator[control.Event]:
        kinds = set(request.kinds)
        # Bounded: once the client stops reading, gRPC's flow control holds this generator at
        # its yield and the changes pile up in the watch instead.
        watch = self._store.watch(limit=self._watch_limit)
        actions = {
            "create": control.Event.ACTION_CREATE,
            "update": control.Event.ACTION_UPDATE,
            "delete": control.Event.ACTION_DELETE,
        }
        try:
            while True:
                try:
                    change = await watch.get()
                except WatchOverflowError:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this client fell more than {self._watch_limit} changes behind and its "
                        "watch was closed: reconnect to watch again (and list the current state)",
                    )
                    raise
                # Secrets', identities' and the cluster's changes stay inside the manager.
                if change.kind not in EVENT_KINDS or (kinds and change.kind not in kinds):
                    continue
                event = control.Event(action=actions[change.action], timestamp=ids.timestamp(),
                                      actor=change.actor)
                getattr(event, change.kind).CopyFrom(change.obj)
                yield event
        finally:
            watch.close()

    async def Logs(  # type: ignore[no-untyped-def]
        self, request, context
    ) -> AsyncIterator[control.LogsResponse]:
        if self._logs_from is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this manager serves no logs")

        def choose(view: ReadTx) -> logs.Selection:
            try:
                return logs.select(view, find_service(view, request.ref), None)
            except RequestError as err:
                if err.code != grpc.StatusCode.NOT_FOUND:
                    raise
            try:
                return logs.select(view, None, find_task(view, request.ref))
            except RequestError as err:
                if err.code != grpc.StatusCode.NOT_FOUND:
                    raise
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"no service or task {request.ref!r}")

        selection = await self._read(context, choose)
        assert self._logs_from is not None
        async for response in logs.stream(self._store, self._logs_from, selection, request):
            yield response

    async def _need_authority(self, context: grpc.aio.ServicerContext) -> Authority:  # type: ignore[type-arg]
        if self._authority is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this manager runs without TLS: it has no users or join tokens")
            raise AssertionError("unreachable")
        return self._authority

    async def RemoveNode(self, request, context):  # type: ignore[no-untyped-def]
        await self._need_authority(context)  # without certificates, a node could just return

        def apply(tx: WriteTx) -> str:
            node = find_node(tx, request.ref)
            name = node.description.name
            if node.status.state == objects.NodeStatus.STATE_READY and not request.force:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"node {name!r} is ready: drain it and stop its agent first, or force")
            for task in tx.tasks_of_node(node.id):
                if is_live(task) or task.desired_state < objects.TASK_STATE_SHUTDOWN:
                    task.desired_state = objects.TASK_STATE_REMOVED
                    if is_live(task):
                        task.status.state = objects.TASK_STATE_ORPHANED
                        task.status.message = f"node {name} was removed"
                        task.status.timestamp.CopyFrom(ids.timestamp())
                    tx.update(task)
            tx.delete(node)
            identity = tx.get_identity(f"node/{node.id}")
            if identity is not None:
                tx.delete(identity)  # its certificates stop working at once
            return node.id

        await self._write(context, apply)
        return control.RemoveNodeResponse()

    async def AddUser(self, request, context):  # type: ignore[no-untyped-def]
        authority = await self._need_authority(context)
        try:
            identity, certificate, key = await authority.add_user(request.name, request.role)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except ExistsError:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                f"user {request.name!r} exists already")
        return control.AddUserResponse(user=user_view(identity), certificate=certificate,
                                       key=key, ca=authority.ca.pem)

    async def RemoveUser(self, request, context):  # type: ignore[no-untyped-def]
        authority = await self._need_authority(context)
        if not await authority.remove_identity("user", request.name):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.name!r}")
        return control.RemoveUserResponse()

    async def ListUsers(self, request, context):  # type: ignore[no-untyped-def]
        authority = await self._need_authority(context)
        return control.ListUsersResponse(users=[user_view(i) for i in authority.users()])

    async def DashboardLogin(self, request, context):  # type: ignore[no-untyped-def]
        if self._dashboard_login is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this manager serves no dashboard (it runs with --dashboard "
                                "off, or could not listen at its address: see its log)")
            raise AssertionError("unreachable")
        authority = await self._need_authority(context)
        try:
            identity, serial = authority.caller(context)
        except Refused as refused:
            await context.abort(refused.code, refused.details)
            raise
        return self._dashboard_login(identity, serial)

    async def GetJoinToken(self, request, context):  # type: ignore[no-untyped-def]
        authority = await self._need_authority(context)
        token = await authority.rotate_token() if request.rotate else authority.token()
        return control.GetJoinTokenResponse(token=str(token))


def user_view(identity: objects.Identity) -> control.User:
    return control.User(name=identity.name, role=identity.role, created=identity.meta.created)
