"""Compose files shaped like real projects' (tests/client/corpus/) deploy as they are written.

Each file says what it expects in its comments: `# warns: PREFIX`, one line per warning the
parser must give (and no other), for files under corpus/; `# error: TEXT`, the error's text
after the source, for files under corpus/refused/.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from podium.client.cli import main
from podium.client.compose import SpecError, read_stack
from tests.fakecontrol import FakeManager

CORPUS = pathlib.Path(__file__).parent / "corpus"
ACCEPTED = sorted(CORPUS.glob("*.yml"))
REFUSED = sorted((CORPUS / "refused").glob("*.yml"))


def _expected(path: pathlib.Path, kind: str) -> list[str]:
    return re.findall(rf"^# {kind}: (.*)$", path.read_text(), re.MULTILINE)


def test_the_corpus_is_large_enough() -> None:
    assert len(ACCEPTED) >= 20 and len(REFUSED) >= 4


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_each_file_is_accepted_with_the_expected_warnings(path: pathlib.Path) -> None:
    stack = read_stack(path.read_text(), source=path.name, directory=path.parent)
    expected = _expected(path, "warns")
    unmatched = list(stack.warnings)
    for prefix in expected:
        matches = [w for w in unmatched if w.startswith(prefix)]
        assert len(matches) == 1, f"{prefix!r} in {stack.warnings}"
        unmatched.remove(matches[0])
    assert unmatched == [], "warnings the file does not expect"
    document = yaml.safe_load(path.read_text())
    skipped = {w.split("'")[1] for w in stack.warnings if ": skipped: " in w}
    keys = [key for key in document["services"] if key not in skipped]
    prefix = f"{document['name']}_" if "name" in document else ""
    assert [s.name for s in stack.services] == [prefix + key for key in keys]
    assert all(s.container.image for s in stack.services)


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_each_unsupported_case_gives_its_error(path: pathlib.Path) -> None:
    (expected,) = _expected(path, "error")
    with pytest.raises(SpecError) as info:
        read_stack(path.read_text(), source=path.name, directory=path.parent)
    assert str(info.value).startswith(f"{path.name}: {expected}")


def test_env_file_is_read_relative_to_the_compose_file() -> None:
    path = CORPUS / "django-postgres-redis.yml"
    stack = read_stack(path.read_text(), directory=path.parent)
    env = stack.services[0].container.env
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DJANGO_SETTINGS_MODULE"] == "shop.settings.production"


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_each_file_deploys_on_a_running_manager_with_its_warnings_once(
    path: pathlib.Path, manager: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(path.anchor)  # env_file paths start at the file, not the working directory
    code = main(["--manager", manager, "deploy", "-f", str(path), "--detach"])
    out, err = capsys.readouterr()
    assert code == 0, err
    expected = _expected(path, "warns")
    lines = err.splitlines()
    assert len(lines) == len(expected), lines
    for prefix in expected:
        assert sum(line.startswith(f"warning: {prefix}") for line in lines) == 1
    stack = read_stack(path.read_text(), directory=path.parent)
    created = [line for line in out.splitlines() if line.startswith("created service ")]
    assert created == [f"created service {s.name}" for s in stack.services]
    # The next file may publish the same ports.
    assert main(["--manager", manager, "rm", *[s.name for s in stack.services]]) == 0
    capsys.readouterr()


def test_deploy_with_a_profile_adds_its_services(
    fake: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CORPUS / "dev-and-tools.yml"
    code = main(["--manager", fake.address, "deploy", "-f", str(path), "--detach",
                 "--profile", "mail"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "created service devtools_mailhog" in out.splitlines()
    assert "devtools_adminer" not in out
    assert "'adminer': skipped" in err and "mailhog" not in err
