"""The Compose parser on generated files: whatever the file, read_stack returns a Stack or raises
SpecError, and every SpecError's message says where the problem is (a service, a key, a
top-level key, or the line of a YAML error).

Most files are plausible Compose documents (services whose keys come from the parser's own key
tables, with values of every YAML type, nested mappings keyed from the same tables), dumped as
YAML; the rest are YAML-ish text made of Compose words and YAML punctuation. The profile is
derandomized, so a run is reproducible, and sized for the fast lane: FUZZ_EXAMPLES (10,000 by
default) files in all, in a few seconds.
"""

from __future__ import annotations

import copy
import os
import pathlib
import random
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.client import _compose_engine, _compose_options
from podium.client.compose import (
    _PODIUM_KEYS,
    _SUPPORTED,
    _TOP_LEVEL,
    _WARNED,
    SpecError,
    _Loader,
    read_stack,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
# Split between the two generators: mostly structured documents, which reach deeper.
STRUCTURED = EXAMPLES * 4 // 5
TEXT = EXAMPLES - STRUCTURED
# Each generated document is read as it is and as FILES_PER_DOCUMENT - 1 mutants of it (values
# replaced anywhere, seeded by the example): drawing the documents is what costs most.
FILES_PER_DOCUMENT = 8
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when PyYAML has it: faster

_PROFILE = settings(
    deadline=None,  # timings are noisy on shared cores: count examples, not milliseconds
    derandomize=True,  # the same files on every run, so CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

SERVICE_KEYS = sorted({*_SUPPORTED[""], *_WARNED, *_compose_options.IGNORED,
                       *_compose_engine.IGNORED, *_compose_engine.REFUSED})
# Every key any table of the parser knows, for nested mappings.
NESTED_KEYS = sorted({key for keys in _SUPPORTED.values() for key in keys}
                     | {"external", "name", "file", "environment", "content", "source", "target",
                        "type", "read_only", "bind", "volume", "tmpfs", "uid", "gid", "mode",
                        "driver", "driver_opts", "aliases", "ipv4_address", "priority", "path",
                        "port", "status", "x-extra"})
# Strings in the forms the parser reads (durations, sizes, ports, paths, constraints, ...).
PLAUSIBLE = ["10s", "1m30s", "500ms", "1.5h", "0", "512m", "1g", "1.5GiB", "80", "8080:80",
             "127.0.0.1:53:53/udp", "[::1]:80:80", "80-82:80-82", "/data:/data:ro", "data:/d",
             "node.role==manager", "node.labels.zone != a", "CMD", "CMD-SHELL", "NONE",
             "echo hi", "busybox", "web", "default", "host", "ingress", "tcp", "udp", "sctp",
             "on-failure", "on-failure:3", "always", "no", "unless-stopped", "pause", "rollback",
             "start-first", "stop-first", "global", "replicated", "least-connections",
             "round-robin", "KEY=value", "KEY", "a.env", "secret.txt", "missing.txt", "../up",
             "/dev/sda:/dev/xvda:rwm", "SIGTERM", "nofile", "0.5", "1e400", "-1", "", " ",
             "x-podium-probe", "${VAR}", "service_healthy", "/", "a" * 300]
SERVICE_NAMES = ["web", "db", "api", "w", "a-b", "a_b", "Web", "1"] * 8 + ["", "-x", "é", "x" * 70]

# Scalars of every YAML type, drawn from a pool (cheap to draw) or generated.
POOL = [None, True, False, 0, 1, -1, 7, 2**31, 2**32, 2**63, 2**64, 10**30, -(2**63) - 1, 0.5,
        -2.5, 1e308, float("inf"), float("-inf"), float("nan"), -0.0, "é", "\U0001f600",
        "\u202e", "a\nb", *PLAUSIBLE]
scalars = st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), st.sampled_from(POOL),
                    st.text(max_size=8), st.integers(), st.floats())
