"""The `secrets:` and `configs:` of a Compose file: top-level declarations, the services' uses,
and storing them in the manager at deploy time.

`declarations(document, scope, directory)` reads the top-level `secrets:` / `configs:`; each
entry is one of
- `file: PATH` (relative to `directory`, the Compose file's folder), read now;
- `environment: VAR`, the deploying shell's variable (an error when it is not set);
- `content: TEXT` (configs only);
- `external: true` (with an optional `name:`), an existing one, looked up by name at deploy.
The stored name is SCOPE_KEY when the stack has a scope (its name, else the Compose file's
folder's), else KEY; `name:` sets it, and an external one keeps its name. `labels` are kept;
`driver`, `template_driver` and `template` are ignored with a warning; any other key is an
error.

`set_references(data, spec, at, declared)` reads a service's `secrets:` / `configs:` in the
short form (`- db_password`) or the long one (`source`, `target`, `uid`, `gid`, `mode`) into
spec.container.secrets / configs, naming the stored name; the id stays empty. A service naming
an undeclared one is an error naming the service and the name.

`store(client, files, specs)` runs at deploy, before any service is created or updated: it
stores each file the deployed services use (CreateSecret: the same content returns the version
already stored), looks up the external ones, and puts each version's id into the references.
New content is a new id, so the service's spec changes and its tasks are replaced.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from podium.client.compose import SpecError, _At, _string_map, _text
from podium.rules.names import RULE as NAME_RULE
from podium.rules.names import is_valid_name
from podium.v1 import objects

if TYPE_CHECKING:
    from podium.client._api import Client

__all__ = ["Declared", "declarations", "set_references", "store"]

KINDS = ("secrets", "configs")
_KEYS = {"secrets": ("environment", "external", "file", "labels", "name"),
         "configs": ("content", "environment", "external", "file", "labels", "name")}
_IGNORED = {
    "driver": "Podium keeps secrets and configs in its manager's store",
    "template_driver": "Podium mounts the content as it is, without templating",
    "template": "Podium mounts the content as it is, without templating",
}
_REFERENCE_KEYS = ("gid", "mode", "source", "target", "uid")


@dataclass(slots=True)
class Declared:
    kind: str  # "secrets" or "configs"
    key: str  # the Compose key
    name: str  # the stored name
    data: bytes | None  # None: external
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def word(self) -> str:
        return self.kind[:-1]


def declarations(document: dict[object, object], stack: str | None, directory: pathlib.Path,
                 warnings: list[str]) -> dict[tuple[str, str], Declared]:
    found: dict[tuple[str, str], Declared] = {}
    for kind in KINDS:
        table = document.get(kind)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise SpecError(f"{kind}: expected a mapping of names, got {table!r}")
        for key, value in table.items():
            found[(kind, str(key))] = _declared(kind, key, value, stack, directory, warnings)
    return found


def _declared(kind: str, key: object, value: object, stack: str | None,
              directory: pathlib.Path, warnings: list[str]) -> Declared:
    word = kind[:-1]
    where = f"{kind}.{key}"
    if not is_valid_name(key):
        raise SpecError(f"{where}: invalid {word} name: use {NAME_RULE}")
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping with file, environment"
                        f"{', content' if kind == 'configs' else ''} or external, got {value!r}")
    for option in value:
        if option in _IGNORED:
            warnings.append(f"{word} {key!r}: ignoring {option}: {_IGNORED[option]}")
        elif option not in _KEYS[kind] and not str(option).startswith("x-"):
            raise SpecError(f"{where}: key {option!r} is not supported by Podium "
                            f"(supported: {', '.join(_KEYS[kind])})")
    at = _At(str(key), "")  # only for the helpers' messages
    labels = _string_map(value.get("labels", {}), at.sub("labels"))
    allowed = [s for s in ("file", "environment", "content", "external") if s in _KEYS[kind]]
    sources = [s for s in allowed if s in value]
    if len(sources) != 1:
        raise SpecError(f"{where}: expected exactly one of {', '.join(allowed)} as its source, "
                        f"got {', '.join(sources) or 'none'}")
    source = sources[0]
    if source == "external":
        if value["external"] is not True:
            raise SpecError(f"{where}.external: expected true, got {value['external']!r}")
        name = value.get("name", key)
        if not is_valid_name(name):
            raise SpecError(f"{where}.name: expected {NAME_RULE}, got {name!r}")
        return Declared(kind, key, name, None, labels)
    if "name" in value:
        name = value["name"]
        if not is_valid_name(name):
            raise SpecError(f"{where}.name: expected {NAME_RULE}, got {name!r}")
    else:
        name = f"{stack}_{key}" if stack else key
        if not is_valid_name(name):
            raise SpecError(f"{where}: stored name {name!r}: expected {NAME_RULE}")
    if source == "file":
        path = directory / _text(value["file"], at.sub("file"))
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SpecError(f"{where}.file: cannot read {str(path)!r}: {err.strerror}") from None
    elif source == "environment":
        variable = _text(value["environment"], at.sub("environment"))
        if variable not in os.environ:
            raise SpecError(f"{where}.environment: the variable {variable!r} is not set in "
                            "this shell")
        data = os.environ[variable].encode()
    else:
        content = value["content"]
        if not isinstance(content, str):
            raise SpecError(f"{where}.content: expected a string, got {content!r}")
        data = content.encode()
    return Declared(kind, key, name, data, labels)


def set_references(data: dict[str, object], spec: objects.ServiceSpec, at: _At,
                   declared: dict[tuple[str, str], Declared]) -> None:
    for kind in KINDS:
        items = data.get(kind)
        if items is None:
            continue
        where = at.sub(kind)
        if not isinstance(items, list):
            raise where.error("a list of names or of {source, target, uid, gid, mode}", items)
        refs = getattr(spec.container, kind)
        for i, item in enumerate(items):
            item_at = where.sub(i)
            ref = objects.FileReference()
            if isinstance(item, str):
                source = item
            else:
                long = _mapping_of(item, item_at)
                source = _text(long.get("source"), item_at.sub("source"))
                if "target" in long:
                    ref.target = _text(long["target"], item_at.sub("target"))
                for attr in ("uid", "gid"):
                    if attr in long:
                        ref_value = str(long[attr])
                        if not ref_value.isdigit():
                            raise item_at.sub(attr).error("a numeric id", long[attr])
                        setattr(ref, attr, ref_value)
                if "mode" in long:
                    ref.mode = _mode(long["mode"], item_at.sub("mode"))
            found = declared.get((kind, source))
            if found is None:
                raise SpecError(f"{at}: {kind[:-1]} {source!r} is not declared under the "
                                f"top-level {kind}: (declare it with file:, environment: or "
                                "external: true)")
            ref.name = found.name
            if not ref.target and kind == "secrets":
                ref.target = source  # Compose mounts a secret at /run/secrets/KEY
            elif not ref.target:
                ref.target = "/" + source
            refs.append(ref)


def _mapping_of(item: object, at: _At) -> dict[str, object]:
    if not isinstance(item, dict):
        raise at.error("a name or a mapping {source, target, uid, gid, mode}", item)
    for key in item:
        if key not in _REFERENCE_KEYS:
            raise SpecError(f"{at}: key {key!r} is not supported "
                            f"(supported: {', '.join(_REFERENCE_KEYS)})")
    return {str(k): v for k, v in item.items()}


def _mode(value: object, at: _At) -> int:
    """An integer as YAML gives it (0o440 and 288 alike), or a string of octal digits ("0440":
    this loader reads YAML 1.2 integers, where 0440 is no number)."""
    if isinstance(value, bool):
        raise at.error("a file mode such as 0440", value)
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and value.strip().removeprefix("0o").isdigit():
        try:
            mode = int(value.strip().removeprefix("0o"), 8)
        except ValueError:
            raise at.error("a file mode such as 0440", value) from None
    else:
        raise at.error("a file mode such as 0440", value)
    if not 0 < mode <= 0o777:
        raise at.error("a file mode from 0001 to 0777", value)
    return mode


def used(declared: dict[tuple[str, str], Declared],
         specs: list[objects.ServiceSpec]) -> list[Declared]:
    """The declarations the services refer to, in declaration order."""
    names = {(kind, ref.name) for spec in specs for kind in KINDS
             for ref in getattr(spec.container, kind)}
    return [d for d in declared.values() if (d.kind, d.name) in names]


def store(client: Client, files: list[Declared], specs: list[objects.ServiceSpec], *,
          find_only: bool = False) -> None:
    """Stores (or finds) each of `files` and puts its version's id into the specs' references.
    Raises SpecError for an external one that does not exist. `find_only` (a plan) stores
    nothing: content not stored yet leaves its references without an id."""
    ids: dict[tuple[str, str], str] = {}
    listed: dict[str, list[objects.Secret]] = {}
    for declared in files:
        if declared.data is None or find_only:
            if declared.kind not in listed:
                listed[declared.kind] = client.secrets(declared.word)
        if declared.data is not None and find_only:
            digest = "sha256:" + hashlib.sha256(declared.data).hexdigest()
            same = [s for s in listed[declared.kind]
                    if s.spec.name == declared.name and s.spec.digest == digest]
            ids[(declared.kind, declared.name)] = same[0].id if same else ""
            continue
        if declared.data is None:
            versions = [s for s in listed[declared.kind] if s.spec.name == declared.name]
            if not versions:
                raise SpecError(
                    f"{declared.kind}.{declared.key}: external {declared.word} "
                    f"{declared.name!r} does not exist: create it first with `podium "
                    f"{declared.word} create {declared.name} FILE`")
            stored = max(versions, key=lambda s: s.version)
        else:
            stored = client.create_secret(declared.word, declared.name, declared.data,
                                          declared.labels)
        ids[(declared.kind, declared.name)] = stored.id
    for spec in specs:
        for kind in KINDS:
            for ref in getattr(spec.container, kind):
                ref.id = ids.get((kind, ref.name), ref.id)
