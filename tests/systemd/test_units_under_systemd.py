"""The units under a real systemd (PID 1 of a Debian bookworm container, tests/systemd/
_systemdhost.py): deploy/install.sh --role both --start, both daemons READY; a service deployed
with the CLI; the agent killed with -9 and restarted by systemd without restarting the service's
containers; the manager stopped (SIGSTOP) and restarted by the watchdog; the agent stopped with
its containers left running; the installer run again changing nothing; uninstall.sh --purge
leaving nothing behind. The figures measured go to var/systemd-test/figures.json."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from tests.helpers import IMAGE, REPO, consistently, eventually
from tests.systemd._systemdhost import (
    PIP_ENV,
    SOURCE,
    SystemdHost,
    containers,
    image,
    remove_leftovers,
    wheel_house,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(1200)]

MANAGER, AGENT = "podium-manager", "podium-agent"
SERVING = "serving on 0.0.0.0:7070, joins on 0.0.0.0:7071"
SESSION = "session with manager 127.0.0.1:7070"
FIGURES = REPO / "var" / "systemd-test" / "figures.json"


@pytest.fixture
def host(engine: None) -> Iterator[SystemdHost]:
    remove_leftovers()
    started = time.monotonic()
    name, build_s = image()
    h = SystemdHost(name, wheel_house())
    try:
        h.figures["image_s"] = round(build_s, 1)
        h.figures["boot_s"] = round(h.boot(), 2)
        yield h
    finally:
        print(h.journal(MANAGER, AGENT)[-20000:])  # shown when the test failed
        h.close()
        h.figures["lane_s"] = round(time.monotonic() - started, 1)
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(h.figures, indent=2) + "\n")
        print(json.dumps(h.figures))


def seconds(props: dict[str, str], end: str, start: str) -> float:
    return round((int(props[end]) - int(props[start])) / 1e6, 2)


def install(host: SystemdHost) -> str:
    done = host.run(f"{SOURCE}/deploy/install.sh", "--role", "both", "--start", env=PIP_ENV,
                    timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def main_pid(host: SystemdHost, unit: str) -> str:
    pid = host.show(unit)["MainPID"]
    assert pid != "0", host.show(unit)
    return pid


def test_the_units_under_systemd(host: SystemdHost) -> None:
    figures = host.figures

    # --- install and start: both READY, each with its status line -----------------------------
    t0 = time.monotonic()
    out = install(host)
    figures["install_s"] = round(time.monotonic() - t0, 1)
    assert out.splitlines()[-1] == "install: done", out
    manager = host.wait_ready(MANAGER, status=SERVING)
    agent = host.wait_ready(AGENT, status=SESSION)
    figures["manager_ready_s"] = seconds(manager, "ActiveEnterTimestampMonotonic",
                                         "ExecMainStartTimestampMonotonic")
    figures["agent_ready_s"] = seconds(agent, "ActiveEnterTimestampMonotonic",
                                       "ExecMainStartTimestampMonotonic")
    # The agent's shell exec'd the agent: the main process is the agent, and systemd heard it.
    cmdline = host.run("cat", f"/proc/{agent['MainPID']}/cmdline", check=True).stdout
    assert cmdline.split("\0")[1:3] == ["/opt/podium/venv/bin/podium", "agent"], cmdline
    eventually(lambda: host.show(MANAGER)["StatusText"] == f"{SERVING}; 1 agent session(s)",
               timeout=15, what="the manager's status counting the agent")
    node_id = host.run("cat", "/var/lib/podium/agent/node_id", check=True).stdout.strip()
    host.node_ids.add(node_id)

    # --- a service, deployed with the CLI on that host ----------------------------------------
    service = f"sd{secrets.token_hex(3)}"
    host.sh(f"""cat >/tmp/stack.yaml <<EOF
services:
  {service}:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    deploy:
      replicas: 2
