"""The Compose keys that tune the engine, the short forms of resources and replicas, and the
remaining keys of the spec: what each becomes in the spec, each warning and each error."""

from __future__ import annotations

import pathlib

import pytest

from podium.client.compose import SpecError, read_stack
from tests.client._composekit import web as _web
from tests.client._composekit import web_error as _error


def test_engine_options_fill_the_container_spec() -> None:
    web, warnings = _web("""
        devices:
          - /dev/fuse
          - /dev/ttyUSB0:/dev/ttyUSB1:r
          - {source: /dev/kvm, target: /dev/kvm0, permissions: rw}
          - {source: /dev/net/tun}
        device_cgroup_rules: ["c 1:3 mr", "a *:* rwm"]
        pid: host
        ipc: shareable
        userns_mode: host
        domainname: example.com
        cpu_shares: 512
        cpuset: "0-1,3"
        oom_score_adj: -500
        oom_kill_disable: true
        mem_limit: 256m
        memswap_limit: 512m
        runtime: runc
        cgroup_parent: podium.slice
        storage_opt: {size: 1G}
        blkio_config: {weight: 300}
    """)
    c = web.container
    assert list(c.devices) == ["/dev/fuse:/dev/fuse:rwm", "/dev/ttyUSB0:/dev/ttyUSB1:r",
                               "/dev/kvm:/dev/kvm0:rw", "/dev/net/tun:/dev/net/tun:rwm"]
    assert list(c.device_cgroup_rules) == ["c 1:3 mr", "a *:* rwm"]
    assert (c.pid_mode, c.ipc_mode, c.userns_mode) == ("host", "shareable", "host")
    assert (c.domainname, c.cpu_shares, c.cpuset_cpus) == ("example.com", 512, "0-1,3")
    assert (c.oom_score_adj, c.oom_kill_disable) == (-500, True)
    assert (web.resources.limits.memory_bytes, c.memswap_limit_bytes) == (256 << 20, 512 << 20)
    assert (c.runtime, c.cgroup_parent, dict(c.storage_opt)) == ("runc", "podium.slice",
                                                                 {"size": "1G"})
    assert c.blkio_weight == 300
    assert warnings == []


def test_unlimited_swap_needs_no_memory_limit() -> None:
    web, _ = _web("memswap_limit: -1")
    assert web.container.memswap_limit_bytes == -1


def test_short_resource_keys_become_limits_and_reservations() -> None:
    web, warnings = _web("cpus: 1.5\nmem_limit: 1g\nmem_reservation: 512m\nscale: 3")
    assert web.resources.limits.nano_cpus == 1_500_000_000
    assert web.resources.limits.memory_bytes == 1 << 30
    assert web.resources.reservations.memory_bytes == 512 << 20
    assert web.replicas == 3
    assert warnings == []


def test_cpus_zero_is_no_limit() -> None:
    web, _ = _web("cpus: 0")
    assert web.resources.limits.nano_cpus == 0


def test_cpu_quota_over_its_period_is_the_cpus_limit() -> None:
    web, warnings = _web("cpu_quota: 50000")  # default period 100000 us: half a cpu
    assert web.resources.limits.nano_cpus == 500_000_000
    web, _ = _web("cpu_quota: 150000\ncpu_period: 50000")
    assert web.resources.limits.nano_cpus == 3_000_000_000
    assert warnings == []


def test_deploy_wins_over_the_short_forms_with_a_warning_each() -> None:
    web, warnings = _web("""
        cpus: 2
        mem_limit: 1g
        mem_reservation: 100m
        scale: 5
        deploy:
          replicas: 2
          resources:
            limits: {cpus: "0.5", memory: 64m}
            reservations: {memory: 32m}
    """)
    assert (web.replicas, web.resources.limits.nano_cpus) == (2, 500_000_000)
    assert web.resources.limits.memory_bytes == 64 << 20
    assert web.resources.reservations.memory_bytes == 32 << 20
    assert warnings == [
        "service 'web': ignoring cpus: deploy.resources.limits.cpus is given and wins",
        "service 'web': ignoring mem_limit: deploy.resources.limits.memory is given and wins",
        "service 'web': ignoring mem_reservation: deploy.resources.reservations.memory is "
        "given and wins",
        "service 'web': ignoring scale: deploy.replicas is given and wins",
    ]


def test_cpus_wins_over_cpu_quota_and_a_period_alone_is_warned() -> None:
    web, warnings = _web("cpus: 1\ncpu_quota: 50000")
    assert web.resources.limits.nano_cpus == 10**9
    assert warnings == ["service 'web': ignoring cpu_quota: cpus is given and wins"]
    _, warnings = _web("cpu_period: 50000")
    assert warnings == ["service 'web': ignoring cpu_period: without cpu_quota it limits "
                        "nothing"]


