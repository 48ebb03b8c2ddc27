"""Typed option messages (index options, linkage specs) to and from plain dicts.

The messages mirror the dataclasses the server builds from a dict (e.g.
`veclink.linkage.spec.LinkageSpec`), field for field; every scalar is ``optional``, so an
unset field is absent from the dict and takes the dataclass default. Building a message
from a dict checks each value against the field's type (an integer field takes an ``int``,
never ``30.0``) and reports every problem at once, as ``path: problem``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from veclink.errors import InvalidArgument
from veclink.v1 import common_pb2
from veclink.wire.values import from_object, to_object

JSON_OBJECT = common_pb2.JsonObject.DESCRIPTOR.full_name
#: messages that stand for a plain list of strings in the dict: message -> its one field
LIST_MESSAGES = {"veclink.v1.BlockingKey": "fields"}

_INT_RANGE = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def message_to_dict(msg: Message) -> dict[str, Any]:
    """The fields set in ``msg`` as a dict (unset optional fields are left out)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        out[fd.name] = _field_to_python(fd, value)
    return out


def _field_to_python(fd: FieldDescriptor, value: Any) -> Any:
    if fd.is_repeated:
        return [_item_to_python(fd, v) for v in value]
    return _item_to_python(fd, value)


def _item_to_python(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is None:
        return value
    name = fd.message_type.full_name
    if name == JSON_OBJECT:
        return from_object(value)
    if name in LIST_MESSAGES:
        return list(getattr(value, LIST_MESSAGES[name]))
    return message_to_dict(value)


def dict_to_message(
    data: Mapping[str, Any] | None, cls: type[Message], what: str, field: str
) -> Message:
    """A ``cls`` message from ``data``, with every value checked against its field's type.

    Args:
        data: the dict; None and missing keys leave fields unset.
        cls: the generated message class.
        what: names the whole in the error, e.g. ``linkage spec``.
        field: the path prefix of the problems and the error's field, e.g. ``spec``.

    Raises:
        InvalidArgument: ``invalid {what}: path: problem; ...`` listing every problem.
    """
    msg = cls()
    problems: list[str] = []
    if data is not None:
        fill_message(msg, data, field, problems)
    if problems:
        raise InvalidArgument(f"invalid {what}: " + "; ".join(problems), field=field)
    return msg


def fill_message(msg: Message, data: Any, path: str, problems: list[str]) -> None:
    """Set ``msg``'s fields from the dict ``data``; problems are appended, not raised."""
    if not isinstance(data, Mapping):
        problems.append(f"{path}: must be an object, got {_shown(data)}")
        return
    desc: Descriptor = msg.DESCRIPTOR
    for key, value in data.items():
        fd = desc.fields_by_name.get(key) if isinstance(key, str) else None
        if fd is None:
            problems.append(f"{path}.{key}: unknown key (valid: {', '.join(desc.fields_by_name)})")
        elif value is not None:  # None: unset, the default
            _set_field(msg, fd, value, f"{path}.{key}", problems)


def _set_field(
    msg: Message, fd: FieldDescriptor, value: Any, path: str, problems: list[str]
) -> None:
    if fd.is_repeated:
        if not isinstance(value, list | tuple):
            problems.append(f"{path}: must be a list, got {_shown(value)}")
            return
        target = getattr(msg, fd.name)
        for i, item in enumerate(value):
            item_path = f"{path}[{i}]"
            if fd.message_type is not None:
                _fill_item(target.add(), fd.message_type, item, item_path, problems)
            else:
                checked = _scalar(fd, item, item_path, problems)
                if checked is not None:
                    target.append(checked)
    elif fd.message_type is not None:
        sub = getattr(msg, fd.name)
        sub.SetInParent()  # an empty object is still given
        _fill_item(sub, fd.message_type, value, path, problems)
    else:
        checked = _scalar(fd, value, path, problems)
        if checked is not None:
            setattr(msg, fd.name, checked)


def _fill_item(sub: Message, desc: Descriptor, value: Any, path: str, problems: list[str]) -> None:
    if desc.full_name == JSON_OBJECT:
        if not isinstance(value, Mapping):
            problems.append(f"{path}: must be an object, got {_shown(value)}")
            return
        try:
            sub.CopyFrom(to_object(value, path))
        except InvalidArgument as exc:
            problems.append(str(exc))
    elif desc.full_name in LIST_MESSAGES:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            problems.append(f"{path}: must be a list of strings, got {_shown(value)}")
            return
        getattr(sub, LIST_MESSAGES[desc.full_name]).extend(value)
    else:
        fill_message(sub, value, path, problems)


def _scalar(fd: FieldDescriptor, value: Any, path: str, problems: list[str]) -> Any:
    """``value`` checked for a scalar field (None after a problem is appended)."""
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return value
        problems.append(f"{path}: must be true or false, got {_shown(value)}")
    elif cpp == FieldDescriptor.CPPTYPE_STRING:
        if isinstance(value, str):
            return value
        problems.append(f"{path}: must be a string, got {_shown(value)}")
    elif cpp in _INT_RANGE:
        lo, hi = _INT_RANGE[cpp]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: must be an integer, got {_shown(value)}")
        elif not lo <= value <= hi:
            problems.append(f"{path}: {value} is out of range [{lo}, {hi}]")
        else:
            return value
    elif cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: must be a number, got {_shown(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:  # an int beyond any double
            number = math.inf
        if math.isfinite(number):
            return number
        problems.append(f"{path}: must be a finite number, got {_shown(value)}")
    else:  # enums and bytes: no option message has them
        problems.append(f"{path}: unsupported field type")
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:64] + "..."


__all__ = ["dict_to_message", "fill_message", "message_to_dict"]
