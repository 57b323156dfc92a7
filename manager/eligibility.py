"""Which nodes take new tasks: the one rule the scheduler, its commit and the orchestrator share.

A node takes new tasks when its status is READY, its container engine answers its agent and its
availability is ACTIVE. `ineligible(node)` returns why it does not ("" when it does), worded for
the scheduler's reasons ("2 nodes not ready", "1 node with engine not answering").

A node whose engine does not answer stays READY and keeps its tasks (their containers most likely
still run and the mesh still reaches them): it only takes nothing new until the engine answers.
"""

from __future__ import annotations

from podium.v1 import objects

NOT_READY = "not ready"
NOT_ACTIVE = "paused/draining"
ENGINE_NOT_ANSWERING = "with engine not answering"


def ineligible(node: objects.Node) -> str:
    """Why `node` takes no new tasks, or "" when it does."""
    if node.status.state != objects.NodeStatus.STATE_READY:
        return NOT_READY
    if node.status.engine_unresponsive:
        return ENGINE_NOT_ANSWERING
    if node.spec.availability != objects.NodeSpec.AVAILABILITY_ACTIVE:
        return NOT_ACTIVE
    return ""


def is_eligible(node: objects.Node) -> bool:
    return not ineligible(node)
