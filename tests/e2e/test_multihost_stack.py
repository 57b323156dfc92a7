"""The three-tier application of issue 12, on simulated hosts with real engines: a published
`front` calls `back` (2 replicas, no published port) by name, which calls `store`, keeping its
count in a named volume and reading a password from a secret. Every host's published port
answers through the chain, spread over both `back` replicas; a second stack cannot reach `back`;
a crashed host of a `back` replica costs no request after failover; a restarted `store` keeps its
data; the secret's value is nowhere but in `store`'s container."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator

import pytest

from podium.lab.hosts import HostCluster, requests_result
from tests.helpers import IMAGE, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

PORT = 8080
CHAIN = f"""
name: shop
services:
  front:
    image: {IMAGE}
    environment: {{UPSTREAM: "back:80", UPSTREAM_PATH: /cgi-bin/call, NAME: front}}
    ports: ["{PORT}:80"]
    stop_grace_period: 1s
    deploy: {{placement: {{constraints: ["node.labels.host == h1"]}}}}
    x-podium-probe: {{http: {{port: 80, path: /cgi-bin/call}}, interval: 1s}}
  back:
    image: {IMAGE}
    environment: {{UPSTREAM: "store:80", UPSTREAM_PATH: /cgi-bin/kv, NAME: back}}
    expose: ["80"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
  store:
    image: {IMAGE}
    expose: ["80"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    secrets: [password]
    deploy: {{placement: {{constraints: ["node.labels.host == h1"]}}}}
volumes:
  data: {{}}
secrets:
  password:
    file: ./password.txt
"""
PASSWORD = "correct-horse-battery-staple"
OTHER = f"""
name: other
services:
  probe:
    image: {IMAGE}
    expose: ["80"]
"""
ANSWER = re.compile(r"front (\w+) -> back (\w+) -> store (\w+) count=(\d+) password=yes")


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=3) as cluster:
        (cluster.root / "password.txt").write_text(PASSWORD + "\n")
        yield cluster


def _chain(hosts: HostCluster, host: str) -> re.Match[str]:
    body = hosts.http_get(host, f"http://{hosts.hosts[host].address}:{PORT}/cgi-bin/call")
    found = ANSWER.search(body)
    assert found, f"through {host}: {body!r}"
    return found


def _container_on(hosts: HostCluster, service: str) -> tuple[str, str]:
    """(host, container id) of a running task of `service`."""
    for host in hosts.names:
        out = hosts.docker(host, "ps", "-q", "--filter", f"label=io.podium.service.name={service}")
        if out.split():
            return host, out.split()[0]
    raise AssertionError(f"no running container of {service}")


def test_services_reach_each_other_by_name_across_hosts(hosts: HostCluster) -> None:
    hosts.deploy(CHAIN, name="shop")
    # Every host's published port answers through the whole chain, and both back replicas serve.
    backs: set[str] = set()

    def every_host_answers() -> bool:
        for host in hosts.names:
            backs.add(_chain(hosts, host).group(2))
        return len(backs) == 2

    eventually(every_host_answers, timeout=60, what="each host answers; both backs serve")

    # Another stack's container: `back` does not resolve there, and back's virtual IP refuses it.
    hosts.deploy(OTHER, name="other")
    host, probe = eventually(lambda: _container_on(hosts, "other_probe"), timeout=30,
                             what="the other stack's container")
    vip = json.loads(hosts.ok("inspect", "shop_back"))["virtual_ip"]
    lookup = hosts.docker(host, "exec", probe, "sh", "-c", "nslookup back 2>&1 || true")
    assert vip not in lookup
    request = "printf 'GET /cgi-bin/kv HTTP/1.0\\r\\n\\r\\n'"
    reached = hosts.docker(host, "exec", probe, "sh", "-c", f"{request} | nc -w 2 {vip} 80; true")
    assert "store" not in reached, reached
    # ... while shop's own containers resolve it to that address.
    host, front = _container_on(hosts, "shop_front")
    assert vip in hosts.docker(host, "exec", front, "sh", "-c", "nslookup back")

    # Restarting store's task keeps its data: the count goes on from where it was.
    before = int(_chain(hosts, "h1").group(4))
    store_host, store = _container_on(hosts, "shop_store")
    hosts.docker(store_host, "kill", store)
    eventually(lambda: int(_chain(hosts, "h2").group(4)) > before, timeout=60,
               what="store answers again, its count kept")

    # The secret's value is in store's container only: not in front's or back's, not in the
    # answers, not in what the CLI shows.
    assert PASSWORD in hosts.docker(store_host, "exec", _container_on(hosts, "shop_store")[1],
                                    "cat", "/run/secrets/password")
    for service in ("shop_front", "shop_back"):
        where, container = _container_on(hosts, service)
        listing = hosts.docker(where, "exec", container, "sh", "-c",
                               "cat /run/secrets/* 2>/dev/null; env; true")
        assert PASSWORD not in listing
    shown = "".join(hosts.ok(*args) for args in (
        ("inspect", "shop_store"), ("ps", "-a"), ("services",), ("secret", "ls")))
    assert PASSWORD not in shown
    assert PASSWORD not in _chain(hosts, "h3").group(0)


def test_a_crashed_host_of_a_back_replica_costs_no_request_after_failover(
        hosts: HostCluster) -> None:
    hosts.deploy(CHAIN, name="shop")
    eventually(lambda: all(_chain(hosts, h) for h in hosts.names), timeout=60,
               what="the chain answers on every host")
    back_hosts = sorted({t["node"] for t in hosts.json("ps", "shop_back")
                         if t["desired"] == "running"})
    # front and store run on h1 (their constraints): a back replica elsewhere is the victim.
    victim = next(h for h in back_hosts if h != "h1")
    client_host = next(h for h in hosts.names if h != victim)
    url = f"http://{hosts.hosts[client_host].address}:{PORT}/cgi-bin/call"
    client = hosts.start_requests(client_host, url, seconds=12, most=5000)
    hosts.crash(victim)
    result = requests_result(client)
    # Requests under way when the host died may fail until its node is down (the mesh stops
    # routing to it); after that none may.
    late = [f for f in result["failures"] if f[0] > 4.0]
    assert result["count"] > 20
    assert not late, result["failures"][:5]
