"""The placement constraint grammar: one parser, and the Compose parser accepts exactly what the
scheduler accepts."""

from __future__ import annotations

import pytest

from podium.client.compose import SpecError, load_stack
from podium.rules.constraints import Constraint, parse_constraint


def test_parse_constraint_forms() -> None:
    assert parse_constraint("node.labels.zone == a") == Constraint("label", "zone", True, "a")
    assert parse_constraint("node.name!=db1") == Constraint("name", "", False, "db1")
    assert parse_constraint(" node.hostname == h1 ") == Constraint("name", "", True, "h1")
    assert parse_constraint("node.id == n1") == Constraint("id", "", True, "n1")
    assert str(parse_constraint("node.labels.zone==a")) == "node.labels.zone == a"


@pytest.mark.parametrize("expr", ["", "zone", "node.labels.zone = a", "node.labels.zone ==",
                                  "node.labels. == a", "node.ip == 1.2.3.4", "a == b == c"])
def test_parse_constraint_rejects(expr: str) -> None:
    with pytest.raises(ValueError, match="invalid constraint"):
        parse_constraint(expr)


EXPRESSIONS = [
    "node.labels.zone == a", "node.name!=db1", " node.hostname == h1 ", "node.id == n1",
    "NODE.LABELS.Zone == a", "node.labels.zone == a == b", "node.labels.zone == a != b",
    "node.labels.zone = a", "node.labels. == a", "node.ip == 1.2.3.4", "zone == a", "",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_compose_accepts_exactly_what_the_scheduler_accepts(expr: str) -> None:
    text = ("services:\n  web:\n    image: x\n    deploy:\n      placement:\n"
            f"        constraints: [{expr!r}]\n")
    try:
        expected = str(parse_constraint(expr))
    except ValueError:
        with pytest.raises(SpecError, match=r"deploy\.placement\.constraints"):
            load_stack(text)
        return
    [spec] = load_stack(text)
    assert list(spec.placement.constraints) == [expected]
