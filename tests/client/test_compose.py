"""Compose file -> ServiceSpec translation: what a valid file becomes, and what each error says."""

from __future__ import annotations

import textwrap

import pytest
from google.protobuf.duration_pb2 import Duration

from podium.client.compose import SpecError, load_stack, parse_bytes, parse_duration
from podium.v1 import objects
from tests.client._composekit import web_file

PortConfig = objects.PortConfig
RestartPolicy = objects.RestartPolicy

FULL = """
name: shop
version: "3.9"
x-common: &common
  FROM_ANCHOR: "yes"
services:
  web:
    image: nginx:1.27
    command: nginx -g "daemon off;"
    entrypoint: ["/docker-entrypoint.sh"]
    environment:
      <<: *common
      MODE: production
      WORKERS: 4
      RATIO: 1.0
      DEBUG: false
      EMPTY:
      ANSWER: yes
    labels: ["team=web", "tier"]
    init: true
    stop_grace_period: 1m30s
    x-note: ignored
    ports:
      - "8080:80"
      - 22:22
      - "127.0.0.1:5353:53/udp"
      - "9000-9001:9100-9101"
      - 443
      - target: 8443
        published: "8444"
        protocol: udp
        mode: host
        host_ip: "::1"
      - target: 9443
    deploy:
      replicas: 3
      labels: {owner: ops}
      resources:
        reservations: {cpus: "0.3", memory: 256m}
        limits: {cpus: 2, memory: 1.5GiB}
      placement:
        constraints: ["node.labels.zone==a", " node.name != db1 "]
  agent:
    image: example/agent
    environment: ["A=1", "B=x=y", "C"]
    deploy:
      mode: global
"""


def test_full_file_round_trips_into_service_specs() -> None:
    web, agent = load_stack(FULL, source="shop.yml")

    assert (web.name, web.stack) == ("shop_web", "shop")
    assert (agent.name, agent.stack) == ("shop_agent", "shop")
    c = web.container
    assert c.image == "nginx:1.27"
    assert list(c.command) == ["nginx", "-g", "daemon off;"]
    assert list(c.entrypoint) == ["/docker-entrypoint.sh"]
    assert dict(c.env) == {
        "FROM_ANCHOR": "yes", "MODE": "production", "WORKERS": "4", "RATIO": "1",
        "DEBUG": "false", "EMPTY": "", "ANSWER": "yes",  # YAML 1.2: yes is a string
    }  # fmt: skip
    assert dict(c.labels) == {"team": "web", "tier": ""}
    assert c.init is True
    assert c.stop_grace_period.ToNanoseconds() == 90 * 10**9

    tcp, udp = PortConfig.PROTOCOL_TCP, PortConfig.PROTOCOL_UDP
    ingress, host = PortConfig.PUBLISH_MODE_INGRESS, PortConfig.PUBLISH_MODE_HOST
    assert list(web.ports) == [
        PortConfig(protocol=tcp, target_port=80, published_port=8080, mode=ingress),
        PortConfig(protocol=tcp, target_port=22, published_port=22, mode=ingress),  # not 1342
        PortConfig(protocol=udp, target_port=53, published_port=5353, host_ip="127.0.0.1"),
        PortConfig(protocol=tcp, target_port=9100, published_port=9000),
        PortConfig(protocol=tcp, target_port=9101, published_port=9001),
        PortConfig(protocol=tcp, target_port=443, published_port=0, mode=ingress),
        PortConfig(protocol=udp, target_port=8443, published_port=8444, mode=host, host_ip="::1"),
        PortConfig(protocol=tcp, target_port=9443, published_port=0, mode=ingress),
    ]

    assert web.mode == objects.ServiceSpec.MODE_REPLICATED
    assert web.replicas == 3
    assert dict(web.labels) == {"owner": "ops"}
    Resources = objects.Resources
    assert web.resources.reservations == Resources(nano_cpus=300_000_000, memory_bytes=256 << 20)
    assert web.resources.limits == Resources(nano_cpus=2 * 10**9, memory_bytes=3 << 29)
    assert list(web.placement.constraints) == ["node.labels.zone == a", "node.name != db1"]

    assert agent.mode == objects.ServiceSpec.MODE_GLOBAL
    assert agent.replicas == 0
    assert dict(agent.container.env) == {"A": "1", "B": "x=y", "C": ""}