def test_deploy_pids_limit_is_the_pids_limit_unless_pids_limit_is_given() -> None:
    web, warnings = _web("deploy: {resources: {limits: {pids: 64}}}")
    assert (web.container.pids_limit, warnings) == (64, [])
    web, warnings = _web("pids_limit: 10\ndeploy: {resources: {limits: {pids: 64}}}")
    assert web.container.pids_limit == 10
    assert warnings == ["service 'web': ignoring deploy.resources.limits.pids: pids_limit is "
                        "given and wins"]


def test_label_file_adds_labels_and_labels_win(tmp_path: pathlib.Path) -> None:
    (tmp_path / "web.labels").write_text("# team labels\ncom.example.team=shop\ntier=old\n")
    web, _ = _web("label_file: web.labels\nlabels: {tier: front}", directory=tmp_path)
    assert dict(web.container.labels) == {"com.example.team": "shop", "tier": "front"}


def test_endpoint_mode_vip_is_what_podium_does() -> None:
    _, warnings = _web("deploy: {endpoint_mode: vip}")
    assert warnings == []


@pytest.mark.parametrize(
    ("keys", "warning"),
    [
        ("platform: linux/amd64", "ignoring platform: each node runs the image it already has"),
        ("mac_address: 02:42:ac:11:00:02", "ignoring mac_address: every replica would get"),
        ("isolation: hyperv", "ignoring isolation: it selects a Windows"),
        ("credential_spec: {file: x.json}", "ignoring credential_spec: it configures Windows"),
        ("annotations: {a: b}", "ignoring annotations: the engines Podium runs on (API 1.41)"),
        ("use_api_socket: true", "ignoring use_api_socket: tasks are not given an engine's"),
        ("gpus: all", "ignoring gpus: GPU requests are not supported"),
        ("cpu_count: 2", "ignoring cpu_count: it applies to Windows containers only"),
        ("cpu_percent: 50", "ignoring cpu_percent: it applies to Windows containers only"),
        ("cpu_rt_period: 1000", "ignoring cpu_rt_period: real-time scheduling"),
        ("cpu_rt_runtime: 100", "ignoring cpu_rt_runtime: real-time scheduling"),
        ("mem_swappiness: 10", "ignoring mem_swappiness: not supported by Podium yet"),
        ("post_start: [{command: x}]", "ignoring post_start: lifecycle hooks"),
        ("pre_stop: [{command: x}]", "ignoring pre_stop: lifecycle hooks"),
        ("provider: {type: model}", "ignoring provider: services run by an external provider"),
        ("models: [llm]", "ignoring models: AI models served by the local Docker model runner"),
        ("uts: host", "ignoring uts: the UTS namespace is not supported"),
        ("cgroup: host", "ignoring cgroup: the cgroup namespace is not supported"),
        ("pull_refresh_after: 1h", "ignoring pull_refresh_after: Podium runs the image already"),
        ("blkio_config: {weight: 20, device_read_bps: [{path: /dev/sda, rate: 1mb}]}",
         "ignoring blkio_config.device_read_bps: device numbers differ from node to node"),
        ("deploy: {endpoint_mode: dnsrr}",
         "ignoring deploy.endpoint_mode: dnsrr: names resolve to a virtual IP"),
        ("deploy: {placement: {preferences: [{spread: node.labels.zone}]}}",
         "ignoring deploy.placement.preferences: Podium spreads a service's tasks"),
        ("deploy: {placement: {max_replicas_per_node: 1}}",
         "ignoring deploy.placement.max_replicas_per_node: Podium spreads"),
        ("deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}",
         "ignoring deploy.resources.reservations.devices: Podium schedules by cpus and memory"),
        ("deploy: {resources: {reservations: {generic_resources: []}}}",
         "ignoring deploy.resources.reservations.generic_resources: Podium schedules"),
    ],
)
def test_ignored_keys_give_one_warning_each(keys: str, warning: str) -> None:
    _, warnings = _web(keys)
    assert len(warnings) == 1 and warnings[0].startswith(f"service 'web': {warning}"), warnings


