"""Several agents on the in-memory fake executor in one process, for the fault lab
(podium.lab.nemesis), which runs it inside a network namespace of its own so that a partition
can cut them off from one manager:

    python -m podium.lab._fakeagents --managers A,B,C --joins A,B,C --token-file F
                                     --data-dir D --count N

Agent i is named fakeI with node id node-fakeI and label fake=yes (FAKE_CONSTRAINT places a
service on them alone); each is given every manager. It prints
`ready` once all have started, and stops them on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal

from podium.agent.agent import Agent
from podium.agent.certificate import NodeCertificate
from podium.lab.fakeexec import FakeExecutor
from podium.rules.certs import JoinToken

FAKE_CONSTRAINT = "node.labels.fake == yes"


async def run(args: argparse.Namespace) -> None:
    token = JoinToken.parse(args.token)
    agents: list[Agent] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for i in range(args.count):
            name = f"fake{i}"
            certificate = NodeCertificate(
                data_dir=pathlib.Path(args.data_dir) / name, node_id=f"node-{name}",
                manager=args.managers, join_address=args.joins, token=token)
            await certificate.ensure()
            agent = Agent(manager=args.managers, name=name, node_id=f"node-{name}",
                          executor=FakeExecutor(), certificate=certificate,
                          labels={"fake": "yes"})
            await agent.start()
            agents.append(agent)
        print("ready", flush=True)
        await stop.wait()
    finally:
        for agent in agents:
            await agent.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--managers", required=True)
    p.add_argument("--joins", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--count", type=int, default=3)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.token = pathlib.Path(args.token_file).read_text()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
