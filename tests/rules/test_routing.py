"""Balance names: the Compose extension, the API's enum and the mesh's listeners use one set."""

from __future__ import annotations

import pytest

from podium.agent.proxy import BALANCERS
from podium.agent.routing import RoutingTable
from podium.client.compose import SpecError, load_stack
from podium.rules.routing import BALANCE, balance_name
from podium.v1 import dispatcher, objects


@pytest.mark.parametrize("name", sorted(BALANCE))
def test_a_compose_name_reaches_the_mesh_unchanged(name: str) -> None:
    [spec] = load_stack("services:\n  web:\n    image: x\n    ports: ['8080:80']\n"
                        f"    x-podium-routing: {{balance: {name}}}\n")
    assert spec.routing.balance == BALANCE[name] and balance_name(spec.routing.balance) == name
    table = RoutingTable()
    message = dispatcher.Endpoints(complete=True)
    message.services.add(service_id="s", service_name="web", ports=list(spec.ports),
                         routing=spec.routing)
    table.apply(message)
    assert table.listeners()[8080].balance == name
    assert name in BALANCERS  # the proxy has a balancer of that name


def test_other_names_are_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(SpecError, match="least-connections"):
        load_stack("services:\n  web:\n    image: x\n    x-podium-routing: {balance: least_conn}\n")


def test_every_api_value_has_a_name() -> None:
    assert {balance_name(v) for v in objects.Routing.Balance.values()} <= set(BALANCE)
