"""Shared by the Compose parser's tests: a file with one service `web` (image: nginx) and the
keys a test adds under it."""

from __future__ import annotations

import textwrap

import pytest

from podium.client.compose import SpecError, load_stack, read_stack
from podium.v1 import objects


def web_file(keys: str) -> str:
    """The Compose text of service 'web' (image: nginx) with `keys` (dedented) added."""
    body = textwrap.indent(textwrap.dedent(keys), "    ")
    return f"services:\n  web:\n    image: nginx\n{body}"


def web(keys: str, **kwargs: object) -> tuple[objects.ServiceSpec, list[str]]:
    """Service 'web' read by read_stack (keyword arguments passed on), and the warnings."""
    stack = read_stack(web_file(keys), **kwargs)  # type: ignore[arg-type]
    (spec,) = stack.services
    return spec, stack.warnings


def web_error(keys: str) -> str:
    """The parser's error for service 'web' with `keys`, from source stack.yml."""
    with pytest.raises(SpecError) as info:
        load_stack(web_file(keys), source="stack.yml")
    return str(info.value)
