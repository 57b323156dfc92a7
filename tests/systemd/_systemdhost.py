"""A Debian server booting systemd as PID 1, in a container, for the systemd lane.

The image is deploy/systemd-test-image.sh's (debootstrap; cached by the script's digest). The
container shares the host's engine (its /run/docker.sock and the docker client), so the agent
it runs starts its tasks' containers on the host's engine, and has the repository and a wheel
house (the package's dependencies, downloaded once per set of requirements) read-only, so that
deploy/install.sh installs from the repository without reaching an index.

How it runs here (cgroup v1, an engine without CAP_SYS_RESOURCE): not --privileged (runc cannot
grant every capability: "unable to apply caps"), but every capability but SYS_RESOURCE, no
seccomp filter, and the host's cgroup hierarchy mounted read-write (the host's cgroup namespace),
where systemd manages the container's own subtree. systemd lowers LimitNOFILE to what it may
set (setrlimit to the closest value), so the units need no change.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import time
import tomllib

from tests.helpers import REPO, eventually

LABEL = "io.podium.test=systemd"
# The agent's containers' label for their node (podium.agent.executor.LABEL_NODE).
LABEL_NODE = "io.podium.node.id"
SOURCE = "/src/podium"
WHEELS = "/wheels"
# deploy/install.sh's pip installs from the wheel house only.
PIP_ENV = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def image() -> tuple[str, float]:
    """The image's name (built when missing) and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "deploy" / "systemd-test-image.sh")],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1], time.monotonic() - started


def wheel_house() -> pathlib.Path:
    """var/systemd-test/wheels-DIGEST: wheels of the package's dependencies and of setuptools
    (to build the package), for CPython 3.11 on Linux (Debian bookworm's), downloaded once per
    set of requirements."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*config["project"]["dependencies"], *config["build-system"]["requires"]]
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
    house = REPO / "var" / "systemd-test" / f"wheels-{digest}"
    if house.is_dir():
        return house
    partial = house.with_name(house.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
         "--platform", "manylinux_2_17_x86_64", "--dest", str(partial), *wanted],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    partial.rename(house)
    return house


def remove_leftovers() -> None:
    """Containers of an earlier run of this lane that did not get to clean up."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids)


class SystemdHost:
    """One booted container. `node_ids` collects the node ids of the agents it ran, whose
    containers close() removes with it."""

    def __init__(self, image_name: str, wheels: pathlib.Path) -> None:
        self.name = f"podium-systemd-{secrets.token_hex(4)}"
        self.hostname = "podium-sd"
        self.node_ids: set[str] = set()
        self.figures: dict[str, float] = {}  # what the test measured, by name
        gid = os.stat("/var/run/docker.sock").st_gid
        docker_client = shutil.which("docker")
        assert docker_client is not None
        run = docker(
            "run", "-d", "--name", self.name, "--hostname", self.hostname, "--label", LABEL,
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "-v", "/var/run/docker.sock:/run/docker.sock",
            "-v", f"{docker_client}:/usr/bin/docker:ro",
            "-v", f"{REPO}:{SOURCE}:ro", "-v", f"{wheels}:{WHEELS}:ro",
            image_name)
        assert run.returncode == 0, run.stderr
        self._docker_gid = gid

    def boot(self) -> float:
        """Waits until systemd finished starting up; the seconds it took. Then adds the group
        the engine's socket belongs to, as "docker" (Debian's docker.io makes it on a real
        host; the agent's unit asks for it)."""
        started = time.monotonic()
        # systemctl answers only once PID 1 is systemd and its bus is up.
        eventually(lambda: self.run("test", "-S", "/run/systemd/private").returncode == 0,
                   timeout=60, interval=0.05, what="systemd's bus")
        state = self.run("systemctl", "is-system-running", "--wait", timeout=120)
        assert state.stdout.strip() == "running", \
            state.stdout + state.stderr + self.run("systemctl", "--failed").stdout
        booted = time.monotonic() - started
        self.sh(f"getent group docker >/dev/null || groupadd --system --gid {self._docker_gid} "
                "docker")
        return booted

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        done = subprocess.run(["docker", "exec", *flags, self.name, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done

    def sh(self, script: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, check=True, timeout=timeout)

    def show(self, unit: str) -> dict[str, str]:
        props = ("ActiveState,SubState,StatusText,NRestarts,MainPID,Result,"
                 "ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic,"
                 "InactiveEnterTimestampMonotonic")
        out = self.run("systemctl", "show", "-p", props, unit, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_ready(self, unit: str, *, status: str, restarts: int | None = 0,
                   timeout: float = 60) -> dict[str, str]:
        """Waits until the unit is active and running after `restarts` automatic restarts (None:
        any number), with a status line starting with `status`; its properties."""
        def ready() -> dict[str, str] | None:
            props = self.show(unit)
            good = (props["ActiveState"], props["SubState"]) == ("active", "running") \
                and restarts in (None, int(props["NRestarts"])) \
                and props["StatusText"].startswith(status)
            return props if good else None

        props = eventually(ready, timeout=timeout, interval=0.1,
                           what=f"{unit} ready (after {restarts} restarts)")
        assert props is not None
        return props

    def journal(self, *units: str) -> str:
        args = [arg for unit in units for arg in ("-u", unit)]
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", *args).stdout

    def close(self) -> None:
        """Removes the container and every container of the agents it ran (and their engine
        networks), whatever state the test left them in."""
        docker("rm", "-f", "-v", self.name)
        for node_id in self.node_ids:
            ids = docker("ps", "-aq", "--filter", f"label={LABEL_NODE}={node_id}").stdout.split()
            if ids:
                docker("rm", "-f", *ids)
            networks = docker("network", "ls", "-q", "--filter",
                              f"label={LABEL_NODE}={node_id}").stdout.split()
            if networks:
                docker("network", "rm", *networks)


def containers(node_id: str) -> dict[str, tuple[str, str]]:
    """The node's containers on the host's engine: name -> (status, start time)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL_NODE}={node_id}").stdout.split()
    if not ids:
        return {}
    found = json.loads(docker("inspect", *ids).stdout)
    return {c["Name"].lstrip("/"): (c["State"]["Status"], c["State"]["StartedAt"])
            for c in found}
