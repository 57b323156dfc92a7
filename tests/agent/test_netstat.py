"""Counting a process's established connections from its /proc net tables."""

from __future__ import annotations

import pathlib

from podium.agent._netstat import established

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def test_counts_established_connections_to_the_given_ports(tmp_path: pathlib.Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(HEADER + "".join([
        "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n",
        "   1: 0200A8C0:0050 0100A8C0:D431 01 00000000:00000000 00:00000000 00000000 0\n",
        "   2: 0200A8C0:0050 0100A8C0:D432 01 00000000:00000000 00:00000000 00000000 0\n",
        "   3: 0200A8C0:1F90 0100A8C0:D433 01 00000000:00000000 00:00000000 00000000 0\n",
        "   4: 0200A8C0:0050 0100A8C0:D434 06 00000000:00000000 00:00000000 00000000 0\n",
    ]))
    assert established(42, {80}, proc_root=str(tmp_path)) == 2
    assert established(42, {80, 8080}, proc_root=str(tmp_path)) == 3
    assert established(7, {80}, proc_root=str(tmp_path)) == 0
