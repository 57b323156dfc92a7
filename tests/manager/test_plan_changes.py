"""manager.plan.changes: one readable line per changed field path, nested, repeated and maps;
a secret reference shows which stored version it mounts, nothing of its content."""

from __future__ import annotations

from podium.manager.plan import changes
from podium.v1 import objects


def base() -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name="web", replicas=3)
    spec.container.image = "app:1"
    spec.container.env["MODE"] = "fast"
    spec.container.env["OLD"] = "x"
    spec.ports.add(target_port=80, published_port=8080)
    spec.container.secrets.add(id="s1", name="token", target="token")
    return spec


def test_every_changed_path_is_one_line_in_field_order() -> None:
    old, new = base(), base()
    new.replicas = 5
    new.container.image = "app:2"
    new.container.env["MODE"] = "slow"
    del new.container.env["OLD"]
    new.container.env["NEW"] = "y"
    new.ports[0].published_port = 9090
    new.container.stop_grace_period.FromSeconds(30)
    new.container.secrets[0].id = "s2"
    versions = {"s1": ("token", 1), "s2": ("token", 2)}
    assert changes(old, new, versions) == [
        "container.image: app:1 -> app:2",
        "container.env.MODE: fast -> slow",
        "container.env.NEW: added y",
        "container.env.OLD: removed",
        "container.stop_grace_period: unset -> 30s",
        "container.secrets.token: version 1 -> version 2",
        "replicas: 3 -> 5",
        "ports[0].published_port: 8080 -> 9090",
    ]


def test_lists_of_another_length_and_enums_read_plainly() -> None:
    old, new = base(), base()
    new.ports.add(target_port=443, published_port=8443)
    new.mode = objects.ServiceSpec.MODE_GLOBAL
    new.container.command.extend(["serve", "--fast"])
    lines = changes(old, new)
    assert "mode: MODE_REPLICATED -> MODE_GLOBAL" in lines
    assert "container.command: [] -> [serve, --fast]" in lines
    assert any(line.startswith("ports: [{") for line in lines)
    assert changes(base(), base()) == []
