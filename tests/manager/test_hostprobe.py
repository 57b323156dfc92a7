"""The host probe on loopback: an accepted and a refused connection both mean the host is
alive. (A host that answers nothing is tested on simulated hosts: tests/e2e, power_off.)"""

from __future__ import annotations

import socket

from podium.manager import hostprobe


def test_published_ports_come_first_then_the_fallback() -> None:
    assert hostprobe.candidate_ports([30001, 30001, 0, 30002]) == [30001, 30002, 22]
    assert hostprobe.candidate_ports([]) == [22]
    assert len(hostprobe.candidate_ports(range(30000, 30010))) == hostprobe.MAX_PORTS


async def test_a_listening_port_is_an_answer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = await hostprobe.probe("127.0.0.1", [port], answer_within=1.0)
    assert result.answered is True
    assert result.detail == f"127.0.0.1:{port} accepted"


async def test_a_closed_port_is_an_answer_too() -> None:
    with socket.socket() as s:  # bound, never listening: connects are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = await hostprobe.probe("127.0.0.1", [port], answer_within=1.0)
    assert result.answered is True
    assert result.detail == f"127.0.0.1:{port} refused"


async def test_no_address_is_no_answer() -> None:
    result = await hostprobe.probe("", [80], answer_within=1.0)
    assert result.answered is False