def test_top_level_models_are_ignored_with_a_warning() -> None:
    stack = read_stack("services: {web: {image: x}}\nmodels: {llm: {model: ai/smollm2}}\n")
    assert stack.warnings == ["ignoring top-level models: AI models served by the local Docker "
                              "model runner are not available on a cluster"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("volumes_from: [db]", "volumes_from: it shares another container's volumes, which on "
                               "a cluster may be on another host: declare a named volume"),
        ("extends: {file: common.yml, service: base}",
         "extends: Podium reads one file: merge it first with `docker compose config"),
        ("pid: service:db", "pid: 'service:db' shares another container's pid namespace"),
        ("pid: container:x", "pid: 'container:x' shares another container's pid namespace"),
        ("ipc: service:db", "ipc: 'service:db' shares another container's ipc namespace"),
        ("pid: private", "pid: expected 'host', got 'private'"),
        ("ipc: yes", "ipc: expected 'host' or 'shareable' or 'private' or 'none', got 'yes'"),
        ("userns_mode: private", "userns_mode: expected 'host', got 'private'"),
        ("devices: [dev/fuse]", "devices[0]: expected an absolute device path such as "
                                "'/dev/fuse' (source), got 'dev/fuse'"),
        ("devices: ['/dev/fuse:fuse']", "devices[0]: expected an absolute device path such as "
                                        "'/dev/fuse' (target), got 'fuse'"),
        ("devices: ['/dev/fuse:/dev/fuse:rwx']", "devices[0]: expected cgroup permissions"),
        ("devices: ['/dev/a:/dev/b:r:x']", "devices[0]: expected '/dev/HOST[:/dev/CONTAINER"),
        ("devices: [{target: /dev/fuse}]", "devices[0]: 'source' is required"),
        ("devices: [{source: /dev/fuse, permissions: x}]", "devices[0].permissions: expected"),
        ("devices: /dev/fuse", "devices: expected a list of"),
        ("device_cgroup_rules: ['c 1:3']", "device_cgroup_rules[0]: expected a rule 'TYPE "
                                           "MAJOR:MINOR PERMISSIONS'"),
        ("cpu_shares: 1", "cpu_shares: expected a relative weight from 2 to 262144"),
        ("cpuset: 0-", "cpuset: expected cpus such as '0-3' or '1,3', got '0-'"),
        ("oom_score_adj: 1001", "oom_score_adj: expected an integer from -1000 to 1000"),
        ("oom_kill_disable: yes", "oom_kill_disable: expected true or false, got 'yes'"),
        ("memswap_limit: 1g", "memswap_limit: needs a memory limit (mem_limit or "
                              "deploy.resources.limits.memory)"),
        ("mem_limit: 1g\nmemswap_limit: 512m", "memswap_limit: expected at least the memory "
                                               "limit (1073741824 bytes), or -1"),
        ("memswap_limit: lots", "memswap_limit (or -1): expected a size"),
        ("runtime: ''", "runtime: expected a non-empty string, got ''"),
        ("cgroup_parent: 3", "cgroup_parent: expected a non-empty string, got 3"),
        ("storage_opt: [size=1G]", "storage_opt: expected a mapping such as {size: 1G}"),
        ("blkio_config: {weight: 5}", "blkio_config.weight: expected a weight from 10 to 1000"),
        ("cpus: lots", "cpus: expected a positive number of cpus"),
        ("mem_limit: lots", "mem_limit: expected a size"),
        ("scale: -1", "scale: expected a non-negative integer, got -1"),
        ("scale: 2\ndeploy: {mode: global}", "scale: not allowed with deploy.mode: global"),
        ("cpu_quota: 10", "cpu_quota: expected microseconds >= 1000, got 10"),
        ("cpu_quota: 1000\ncpu_period: 10", "cpu_period: expected microseconds from 1000"),
        ("deploy: {endpoint_mode: rr}", "deploy.endpoint_mode: expected 'vip' or 'dnsrr'"),
        ("deploy: {placement: {max_replicas_per_node: x}}",
         "deploy.placement.max_replicas_per_node: expected a non-negative integer"),
        ("deploy: {resources: {limits: {pids: 0}}}",
         "deploy.resources.limits.pids: expected a positive integer, got 0"),
    ],
)
def test_bad_values_and_refused_keys_name_the_service_and_the_key(keys: str,
                                                                  expected: str) -> None:
    assert _error(keys).startswith(f"stack.yml: service 'web': {expected}")


def test_top_level_include_is_refused_saying_how_to_merge() -> None:
    with pytest.raises(SpecError, match="top-level key 'include': Podium reads one file"):
        read_stack("include: [a.yml]\nservices: {web: {image: x}}\n")


def test_every_service_key_of_the_compose_spec_is_handled() -> None:
    """No key of the spec's service (and deploy) definition is refused as unknown."""
    from podium.client._compose_engine import IGNORED, REFUSED
    from podium.client._compose_options import IGNORED as OPTIONS_IGNORED
    from podium.client.compose import _SUPPORTED, _WARNED

    handled = set(_SUPPORTED[""]) | set(_WARNED)
    assert set(IGNORED) | set(OPTIONS_IGNORED) | set(REFUSED) <= set(_WARNED)
    assert SERVICE_KEYS <= handled, sorted(SERVICE_KEYS - handled)
    assert DEPLOY_KEYS <= set(_SUPPORTED["deploy"])


# The Compose specification's service and deployment properties (schema/compose-spec.json).
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add",
    "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
    "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
    "memswap_limit", "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj",
    "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop", "privileged",
    "profiles", "provider", "pull_policy", "pull_refresh_after", "read_only", "restart",
    "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
}
DEPLOY_KEYS = {"endpoint_mode", "labels", "mode", "placement", "replicas", "resources",
               "restart_policy", "rollback_config", "update_config"}


def test_the_readme_spec_reference_has_a_row_for_every_key() -> None:
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Spec reference", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    missing = [key for key in sorted(SERVICE_KEYS) + [f"deploy.{k}" for k in DEPLOY_KEYS]
               if not any(f"`{key}`" in row.split(" | ")[0] or f"`{key}." in row for row in rows)]
    assert missing == []
