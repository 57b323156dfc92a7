from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import IMAGE, Cluster, ensure_image


def _engine_answers() -> bool:
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True)
    return result.returncode == 0


@pytest.fixture(scope="session")
def engine() -> None:
    """A real Docker engine with the test image. Tests that need one fail (not skip)
    without it: deploy/check.sh starts it."""
    assert _engine_answers(), "no Docker engine answers: run deploy/bootstrap.sh first"
    ensure_image()
    out = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    assert out.returncode == 0, f"image {IMAGE} missing after deploy/build-image.sh"


@pytest.fixture
def cluster(engine: None, tmp_path: pathlib.Path,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    marker = request.node.get_closest_marker("manager_args")
    c = Cluster(tmp_path, manager_args=tuple(marker.args) if marker else ())
    try:
        c.start_manager()
        c.start_agent("node-a", "zone=a")
        c.start_agent("node-b", "zone=b")
        yield c
    finally:
        c.close()
    assert not c.containers(), "containers left behind"
