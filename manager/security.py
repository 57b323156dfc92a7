"""Who may call the manager, and what each caller may do.

Every connection to the manager's port is mutual TLS: the caller shows a certificate the
cluster CA signed (plaintext and other CAs' certificates fail the handshake). `Authority.admit`
runs first in every call (the RequestGuard calls it): it reads the caller's certificate, finds
its `Identity` in the store (a user or a node; the certificate's serial must be one the
identity lists, so deleting the identity revokes its certificates at once, open calls
included), checks the method against ACCESS, and records the caller for the call, so that the
store stamps every write with who made it.

The join port (TLS, no client certificate) serves only `Join.JoinCluster`: an agent that shows
the cluster's join token gets a certificate for its node id and its own key (sent as a signing
request). A node id that has joined before needs the same key: so no agent can take another
node's identity, and one that was away past its certificate's life rejoins with its data dir.
Failed joins are counted per address: past JOIN_FAILURES in JOIN_WINDOW_S, that address's
wrong tokens get RESOURCE_EXHAUSTED, with one rate-limited log line (the right token always
joins).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import pathlib
import re
import socket
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

import grpc

from podium.manager.pki import USER_LIFETIME, ClusterCA, read_request
from podium.manager.requestguard import REVOKED, RateLimitedLog, Refused
from podium.manager.store import Store, WriteTx, acting_as, set_actor
from podium.manager.store._tables import CLUSTER_ID
from podium.rules.certs import (
    NODE_UNIT,
    ROLES,
    JoinToken,
    TokenError,
    describe,
    new_secret,
    public_key_digest,
    secrets_equal,
)
from podium.rules.credentials import MANAGER_NAME, Credentials
from podium.v1 import control, dispatcher, dispatcher_grpc, objects

log = logging.getLogger(__name__)

JOIN_FAILURES = 10
JOIN_WINDOW_S = 60.0
MAX_TRACKED_ADDRESSES = 10_000  # addresses with failed joins remembered (older ones forgotten)
KEPT_SERIALS = 2  # a renewal keeps the previous certificate working until the next one
USER_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
NODE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LOCAL_ADMIN = "root"

_CONTROL = "/podium.v1.Control/"
_VIEW = frozenset({"GetService", "ListServices", "GetTask", "ListTasks", "GetNode", "ListNodes",
                   "GetLoad", "WatchEvents", "ListSecrets", "Logs", "DashboardLogin"})
_OPERATE = frozenset({"CreateService", "UpdateService", "RollbackService", "PromoteService",
                      "ScaleService", "RemoveService", "CreateSecret", "RemoveSecret",
                      "PlanDeploy"})
_ADMIN = frozenset(m.name for m in control.DESCRIPTOR.services_by_name["Control"].methods)
_ANYONE = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")
_NODE = frozenset({"/podium.v1.Dispatcher/Session", "/podium.v1.Dispatcher/RenewCertificate"})
ROLE_METHODS: dict[str, frozenset[str]] = {
    "viewer": _VIEW,
    "operator": _VIEW | _OPERATE,
    "admin": _ADMIN,
}


def may_call(role: str, method: str) -> bool:
    """Whether a caller of `role` (a user's role, or "node") may call `method` (the full path)."""
    if method.startswith(_ANYONE):
        return True
    if role == NODE_UNIT:
        return method in _NODE
    return method.startswith(_CONTROL) and method[len(_CONTROL):] in ROLE_METHODS.get(role, ())


def identity_id(kind: str, name: str) -> str:
    return f"{kind}/{name}"


class Authority:
    def __init__(self, *, store: Store, ca: ClusterCA,
                 node_lifetime: datetime.timedelta) -> None:
        self._store = store
        self.ca = ca
        self._node_lifetime = node_lifetime
        self._certs: dict[bytes, tuple[str, str]] = {}  # PEM -> (identity id, serial)
        self._calls: defaultdict[str, weakref.WeakSet[asyncio.Task[Any]]] = defaultdict(
            weakref.WeakSet)
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._report = RateLimitedLog(log)

    # Credentials for the two ports.

    def server_credentials(self, names: Iterable[str], *, client_auth: bool) -> Any:
        """The manager's certificate (new at every start) for `names` as well as MANAGER_NAME,
        sent with the CA's so that a joining agent can check it against its token."""
        names = tuple(dict.fromkeys((MANAGER_NAME, "localhost", "127.0.0.1", *names)))
        issued = self.ca.issue("manager", "manager", lifetime=USER_LIFETIME, names=names,
                               server=True)
        return grpc.ssl_server_credentials(
            [(issued.key, issued.certificate + self.ca.pem)],
            root_certificates=self.ca.pem if client_auth else None,
            require_client_auth=client_auth)

    # Admission of every call.

    def caller(self, context: Any) -> tuple[objects.Identity, str]:
        """The caller's identity as the store has it, and the serial of the certificate it
        called with; Refused(UNAUTHENTICATED) when it has none or it was revoked."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        pem = pems[0]
        known = self._certs.get(pem)
        if known is None:
            info = describe(pem)
            kind = "node" if info.unit == NODE_UNIT else "user"
            known = (identity_id(kind, info.common_name), info.serial)
            if len(self._certs) > 10_000:
                self._certs.clear()
            self._certs[pem] = known
        ident_id, serial = known
        identity = self._store.view().get_identity(ident_id)
        if identity is None or serial not in identity.serials:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          f"the certificate of {ident_id} was revoked")
        return identity, serial

    def admit(self, method: str, context: Any) -> None:
        identity, _ = self.caller(context)
        ident_id = identity.id
        role = NODE_UNIT if identity.kind == objects.Identity.KIND_NODE else identity.role
        if not may_call(role, method):
            who = f"node {identity.name}" if role == NODE_UNIT else \
                f"user {identity.name} ({role})"
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{who} may not call {method.rsplit('/', 1)[-1]}")
        kind, _, name = ident_id.partition("/")
        set_actor(f"{kind}:{name}")
        task = asyncio.current_task()
        if task is not None:
            self._calls[ident_id].add(task)

    async def run(self) -> None:
        """Ends the open calls of identities that are deleted or lose a certificate's serial."""
        watch = self._store.watch()
        try:
            async for change in watch:
                if change.kind != "identity" or not isinstance(change.obj, objects.Identity):
                    continue
                calls = self._calls.get(change.obj.id)
                if calls is None:
                    continue
                if change.action == "delete":
                    for task in list(calls):
                        task.cancel(REVOKED)  # the RequestGuard ends the call UNAUTHENTICATED
                    self._calls.pop(change.obj.id, None)
                    self._certs = {p: c for p, c in self._certs.items()
                                   if c[0] != change.obj.id}
        finally:
            watch.close()

    # The cluster's settings, users and the join token.

    async def prepare(self) -> None:
        def ensure(tx: WriteTx) -> None:
            if tx.get_cluster() is None:
                tx.create(objects.Cluster(id=CLUSTER_ID, agent_token_secret=new_secret()))

        await self._store.update(ensure)

    def token(self) -> JoinToken:
        cluster = self._store.view().get_cluster()
        assert cluster is not None, "prepare() makes it"
        return self.ca.token(cluster.agent_token_secret)

    async def rotate_token(self) -> JoinToken:
        def rotate(tx: WriteTx) -> None:
            cluster = tx.get_cluster()
            assert cluster is not None
            cluster.agent_token_secret = new_secret()
            tx.update(cluster)

        await self._store.update(rotate)
        log.info("the agents' join token was rotated")
        return self.token()

    async def add_user(self, name: str, role: str, *, replace: bool = False,
                       ) -> tuple[objects.Identity, bytes, bytes]:
        """(identity, certificate, key) of a new user; ValueError for a bad name or role,
        ExistsError for a taken name (unless `replace`: a new certificate beside the old)."""
        if not USER_NAME.fullmatch(name):
            raise ValueError(f"user name {name!r}: expected a lowercase letter, then up to 62 "
                             "lowercase letters, digits, '_', '.' or '-'")
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        issued = self.ca.issue(name, role, lifetime=USER_LIFETIME)
        serial = describe(issued.certificate).serial

        def add(tx: WriteTx) -> objects.Identity:
            current = tx.get_identity(identity_id("user", name))
            if current is not None and replace:
                del current.serials[:-KEPT_SERIALS + 1]
                current.serials.append(serial)
                current.role = role
                tx.update(current)
                return current
            identity = objects.Identity(id=identity_id("user", name),
                                        kind=objects.Identity.KIND_USER, name=name, role=role,
                                        serials=[serial])
            tx.create(identity)  # ExistsError when the name is taken
            return identity

        identity = await self._store.update(add)
        return identity, issued.certificate, issued.key

    async def remove_identity(self, kind: str, name: str) -> bool:
        def remove(tx: WriteTx) -> bool:
            identity = tx.get_identity(identity_id(kind, name))
            if identity is None:
                return False
            tx.delete(identity)
            return True

        return await self._store.update(remove)

    def users(self) -> list[objects.Identity]:
        return sorted((i for i in self._store.view().identities()
                       if i.kind == objects.Identity.KIND_USER), key=lambda i: i.name)

    async def write_admin_credentials(self, path: pathlib.Path, address: str) -> None:
        """Writes the local admin's credentials to `path` unless a file there already works
        with this cluster (its CA, a certificate in force for a while yet)."""
        with contextlib.suppress(ValueError, OSError):
            creds = Credentials.load(path)
            info = describe(creds.certificate)
            identity = self._store.view().get_identity(identity_id("user", info.common_name))
            if (creds.ca == self.ca.pem and identity is not None
                    and info.serial in identity.serials and info.left() > 30 * 86400):
                return
        with acting_as("manager"):
            identity, certificate, key = await self.add_user(LOCAL_ADMIN, "admin", replace=True)
        Credentials(manager=address, user=LOCAL_ADMIN, role="admin", ca=self.ca.pem,
                    certificate=certificate, key=key).save(path)
        log.info("wrote the credentials of the local admin %r to %s", LOCAL_ADMIN, path)

    # Node certificates: joins (the join port) and renewals (the manager's port).

    async def join(self, request: dispatcher.JoinRequest, peer: str) -> dispatcher.NodeCertificate:
        """Raises Refused with the status the call ends with. A wrong token counts against
        the caller's address: past JOIN_FAILURES in JOIN_WINDOW_S its wrong tokens get
        RESOURCE_EXHAUSTED and one log line per interval. The right token is never held back,
        so agents behind the same address as a misconfigured one still join."""
        try:
            self._check_token(request.token)
        except Refused as refused:
            address = _host_of(peer)
            at = time.monotonic()
            failures = self._failures[address]
            while failures and failures[0] < at - JOIN_WINDOW_S:
                failures.popleft()
            failures.append(at)
            if len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures = defaultdict(deque, {a: f for a, f in self._failures.items()
                                                     if f and f[-1] >= at - JOIN_WINDOW_S})
            if len(failures) > JOIN_FAILURES:
                self._report.warning("refused a join from %s: %d failed joins in %g s",
                                     address, len(failures), JOIN_WINDOW_S)
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"too many failed joins from {address}: check the token "
                              "(`podium token agent` on the manager prints it)") from None
            self._report.warning("refused a join from %s: %s", address, refused.details)
            raise
        return await self._join(request)

    def _check_token(self, text: str) -> None:
        try:
            token = JoinToken.parse(text)
        except TokenError as err:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"token: {err}") from None
        current = self.token()
        if token.ca_digest != current.ca_digest or not secrets_equal(token.secret,
                                                                      current.secret):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          "wrong or rotated join token: `podium token agent` on the manager "
                          "prints the current one")

    async def _join(self, request: dispatcher.JoinRequest) -> dispatcher.NodeCertificate:
        if not NODE_ID.fullmatch(request.node_id):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"node_id {request.node_id!r}: expected 1 to 64 of a-z, 0-9 and '-', "
                          "starting with a letter or digit")
        try:
            key = read_request(request.csr)
        except ValueError as err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        digest = public_key_digest(key)
        certificate = self.ca.sign(key, request.node_id, NODE_UNIT, lifetime=self._node_lifetime)
        serial = describe(certificate).serial

        def admit(tx: WriteTx) -> None:
            identity = tx.get_identity(identity_id("node", request.node_id))
            if identity is None:
                tx.create(objects.Identity(
                    id=identity_id("node", request.node_id), kind=objects.Identity.KIND_NODE,
                    name=request.node_id, serials=[serial], key_sha256=digest))
                return
            if identity.key_sha256 != digest:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS,
                              f"node {request.node_id} has joined with another key: a node "
                              "rejoins with its own data dir, a new host gets a new node id")
            identity.serials[:] = [serial]  # its older certificates have expired or are lost
            tx.update(identity)

        with acting_as(f"node:{request.node_id}"):
            await self._store.update(admit)
        log.info("node %s joined", request.node_id)
        return dispatcher.NodeCertificate(certificate=certificate, ca=self.ca.pem)

    async def renew(self, node_id: str, csr: bytes) -> dispatcher.NodeCertificate:
        try:
            key = read_request(csr)
        except ValueError as err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        certificate = self.ca.sign(key, node_id, NODE_UNIT, lifetime=self._node_lifetime)
        serial = describe(certificate).serial
        digest = public_key_digest(key)

        def renew(tx: WriteTx) -> None:
            identity = tx.get_identity(identity_id("node", node_id))
            if identity is None:
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"node {node_id} was removed")
            del identity.serials[:-KEPT_SERIALS + 1]
            identity.serials.append(serial)
            identity.key_sha256 = digest
            tx.update(identity)

        await self._store.update(renew)
        return dispatcher.NodeCertificate(certificate=certificate, ca=self.ca.pem)


class JoinServicer(dispatcher_grpc.JoinServicer):  # type: ignore[misc]
    def __init__(self, authority: Authority) -> None:
        self._authority = authority

    async def JoinCluster(self, request: dispatcher.JoinRequest,
                          context: grpc.aio.ServicerContext) -> dispatcher.NodeCertificate:
        try:
            return await self._authority.join(request, context.peer())
        except Refused as refused:
            await context.abort(refused.code, refused.details)
            raise


def _host_of(peer: str) -> str:
    """"ipv4:10.0.0.5:41000" -> "10.0.0.5"; "ipv6:[::1]:41000" -> "::1"."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]") or peer


def local_names(listen: str) -> list[str]:
    """The names and addresses a manager listening on `listen` is reached at by default."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    names = [socket.gethostname()]
    if host and host not in ("0.0.0.0", "::", ""):
        names.append(host)
    return names

