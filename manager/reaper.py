"""Reaper: deletes tasks that are over, and trims each slot's history.

A task whose desired state is REMOVED is deleted once its agent confirms its
container is gone (status REMOVED), or at once when no agent can hold a
container for it: it never reached a node, or its node is down (that agent
removes the container itself when it reconciles on reconnect). Of the tasks
that ended in a slot, the newest `history` are kept for `podium ps`; older ones
are marked REMOVED.
"""

from __future__ import annotations

from collections import defaultdict

from podium.manager._loop import ReconcileLoop
from podium.manager.store import Change, ReadTx, Store, WriteTx
from podium.v1 import objects

REMOVED = objects.TASK_STATE_REMOVED
SHUTDOWN = objects.TASK_STATE_SHUTDOWN


class Reaper(ReconcileLoop):
    """The dirty set holds service ids."""

    name = "reaper"

    def __init__(self, *, store: Store, history: int = 3) -> None:
        super().__init__(store=store)
        self._history = history

    def seed(self, view: ReadTx) -> None:
        for task in view.tasks():
            if task.desired_state >= SHUTDOWN:
                self.mark(task.service_id)

    def observe(self, change: Change) -> None:
        obj = change.obj
        if isinstance(obj, objects.Task) and obj.desired_state >= SHUTDOWN:
            self.mark(obj.service_id)
        elif isinstance(obj, objects.Node) and obj.status.state == objects.NodeStatus.STATE_DOWN:
            for task in self._store.view().tasks_of_node(obj.id):
                if task.desired_state == REMOVED:
                    self.mark(task.service_id)

    async def reconcile(self, dirty: set[str]) -> None:
        def apply(tx: WriteTx) -> None:
            for service_id in dirty:
                self._reap(tx, service_id)

        await self._store.update(apply)

    def _reap(self, tx: WriteTx, service_id: str) -> None:
        # Read without copies (a service of thousands of live tasks costs no clone of each);
        # only a task written is copied.
        ended: defaultdict[tuple[int, str], list[objects.Task]] = defaultdict(list)
        for task in tx.peek_tasks_of_service(service_id):
            if task.desired_state == REMOVED:
                if self._container_gone(tx, task):
                    tx.delete(task)
            elif task.desired_state == SHUTDOWN:
                ended[(task.slot, task.node_id if task.slot == 0 else "")].append(task)
        for tasks in ended.values():
            tasks.sort(key=lambda t: t.meta.created.ToNanoseconds(), reverse=True)
            for old in tasks[self._history :]:
                copy = tx.get_task(old.id)
                if copy is not None:
                    copy.desired_state = REMOVED
                    tx.update(copy)

    @staticmethod
    def _container_gone(tx: WriteTx, task: objects.Task) -> bool:
        if task.status.state >= REMOVED or task.status.state < objects.TASK_STATE_ASSIGNED:
            return True
        node = tx.peek_node(task.node_id)
        return node is None or node.status.state == objects.NodeStatus.STATE_DOWN
