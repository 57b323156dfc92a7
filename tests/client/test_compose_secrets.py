"""Compose `secrets:` and `configs:`: declarations, the services' short and long references,
stack-scoped names, the errors and warnings, and a deploy storing them before the services
(new content: a new id, so the service's spec changes and its tasks are replaced)."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from podium.client import Client
from podium.client.cli import main
from podium.client.compose import SpecError, read_stack

FILE = """\
name: shop
services:
  db:
    image: postgres
    secrets:
      - db_password
      - source: api_key
        target: keys/api
        uid: "999"
        gid: 999
        mode: 0400
    configs:
      - app_conf
      - source: inline
        target: /etc/inline.conf
        mode: 288
secrets:
  db_password:
    file: ./pw.txt
  api_key:
    environment: SHOP_API_KEY
  shared:
    external: true
    name: org_shared
configs:
  app_conf:
    file: app.conf
    driver: foo
  inline:
    content: "a=1"
"""


@pytest.fixture
def folder(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "pw.txt").write_text("hunter2")
    (tmp_path / "app.conf").write_text("port=1\n")
    monkeypatch.setenv("SHOP_API_KEY", "k-123")
    return tmp_path


def test_declarations_and_references(folder: pathlib.Path) -> None:
    stack = read_stack(FILE, directory=folder)
    (db,) = stack.services
    refs = [(r.name, r.target, r.uid, r.gid, r.mode) for r in db.container.secrets]
    assert refs == [("shop_db_password", "db_password", "", "", 0),
                    ("shop_api_key", "keys/api", "999", "999", 0o400)]
    configs = [(r.name, r.target, r.mode) for r in db.container.configs]
    assert configs == [("shop_app_conf", "/app_conf", 0), ("shop_inline", "/etc/inline.conf", 288)]
    # Only what the services use is stored, with its content read now.
    assert {(d.word, d.name): d.data for d in stack.files} == {
        ("secret", "shop_db_password"): b"hunter2", ("secret", "shop_api_key"): b"k-123",
        ("config", "shop_app_conf"): b"port=1\n", ("config", "shop_inline"): b"a=1"}
    assert stack.warnings == [
        "config 'app_conf': ignoring driver: Podium keeps secrets and configs in its manager's "
        "store"]


def test_without_a_stack_name_the_key_is_the_name(folder: pathlib.Path) -> None:
    text = "services:\n  web:\n    image: nginx\n    secrets: [pw]\nsecrets:\n  pw:\n" \
           "    file: pw.txt\n"
    (web,) = read_stack(text, directory=folder).services
    assert web.container.secrets[0].name == "pw"


@pytest.mark.parametrize(("top", "service", "message"), [
    ("secrets:\n  pw: {file: pw.txt}\n", "[nope]",
     "service 'web': secret 'nope' is not declared under the top-level secrets:"),
    ("secrets:\n  pw: {environment: NOT_SET_ANYWHERE}\n", "[pw]",
     "secrets.pw.environment: the variable 'NOT_SET_ANYWHERE' is not set"),
    ("secrets:\n  pw: {file: missing.txt}\n", "[pw]", "secrets.pw.file: cannot read"),
    ("secrets:\n  pw: {content: x}\n", "[pw]", "secrets.pw: key 'content' is not supported"),
    ("secrets:\n  pw: {file: pw.txt, external: true}\n", "[pw]",
     "secrets.pw: expected exactly one of file, environment, external"),
    ("secrets:\n  pw: {file: pw.txt}\n", "[{source: pw, mode: 0999}]",
     "service 'web': secrets[0].mode: expected a file mode"),
    ("secrets:\n  pw: {file: pw.txt}\n", "[{source: pw, size: 1}]",
     "service 'web': secrets[0]: key 'size' is not supported"),
])
def test_errors_name_the_place(folder: pathlib.Path, top: str, service: str,
                               message: str) -> None:
    text = f"services:\n  web:\n    image: nginx\n    secrets: {service}\n{top}"
    with pytest.raises(SpecError) as info:
        read_stack(text, directory=folder, source="stack.yml")
    assert message in str(info.value)


def test_deploy_stores_them_and_new_content_rolls_the_service(
        manager: str, folder: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "stack.yml"
    path.write_text(textwrap.dedent("""\
        name: cs
        services:
          web:
            image: nginx
            secrets: [pw]
        secrets:
          pw:
            file: pw.txt
        """))
    deploy = ["--manager", manager, "deploy", "-f", str(path), "--detach"]
    assert main(deploy) == 0, capsys.readouterr().err
    with Client(manager) as podium:
        first = podium.service("cs_web").spec.container.secrets[0]
        (stored,) = [s for s in podium.secrets("secret") if s.spec.name == "cs_pw"]
        assert first.id == stored.id and first.target == "pw" and first.mode == 0o444
    assert main(deploy) == 0
    assert "unchanged service cs_web" in capsys.readouterr().out
    (folder / "pw.txt").write_text("changed")
    assert main(deploy) == 0
    assert "updated service cs_web" in capsys.readouterr().out
    with Client(manager) as podium:
        second = podium.service("cs_web").spec.container.secrets[0]
        assert second.id != first.id
        assert [s.version for s in podium.secrets("secret") if s.spec.name == "cs_pw"] == [1, 2]


def test_deploy_with_a_missing_external_one_fails_clearly(
        manager: str, folder: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "stack.yml"
    path.write_text("services:\n  ext:\n    image: nginx\n    secrets: [k]\n"
                    "secrets:\n  k:\n    external: true\n    name: not_there\n")
    assert main(["--manager", manager, "deploy", "-f", str(path), "--detach"]) == 2
    err = capsys.readouterr().err
    assert "external secret 'not_there' does not exist" in err
    assert "podium secret create not_there" in err
    with Client(manager) as podium:
        assert "ext" not in [s.spec.name for s in podium.services()]
