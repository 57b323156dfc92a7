"""How the mesh routes: which replicas take new connections, which ports it serves, and the names
of its balancing policies. Shared by the manager (routing tables), the agent (its data paths) and
the client (what `podium ps` shows).
"""

from __future__ import annotations

from podium.rules.taskstate import is_live
from podium.v1 import objects

INGRESS = objects.PortConfig.PUBLISH_MODE_INGRESS

# A balancing policy's name, as the Compose extension `x-podium-routing.balance` and the mesh's
# listeners spell it, and its API value.
LEAST_CONNECTIONS = "least-connections"
ROUND_ROBIN = "round-robin"
BALANCE = {
    LEAST_CONNECTIONS: objects.Routing.BALANCE_LEAST_CONNECTIONS,
    ROUND_ROBIN: objects.Routing.BALANCE_ROUND_ROBIN,
}


def balance_name(value: int) -> str:
    """The policy's name for an API value (an unknown value: least connections, the default)."""
    for name, known in BALANCE.items():
        if known == value:
            return name
    return LEAST_CONNECTIONS


def ingress_ports(spec: objects.ServiceSpec) -> list[objects.PortConfig]:
    """The ports every node's mesh serves for the service."""
    return [p for p in spec.ports if p.mode == INGRESS and p.published_port]


# Node states whose running replicas take traffic. A node whose agent is down while its host
# answers (AGENT_DOWN) keeps its replicas in rotation: their containers keep serving, and the other
# hosts' mesh reaches them through the ports the engine published, without the agent.
SERVING_NODE_STATES = (objects.NodeStatus.STATE_READY, objects.NodeStatus.STATE_AGENT_DOWN)


def in_rotation(task: objects.Task, node: objects.Node | None) -> bool:
    """Whether the replica takes new connections through the mesh: live, running, ready (its
    check passes, or it has none) and on a node that is ready or whose agent alone is down."""
    return (
        is_live(task)
        and task.status.state == objects.TASK_STATE_RUNNING
        and task.status.ready
        and node is not None
        and node.status.state in SERVING_NODE_STATES
    )
