"""ContainerSpec fields devices ... blkio_weight in the create body: the engine's names, only
the fields set, and a clear error for a value the engine would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agent.test_container_options import BODY_WITHOUT_OPTIONS, added, body


def test_a_spec_without_tuning_gives_the_same_body_as_before() -> None:
    assert body() == BODY_WITHOUT_OPTIONS


@pytest.mark.parametrize(
    ("options", "host_keys"),
    [
        (
            {"devices": ["/dev/fuse:/dev/fuse:rwm", "/dev/ttyUSB0:/dev/ttyUSB1:r", "/dev/kvm"]},
            {"Devices": [
                {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                 "CgroupPermissions": "rwm"},
                {"PathOnHost": "/dev/ttyUSB0", "PathInContainer": "/dev/ttyUSB1",
                 "CgroupPermissions": "r"},
                {"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm",
                 "CgroupPermissions": "rwm"},
            ]},
        ),
        ({"device_cgroup_rules": ["c 1:3 mr", "a *:* rwm"]},
         {"DeviceCgroupRules": ["c 1:3 mr", "a *:* rwm"]}),
        ({"pid_mode": "host"}, {"PidMode": "host"}),
        ({"ipc_mode": "shareable"}, {"IpcMode": "shareable"}),
        ({"userns_mode": "host"}, {"UsernsMode": "host"}),
        ({"cpu_shares": 512}, {"CpuShares": 512}),
        ({"cpuset_cpus": "0-1,3"}, {"CpusetCpus": "0-1,3"}),
        ({"oom_score_adj": -500}, {"OomScoreAdj": -500}),
        ({"oom_kill_disable": True}, {"OomKillDisable": True}),
        ({"memswap_limit_bytes": 1 << 27}, {"MemorySwap": 1 << 27}),
        ({"memswap_limit_bytes": -1}, {"MemorySwap": -1}),  # unlimited swap, not unset
        ({"runtime": "runc"}, {"Runtime": "runc"}),
        ({"cgroup_parent": "podium.slice"}, {"CgroupParent": "podium.slice"}),
        ({"storage_opt": {"size": "1G"}}, {"StorageOpt": {"size": "1G"}}),
        ({"blkio_weight": 300}, {"BlkioWeight": 300}),
    ],
)
def test_each_field_becomes_its_host_config_key(options: dict[str, Any],
                                                host_keys: dict[str, Any]) -> None:
    assert added(**options) == ({}, host_keys)


def test_domainname_is_in_config() -> None:
    assert added(domainname="example.com") == ({"Domainname": "example.com"}, {})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": ["dev/fuse"]}, "devices: 'dev/fuse'"),
        ({"devices": ["/dev/fuse:/dev/fuse:rwx"]}, "devices: '/dev/fuse:/dev/fuse:rwx'"),
        ({"devices": ["/dev/fuse:fuse"]}, "devices: '/dev/fuse:fuse'"),
        ({"oom_score_adj": 1001}, "oom_score_adj: 1001"),
        ({"memswap_limit_bytes": -2}, "memswap_limit_bytes: -2"),
        ({"blkio_weight": 5}, "blkio_weight: 5; expected 10 to 1000"),
        ({"cpu_shares": -1}, "cpu_shares: -1"),
    ],
)
def test_values_the_engine_would_refuse_are_errors_naming_the_field(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        body(**options)
