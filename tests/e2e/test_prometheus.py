"""A real Prometheus server (Debian's `prometheus`, installed with apt-get when missing) scrapes
a manager process on a real engine, and its query API returns the cluster's figures."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from tests.helpers import WEB, Cluster, eventually, free_port

pytestmark = pytest.mark.engine


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    if shutil.which("prometheus") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300)
        # Only the server: the package's recommended exporters would start nothing here anyway.
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "prometheus"], env=env, check=True, timeout=600)
    found = shutil.which("prometheus")
    assert found, "prometheus missing after apt-get install prometheus"
    return found


@pytest.fixture
def prometheus(prometheus_binary: str, cluster: Cluster,
               tmp_path: pathlib.Path) -> Iterator[str]:
    """A Prometheus server scraping the cluster's manager every second; yields its address."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: podium-manager\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{cluster.metrics_port}']\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [prometheus_binary, f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def query(server: str, expr: str) -> float | None:
    """The value of an instant query that returns one series (None: no series, or no answer)."""
    url = f"http://{server}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.load(reply)
    except OSError:
        return None
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.mark.timeout(180)
def test_prometheus_scrapes_the_managers_figures(cluster: Cluster, prometheus: str,
                                                 tmp_path: pathlib.Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(WEB)
    cluster.ok("deploy", "-f", str(stack))
    try:
        eventually(lambda: query(prometheus, 'podium_tasks{state="running"}') == 3,
                   timeout=60, what="Prometheus: 3 tasks running")
        assert query(prometheus, 'podium_nodes{state="ready"}') == 2
        assert query(prometheus, "podium_services") == 1
        assert query(prometheus, "podium_sessions") == 2
        assert query(prometheus, 'up{job="podium-manager"}') == 1
        eventually(lambda: (query(prometheus, "sum(podium_scheduling_latency_seconds_count)")
                            or 0) >= 3, timeout=30, what="Prometheus: 3 tasks scheduled")
    finally:
        cluster.ok("rm", "web")
