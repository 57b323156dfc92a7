"""A manager's leadership alone, in a process of its own (so that a test can kill -9 it): runs
`Leadership` against the etcd endpoints given and prints one line per change, with the system's
monotonic clock (comparable between processes): `elected T`, `deposed T why`, `leader T ID`."""

from __future__ import annotations

import asyncio
import sys
import time

from podium.manager.leadership import LeaderInfo, Leadership


def say(*words: object) -> None:
    print(*words, flush=True)


async def main(name: str, endpoints: str, ttl: int) -> None:
    me = LeaderInfo(id=name, control=f"{name}:7070")
    leadership = Leadership(
        endpoints=endpoints.split(","), me=me, ttl=ttl, prefix="/test",
        on_elected=lambda: say("elected", time.monotonic()),
        on_deposed=lambda why: say("deposed", time.monotonic(), why))
    await leadership.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