def test_naming_without_stack_and_with_stack_argument() -> None:
    text = "services:\n  web:\n    image: nginx\n"
    (plain,) = load_stack(text)
    assert (plain.name, plain.stack, plain.replicas) == ("web", "", 1)
    assert plain.mode == objects.ServiceSpec.MODE_REPLICATED
    (staged,) = load_stack("name: fromfile\n" + text, stack="override")
    assert (staged.name, staged.stack) == ("override_web", "override")


def test_services_keep_file_order() -> None:
    text = "services:\n  b: {image: x}\n  a: {image: x}\n  c: {image: x}\n"
    assert [spec.name for spec in load_stack(text)] == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10s", 10), ("1m30s", 90), ("1h", 3600), ("1.5h", 5400), ("500ms", 0.5), ("2us", 2e-6),
     ("0", 0), (12, 12), (2.5, 2.5)],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, where="x") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10", "ten", "-1s", "1d", "", True, None, -3, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(SpecError, match=r"^where: expected a duration"):
        parse_duration(value, where="where")


@pytest.mark.parametrize(
    ("value", "size"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1GB", 1 << 30), ("1.5GiB", 3 << 29), ("100kb", 102400),
     ("2048", 2048), ("7b", 7), (4096, 4096), ("2 M", 2 << 20)],
)  # fmt: skip
def test_parse_bytes(value: object, size: int) -> None:
    assert parse_bytes(value, where="x") == size


@pytest.mark.parametrize("value", ["lots", "1x", "-1m", "1.5q", True, 1.5, -1, "9999999p"])
def test_parse_bytes_rejects(value: object) -> None:
    with pytest.raises(SpecError, match=r"^where: expected a size"):
        parse_bytes(value, where="where")


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_stack(textwrap.dedent(text), source="stack.yml")
    message = str(info.value)
    assert message.startswith("stack.yml: ")
    return message


