"""Encoding of API objects for storage: protobuf message <-> plain data <-> msgpack.

Objects are stored as msgpack maps keyed by field name, so a stored record can
be read with any msgpack tool and survives field additions: unknown names are
ignored on decode and absent ones take their defaults.
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


def encode(msg: Message) -> bytes:
    data: bytes = msgpack.packb(to_plain(msg), use_bin_type=True)
    return data


def decode(cls: type[M], blob: bytes) -> M:
    return from_plain(cls, msgpack.unpackb(blob, raw=False))
