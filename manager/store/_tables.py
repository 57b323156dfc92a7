"""In-memory tables with the indexes the manager's loops need, and the
transaction that stages writes over them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar, cast

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from podium.manager.store._base import (
    Change,
    ConflictError,
    ExistsError,
    Kind,
    NotFoundError,
    Obj,
    current_actor,
    kind_of,
)
from podium.rules.taskstate import is_pending
from podium.v1 import objects

M = TypeVar("M", bound=Message)
CLUSTER_ID = "cluster"  # the one Cluster object's id


class Tables:
    """The committed state. Objects here are never mutated in place: a commit
    replaces them, so read views can hand them out without copying."""

    def __init__(self) -> None:
        self.objects: dict[Kind, dict[str, Obj]] = {
            "node": {}, "service": {}, "task": {}, "secret": {}, "identity": {}, "cluster": {}}
        self.tasks_by_service: defaultdict[str, set[str]] = defaultdict(set)
        self.tasks_by_node: defaultdict[str, set[str]] = defaultdict(set)
        # Tasks waiting for the scheduler: a pass with none to place reads nothing else.
        self.pending: set[str] = set()
        self.service_names: dict[str, str] = {}
        self.node_names: dict[str, str] = {}
        # Counts every change applied: a reader that saw revision R and finds R again knows
        # that nothing changed in between.
        self.revision = 0

    def put(self, obj: Obj) -> None:
        self.revision += 1
        kind = kind_of(obj)
        old = self.objects[kind].get(obj.id)
        if old is not None:
            self._unindex(old)
        self.objects[kind][obj.id] = obj
        self._index(obj)

    def remove(self, kind: Kind, id: str) -> None:
        self.revision += 1
        old = self.objects[kind].pop(id, None)
        if old is not None:
            self._unindex(old)

    def _index(self, obj: Obj) -> None:
        if isinstance(obj, objects.Task):
            self.tasks_by_service[obj.service_id].add(obj.id)
            if obj.node_id:
                self.tasks_by_node[obj.node_id].add(obj.id)
            if is_pending(obj):
                self.pending.add(obj.id)
        elif isinstance(obj, objects.Service):
            self.service_names[obj.spec.name] = obj.id
        elif isinstance(obj, objects.Node):
            self.node_names[obj.description.name] = obj.id

    def _unindex(self, obj: Obj) -> None:
        if isinstance(obj, objects.Task):
            _discard(self.tasks_by_service, obj.service_id, obj.id)
            self.pending.discard(obj.id)
            if obj.node_id:
                _discard(self.tasks_by_node, obj.node_id, obj.id)
        elif isinstance(obj, objects.Service):
            if self.service_names.get(obj.spec.name) == obj.id:
                del self.service_names[obj.spec.name]
        elif isinstance(obj, objects.Node):
            if self.node_names.get(obj.description.name) == obj.id:
                del self.node_names[obj.description.name]


def clone(obj: M) -> M:
    copy = type(obj)()
    copy.CopyFrom(obj)
    return copy


def _discard(index: defaultdict[str, set[str]], key: str, id: str) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(id)
        if not ids:
            del index[key]


class ReadView:
    """Read access to the committed tables (shared objects: do not mutate)."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _get(self, kind: Kind, id: str) -> Obj | None:
        return self._t.objects[kind].get(id)

    @property
    def revision(self) -> int:
        """The committed state's revision: equal in two reads when nothing changed between
        them (a transaction's staged writes do not count)."""
        return self._t.revision

    def get_node(self, id: str) -> objects.Node | None:
        return cast("objects.Node | None", self._get("node", id))

    def get_service(self, id: str) -> objects.Service | None:
        return cast("objects.Service | None", self._get("service", id))

    def get_task(self, id: str) -> objects.Task | None:
        return cast("objects.Task | None", self._get("task", id))

    def nodes(self) -> Iterable[objects.Node]:
        return cast("list[objects.Node]", list(self._t.objects["node"].values()))

    def services(self) -> Iterable[objects.Service]:
        return cast("list[objects.Service]", list(self._t.objects["service"].values()))

    def tasks(self) -> Iterable[objects.Task]:
        return cast("list[objects.Task]", list(self._t.objects["task"].values()))

    def get_secret(self, id: str) -> objects.Secret | None:
        return cast("objects.Secret | None", self._get("secret", id))

    def secrets(self) -> Iterable[objects.Secret]:
        return cast("list[objects.Secret]", list(self._t.objects["secret"].values()))

    def get_identity(self, id: str) -> objects.Identity | None:
        return cast("objects.Identity | None", self._get("identity", id))

    def identities(self) -> Iterable[objects.Identity]:
        return cast("list[objects.Identity]", list(self._t.objects["identity"].values()))

    def get_cluster(self) -> objects.Cluster | None:
        return cast("objects.Cluster | None", self._get("cluster", CLUSTER_ID))

    def tasks_of_service(self, service_id: str) -> list[objects.Task]:
        ids = self._t.tasks_by_service.get(service_id, ())
        return [t for t in (self.get_task(i) for i in ids) if t is not None]

    def tasks_of_node(self, node_id: str) -> list[objects.Task]:
        ids = self._t.tasks_by_node.get(node_id, ())
        return [t for t in (self.get_task(i) for i in ids) if t is not None]

    def pending_tasks(self) -> list[objects.Task]:
        """The tasks waiting to be placed (is_pending), read from an index."""
        return [t for t in (self.get_task(i) for i in self._t.pending) if t is not None]

    def service_by_name(self, name: str) -> objects.Service | None:
        id = self._t.service_names.get(name)
        return None if id is None else self.get_service(id)

    def node_by_name(self, name: str) -> objects.Node | None:
        id = self._t.node_names.get(name)
        return None if id is None else self.get_node(id)


