"""The host probe on loopback: an accepted and a refused connection both mean the host is
alive. (A host that answers nothing is tested on simulated hosts: tests/e2e, power_off.)"""

from __future__ import annotations

import asyncio
import socket
import time

from podium.manager import hostprobe


async def test_a_task_port_that_accepts_means_the_host_and_its_tasks_answer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = await hostprobe.probe("127.0.0.1", [port], answer_within=1.0)
    assert (result.host, result.serving) == (True, True)
    assert result.detail == f"127.0.0.1:{port} accepted"


async def test_a_refused_task_port_means_the_host_answers_but_its_tasks_do_not() -> None:
    with socket.socket() as s:  # bound, never listening: connects are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = await hostprobe.probe("127.0.0.1", [port], answer_within=0.3)
    assert (result.host, result.serving) == (True, False)
    assert f"127.0.0.1:{port} refused" in result.detail


async def test_without_task_ports_any_answer_will_do() -> None:
    # Port 22 on loopback: accepted (an ssh server) or refused, either is an answer.
    result = await hostprobe.probe("127.0.0.1", [], answer_within=1.0)
    assert (result.host, result.serving) == (True, None)


async def test_no_address_is_no_answer() -> None:
    result = await hostprobe.probe("", [80], answer_within=1.0)
    assert result.host is False


async def test_a_manager_whose_loop_runs_behind_still_sees_the_refusal_in_time() -> None:
    # Thousands of agents reconnecting keep the manager's loop busy: each of its turns takes
    # a long while. The refusal came within microseconds, so the host answered.
    async def busy() -> None:
        while True:
            time.sleep(0.2)  # noqa: ASYNC251 (the point: a loop that runs behind)
            await asyncio.sleep(0)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        hog = asyncio.create_task(busy())
        await asyncio.sleep(0)
        try:
            result = await hostprobe.probe("127.0.0.1", [port], answer_within=0.3)
        finally:
            hog.cancel()
    assert (result.host, result.serving) == (True, False), result.detail
