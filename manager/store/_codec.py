"""Encoding of API objects for storage.

A row is the byte ROW_MARK followed by the object's protobuf encoding (deterministic: equal
objects give equal rows, which the etcd store compares). Protobuf is what a 150,000-task store
needs: it decodes about 20 times as fast as the msgpack maps earlier versions wrote, which is
most of a manager's start-up, and it survives field additions both ways (a field a newer
version wrote is kept as an unknown field; an absent one takes its default). Rows can be read
with `protoc --decode=podium.v1.Task` after dropping the first byte.

Rows written before are msgpack maps keyed by field name; decode() still reads them, and each
is rewritten in the new form the next time its object changes. ROW_MARK (0xc1) is the one byte
msgpack never uses, so no such row starts with it. Secrets keep msgpack maps with their content
sealed (_sealing.py), through to_plain() and from_plain().
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def _is_map(field: Any) -> bool:
    mt = field.message_type
    return mt is not None and bool(mt.GetOptions().map_entry)


def to_plain(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if _is_map(field):
            value_field: Any = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
            if value_field.message_type is not None:
                out[field.name] = {k: to_plain(v) for k, v in value.items()}
            else:
                out[field.name] = dict(value)
        elif field.message_type is not None:
            if field.is_repeated:
                out[field.name] = [to_plain(v) for v in value]
            else:
                out[field.name] = to_plain(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def _fill(msg: Message, descriptor: Any, data: dict[str, Any]) -> None:
    fields = descriptor.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            continue  # written by a newer version; dropped
        target = getattr(msg, name)
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for k, v in value.items():
                    _fill(target[k], value_field.message_type, v)
            else:
                target.update(value)
        elif field.message_type is not None:
            if field.is_repeated:
                for item in value:
                    _fill(target.add(), field.message_type, item)
            else:
                _fill(target, field.message_type, value)
                if not value:
                    target.SetInParent()
        elif field.is_repeated:
            target.extend(value)
        else:
            setattr(msg, name, value)


def from_plain(cls: type[M], data: dict[str, Any]) -> M:
    msg = cls()
    _fill(msg, cls.DESCRIPTOR, data)
    return msg


ROW_MARK = b"\xc1"


def encode(msg: Message) -> bytes:
    return ROW_MARK + msg.SerializeToString(deterministic=True)


def decode(cls: type[M], blob: bytes) -> M:
    if blob[:1] == ROW_MARK:
        return cls.FromString(blob[1:])
    return from_plain(cls, msgpack.unpackb(blob, raw=False))  # a row of an earlier version
