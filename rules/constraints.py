"""Placement constraints: the one grammar the Compose parser, the Control API and the scheduler
accept.

    node.labels.zone == a      node.name != db1      node.id == 3f2a...      node.hostname == h1

`node.hostname` is the node's name. Keys are case-insensitive (label names are not); the value is
everything after the operator, trimmed, and may not contain another operator. `str(constraint)`
is the canonical form the manager stores and reasons quote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

FORM = "'node.name|node.id|node.hostname|node.labels.KEY ==|!= VALUE'"


@dataclass(frozen=True, slots=True)
class Constraint:
    """One placement expression; ``attribute`` is "id", "name" or "label" (named by ``label``)."""

    attribute: str
    label: str
    equal: bool
    value: str

    def matches(self, node_id: str, name: str, labels: Mapping[str, str]) -> bool:
        if self.attribute == "id":
            actual: str | None = node_id
        elif self.attribute == "name":
            actual = name
        else:
            actual = labels.get(self.label)
        # An absent label is unequal to every value, so `!=` matches it.
        return (actual == self.value) == self.equal

    def __str__(self) -> str:
        key = f"node.labels.{self.label}" if self.attribute == "label" else f"node.{self.attribute}"
        return f"{key} {'==' if self.equal else '!='} {self.value}"


_CONSTRAINT = re.compile(r"\s*(?P<key>[^\s=!]+)\s*(?P<op>==|!=)\s*(?P<value>.*?)\s*")
_ATTRIBUTES = {"node.id": "id", "node.name": "name", "node.hostname": "name"}


def parse_constraint(expr: str) -> Constraint:
    """Parse "node.labels.zone == a", "node.name != db1", node.id, node.hostname (= node.name)."""
    match = _CONSTRAINT.fullmatch(expr)
    if match is None:
        raise ValueError(f"invalid constraint {expr!r}: expected '<key> == <value>' or "
                         "'<key> != <value>'")
    key, op, value = match["key"], match["op"], match["value"]
    if not value or "==" in value or "!=" in value:
        raise ValueError(f"invalid constraint {expr!r}: expected one value after {op!r}")
    if key.lower() in _ATTRIBUTES:
        return Constraint(_ATTRIBUTES[key.lower()], "", op == "==", value)
    prefix = "node.labels."
    if key[: len(prefix)].lower() == prefix and len(key) > len(prefix):
        return Constraint("label", key[len(prefix):], op == "==", value)
    raise ValueError(f"invalid constraint {expr!r}: unknown key {key!r}; expected node.id, "
                     "node.name, node.hostname or node.labels.<name>")
