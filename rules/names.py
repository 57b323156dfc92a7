"""Names of services, stacks and tasks: one rule for the Compose parser, the Control API and
what people are shown.

A name is 1-63 characters of letters, digits, '_', '.' and '-', starting with a letter or digit
(it becomes part of container names and, for services of a stack, STACK_KEY).
"""

from __future__ import annotations

import re
from typing import TypeGuard

from podium.v1 import objects

MAX_LENGTH = 63
RULE = (f"1-{MAX_LENGTH} characters of letters, digits, '_', '.' and '-', starting with a letter "
        "or digit")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def is_valid_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and len(name) <= MAX_LENGTH and bool(_NAME.fullmatch(name))


def task_name(task: objects.Task, node_names: dict[str, str] | None = None) -> str:
    """How people see a task: SERVICE.SLOT, or SERVICE.NODE for a global service's task (the
    node's name when `node_names` has it, else the start of its id)."""
    if task.slot:
        return f"{task.service_name}.{task.slot}"
    return f"{task.service_name}.{(node_names or {}).get(task.node_id, task.node_id[:12])}"