mapping_keys = st.one_of(st.sampled_from(NESTED_KEYS), st.sampled_from(NESTED_KEYS),
                         st.sampled_from([1, 0, True, None, "", "é", "x-a"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(mapping_keys, inner, max_size=3),
    ),
    max_leaves=6,
)
CORPUS = pathlib.Path(__file__).parent / "corpus"


def _corpus_values() -> dict[str, list[Any]]:
    """Service key -> the values the corpus of real projects' files gives it (all valid)."""
    found: dict[str, list[Any]] = {}
    for path in sorted(CORPUS.glob("*.yml")):
        for service in yaml.load(path.read_text(), Loader=_Loader)["services"].values():
            for key, value in service.items():
                found.setdefault(key, []).append(value)
    return found


VALID = _corpus_values()
# A drawn document's services: a baseline of valid values picked from VALID by the example's
# seed (so that most files get past their first keys), with a few keys of random values drawn
# over it.
random_keys = st.dictionaries(st.sampled_from(SERVICE_KEYS), values, max_size=2)
drawn_service = st.one_of(
    random_keys,
    random_keys,
    random_keys,
    st.just({}),
    st.just({}),
    st.sampled_from([None, [], "web", 1, {"image": None}]),  # not a mapping, or no image
)
services = st.dictionaries(st.sampled_from(SERVICE_NAMES), drawn_service, min_size=1, max_size=2)
top_level = st.one_of(
    *[st.just({})] * 4,
    st.dictionaries(
        st.sampled_from([*_TOP_LEVEL, "include", "x-anchors", "services2", *_PODIUM_KEYS]),
        values, max_size=2,
    ),
)
documents = st.builds(lambda top, svcs: {**top, "services": svcs}, top_level, services)


def _with_baseline(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """document with valid values under its services' keys, where the draw left them out."""
    for name, drawn in document["services"].items():
        if isinstance(drawn, dict):
            keys = rng.sample(sorted(VALID), rng.randrange(4))
            baseline = {key: copy.deepcopy(rng.choice(VALID[key])) for key in keys}
            baseline.setdefault("image", "busybox")
            document["services"][name] = {**baseline, **drawn}
    return document


YAML_WORDS = ["services", "web", "image", "busybox", "deploy", "replicas", "ports", "volumes",
              "networks", "secrets", "environment", "healthcheck", "test", "x-podium-probe",
              "&a", "*a", "<<", "!!str", "!!int", "!!binary", "!!python/object", "!!set", "?",
              "---", "...", "|", ">", "- ", ": ", ":", "\n", "\n  ", "\n    ", "\t", "#", "{",
              "}", "[", "]", ",", "'", '"', "%YAML 1.1", "%TAG", "@", "`", "\\", "\x00", "\ufeff",
              "22:22", "0755", "0x1F", "1e3", ".inf", ".nan", "yes", "~", "null", "2024-01-01",
              "é", "\U0001f600", "9" * 30]
yaml_text = st.lists(st.sampled_from(YAML_WORDS), max_size=30).map("".join)
# Near-misses: a small real file with a few of its characters cut, or cut short and doubled.
SMALL_FILES = [path.read_text() for path in sorted(CORPUS.glob("*.yml"))
               if path.stat().st_size < 500]
mutated = st.builds(
    lambda text, cut, length: text[:cut] + text[cut + length:] if length else text[:cut] * 2,
    st.sampled_from(SMALL_FILES), st.integers(0, 500), st.integers(0, 3),
)

# Where a message may say the problem is, after "SOURCE: ".
_WHERE = re.compile(
    r"^(?:service ['\"]|services: |top-level key |line \d+, column \d+: |invalid stack name "
    r"|no service to deploy|expected a mapping with 'services' at the top"
    r"|(?:networks|volumes|secrets|configs)[:.]|(?:network|volume|secret|config) ')"
)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Files a generated document may name (env_file, secrets' file, ...)."""
    path = tmp_path_factory.mktemp("fuzz")
    (path / "a.env").write_text("KEY=value\nOTHER\n# comment\n")
    (path / "secret.txt").write_text("s3cret\n")
    (path / "0").write_bytes(b"\xff\xfe not utf-8")
    (path / "web").mkdir()
    return path


def _check(text: str, directory: pathlib.Path) -> None:
    try:
        read_stack(text, source="f.yml", directory=directory, fallback_stack="fuzz")
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("f.yml: "), message
        assert _WHERE.match(message.removeprefix("f.yml: ")), f"{message}\nin:\n{text}"
    except Exception as exc:  # the file that crashed, to copy into a regression test
        raise AssertionError(f"{exc!r} on:\n{text}") from exc


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 1 or roll < 0.6:
        if roll < 0.1:  # any characters, control and surrogate-free
            return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF))))
                           for _ in range(rng.randrange(6)))
        return rng.choice(POOL)
    if roll < 0.8:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(NESTED_KEYS): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _containers(value: Any) -> list[Any]:
    """Every list and mapping inside value, value included."""
    found = [value] if isinstance(value, list | dict) else []
    for item in value.values() if isinstance(value, dict) else value if found else ():
        found.extend(_containers(item))
    return found


