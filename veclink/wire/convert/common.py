"""What every message shares: enums by name, vectors, contents, timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from google.protobuf import timestamp_pb2

from veclink.errors import InvalidArgument
from veclink.v1 import common_pb2

# ----------------------------------------------------------------------- enums


class EnumNames:
    """Names <-> enum numbers of one proto enum whose zero is UNSPECIFIED."""

    def __init__(self, field: str, names: dict[str, int]) -> None:
        self.field = field
        self.numbers = names
        self.names = {v: k for k, v in names.items()}

    def to_proto(self, name: str, *, allow_empty: bool = False) -> int:
        if allow_empty and not name:
            return 0
        try:
            return self.numbers[name]
        except (KeyError, TypeError):
            raise InvalidArgument(
                f"{self.field} must be one of {', '.join(self.numbers)}; got {name!r}",
                field=self.field,
            ) from None

    def from_proto(self, number: int, default: str | None = None) -> str:
        """The name of ``number``; UNSPECIFIED (0) is ``default`` when one is given."""
        if number == 0 and default is not None:
            return default
        try:
            return self.names[number]
        except KeyError:
            raise InvalidArgument(
                f"{self.field} must be one of {', '.join(self.numbers)}; got the enum value "
                f"{number}",
                field=self.field,
            ) from None


METRIC = EnumNames(
    "metric",
    {
        "cosine": common_pb2.METRIC_COSINE,
        "ip": common_pb2.METRIC_INNER_PRODUCT,
        "l2": common_pb2.METRIC_L2,
    },
)
INDEX_KIND = EnumNames(
    "index_kind",
    {"flat": common_pb2.INDEX_KIND_FLAT, "partitioned": common_pb2.INDEX_KIND_PARTITIONED},
)
ROLE = EnumNames(
    "options.role", {"query": common_pb2.ROLE_QUERY, "document": common_pb2.ROLE_DOCUMENT}
)


# ----------------------------------------------------------------------- primitives


def vector_to_proto(a: Any) -> common_pb2.Vector:
    return common_pb2.Vector(values=np.asarray(a, dtype=np.float32).ravel().tolist())


def vector_from_proto(v: common_pb2.Vector) -> np.ndarray:
    return np.asarray(v.values, dtype=np.float32)


def content_to_proto(x: str | bytes) -> common_pb2.Content:
    return common_pb2.Content(text=x) if isinstance(x, str) else common_pb2.Content(image=x)


def content_from_proto(c: common_pb2.Content, field: str) -> str | bytes:
    kind = c.WhichOneof("kind")
    if kind == "text":
        return c.text
    if kind == "image":
        return c.image
    raise InvalidArgument(f"{field} has neither text nor image", field=field)


def timestamp(t: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out