def _service_error(keys: str) -> str:
    """The error for service 'web' (image: nginx) with `keys` added."""
    return _error(web_file(keys))


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            "volume_from: [db]",
            "stack.yml: service 'web': key 'volume_from' is not supported by Podium (supported:"
            " blkio_config, cap_add, cap_drop, cgroup_parent, command, configs, cpu_period,"
            " cpu_quota, cpu_shares, cpus, cpuset, depends_on, deploy, device_cgroup_rules,"
            " devices, dns, dns_opt, dns_search, domainname, entrypoint, env_file, environment,"
            " expose, extra_hosts, group_add, healthcheck, hostname, image, init, ipc, label_file,"
            " labels, logging, mem_limit, mem_reservation, memswap_limit, networks,"
            " oom_kill_disable, oom_score_adj, pid, pids_limit, ports, privileged, profiles,"
            " read_only, restart, runtime, scale, secrets, security_opt, shm_size, stdin_open,"
            " stop_grace_period, stop_signal, storage_opt, sysctls, tmpfs, tty, ulimits, user,"
            " userns_mode, volumes, working_dir, x-podium-autoscale, x-podium-canary,"
            " x-podium-fence, x-podium-healthy-deadline, x-podium-probe, x-podium-routing)",
        ),
        ("restart_on: always", "key 'restart_on' is not supported by Podium"),
        ("logging: {driver: syslog, opts: {}}", "key 'logging.opts' is not supported"),
        ("healthcheck: {test: 'true', command: x}", "key 'healthcheck.command' is not supported"),
        ("deploy: {restart_policy: {backoff: 2}}", "key 'deploy.restart_policy.backoff' is not"),
        ("x-podium-probe: {exec: {}}", "key 'x-podium-probe.exec' is not supported by Podium ("),
        ("x-podium-probe: {tcp: {port: 80, path: /}}", "key 'x-podium-probe.tcp.path' is not"),
        ("deploy: {update_config: {rollback: 1}}", "key 'deploy.update_config.rollback' is not"),
        ("deploy: {rollback_config: {monitor: 1s, x: 1}}", "key 'deploy.rollback_config.x' is"),
        ("x-podium-canary: {count: 1, promote: 1}", "key 'x-podium-canary.promote' is not"),
        ("deploy: {endpoint: vip}", "key 'deploy.endpoint' is not supported by Podium ("),
        ("deploy: {resources: {limits: {pid: 5}}}", "key 'deploy.resources.limits.pid'"),
        ("deploy: {placement: {spread: []}}", "key 'deploy.placement.spread'"),
        ("blkio_config: {weights: 10}", "key 'blkio_config.weights' is not supported"),
        ("devices: [{source: /dev/fuse, mode: rw}]", "key 'devices[0].mode' is not supported"),
        ("ports: [{target: 80, name: http}]", "key 'ports[0].name' is not supported"),
    ],
)
def test_unsupported_keys_are_named(keys: str, expected: str) -> None:
    message = _service_error(keys)
    assert expected in message
    assert "service 'web'" in message


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("deploy: {replicas: three}", "replicas: expected a non-negative integer, got 'three'"),
        ("deploy: {replicas: -1}", "deploy.replicas: expected a non-negative integer, got -1"),
        ("deploy: {mode: global, replicas: 2}", "deploy.replicas: not allowed with mode: global"),
        ("deploy: {mode: daemon}", "deploy.mode: expected 'replicated' or 'global', got 'daemon'"),
        ("deploy: {resources: {limits: {cpus: lots}}}", "deploy.resources.limits.cpus: expected a"),
        ("deploy: {resources: {limits: {cpus: 0}}}", "deploy.resources.limits.cpus: expected a"),
        ("deploy: {resources: {reservations: {memory: 1x}}}", "reservations.memory: expected a"),
        (
            "deploy: {placement: {constraints: ['zone==a']}}",
            "deploy.placement.constraints[0]: expected 'node.name|node.id|node.hostname",
        ),
        ("deploy: {placement: {constraints: ['node.labels.zone==']}}", "constraints[0]: expected"),
        ("deploy: {placement: {constraints: ['node.role==manager']}}", "constraints[0]: expected"),
        ("ports: ['80:80:80:80']", "ports[0]: expected an IP address"),
        ("ports: ['70000:80']", "ports[0]: expected a port number from 1 to 65535, got '70000'"),
        ("ports: ['8080:80/sctp']", "ports[0]: expected 'tcp' or 'udp', got 'sctp'"),
        ("ports: ['9000-9002:80']", "ports[0]: expected published and target ranges of the same"),
        ("ports: ['9002-9000:80-82']", "ports[0]: expected a port range LOW-HIGH"),
        ("ports: [{published: 80}]", "ports[0]: 'target' is required"),
        ("ports: [{target: 80, mode: vip}]", "ports[0].mode: expected 'ingress' or 'host'"),
        ("environment: {A: [1, 2]}", "environment.A: expected a string, number, boolean or null"),
        ("environment: ['=x']", "environment[0]: expected a 'KEY=VALUE' or 'KEY' string"),
        ("labels: oops", "labels: expected a mapping or a list of 'KEY=VALUE' strings"),
        ("command: 'echo \"unclosed'", "command: cannot split"),
        ("entrypoint: [sh, 1]", "entrypoint: expected a string or a list of strings"),
        ("init: 'yes'", "init: expected true or false, got 'yes'"),
        ("stop_grace_period: soon", "stop_grace_period: expected a duration"),
        ("deploy: [replicas]", "deploy: expected a mapping, got ['replicas']"),
    ],
)
def test_malformed_values_name_service_key_and_what_is_accepted(keys: str, expected: str) -> None:
    message = _service_error(keys)
    assert message.startswith("stack.yml: service 'web': ")
    assert expected in message


def test_missing_image() -> None:
    message = _error("services:\n  web:\n    command: [sleep, '1']\n")
    assert "service 'web': image: expected a non-empty image name" in message


def test_yaml_syntax_error_names_source_and_line() -> None:
    text = "services:\n  web:\n    image: nginx\n    ports: [80\n  db:\n    image: x\n"
    message = _error(text)
    assert message.startswith("stack.yml: line ")
    assert "invalid YAML" in message
    line = int(message.split("line ")[1].split(",")[0])
    assert 4 <= line <= 6


def test_repeated_keys_are_refused_not_overwritten() -> None:
    message = _error("services:\n  web: {image: a}\n  web: {image: b}\n")
    assert message == "stack.yml: line 3, column 3: invalid YAML: key 'web' is given twice"


def test_port_host_addresses() -> None:
    text = "services:\n  web:\n    image: x\n    ports: ['[::1]:81:80', '127.0.0.1::82']\n"
    (web,) = load_stack(text)
    assert [(p.host_ip, p.published_port, p.target_port) for p in web.ports] == [
        ("::1", 81, 80),
        ("127.0.0.1", 0, 82),
    ]


