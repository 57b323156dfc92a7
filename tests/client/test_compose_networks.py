"""Compose networks (podium.client._compose_networks) through podium.client.compose.read_stack."""

from __future__ import annotations

import textwrap

import pytest

from podium.client.compose import SpecError, read_stack
from podium.v1 import objects


def networks(spec: objects.ServiceSpec) -> dict[str, list[str]]:
    return {n.name: list(n.aliases) for n in spec.networks}


def read(text: str, **kwargs: object) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    stack = read_stack(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]
    return {s.name: networks(s) for s in stack.services}, stack.warnings


def test_a_service_naming_no_network_joins_the_stacks_default_one() -> None:
    found, warnings = read("""
        services:
          web: {image: nginx}
          db: {image: postgres}
    """, stack="shop")
    assert found == {"shop_web": {"shop_default": ["web"]},
                     "shop_db": {"shop_default": ["db"]}}
    assert warnings == []


def test_top_level_networks_are_scoped_renamed_or_external() -> None:
    found, _ = read("""
        name: shop
        services:
          web:
            image: nginx
            networks: [front, back, shared, legacy]
        networks:
          front:
          back: {}
          shared: {external: true}
          legacy: {name: old_net, external: true}
    """)
    assert found == {"shop_web": {"shop_front": ["web"], "shop_back": ["web"],
                                  "shared": ["web"], "old_net": ["web"]}}


def test_aliases_add_to_the_compose_key_without_repeating_the_full_name() -> None:
    found, _ = read("""
        services:
          web:
            image: nginx
            networks:
              default:
                aliases: [www, web, shop_web]
              back:
        networks:
          back:
    """, stack="shop")
    assert found == {"shop_web": {"shop_default": ["web", "www"], "shop_back": ["web"]}}


def test_without_a_stack_the_key_is_the_name_and_no_alias_repeats_it() -> None:
    found, _ = read("""
        services:
          web:
            image: nginx
            networks:
              default: {aliases: [www]}
    """)
    assert found == {"web": {"default": ["www"]}}


def test_the_folder_scope_names_networks_but_not_services() -> None:
    stack = read_stack(textwrap.dedent("""
        services:
          web: {image: nginx}
    """), fallback_stack="myapp")
    [spec] = stack.services
    assert spec.name == "web"
    assert networks(spec) == {"myapp_default": []}


def test_an_undeclared_network_is_an_error_naming_service_and_network() -> None:
    with pytest.raises(SpecError) as caught:
        read("""
            services:
              web:
                image: nginx
                networks: [front]
        """, source="compose.yaml", stack="shop")
    message = str(caught.value)
    assert message.startswith("compose.yaml: ")
    assert "web" in message and "'front'" in message
    assert "not declared" in message and "declared: default" in message


@pytest.mark.parametrize(("text", "field"), [
    ("networks: {'bad name': {}}", "networks: invalid network name 'bad name'"),
    ("networks: [back]", "networks: expected a mapping"),
    ("networks: {back: {name: 'no good'}}", "networks.back.name"),
    ("networks: {back: {external: maybe}}", "networks.back.external"),
    ("networks: {back: {driver_options: x}}", "networks.back: key 'driver_options'"),
    ("networks: {back: [1]}", "networks.back: expected a mapping"),
])
def test_bad_top_level_networks_name_the_field(text: str, field: str) -> None:
    with pytest.raises(SpecError, match="networks") as caught:
        read_stack("services:\n  web: {image: nginx}\n" + text, stack="shop")
    assert field in str(caught.value)


def test_a_bad_alias_names_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        read("""
            services:
              web:
                image: nginx
                networks:
                  default: {aliases: ["not ok"]}
        """, stack="shop")
    assert "service 'web': networks.default.aliases" in str(caught.value)
    assert "'not ok'" in str(caught.value)


def test_ignored_keys_warn_once_each() -> None:
    found, warnings = read("""
        services:
          web:
            image: nginx
            networks:
              back: {ipv4_address: 10.0.0.5, priority: 10}
          db:
            image: postgres
            networks: [back]
        networks:
          back:
            driver: overlay
            ipam: {config: [{subnet: 10.0.0.0/24}]}
    """, stack="shop")
    assert found == {"shop_web": {"shop_back": ["web"]}, "shop_db": {"shop_back": ["db"]}}
    assert len(warnings) == 4, warnings
    assert sum("ignoring driver" in w for w in warnings) == 1
    assert sum("ignoring ipam" in w for w in warnings) == 1
    assert sum("ignoring ipv4_address" in w for w in warnings) == 1
    assert sum("ignoring priority" in w for w in warnings) == 1
    assert all("back" in w for w in warnings)
