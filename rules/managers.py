"""Several managers: how clients and agents name them and how a follower points at the leader.

A list of managers is written `HOST:PORT,HOST:PORT,...` wherever one address was accepted (the
CLI's `--manager`, $PODIUM_MANAGER, a credentials file's `manager`, the agent's `--join`). A
manager that does not lead (managers sharing an etcd store elect one leader) answers what only the
leader serves with UNAVAILABLE and, when it knows the leader, the trailing metadata
LEADER_KEY = the leader's Control address (LEADER_JOIN_KEY: its join port, on the join port).
Clients and agents go there at once; with no hint they try the next manager in their list; after
as many failures in a row as there are managers they wait a little longer each time
(`retry_delay`, jittered, at most ROUND_DELAY_MAX_S), so that a hint naming a leader that just died
cannot make them spin.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

LEADER_KEY = "podium-leader"
LEADER_JOIN_KEY = "podium-leader-join"
# Waits between rounds over every manager: 0.1 s doubling to ROUND_DELAY_MAX_S, +-50 %.
ROUND_DELAY_BASE_S = 0.1
ROUND_DELAY_MAX_S = 1.0


def parse(text: str, *, what: str = "manager address") -> list[str]:
    """The addresses of `HOST:PORT[,HOST:PORT...]`, in order, without repeats; ValueError naming
    the one at fault and what is accepted."""
    addresses: list[str] = []
    for part in text.split(","):
        address = part.strip()
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{what} {address!r} in {text!r}: expected HOST:PORT (a port "
                             "1-65535), several separated by commas")
        if address not in addresses:
            addresses.append(address)
    return addresses


def leader_hint(metadata: Iterable[tuple[str, str | bytes]] | None, *,
                key: str = LEADER_KEY) -> str | None:
    """The leader's address in a refusal's trailing metadata, if it names one."""
    for name, value in metadata or ():
        if name == key:
            text = value.decode() if isinstance(value, bytes) else value
            return text or None
    return None


def retry_delay(rounds: int) -> float:
    """How long to wait after `rounds` (1-based) full rounds over every manager failed."""
    base = min(ROUND_DELAY_BASE_S * 2 ** max(rounds - 1, 0), ROUND_DELAY_MAX_S)
    return float(base * random.uniform(0.5, 1.5))


def next_address(addresses: list[str], current: str, hint: str | None) -> str:
    """Where to go after `current` failed: the leader it named (added to `addresses` when new),
    else the next in the list."""
    if hint and hint != current:
        if hint not in addresses:
            addresses.append(hint)
        return hint
    index = addresses.index(current) if current in addresses else -1
    return addresses[(index + 1) % len(addresses)]


def delay_after(failures: int, managers: int) -> float:
    """The wait after `failures` failures in a row over `managers` managers: a short jitter,
    and `retry_delay` at the end of each round of as many failures as managers."""
    if failures % max(managers, 1) == 0:
        return retry_delay(failures // max(managers, 1))
    return random.uniform(0.0, 0.05)