def test_yaml_python_tags_are_refused() -> None:
    assert "invalid YAML" in _error("services: !!python/object/apply:os.system [echo]\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping with 'services' at the top, got None"),
        ("- a\n- b\n", "expected a mapping with 'services' at the top"),
        ("name: s\n", "services: expected a non-empty mapping, got None"),
        ("services: {}\n", "services: expected a non-empty mapping, got {}"),
        (
            "services: {web: {image: x}}\ninclude: [other.yaml]\n",
            "top-level key 'include': Podium reads one file: merge the files first with "
            "`docker compose config > merged.yml`",
        ),
        (
            "services: {web: {image: x}}\nincludes: [other.yaml]\n",
            "top-level key 'includes' is not supported by Podium"
            " (supported: configs, models, name, networks, secrets, services, version, volumes)",
        ),
        ("name: 'my stack'\nservices: {web: {image: x}}\n", "invalid stack name 'my stack'"),
        ("services: {'-web': {image: x}}\n", "service '-web': invalid service name"),
        ("services: {web: nginx}\n", "service 'web': expected a mapping, got 'nginx'"),
        (f"name: {'s' * 60}\nservices: {{web: {{image: x}}}}\n", "is longer than 63 characters"),
    ],
)
def test_top_level_errors(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_extension_keys_are_ignored_everywhere() -> None:
    text = """
    x-defaults: {a: 1}
    services:
      web:
        image: x
        x-meta: 1
        deploy:
          x-deploy: 1
          resources: {x-r: 1, limits: {x-l: 1, cpus: 1}}
          placement: {x-p: 1}
        ports: [{target: 80, x-port: 1}]
    """
    (web,) = load_stack(textwrap.dedent(text))
    assert web.resources.limits.nano_cpus == 10**9


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def _one(keys: str) -> objects.ServiceSpec:
    """Service 'web' (image: nginx) with `keys` added."""
    (spec,) = load_stack(web_file(keys))
    return spec


def test_checks_and_restart_policy_are_unset_when_not_given() -> None:
    spec = _one("")
    assert not spec.container.HasField("healthcheck")
    assert not spec.HasField("probe")
    assert not spec.HasField("restart_policy")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("healthcheck: {test: curl -f localhost}", ["CMD-SHELL", "curl -f localhost"]),
        ("healthcheck: {test: [CMD, curl, -f, localhost]}", ["CMD", "curl", "-f", "localhost"]),
        ("healthcheck: {test: [CMD-SHELL, 'exit 0']}", ["CMD-SHELL", "exit 0"]),
        ("healthcheck: {test: [NONE]}", ["NONE"]),
        ("healthcheck: {disable: true}", ["NONE"]),
        ("healthcheck: {disable: true, test: [NONE]}", ["NONE"]),
        ("healthcheck: {disable: false, test: 'true'}", ["CMD-SHELL", "true"]),
        ("healthcheck: {interval: 5s}", []),  # the image's HEALTHCHECK command, with timing
    ],
)
def test_healthcheck_test_forms(keys: str, expected: list[str]) -> None:
    check = _one(keys).container.healthcheck
    assert list(check.test) == expected


def test_healthcheck_sets_given_fields_only() -> None:
    spec = _one(
        """
        healthcheck:
          test: ["CMD", "wget", "-qO-", "http://127.0.0.1/"]
          interval: 1m30s
          timeout: 500ms
          retries: 5
          start_period: 0
          x-note: ignored
        """
    )
    check = spec.container.healthcheck
    assert check == objects.HealthCheck(
        test=["CMD", "wget", "-qO-", "http://127.0.0.1/"],
        interval=_seconds(90), timeout=_seconds(0.5), retries=5, start_period=_seconds(0),
    )  # fmt: skip
    assert check.HasField("start_period")  # given as 0: set, the engine's "inherit"
    assert not check.HasField("start_interval")
    only_timing = _one("healthcheck: {start_interval: 2s}").container.healthcheck
    assert only_timing == objects.HealthCheck(start_interval=_seconds(2))
    assert not only_timing.HasField("interval")
    assert _one("healthcheck: {}").container.HasField("healthcheck")


def test_probe_http_defaults_are_written_into_the_spec() -> None:
    probe = _one("x-podium-probe: {http: {port: 8080}}").probe
    assert probe == objects.Probe(
        kind=objects.Probe.KIND_HTTP, port=8080, path="/", status_min=200, status_max=399,
        interval=_seconds(10), timeout=_seconds(2), retries=3, start_period=_seconds(0),
    )  # fmt: skip
    assert probe.HasField("start_period")
    assert not probe.HasField("start_interval")


