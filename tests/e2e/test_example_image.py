"""The example image (deploy/build-image.sh): its default command still serves "hello from
<hostname>", and /cgi-bin/burn burns cpu in proportion to the turns asked for (the autoscaling
bench's load) before it answers the same way; a malformed or oversized count falls back to the
default."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import IMAGE

pytestmark = pytest.mark.engine

LABEL = "io.podium.test=example-image"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


@pytest.fixture
def container(engine: None) -> Iterator[str]:
    """A container of the image with its default command; removed afterwards."""
    cid = docker("run", "-d", "--label", LABEL, "--init", IMAGE).strip()
    try:
        yield cid
    finally:
        docker("rm", "-f", cid)


def get(cid: str, path: str) -> str:
    """GET http://127.0.0.1<path> from inside the container (its own network namespace)."""
    for _ in range(50):  # httpd starts within a moment of the container
        result = subprocess.run(["docker", "exec", cid, "wget", "-qO-", f"http://127.0.0.1{path}"],
                                capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return result.stdout
        subprocess.run(["docker", "exec", cid, "sleep", "0.1"], capture_output=True, timeout=30)
    raise AssertionError(f"GET {path}: {result.stderr}")


# Inside the container: the cpu its cgroup used while `n` requests of TURNS turns were served,
# measured there so that what `docker exec` itself costs is left out.
COST = """
usage=/sys/fs/cgroup/cpuacct/cpuacct.usage
before=$(cat $usage)
for i in 1 2 3 4 5; do wget -qO- "http://127.0.0.1/cgi-bin/burn?n=$1" >/dev/null; done
echo $(($(cat $usage) - before))
"""


def cost(cid: str, turns: int) -> int:
    return int(docker("exec", cid, "sh", "-c", COST, "cost", str(turns)))


def test_the_default_page_and_the_burn_script_name_the_host(container: str) -> None:
    host = docker("exec", container, "hostname").strip()
    assert get(container, "/") == f"hello from {host}\n"
    for query in ("", "?n=10", "?n=abc", "?n=12345678", "?n=5&x=1"):
        assert get(container, f"/cgi-bin/burn{query}") == f"hello from {host}\n", query


def test_the_burn_script_costs_cpu_in_proportion_to_its_turns(container: str) -> None:
    get(container, "/cgi-bin/burn?n=0")  # the server is up
    # 20,000 turns is several times the default's work: far above what starting the script
    # costs, whatever the machine's speed.
    assert cost(container, 20_000) > 3 * cost(container, 0)