class Transaction(ReadView):
    """Stages writes; reads see them. Getters return private copies."""

    def __init__(self, tables: Tables, now: Timestamp) -> None:
        super().__init__(tables)
        self._now = now
        # (kind, id) -> staged object, or None for a delete. Insertion order is
        # the order changes are published in.
        self.staged: dict[tuple[Kind, str], Obj | None] = {}
        self.changes: list[Change] = []
        # Ids of the staged tasks by service and by node (as staged), so that listing a
        # service's or a node's tasks reads only those of the staged ones.
        self._staged_by_service: defaultdict[str, set[str]] = defaultdict(set)
        self._staged_by_node: defaultdict[str, set[str]] = defaultdict(set)

    @property
    def writes(self) -> int:
        """How many writes this transaction staged so far (a reader can tell whether its own
        writes changed what it read)."""
        return len(self.changes)

    def _get(self, kind: Kind, id: str) -> Obj | None:
        obj = self._current(kind, id)
        return None if obj is None else clone(obj)

    def _current(self, kind: Kind, id: str) -> Obj | None:
        key = (kind, id)
        return self.staged[key] if key in self.staged else self._t.objects[kind].get(id)

    def _list(self, kind: Kind) -> list[Obj]:
        ids = set(self._t.objects[kind])
        ids.update(i for k, i in self.staged if k == kind)
        return [o for o in (self._get(kind, i) for i in sorted(ids)) if o is not None]

    def nodes(self) -> Iterable[objects.Node]:
        return cast("list[objects.Node]", self._list("node"))

    def services(self) -> Iterable[objects.Service]:
        return cast("list[objects.Service]", self._list("service"))

    def tasks(self) -> Iterable[objects.Task]:
        return cast("list[objects.Task]", self._list("task"))

    def secrets(self) -> Iterable[objects.Secret]:
        return cast("list[objects.Secret]", self._list("secret"))

    def identities(self) -> Iterable[objects.Identity]:
        return cast("list[objects.Identity]", self._list("identity"))

    def tasks_of_service(self, service_id: str) -> list[objects.Task]:
        return [clone(t) for t in self.peek_tasks_of_service(service_id)]

    def tasks_of_node(self, node_id: str) -> list[objects.Task]:
        return [clone(t) for t in self.peek_tasks_of_node(node_id)]

    def pending_tasks(self) -> list[objects.Task]:
        ids = self._t.pending | {i for k, i in self.staged if k == "task"}
        tasks = cast("list[objects.Task | None]", [self._get("task", i) for i in sorted(ids)])
        return [t for t in tasks if t is not None and is_pending(t)]

    # Reads without a copy, for scanning many objects: what they return is shared with the
    # store (and with staged writes) and must not be changed; get_* gives the copy to change.
    def peek_node(self, id: str) -> objects.Node | None:
        return cast("objects.Node | None", self._current("node", id))

    def peek_tasks_of_service(self, service_id: str) -> list[objects.Task]:
        ids = self._t.tasks_by_service.get(service_id, set()) | self._staged_by_service.get(
            service_id, set())
        tasks = cast("list[objects.Task | None]", [self._current("task", i) for i in sorted(ids)])
        return [t for t in tasks if t is not None and t.service_id == service_id]

    def peek_tasks_of_node(self, node_id: str) -> list[objects.Task]:
        ids = self._t.tasks_by_node.get(node_id, set()) | self._staged_by_node.get(
            node_id, set())
        tasks = cast("list[objects.Task | None]", [self._current("task", i) for i in sorted(ids)])
        return [t for t in tasks if t is not None and t.node_id == node_id]

    def service_by_name(self, name: str) -> objects.Service | None:
        for (kind, _), obj in self.staged.items():
            if kind == "service" and isinstance(obj, objects.Service) and obj.spec.name == name:
                return self.get_service(obj.id)
        found = super().service_by_name(name)
        return None if found is None else self.get_service(found.id)

    def node_by_name(self, name: str) -> objects.Node | None:
        for (kind, _), obj in self.staged.items():
            if kind == "node" and isinstance(obj, objects.Node) and obj.description.name == name:
                return self.get_node(obj.id)
        found = super().node_by_name(name)
        return None if found is None else self.get_node(found.id)

    def create(self, obj: Obj) -> None:
        kind = kind_of(obj)
        if not obj.id:
            raise ValueError(f"{kind} has no id")
        if self._current(kind, obj.id) is not None:
            raise ExistsError(f"{kind} {obj.id} exists already")
        if isinstance(obj, objects.Service) and self.service_by_name(obj.spec.name):
            raise ExistsError(f"service {obj.spec.name!r} exists already")
        if isinstance(obj, objects.Node) and self.node_by_name(obj.description.name):
            raise ExistsError(f"node {obj.description.name!r} exists already")
        obj.meta.version = 1
        obj.meta.changed_by = current_actor()
        obj.meta.created.CopyFrom(self._now)
        obj.meta.updated.CopyFrom(self._now)
        self._stage("create", kind, obj)

    def update(self, obj: Obj) -> None:
        kind = kind_of(obj)
        current = self._check(kind, obj)
        if isinstance(obj, objects.Service) and obj.spec.name != current.spec.name:  # type: ignore[union-attr]
            raise ConflictError("a service cannot be renamed")
        obj.meta.version += 1
        obj.meta.changed_by = current_actor()
        obj.meta.updated.CopyFrom(self._now)
        self._stage("update", kind, obj)

    def delete(self, obj: Obj) -> None:
        kind = kind_of(obj)
        self._check(kind, obj)
        self.staged[(kind, obj.id)] = None
        self.changes.append(Change("delete", kind, obj, current_actor()))

    def _check(self, kind: Kind, obj: Obj) -> Obj:
        current = self._current(kind, obj.id)
        if current is None:
            raise NotFoundError(f"{kind} {obj.id} not found")
        if current.meta.version != obj.meta.version:
            raise ConflictError(
                f"{kind} {obj.id} is at version {current.meta.version}, "
                f"not {obj.meta.version}: read it again"
            )
        return current

    def _stage(self, action: str, kind: Kind, obj: Obj) -> None:
        stored = clone(obj)
        self.staged[(kind, obj.id)] = stored
        if isinstance(stored, objects.Task):
            self._staged_by_service[stored.service_id].add(stored.id)
            if stored.node_id:
                self._staged_by_node[stored.node_id].add(stored.id)
        self.changes.append(Change(action, kind, stored, stored.meta.changed_by))  # type: ignore[arg-type]