def test_probe_http_with_every_key() -> None:
    spec = _one(
        """
        x-podium-probe:
          http: {port: "80", path: "/healthz?full=1", status: 200-299}
          interval: 30s
          timeout: 1.5s
          retries: 1
          start_period: 1m
          start_interval: 1s
        """
    )
    assert spec.probe == objects.Probe(
        kind=objects.Probe.KIND_HTTP, port=80, path="/healthz?full=1", status_min=200,
        status_max=299, interval=_seconds(30), timeout=_seconds(1.5), retries=1,
        start_period=_seconds(60), start_interval=_seconds(1),
    )  # fmt: skip


@pytest.mark.parametrize(("status", "expected"), [("204", (204, 204)), ("'200'", (200, 200))])
def test_probe_http_single_status(status: str, expected: tuple[int, int]) -> None:
    probe = _one(f"x-podium-probe: {{http: {{port: 80, status: {status}}}}}").probe
    assert (probe.status_min, probe.status_max) == expected


def test_probe_tcp() -> None:
    probe = _one("x-podium-probe: {tcp: {port: 5432}, interval: 3s}").probe
    assert probe == objects.Probe(
        kind=objects.Probe.KIND_TCP, port=5432, interval=_seconds(3), timeout=_seconds(2),
        retries=3, start_period=_seconds(0),
    )  # fmt: skip


def test_probe_from_a_merged_anchor() -> None:
    text = """
    x-probe: &probe {tcp: {port: 80}}
    services:
      web:
        image: nginx
        x-podium-probe: *probe
    """
    (web,) = load_stack(textwrap.dedent(text))
    assert (web.probe.kind, web.probe.port) == (objects.Probe.KIND_TCP, 80)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("{}", RestartPolicy(condition=RestartPolicy.CONDITION_ANY)),
        ("{condition: none}", RestartPolicy(condition=RestartPolicy.CONDITION_NONE)),
        (
            "{condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}",
            RestartPolicy(
                condition=RestartPolicy.CONDITION_ON_FAILURE, delay=_seconds(5),
                max_attempts=3, window=_seconds(120),
            ),
        ),
        ("{max_attempts: 0}", RestartPolicy()),
    ],
)  # fmt: skip
def test_restart_policy(keys: str, expected: RestartPolicy) -> None:
    spec = _one(f"deploy: {{restart_policy: {keys}}}")
    assert spec.HasField("restart_policy")
    assert spec.restart_policy == expected
    for field in ("delay", "window"):
        assert spec.restart_policy.HasField(field) == expected.HasField(field)


