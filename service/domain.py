"""Plain domain types the store works with; the gRPC layer converts to and from them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any, Literal

import numpy as np

from veclink.errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_ID_LENGTH = 512


#: characters of a client's value an error message quotes at most
QUOTE_CHARS = 64


def quote(value: str, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of ``value``, saying how long it was."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def check_collection_name(name: str, field: str = "name") -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise InvalidArgument(
            f"{field} must be 1-128 characters of letters, digits, '_', '-', '.'; "
            f"got {quote(name or '')}",
            field=field,
        )
    return name


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordIn:
    """A record to upsert. Its vector is ``vector`` when given; otherwise the collection's
    model embeds ``image`` when given, else ``text``. Text is always stored."""

    id: str
    text: str | None = None
    image: bytes | None = None
    vector: np.ndarray | None = None
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectionInfo:
    name: str
    model: str
    dim: int
    metric: str
    index_kind: str
    index_options: dict[str, Any]
    count: int
    created_at: dt.datetime
    index_stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredRecord:
    id: str
    text: str | None
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hit:
    id: str
    score: float
    text: str | None
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    """One payload condition: ``payload[key]`` equals / is any of / lies in a range."""

    key: str
    op: Literal["equals", "any_of", "range"]
    value: Any = None
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def matches(self, payload: dict[str, Any]) -> bool:
        if self.key not in payload:
            return False
        actual = payload[self.key]
        if self.op == "equals":
            return bool(actual == self.value)
        if self.op == "any_of":
            return actual in self.value
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        if math.isnan(actual):
            return False
        return (
            (self.gte is None or actual >= self.gte)
            and (self.gt is None or actual > self.gt)
            and (self.lte is None or actual <= self.lte)
            and (self.lt is None or actual < self.lt)
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Filter:
    must: tuple[Condition, ...] = ()

    def matches(self, payload: dict[str, Any]) -> bool:
        return all(c.matches(payload) for c in self.must)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchQuery:
    """A search: exactly one of vector, text or image."""

    collection: str
    k: int = 10
    vector: np.ndarray | None = None
    text: str | None = None
    image: bytes | None = None
    filter: Filter | None = None
    nprobe: int | None = None
    with_payload: bool = True
    with_vectors: bool = False
    instruction: str | None = None