EOF""")
    deployed = host.run("podium", "deploy", "-f", "/tmp/stack.yaml", timeout=120)
    assert deployed.returncode == 0 and "converged" in deployed.stdout, \
        deployed.stdout + deployed.stderr
    running = containers(node_id)
    assert len(running) == 2 and all(s == "running" for s, _ in running.values()), running

    # --- kill -9 the agent: systemd restarts it, READY again, the containers untouched --------
    pid = agent["MainPID"]
    t0 = time.monotonic()
    host.run("kill", "-9", pid, check=True)
    agent = host.wait_ready(AGENT, status=SESSION, restarts=1)
    assert agent["MainPID"] != pid
    figures["agent_restart_after_kill9_s"] = round(
        int(agent["ActiveEnterTimestampMonotonic"]) / 1e6 - t0, 2)
    assert containers(node_id) == running

    # --- the manager's event loop stops: the watchdog (3 s here) has it restarted -------------
    host.sh("mkdir -p /etc/systemd/system/podium-manager.service.d && printf "
            "'[Service]\\nWatchdogSec=3\\n' >/etc/systemd/system/podium-manager.service.d/"
            "test-watchdog.conf && systemctl daemon-reload && systemctl restart podium-manager")
    manager = host.wait_ready(MANAGER, status=SERVING)
    pid = manager["MainPID"]
    t0 = time.monotonic()
    host.run("kill", "-STOP", pid, check=True)
    manager = host.wait_ready(MANAGER, status=SERVING, restarts=1, timeout=30)
    assert manager["MainPID"] != pid
    journal = host.journal(MANAGER)
    assert "Failed with result 'watchdog'" in journal
    # Where the loop was when the watchdog fired, from every thread's Python stack.
    assert "Fatal Python error: Aborted" in journal, journal
    assert "in run_forever" in journal and "podium/manager/main.py" in journal, journal
    # "[ 3834.200476] host systemd[1]: podium-manager.service: Watchdog timeout (limit 3s)!"
    (timeout_line,) = [line for line in journal.splitlines() if "Watchdog timeout" in line]
    figures["manager_watchdog_timeout_s"] = round(
        float(timeout_line.split("]")[0].strip("[ ")) - t0, 2)
    figures["manager_restart_by_watchdog_s"] = round(
        int(manager["ActiveEnterTimestampMonotonic"]) / 1e6 - t0, 2)
    eventually(lambda: host.show(AGENT)["StatusText"] == SESSION, timeout=30,
               what="the agent's session again")
    assert containers(node_id) == running

    # --- the agent stopped: its containers keep running ---------------------------------------
    host.run("systemctl", "stop", AGENT, check=True)
    assert host.show(AGENT)["ActiveState"] == "inactive"
    consistently(lambda: containers(node_id) == running, duration=3, what="containers running")
    host.run("systemctl", "start", AGENT, check=True)
    host.wait_ready(AGENT, status=SESSION, restarts=None)
    assert containers(node_id) == running

    # --- the installer again: nothing changed, nothing restarted ------------------------------
    pids = {unit: main_pid(host, unit) for unit in (MANAGER, AGENT)}
    t0 = time.monotonic()
    out = install(host)
    figures["install_again_s"] = round(time.monotonic() - t0, 1)
    assert out.splitlines()[-1] == "install: no change detected", out
    assert {unit: main_pid(host, unit) for unit in (MANAGER, AGENT)} == pids
    assert containers(node_id) == running

    # --- uninstall --purge: nothing left --------------------------------------------------------
    done = host.run(f"{SOURCE}/deploy/uninstall.sh", "--purge", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removing this node's 2 task container(s)" in done.stdout, done.stdout
    units = host.run("systemctl", "list-unit-files", "--no-legend", "podium*").stdout
    assert units.strip() == "", units
    left = host.run("sh", "-c", "ls -d /opt/podium /etc/podium /var/lib/podium "
                    "/usr/local/bin/podium /etc/systemd/system/podium* 2>/dev/null; "
                    "getent passwd podium; getent group podium; true").stdout
    assert left.strip() == "", left
    assert containers(node_id) == {}