_TEST_FORMS = "expected a command string, or a list ['CMD', ARG, ...], ['CMD-SHELL', COMMAND]"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("healthcheck: {test: [curl, localhost]}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: [CMD]}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: [CMD-SHELL, a, b]}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: [NONE, x]}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: []}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: ''}", f"healthcheck.test: {_TEST_FORMS}"),
        ("healthcheck: {test: [CMD, 1]}", f"healthcheck.test: {_TEST_FORMS}"),
        (
            "healthcheck: {disable: true, test: 'true'}",
            "healthcheck.disable: not allowed with a test other than ['NONE']",
        ),
        ("healthcheck: {disable: 'yes'}", "healthcheck.disable: expected true or false, got 'yes'"),
        ("healthcheck: {interval: often}", "healthcheck.interval: expected a duration"),
        ("healthcheck: {timeout: 500us}", "healthcheck.timeout: expected 0 or at least 1ms"),
        ("healthcheck: {retries: -1}", "healthcheck.retries: expected a non-negative integer"),
        ("healthcheck: {retries: 1.5}", "healthcheck.retries: expected a non-negative integer"),
        ("healthcheck: [CMD, 'true']", "healthcheck: expected a mapping"),
        (
            "x-podium-probe: {interval: 5s}",
            "x-podium-probe: expected exactly one of 'http' or 'tcp', got neither",
        ),
        (
            "x-podium-probe: {http: {port: 80}, tcp: {port: 80}}",
            "x-podium-probe: expected exactly one of 'http' or 'tcp', got both",
        ),
        ("x-podium-probe: {http: {path: /}}", "x-podium-probe.http: 'port' is required"),
        ("x-podium-probe: {tcp: {}}", "x-podium-probe.tcp: 'port' is required"),
        ("x-podium-probe: {tcp: 80}", "x-podium-probe.tcp: expected a mapping, got 80"),
        ("x-podium-probe: {tcp: {port: 0}}", "x-podium-probe.tcp.port: expected a port number"),
        ("x-podium-probe: {http: {port: 70000}}", "x-podium-probe.http.port: expected a port"),
        (
            "x-podium-probe: {http: {port: 80, path: health}}",
            "x-podium-probe.http.path: expected a path starting with '/', without spaces",
        ),
        ("x-podium-probe: {http: {port: 80, path: '/a b'}}", "x-podium-probe.http.path: expected"),
        (
            "x-podium-probe: {http: {port: 80, status: 299-200}}",
            "x-podium-probe.http.status: expected an HTTP status such as 200, or a range",
        ),
        ("x-podium-probe: {http: {port: 80, status: 600}}", "x-podium-probe.http.status: expected"),
        ("x-podium-probe: {http: {port: 80, status: ok}}", "x-podium-probe.http.status: expected"),
        ("x-podium-probe: {http: {port: 80, status: true}}", "probe.http.status: expected an HTTP"),
        ("x-podium-probe: {tcp: {port: 80}, interval: 0}", "x-podium-probe.interval: expected a"),
        ("x-podium-probe: {tcp: {port: 80}, timeout: 0s}", "x-podium-probe.timeout: expected a"),
        ("x-podium-probe: {tcp: {port: 80}, start_period: -1s}", "start_period: expected a dur"),
        ("x-podium-probe: {tcp: {port: 80}, retries: 0}", "retries: expected a positive integer"),
        ("x-podium-probe: tcp", "x-podium-probe: expected a mapping, got 'tcp'"),
        (
            "deploy: {restart_policy: {condition: always}}",
            "deploy.restart_policy.condition: expected 'none' or 'on-failure' or 'any',"
            " got 'always'",
        ),
        ("deploy: {restart_policy: {delay: soon}}", "deploy.restart_policy.delay: expected a dur"),
        ("deploy: {restart_policy: {window: -5}}", "deploy.restart_policy.window: expected a dur"),
        (
            "deploy: {restart_policy: {max_attempts: three}}",
            "deploy.restart_policy.max_attempts: expected a non-negative integer, got 'three'",
        ),
        ("deploy: {restart_policy: on-failure}", "deploy.restart_policy: expected a mapping"),
    ],
)
def test_check_and_restart_errors_name_service_and_key(keys: str, expected: str) -> None:
    message = _service_error(keys)
    assert message.startswith("stack.yml: service 'web': ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "services: {web: {image: x, deploy: {x-podium-probe: {tcp: {port: 80}}}}}\n",
            "stack.yml: service 'web': deploy.x-podium-probe: only recognized directly under a"
            " service",
        ),
        (
            "services: {web: {image: x, x-podium-probe: {tcp: {port: 80, x-podium-probe: 1}}}}\n",
            "service 'web': x-podium-probe.tcp.x-podium-probe: only recognized directly under",
        ),
        (
            "x-podium-probe: {tcp: {port: 80}}\nservices: {web: {image: x}}\n",
            "stack.yml: top-level key 'x-podium-probe': only recognized directly under a service",
        ),
    ],
)
def test_misplaced_probe_is_an_error_not_ignored(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_fence_extension_sets_fence_after() -> None:
    [spec] = load_stack("services:\n  db:\n    image: x\n    x-podium-fence: 15s\n")
    assert spec.fence_after.ToSeconds() == 15
    with pytest.raises(SpecError, match="x-podium-fence"):
        load_stack("services:\n  db:\n    image: x\n    x-podium-fence: soon\n")
    with pytest.raises(SpecError, match="only recognized directly under a service"):
        load_stack("services:\n  db:\n    image: x\n    deploy: {x-podium-fence: 1s}\n")


def test_routing_extension() -> None:
    [spec] = load_stack("services:\n  web:\n    image: x\n    ports: ['8080:80']\n"
                        "    x-podium-routing: {balance: round-robin, proxy_protocol: true}\n")
    assert spec.routing.balance == objects.Routing.BALANCE_ROUND_ROBIN
    assert spec.routing.proxy_protocol
    with pytest.raises(SpecError, match=r"x-podium-routing\.balance"):
        load_stack("services:\n  web:\n    image: x\n    x-podium-routing: {balance: random}\n")
