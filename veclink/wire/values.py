"""JSON values on the wire with exact integers (`JsonValue`, `JsonObject`, `JsonList`).

`google.protobuf.Struct` holds every number as a double, so ``5`` came back ``5.0`` and
``12345678901234567`` lost digits. Here a Python ``int`` travels as ``integer_value``
(signed 64-bit, exact) and a ``float`` as ``double_value``; both directions keep the type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import struct_pb2

from veclink.errors import InvalidArgument
from veclink.v1 import common_pb2

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


# ----------------------------------------------------------------------- Python -> proto


def to_value(value: Any, field: str = "value") -> common_pb2.JsonValue:
    """A JSON-like Python value as a `JsonValue`.

    Raises:
        InvalidArgument: not JSON (bytes, a set, a non-string key...) or an integer outside
            the signed 64-bit range; ``field`` names the place, e.g. ``payload['a'][2]``.
    """
    out = common_pb2.JsonValue()
    _fill_value(out, value, field)
    return out


def to_object(data: Mapping[str, Any] | None, field: str = "object") -> common_pb2.JsonObject:
    """A mapping with string keys as a `JsonObject` (None: an empty one)."""
    out = common_pb2.JsonObject()
    if data is not None:
        _fill_object(out, data, field)
    return out


def _fill_object(out: common_pb2.JsonObject, data: Any, field: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidArgument(
            f"{field} must be a JSON object, got {type(data).__name__}", field=field
        )
    for key, item in data.items():
        if not isinstance(key, str):
            raise InvalidArgument(
                f"{field} has the key {key!r}; JSON object keys are strings", field=field
            )
        _fill_value(out.fields[key], item, f"{field}[{key!r}]")


def _fill_value(out: common_pb2.JsonValue, value: Any, field: str) -> None:
    if isinstance(value, np.generic | np.ndarray):  # numpy: its Python value or list
        value = value.tolist()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(
                f"{field} is {value}, outside the signed 64-bit range integers travel in",
                field=field,
            )
        out.integer_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping):
        out.struct_value.SetInParent()  # an empty object is an object, not an unset value
        _fill_object(out.struct_value, value, field)
    elif isinstance(value, list | tuple):
        out.list_value.SetInParent()  # an empty list is a list, not an unset value
        for i, item in enumerate(value):
            _fill_value(out.list_value.values.add(), item, f"{field}[{i}]")
    else:
        raise InvalidArgument(
            f"{field} is a {type(value).__name__}, which is not a JSON value", field=field
        )


# ----------------------------------------------------------------------- proto -> Python


def from_value(value: common_pb2.JsonValue) -> Any:
    """The Python value of a `JsonValue`: int, float, str, bool, None, dict or list.

    A value with no kind set reads as None (the server's checks reject one in a request).
    """
    kind = value.WhichOneof("kind")
    if kind == "integer_value":
        return value.integer_value
    if kind == "double_value":
        return value.double_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_object(value.struct_value)
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None


def from_object(obj: common_pb2.JsonObject) -> dict[str, Any]:
    """The dict of a `JsonObject`."""
    return {key: from_value(v) for key, v in obj.fields.items()}
