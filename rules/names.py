"""Names of services and stacks: one rule for the Compose parser and the Control API.

A name is 1-63 characters of letters, digits, '_', '.' and '-', starting with a letter or digit
(it becomes part of container names and, for services of a stack, STACK_KEY).
"""

from __future__ import annotations

import re
from typing import TypeGuard

MAX_LENGTH = 63
RULE = (f"1-{MAX_LENGTH} characters of letters, digits, '_', '.' and '-', starting with a letter "
        "or digit")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def is_valid_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and len(name) <= MAX_LENGTH and bool(_NAME.fullmatch(name))
