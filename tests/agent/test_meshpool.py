"""podium.agent.meshpool: the asyncio mesh in worker processes sharing each port (no Docker).

The workers are real processes (`python -m podium.agent._meshworker`) forwarding to asyncio
backends on 127.0.0.1. Waits poll with a deadline (`eventually`), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import Any

import pytest

from podium.agent import meshpool
from podium.agent.meshpool import MeshPool
from podium.agent.meshspec import ListenerSpec
from tests.agent._proxykit import HOST, Backend, Client, ask, free_port
from tests.helpers import eventually_async


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, exited but not yet waited for, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def served_by_only(pool: MeshPool, pid: int, port: int) -> str:
    """One request while every other worker is stopped (SIGSTOP): `pid` must accept it."""
    others = [p for p in pool.pids() if p != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        async with asyncio.timeout(5):
            return await ask(port)
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


async def test_workers_share_the_port_and_their_counts_add_up() -> None:
    port = free_port()
    async with Backend("a") as a, Backend("b") as b, MeshPool(workers=2, host=HOST) as pool:
        assert pool.pids() == []  # nothing published: no worker runs
        assert await pool.apply({}) == []
        assert pool.pids() == []
        assert await pool.apply({port: ListenerSpec((a.endpoint, b.endpoint))}) == []
        assert len(pool.pids()) == 2
        # Each worker accepts from the port on its own.
        for pid in pool.pids():
            assert await served_by_only(pool, pid, port) in ("a", "b")
        clients = [await Client.connect(port) for _ in range(40)]
        try:
            answers = [await c.ask() for c in clients]
            assert set(answers) == {"a", "b"}
            await eventually_async(lambda: sum(pool.stats().get(port, {}).values()) == 40,
                             what="40 connections counted over the workers")
            assert all(pool.stats()[port][key] > 0 for key in "ab"), pool.stats()
        finally:
            for client in clients:
                await client.close()
        await eventually_async(lambda: pool.stats() == {port: {"a": 0, "b": 0}},
                         what="closed connections counted out")


async def test_a_port_in_use_is_reported_once() -> None:
    with socket.socket() as blocker:
        blocker.bind((HOST, 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ok = free_port()
        async with Backend("a") as a, MeshPool(workers=2, host=HOST) as pool:
            errors = await pool.apply({taken: ListenerSpec((a.endpoint,)),
                                       ok: ListenerSpec((a.endpoint,))})
            assert len(errors) == 1 and errors[0].startswith(f"port {taken} in use: "), errors
            assert await ask(ok) == "a"
            blocker.close()
            assert await pool.apply({taken: ListenerSpec((a.endpoint,))}) == []
            assert await ask(taken) == "a"
            with pytest.raises(ConnectionRefusedError):
                await ask(ok)


async def test_a_killed_worker_is_replaced_while_the_other_serves() -> None:
    port = free_port()
    async with Backend("a") as a, MeshPool(workers=2, host=HOST) as pool:
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == []
        victim, survivor = pool.pids()
        os.kill(victim, signal.SIGKILL)
        await eventually_async(lambda: not alive(victim), what="worker killed")
        # The port stays bound by the agent; every new connection reaches the survivor.
        assert [await ask(port) for _ in range(20)] == ["a"] * 20
        await eventually_async(lambda: len(set(pool.pids()) - {victim, survivor}) == 1, timeout=10,
                         what="a new worker started")
        new = (set(pool.pids()) - {survivor}).pop()
        index = pool.pids().index(new)
        # It is handed the port and the wanted set: it reports its (empty) counts, and serves.
        await eventually_async(lambda: pool._workers[index].stats == {port: {"a": 0}},
                         what="the new worker listening")
        assert await served_by_only(pool, new, port) == "a"
        assert alive(survivor)


async def test_request_counts_add_up_over_workers_and_survive_a_restart() -> None:
    """A worker started again counts from 0: the pool keeps what the dead one counted."""
    port = free_port()
    async with Backend("a") as a, MeshPool(workers=2, host=HOST) as pool:
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == []
        victim, survivor = pool.pids()
        for pid in (victim, victim, victim, survivor):
            assert await served_by_only(pool, pid, port) == "a"
        index = pool.pids().index(victim)
        await eventually_async(lambda: pool._workers[index].requests == {port: {"a": 3}},
                               what="the victim's 3 requests reported")
        await eventually_async(lambda: pool.requests() == {port: {"a": 4}}, what="4 counted")
        await eventually_async(lambda: sum(pool.traffic()[port].connects) == 4,
                               what="4 connects timed")
        moved = pool.traffic()[port]
        assert moved.bytes_in > 0 and moved.bytes_out > 0
        os.kill(victim, signal.SIGKILL)
        await eventually_async(lambda: len(set(pool.pids()) - {victim, survivor}) == 1, timeout=10,
                               what="a new worker started")
        new = pool.pids()[index]
        await eventually_async(lambda: pool._workers[index].stats == {port: {"a": 0}},
                               what="the new worker listening")
        assert pool.requests() == {port: {"a": 4}}
        assert await served_by_only(pool, new, port) == "a"
        await eventually_async(lambda: pool.requests() == {port: {"a": 5}}, what="5 counted")
    assert pool.requests() == {port: {"a": 5}}  # kept after close
    # The killed worker's traffic is kept too: the sums only grow.
    after = pool.traffic()[port]
    assert sum(after.connects) == 5 and after.bytes_in > moved.bytes_in


async def test_a_stuck_worker_is_killed_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    async with Backend("a") as a, Backend("b") as b, MeshPool(workers=2, host=HOST) as pool:
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == []
        stuck, other = pool.pids()
        os.kill(stuck, signal.SIGSTOP)
        # Short only for the stuck worker: on a busy machine a healthy one may need longer.
        monkeypatch.setattr(meshpool, "APPLY_TIMEOUT", 0.5)
        errors = await pool.apply({port: ListenerSpec((b.endpoint,))})
        assert errors == ["mesh worker 0 did not answer within 0.5 s: killed, to be started "
                          "again"], errors
        await eventually_async(lambda: not alive(stuck), what="the stuck worker killed")
        # The replacement starts on a busy machine too: give it the normal time to answer.
        monkeypatch.setattr(meshpool, "APPLY_TIMEOUT", 5.0)
        await eventually_async(lambda: len(set(pool.pids()) - {stuck, other}) == 1, timeout=10,
                         what="a new worker started")
        new = (set(pool.pids()) - {other}).pop()
        index = pool.pids().index(new)
        await eventually_async(lambda: pool._workers[index].stats == {port: {"b": 0}},
                         what="the new worker given the latest endpoints")
        assert await served_by_only(pool, new, port) == "b"
        assert await served_by_only(pool, other, port) == "b"


async def test_workers_that_cannot_start_leave_no_port_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_spawn = meshpool._Worker.spawn
    failing = True

    async def spawn(index: int, **kwargs: Any) -> meshpool._Worker:
        if failing:
            raise OSError("no interpreter")
        return await real_spawn(index, **kwargs)

    monkeypatch.setattr(meshpool._Worker, "spawn", staticmethod(spawn))
    port = free_port()
    async with Backend("a") as a, MeshPool(workers=2, host=HOST) as pool:
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == [
            "mesh workers could not start: no interpreter"]
        with pytest.raises(ConnectionRefusedError):  # refused, not left hanging
            async with asyncio.timeout(5):
                await ask(port)
        failing = False  # the agent tries again (every 2 s)
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == []
        for pid in pool.pids():
            assert await served_by_only(pool, pid, port) == "a"


async def test_close_stops_every_worker_and_their_connections() -> None:
    port = free_port()
    async with Backend("a") as a:
        pool = MeshPool(workers=2, host=HOST)
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == []
        pids = pool.pids()
        held = await Client.connect(port)
        assert await held.ask() == "a"
        await pool.close()
        await pool.close()  # idempotent
        assert not any(alive(pid) for pid in pids)
        assert await held.ask() == ""  # aborted with its worker
        await held.close()
        with pytest.raises(ConnectionRefusedError):
            await ask(port)
        assert await pool.apply({port: ListenerSpec((a.endpoint,))}) == ["the mesh is closed"]


async def test_workers_exit_when_the_agent_dies() -> None:
    """An agent killed with SIGKILL cannot stop its workers: they must go on their own."""
    port = free_port()
    async with Backend("a") as a:
        script = (
            "import asyncio, sys\n"
            "from podium.agent.meshpool import MeshPool\n"
            "from podium.agent.meshspec import Endpoint, ListenerSpec\n"
            "async def main():\n"
            f"    pool = MeshPool(workers=2, host={HOST!r})\n"
            f"    spec = ListenerSpec((Endpoint('a', {HOST!r}, {a.port}),))\n"
            f"    assert await pool.apply({{{port}: spec}}) == []\n"
            "    print(*pool.pids(), flush=True)\n"
            "    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n")
        agent = await asyncio.create_subprocess_exec(sys.executable, "-c", script,
                                                     stdout=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(30):
                line = await agent.stdout.readline() if agent.stdout else b""
            pids = [int(p) for p in line.split()]
            assert len(pids) == 2, line
            assert await ask(port) == "a"
            # One is stuck (stopped): it cannot notice its socket close; the kernel kills it.
            os.kill(pids[0], signal.SIGSTOP)
        finally:
            agent.kill()
            # The workers share the agent's stdout: wait() returns once they are gone too.
            async with asyncio.timeout(10):
                await agent.wait()
        await eventually_async(lambda: not any(alive(pid) for pid in pids), timeout=10,
                         what="workers gone after their agent")
        with pytest.raises(ConnectionRefusedError):
            await ask(port)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        MeshPool(workers=0)
