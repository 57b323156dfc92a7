"""Compose's container options, restart, env_file, depends_on, profiles and the ignored keys:
what each becomes in the spec, the warnings, and what each bad value's error says."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from podium.client.compose import SpecError, default_stack_name, load_stack, read_stack
from podium.v1 import objects
from tests.client._composekit import web as _web
from tests.client._composekit import web_error as _error

RestartPolicy = objects.RestartPolicy


def test_container_options() -> None:
    web, warnings = _web("""
        user: "1000:1000"
        working_dir: /app
        hostname: web-1
        cap_add: [NET_ADMIN]
        cap_drop: [ALL]
        sysctls: [net.core.somaxconn=1024]
        ulimits: {nofile: {soft: 1024, hard: 65536}, nproc: 512}
        stop_signal: SIGQUIT
        tty: true
        stdin_open: true
        extra_hosts: ["db.local:10.0.0.5", "v6=::1", "gw:host-gateway"]
        dns: 1.1.1.1
        dns_search: example.com
        dns_opt: [ndots:2]
        shm_size: 64m
        read_only: true
        logging: {driver: json-file, options: {max-size: 10m, max-file: 3}}
        expose: [80, "9000-9002/udp", "8080/tcp"]
        privileged: false
        security_opt: ["no-new-privileges:true"]
        group_add: [audio, 1001]
        pids_limit: 200
    """)
    c = web.container
    assert (c.user, c.working_dir, c.hostname) == ("1000:1000", "/app", "web-1")
    assert (list(c.cap_add), list(c.cap_drop)) == (["NET_ADMIN"], ["ALL"])
    assert dict(c.sysctls) == {"net.core.somaxconn": "1024"}
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 1024, 65536),
                                                             ("nproc", 512, 512)]
    assert c.stop_signal == "SIGQUIT" and c.tty and c.stdin_open and c.read_only
    assert list(c.extra_hosts) == ["db.local:10.0.0.5", "v6:::1", "gw:host-gateway"]
    assert (list(c.dns), list(c.dns_search), list(c.dns_opt)) == (
        ["1.1.1.1"], ["example.com"], ["ndots:2"])
    assert c.shm_size_bytes == 64 * 2**20
    assert (c.log_driver, dict(c.log_options)) == ("json-file", {"max-size": "10m",
                                                                 "max-file": "3"})
    assert list(c.expose) == ["80/tcp", "9000-9002/udp", "8080/tcp"]
    assert not c.privileged
    assert list(c.security_opt) == ["no-new-privileges:true"]
    assert list(c.group_add) == ["audio", "1001"] and c.pids_limit == 200
    assert warnings == []


def test_mapping_forms() -> None:
    web, _ = _web("""
        sysctls: {net.ipv4.ip_forward: 1}
        extra_hosts: {db: 10.0.0.5, many: [10.0.0.6, "::2"]}
        dns: [8.8.8.8, "2001:4860:4860::8888"]
        user: 1000
    """)
    assert dict(web.container.sysctls) == {"net.ipv4.ip_forward": "1"}
    assert list(web.container.extra_hosts) == ["db:10.0.0.5", "many:10.0.0.6", "many:::2"]
    assert list(web.container.dns) == ["8.8.8.8", "2001:4860:4860::8888"]
    assert web.container.user == "1000"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("working_dir: app", "working_dir: expected an absolute path such as '/app', got 'app'"),
        ("cap_add: NET_ADMIN", "cap_add: expected a list of non-empty strings, got 'NET_ADMIN'"),
        ("sysctls: 3", "sysctls: expected a mapping or a list of 'KEY=VALUE' strings"),
        ("ulimits: [nofile]", "ulimits: expected a mapping such as {nofile: 65536}"),
        ("ulimits: {nofile: {soft: 10}}", "ulimits.nofile: 'soft' and 'hard' are both required"),
        ("ulimits: {nofile: {soft: 10, hard: 5}}", "ulimits.nofile.soft: expected at most hard"),
        ("ulimits: {nofile: many}", "ulimits.nofile: expected an integer >= 0, or -1"),
        ("ulimits: {nofile: {soft: 1, hard: 2, max: 3}}", "key 'ulimits.nofile.max' is not"),
        ("stop_signal: 'kill -9'", "stop_signal: expected a signal such as 'SIGTERM'"),
        ("tty: 'yes'", "tty: expected true or false, got 'yes'"),
        ("extra_hosts: [db]", "extra_hosts[0]: expected 'HOST:IP' or 'HOST=IP', got 'db'"),
        ("extra_hosts: ['db:not-an-ip']", "extra_hosts[0]: expected an IP address or 'host-gat"),
        ("dns: [8.8.8.8, resolver]", "dns[1]: expected an IP address, got 'resolver'"),
        ("shm_size: lots", "shm_size: expected a size such as '512m'"),
        ("logging: {driver: 5}", "logging.driver: expected a log driver name"),
        ("expose: ['80/sctp']", "expose[0]: expected 'tcp' or 'udp', got 'sctp'"),
        ("expose: [70000]", "expose[0]: expected a port number from 1 to 65535"),
        ("expose: '80'", "expose: expected a list of ports"),
        ("pids_limit: 0", "pids_limit: expected a positive integer, or -1 for no limit, got 0"),
        ("group_add: [true]", "group_add: expected a list of group names or gids"),
        ("restart: sometimes", "restart: expected 'no', 'always', 'on-failure', 'on-failure:N'"),
        ("env_file: 5", "env_file: expected a path, a list of paths, or {path, required}"),
        ("depends_on: [cache]", "depends_on: expected services of this file (web), got 'cache'"),
        ("depends_on: {web: {condition: up}}", "depends_on.web.condition: expected 'service_st"),
        ("profiles: debug", "profiles: expected a list of profile names"),
    ],
)
def test_bad_values_name_service_key_and_what_is_accepted(keys: str, expected: str) -> None:
    message = _error(keys)
    assert message.startswith("stack.yml: service 'web': "), message
    assert expected in message


@pytest.mark.parametrize(
    ("restart", "condition", "attempts"),
    [
        ("'no'", RestartPolicy.CONDITION_NONE, 0),
        ("no", RestartPolicy.CONDITION_NONE, 0),
        ("always", RestartPolicy.CONDITION_ANY, 0),
        ("unless-stopped", RestartPolicy.CONDITION_ANY, 0),
        ("on-failure", RestartPolicy.CONDITION_ON_FAILURE, 0),
        ("on-failure:5", RestartPolicy.CONDITION_ON_FAILURE, 5),
    ],
)
def test_restart_maps_to_the_restart_policy(restart: str, condition: int, attempts: int) -> None:
    web, warnings = _web(f"restart: {restart}")
    assert (web.restart_policy.condition, web.restart_policy.max_attempts) == (condition, attempts)
    assert warnings == []


def test_deploy_restart_policy_wins_over_restart_with_a_warning() -> None:
    web, warnings = _web("restart: 'no'\ndeploy: {restart_policy: {condition: on-failure}}")
    assert web.restart_policy.condition == RestartPolicy.CONDITION_ON_FAILURE
    assert warnings == ["service 'web': ignoring restart: deploy.restart_policy is given and wins"]


def test_env_file_relative_to_the_file_and_environment_wins(tmp_path: pathlib.Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.env").write_text(
        "# settings\n\nA=1\nexport B='two words'\nC=\"x\"\nD=plain # note\nE=file\nF=\n"
    )
    (tmp_path / "local.env").write_text("A=override\n")
    web, _ = _web("""
        env_file: [conf/app.env, local.env, {path: missing.env, required: false}]
        environment: {E: explicit}
    """, directory=tmp_path)
    assert dict(web.container.env) == {"A": "override", "B": "two words", "C": "x",
                                       "D": "plain", "E": "explicit", "F": ""}


def test_env_file_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError, match=r"service 'web': env_file: cannot read .*gone.env"):
        _web("env_file: gone.env", directory=tmp_path)
    (tmp_path / "bad.env").write_text("A=1\nnot a pair\n")
    with pytest.raises(SpecError, match=r"env_file\[0\]: bad.env line 2: expected KEY=VALUE"):
        _web("env_file: [bad.env]", directory=tmp_path)


def test_ignored_keys_warn_once_per_key_per_service() -> None:
    text = textwrap.dedent("""
        services:
          api:
            image: api:1
            build: .
            container_name: api
            links: [db]
            depends_on: {db: {condition: service_healthy}}
          db:
            image: postgres:16
            container_name: db
    """)
    stack = read_stack(text)
    assert [s.name for s in stack.services] == ["api", "db"]
    assert stack.warnings == [
        "service 'api': ignoring container_name: a service runs many tasks, and Podium names "
        "each task's container itself",
        "service 'api': ignoring links: legacy links between containers of one host; Podium "
        "does not create them",
        "service 'api': ignoring build: Podium deploys images, it does not build them: the "
        "image named in `image` runs",
        "service 'db': ignoring container_name: a service runs many tasks, and Podium names "
        "each task's container itself",
    ]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("build: .", "stack.yml: service 'api': build without image: build it and give its "
                     "image name in `image`"),
        ("image: x\nnetwork_mode: 'service:db'", "stack.yml: service 'api': network_mode: "
                                                 "'service:db' shares another container's"),
        ("image: x\nnetwork_mode: 'container:abc'", "network_mode: 'container:abc' shares"),
        ("image: x\nnetwork_mode: host", "network_mode: 'host' is not supported by Podium yet"),
    ],
)
def test_files_that_would_run_otherwise_are_refused(keys: str, expected: str) -> None:
    body = textwrap.indent(keys, "    ")
    with pytest.raises(SpecError) as info:
        load_stack(f"services:\n  api:\n{body}\n", source="stack.yml")
    assert str(info.value).startswith("stack.yml: service 'api': ")
    assert expected in str(info.value)


def test_profiles_select_services() -> None:
    text = textwrap.dedent("""
        services:
          web: {image: nginx}
          debug: {image: busybox, profiles: [debug, tools]}
    """)
    stack = read_stack(text)
    assert [s.name for s in stack.services] == ["web"]
    assert stack.warnings == ["service 'debug': skipped: its profiles (debug, tools) were not "
                              "asked for (podium deploy --profile debug)"]
    stack = read_stack(text, profiles=["tools"])
    assert [s.name for s in stack.services] == ["web", "debug"] and stack.warnings == []


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("My App", "myapp"), ("shop.v2", "shopv2"), ("_x-1", "x-1"), ("...", None)],
)
def test_default_stack_name_is_the_folder_as_compose_makes_it(
    tmp_path: pathlib.Path, folder: str, expected: str | None
) -> None:
    assert default_stack_name(tmp_path / folder / "compose.yaml") == expected
