"""Secrets and configs in the store: versions, references from services, and what leaves.

Contract:
- A stored `Secret` is one version of the content under a (kind, name). `create` fills the
  digest; the same content again returns the version already stored (idempotent), new content
  under a taken name is a new version (number + 1) with a new id. Services refer to one version
  by id, so changing the content changes their spec and rolls them.
- `remove` deletes every version of a name, and refuses while a service refers to one.
- `check_references` validates a service spec's FileReferences and fills their defaults
  (secret target NAME, config target /NAME, uid/gid "0", mode 0444).
- `public` is the only form a secret leaves the manager in towards operators: a secret's data is
  cleared; a config keeps its content. Agents get data through the dispatcher only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import grpc

from podium.manager import ids
from podium.manager.store import ReadTx, WriteTx
from podium.rules.names import RULE as NAME_RULE
from podium.rules.names import is_valid_name
from podium.v1 import objects

# As Swarm: the content is kept in the manager's memory and sent to agents whole.
MAX_SIZE = 500 * 1024
DEFAULT_MODE = 0o444
SECRET = objects.SecretSpec.KIND_SECRET
CONFIG = objects.SecretSpec.KIND_CONFIG


class SecretError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def kind_word(kind: int) -> str:
    return "config" if kind == CONFIG else "secret"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def versions_of(view: ReadTx, kind: int, name: str) -> list[objects.Secret]:
    found = [s for s in view.secrets() if s.spec.kind == kind and s.spec.name == name]
    return sorted(found, key=lambda s: s.version)


def create(tx: WriteTx, spec: objects.SecretSpec) -> objects.Secret:
    word = kind_word(spec.kind)
    if spec.kind not in (SECRET, CONFIG):
        raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"spec.kind {spec.kind}: expected KIND_SECRET or KIND_CONFIG")
    if not is_valid_name(spec.name):
        raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{word} name {spec.name!r}: expected {NAME_RULE}")
    if len(spec.data) > MAX_SIZE:
        raise SecretError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{word} {spec.name!r}: spec.data is {len(spec.data)} bytes: at most {MAX_SIZE} "
            f"({MAX_SIZE // 1024} KiB)")
    stored = objects.Secret(id=ids.new_id())
    stored.spec.CopyFrom(spec)
    stored.spec.digest = digest(spec.data)
    existing = versions_of(tx, spec.kind, spec.name)
    for old in existing:
        if old.spec.digest == stored.spec.digest:
            return old
    stored.version = existing[-1].version + 1 if existing else 1
    tx.create(stored)
    return stored


def users(view: ReadTx, secret_ids: set[str]) -> list[str]:
    """Names of the services whose spec refers to one of `secret_ids`."""
    names = []
    for service in view.services():
        container = service.spec.container
        refs = list(container.secrets) + list(container.configs)
        if any(ref.id in secret_ids for ref in refs):
            names.append(service.spec.name)
    return sorted(names)


def remove(tx: WriteTx, kind: int, name: str) -> None:
    word = kind_word(kind)
    found = versions_of(tx, kind, name)
    if not found:
        raise SecretError(grpc.StatusCode.NOT_FOUND, f"no {word} {name!r}")
    using = users(tx, {s.id for s in found})
    if using:
        raise SecretError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{word} {name!r} is in use by service{'s' if len(using) > 1 else ''} "
            f"{', '.join(repr(n) for n in using)}: remove it from their spec first")
    for secret in found:
        tx.delete(secret)


def public(secret: objects.Secret) -> objects.Secret:
    """A copy fit for an operator: a secret without its data."""
    copy = objects.Secret()
    copy.CopyFrom(secret)
    if copy.spec.kind == SECRET:
        copy.spec.ClearField("data")
    return copy


def listing(view: ReadTx, kind: int) -> list[objects.Secret]:
    found = [public(s) for s in view.secrets() if s.spec.kind == kind]
    return sorted(found, key=lambda s: (s.spec.name, s.version))


def check_references(view: ReadTx, spec: objects.ServiceSpec) -> None:
    """Every FileReference names a stored version of the right kind; fills the defaults.
    Raises SecretError(INVALID_ARGUMENT) naming the service and the reference."""
    where = f"service {spec.name!r}"
    for field, kind in (("secrets", SECRET), ("configs", CONFIG)):
        word = kind_word(kind)
        targets: set[str] = set()
        for i, ref in enumerate(getattr(spec.container, field)):
            at = f"{where}: spec.container.{field}[{i}]"
            stored = view.get_secret(ref.id) if ref.id else None
            if stored is None or stored.spec.kind != kind:
                label = ref.name or ref.id or "(no name)"
                raise SecretError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{at}: no {word} {label!r} with id {ref.id!r}: create it with "
                    f"`podium {word} create {label} FILE` (or declare it under the Compose "
                    f"file's top-level {field}:)")
            ref.name = stored.spec.name
            if not ref.target:
                ref.target = ref.name if kind == SECRET else "/" + ref.name
            if kind == SECRET and (ref.target.startswith("/") or ".." in ref.target.split("/")):
                raise SecretError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{at}.target {ref.target!r}: expected a path relative to /run/secrets")
            if kind == CONFIG and not ref.target.startswith("/"):
                raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{at}.target {ref.target!r}: expected an absolute path")
            if ref.target in targets:
                raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{at}.target {ref.target!r}: mounted twice")
            targets.add(ref.target)
            if ref.mode > 0o777:
                raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{at}.mode {ref.mode:o}: expected an octal mode up to 0777")
            ref.mode = ref.mode or DEFAULT_MODE
            for attr in ("uid", "gid"):
                value = getattr(ref, attr) or "0"
                if not value.isdigit():
                    raise SecretError(grpc.StatusCode.INVALID_ARGUMENT,
                                      f"{at}.{attr} {value!r}: expected a number")
                setattr(ref, attr, value)


def secrets_of(view: ReadTx, tasks: Iterable[objects.Task]) -> dict[str, objects.Secret]:
    """The stored versions (with data) the tasks' specs refer to, by id."""
    out: dict[str, objects.Secret] = {}
    for task in tasks:
        container = task.spec.container
        if not container.secrets and not container.configs:
            continue  # most tasks: a registration reads 30 of them, 5,000 times in a storm
        for ref in list(container.secrets) + list(container.configs):
            if ref.id not in out:
                found = view.get_secret(ref.id)
                if found is not None:
                    out[ref.id] = found
    return out