def _mutant(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """document (copied) with one or two values replaced or keys added, anywhere in it; under
    a service, most often: so each service key meets values of every type and shape."""
    mutant = copy.deepcopy(document)
    for _ in range(rng.randrange(1, 3)):
        table = mutant.get("services")
        table = table if isinstance(table, dict) else {}
        services = [value for value in table.values() if isinstance(value, dict)]
        if services and rng.random() < 0.3:
            rng.choice(services)[rng.choice(SERVICE_KEYS)] = _random_value(rng)
            continue
        # Anywhere inside a service, most often: the top level is checked first and simplest.
        inside = services and rng.random() < 0.9
        target = rng.choice(_containers(rng.choice(services) if inside else mutant))
        if isinstance(target, dict):
            key = rng.choice([*target, *NESTED_KEYS]) if target else rng.choice(NESTED_KEYS)
            target[key] = _random_value(rng)
        elif target:
            target[rng.randrange(len(target))] = _random_value(rng)
    return mutant


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)


@pytest.mark.fuzz
@settings(_PROFILE, max_examples=STRUCTURED // FILES_PER_DOCUMENT)
@given(document=documents, seed=st.integers(0, 2**32))
def test_structured_documents(document: dict[str, Any], seed: int,
                              directory: pathlib.Path) -> None:
    rng = random.Random(seed)
    document = _with_baseline(document, rng)
    _check(_dump(document), directory)
    for _ in range(FILES_PER_DOCUMENT - 1):
        _check(_dump(_mutant(document, rng)), directory)


@pytest.mark.fuzz
@settings(_PROFILE, max_examples=TEXT)
@given(text=st.one_of(yaml_text, mutated, st.text(max_size=60)))
def test_yaml_ish_text(text: str, directory: pathlib.Path) -> None:
    _check(text, directory)


# The files the fuzz test found crashing the parser, or giving a message that did not say where.


def _error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        read_stack(text, source="f.yml")
    return str(caught.value)


def test_a_character_yaml_refuses_is_reported_at_its_line() -> None:
    assert _error("\x1f") == (
        "f.yml: line 1, column 1: invalid YAML: character '\\x1f': special characters are not "
        "allowed"
    )
    assert _error("services:\n  web:\n    image: a\x07").startswith(
        "f.yml: line 3, column 13: invalid YAML: character '\\x07'"
    )


@pytest.mark.parametrize(("text", "error"), [
    ("!!int", "line 1, column 1: invalid YAML: not a valid !!int: ''"),
    ("services:\n  web: !!int 0x", "line 2, column 8: invalid YAML: not a valid !!int: '0x'"),
    ("x: !!float x", "line 1, column 4: invalid YAML: not a valid !!float: 'x'"),
    ("x: !!bool x", "line 1, column 4: invalid YAML: not a valid !!bool: 'x'"),
    ("x: !!timestamp x", "line 1, column 4: invalid YAML: not a valid !!timestamp: 'x'"),
    ("x: !!set [1]", "line 1, column 4: invalid YAML: cannot read this sequence as !!set"),
    ("x: !!map a", "line 1, column 4: invalid YAML: not a valid !!map: 'a'"),
    ("services:\n  ? [a]\n  : 1",
     "line 2, column 3: invalid YAML: cannot read this mapping as !!map: a key is a list or a "
     "mapping"),
])  # fmt: skip
def test_an_explicit_tag_on_a_value_it_cannot_read_is_reported_at_its_line(
    text: str, error: str
) -> None:
    assert _error(text) == f"f.yml: {error}"


def test_a_mapping_in_a_list_of_networks_names_the_item() -> None:
    text = "services:\n  w:\n    image: busybox\n    networks:\n    - group_add: stop-first\n"
    assert _error(text) == (
        "f.yml: service 'w': networks[0]: expected a network name, got {'group_add': 'stop-first'}"
    )


def test_a_document_that_contains_itself_is_refused() -> None:
    text = "services: &s\n  web:\n    image: busybox\n    command: *s\n"
    assert _error(text) == (
        "f.yml: line 1, column 11: invalid YAML: found unconstructable recursive node"
    )


def test_values_nested_too_deeply_are_refused_at_their_line() -> None:
    text = "services:\n  web:\n    image: " + "[" * 5000 + "]" * 5000
    assert _error(text).startswith("f.yml: line 3, column ")
    assert _error(text).endswith(": invalid YAML: lists or mappings nested too deeply")
