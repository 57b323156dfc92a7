"""Service names: the Compose parser and the Control API accept the same names."""

from __future__ import annotations

import pytest

from podium.client.compose import SpecError, load_stack
from podium.manager.controlapi import RequestError, validate_spec
from podium.rules.names import is_valid_name
from podium.v1 import objects

NAMES = ["web", "w", "web-1.a_b", "9lives", "a" * 63, "a" * 64, "-web", "_web", "web!", "wéb", ""]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:10] or "empty")
def test_compose_and_the_api_agree(name: str) -> None:
    spec = objects.ServiceSpec(name=name)
    spec.container.image = "x"
    try:
        validate_spec(spec)
        api_accepts = True
    except RequestError as err:
        assert "spec.name" in str(err) and "1-63 characters" in str(err)
        api_accepts = False
    try:
        [parsed] = load_stack(f"services:\n  {name!r}:\n    image: x\n")
        compose_accepts = True
        assert parsed.name == name
    except SpecError as err:
        assert "service name" in str(err)
        compose_accepts = False
    assert compose_accepts == api_accepts == is_valid_name(name)
