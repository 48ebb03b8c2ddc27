"""The plain types of veclink's wire contract: what a request asks and a reply says.

The server's store and the client both work with these; `veclink.wire.convert` turns
them into the generated protobuf messages and back. Nothing here imports the server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any, Literal, NamedTuple

import numpy as np

from veclink.errors import InvalidArgument
from veclink.validation import quote

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_ID_LENGTH = 512


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
class NewCollection:
    """A collection to create. ``model`` empty with ``dim`` set: vectors only."""

    name: str
    model: str = ""
    #: required without a model; must equal the model's dimension when both are given
    dim: int = 0
    metric: str = "cosine"
    #: ``flat`` or ``partitioned``; "" lets the server choose
    index_kind: str = ""
    #: the index kind's options, e.g. ``{"split_limit": 512}`` for a partitioned index
    index_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: 0: one index; N >= 1: vectors spread over N shards (Ray actors in cluster mode)
    shards: int = 0


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
    #: 0: one index; N >= 1: the number of shards
    shards: int = 0


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


# ----------------------------------------------------------------------- embeddings


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedQuery:
    """Texts (str) or encoded images (bytes) to embed with a served model."""

    inputs: tuple[str | bytes, ...]
    #: a served model name; "" is the server's default model
    model: str = ""
    role: Literal["query", "document"] = "query"
    #: L2-normalise each vector (after truncation)
    normalize: bool = False
    #: keep only the first ``dimensions`` components; 0 keeps all
    dimensions: int = 0
    #: overrides the model's query instruction (instruction-tuned models)
    instruction: str | None = None
    #: how the vectors come back: float32, int8, uint8, binary or ubinary (see `Embeddings`)
    precision: str = "float32"


#: the precisions an Embed request may ask for (sentence-transformers' names)
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Embeddings:
    """The vectors of an Embed reply, at the precision asked for.

    - ``float32``: ``values`` float32 ``(n, dimensions)``; no scales.
    - ``int8``: int8 ``(n, dimensions)``, ``x ~ values * scales[:, None]`` (one symmetric
      scale per vector, ``max |x| / 127``: a vector never depends on its request's others).
    - ``uint8``: uint8 ``(n, dimensions)``, ``x ~ (values - 128) * scales[:, None]``.
    - ``binary``: int8 ``(n, ceil(dimensions / 8))``, ``np.packbits(x > 0) - 128``.
    - ``ubinary``: uint8 ``(n, ceil(dimensions / 8))``, ``np.packbits(x > 0)``.
    """

    model: str
    precision: str
    #: components per vector before any bit packing
    dimensions: int
    values: np.ndarray
    #: per-vector scales of int8 / uint8 (None otherwise)
    scales: np.ndarray | None = None

    def to_float32(self) -> np.ndarray:
        """float32 ``(n, dimensions)``: the vectors, or their reconstruction from int8 /
        uint8; binary precisions unpack to +1 / -1 per component."""
        if self.precision == "float32":
            return np.asarray(self.values, dtype=np.float32)
        if self.precision in ("int8", "uint8"):
            assert self.scales is not None
            shift = 128.0 if self.precision == "uint8" else 0.0
            return (self.values.astype(np.float32) - shift) * self.scales[:, None]
        raw = self.values.astype(np.int16) + (128 if self.precision == "binary" else 0)
        bits = np.unpackbits(raw.astype(np.uint8), axis=1)[:, : self.dimensions]
        return bits.astype(np.float32) * 2.0 - 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A served model."""

    name: str
    dimensions: int
    #: text, image or multimodal
    modality: str
    #: its encoder spec (``veclink.encoders.spec_from_dict`` reads it)
    spec: dict[str, Any]
    is_default: bool


# ----------------------------------------------------------------------- linkage


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableSource:
    """Where a job's table comes from: exactly one of path, rows or sql."""

    #: a CSV / Parquet / JSONL file on the server
    path: str | None = None
    #: rows sent with the request
    rows: list[dict[str, Any]] | None = None
    #: one SELECT over the server's catalog database
    sql: str | None = None
    id_column: str = ""
    #: text encoding of a path source; None detects it (BOM, UTF-8, cp1252 / latin-1)
    encoding: str | None = None

    def describe(self) -> str:
        if self.path:
            return self.path
        if self.sql:
            return f"sql: {self.sql}"
        return f"inline ({len(self.rows or [])} rows)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewJob:
    """A linkage job to start."""

    kind: Literal["link", "dedupe"]
    left: TableSource | None
    #: link jobs only
    right: TableSource | None = None
    #: a `veclink.linkage.LinkageSpec` as a dict; missing keys take their defaults
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """A linkage job as the server reports it."""

    job_id: str
    kind: str
    #: queued, running, succeeded, failed or cancelled
    state: str
    stage: str
    #: 0..1 within the whole job
    progress: float
    error: str
    #: pairs, thresholds, estimated precision... once the job has run
    metrics: dict[str, Any]
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class MatchedPair(NamedTuple):
    """An accepted pair of a link job."""

    left_id: str
    right_id: str
    score: float


class EntityAssignment(NamedTuple):
    """A record of a dedupe job and its entity."""

    id: str
    entity_id: str


class JobResults(NamedTuple):
    """A finished job's results: pairs (link jobs) or entity assignments (dedupe jobs)."""

    pairs: list[MatchedPair]
    entities: list[EntityAssignment]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EntityCandidate:
    entity_id: str
    #: the job's record that the entity was found by
    record_id: str
    score: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchResult:
    """The entities one incoming record may belong to, best first."""

    candidates: list[EntityCandidate]
    #: the entity the record was assigned to, or None
    assigned_entity_id: str | None = None
