"""How sizes and cpu amounts are written for people: one style for the scheduler's reasons
("no node has 2 GiB memory free") and the CLI's tables ("1.5 GiB")."""

from __future__ import annotations


def number(value: float) -> str:
    """At most two decimals, trailing zeros dropped: 2, 1.5, 0.25."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def size(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1: 512 B, 1.5 GiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{number(n / scale)} {unit}"
    return f"{n} B"


def cpus(nano_cpus: int) -> str:
    """Billionths of a core as cores: 1 cpu, 0.5 cpus."""
    value = nano_cpus / 1e9
    return f"{number(value)} cpu{'' if value == 1 else 's'}"
