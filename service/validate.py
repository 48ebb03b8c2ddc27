"""Request validation at the boundary: every RPC's message is checked before any work.

Numbers must be finite and in range, every size is bounded by `LimitSettings`, names and
ids are bounded and quoted by a short prefix only. Sizes over a limit raise
`ResourceExhausted`, malformed values `InvalidArgument`; each error names the field. A
request that passes here can still fail in the store (unknown collection, wrong dimension),
but never because a number or a size broke the code behind it.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from veclink.service.linkage_jobs import MAX_PAGE
from veclink.service.settings import LimitSettings
from veclink.v1 import common_pb2, embeddings_pb2, linkage_pb2, points_pb2

from veclink.errors import InvalidArgument, ResourceExhausted
from veclink.validation import check_path
from veclink.wire.options import JSON_OBJECT
from veclink.wire.types import check_collection_name, quote

#: the page tokens GetResults issues: a decimal offset
PAGE_TOKEN_RE = re.compile(r"^[0-9]{1,18}$")


class RequestValidator:
    """Checks request messages against one set of limits.

    Args:
        limits: the bounds; every method raises InvalidArgument or ResourceExhausted
            naming the field that breaks one.
    """

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits

    # ------------------------------------------------------------------ primitives

    def count(self, n: int, limit: int, field: str, what: str) -> None:
        if n > limit:
            raise ResourceExhausted(f"{field} has {n} {what}; the limit is {limit}", field=field)

    def text(self, value: str, field: str) -> None:
        self.count(len(value), self.limits.max_text_chars, field, "characters")

    def name(self, value: str, field: str, *, required: bool = True) -> None:
        """A model, job or column name: bounded; empty only when not required."""
        if required and not value:
            raise InvalidArgument(f"{field} is empty", field=field)
        if len(value) > self.limits.max_name_chars:
            raise InvalidArgument(
                f"{field} {quote(value)} is longer than {self.limits.max_name_chars} characters",
                field=field,
            )

    def collection(self, value: str, field: str = "collection") -> None:
        check_collection_name(value, field)

    def record_id(self, value: str, field: str) -> None:
        if not value:
            raise InvalidArgument(f"{field} is empty", field=field)
        if len(value) > self.limits.max_id_chars:
            raise InvalidArgument(
                f"{field} {quote(value)} is longer than {self.limits.max_id_chars} characters",
                field=field,
            )

    def ids(self, values: Iterable[str], field: str = "ids") -> None:
        values = list(values)
        self.count(len(values), self.limits.max_ids, field, "ids")
        for i, v in enumerate(values):
            if len(v) > self.limits.max_id_chars:
                raise InvalidArgument(
                    f"{field}[{i}] {quote(v)} is longer than {self.limits.max_id_chars} characters",
                    field=f"{field}[{i}]",
                )

    def image(self, value: bytes, field: str) -> None:
        self.count(len(value), self.limits.max_image_bytes, field, "bytes")

    def vector(self, vec: common_pb2.Vector, field: str) -> None:
        """Bounded dimension, finite values and a bounded norm (finite scores)."""
        n = len(vec.values)
        self.count(n, self.limits.max_dimensions, field, "dimensions")
        a = np.asarray(vec.values, dtype=np.float64)
        if not np.isfinite(a).all():
            raise InvalidArgument(f"{field} contains NaN or infinity", field=field)
        norm = float(np.linalg.norm(a)) if n else 0.0
        if norm > self.limits.max_vector_norm:
            raise InvalidArgument(
                f"{field} has norm {norm:.3g}; the limit is {self.limits.max_vector_norm:.3g}",
                field=field,
            )

    def number(self, x: float, field: str) -> None:
        if not math.isfinite(x):
            raise InvalidArgument(f"{field} is {x}; numbers must be finite", field=field)

    def json_object(
        self, s: common_pb2.JsonObject, field: str, max_bytes: int | None = None
    ) -> None:
        """A JSON object: bounded encoded size and depth, finite numbers, every value set."""
        self.count(s.ByteSize(), max_bytes or self.limits.max_struct_bytes, field, "bytes")
        self._fields(s, field, 1)

    def value(self, v: common_pb2.JsonValue, field: str) -> None:
        self.count(v.ByteSize(), self.limits.max_struct_bytes, field, "bytes")
        self._value(v, field, 1)

    def options(self, msg: Message, field: str, max_bytes: int | None = None) -> None:
        """A typed options message (index options, a linkage spec): bounded size, finite
        numbers in its own fields and in the JSON objects it holds."""
        self.count(msg.ByteSize(), max_bytes or self.limits.max_struct_bytes, field, "bytes")
        self._message(msg, field)

    def _message(self, msg: Message, field: str) -> None:
        for fd, value in msg.ListFields():
            path = f"{field}.{fd.name}"
            items = enumerate(value) if fd.is_repeated else [(None, value)]
            kind = fd.message_type.full_name if fd.message_type else None
            for i, item in items:
                at = path if i is None else f"{path}[{i}]"
                if kind == JSON_OBJECT:
                    self._fields(item, at, 1)
                elif kind is not None:
                    self._message(item, at)
                elif fd.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
                    self.number(item, at)

    def _fields(self, s: common_pb2.JsonObject, field: str, depth: int) -> None:
        if depth > self.limits.max_struct_depth:
            raise InvalidArgument(
                f"{field} is nested deeper than {self.limits.max_struct_depth} levels",
                field=field,
            )
        for key, v in s.fields.items():
            self._value(v, f"{field}[{quote(key, 32)}]", depth)

    def _value(self, v: common_pb2.JsonValue, field: str, depth: int) -> None:
        kind = v.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument(
                f"{field} is a JSON value with nothing set (null needs null_value)", field=field
            )
        if kind == "double_value":
            self.number(v.double_value, field)
        elif kind == "struct_value":
            self._fields(v.struct_value, field, depth + 1)
        elif kind == "list_value":
            if depth + 1 > self.limits.max_struct_depth:
                raise InvalidArgument(
                    f"{field} is nested deeper than {self.limits.max_struct_depth} levels",
                    field=field,
                )
            for i, item in enumerate(v.list_value.values):
                self._value(item, f"{field}[{i}]", depth + 1)

    # ------------------------------------------------------------------ embeddings

    def embed(self, req: embeddings_pb2.EmbedRequest) -> None:
        self.name(req.model, "model", required=False)
        self.count(len(req.inputs), self.limits.max_embed_inputs, "inputs", "inputs")
        for i, c in enumerate(req.inputs):
            self.content(c, f"inputs[{i}]")
        self.count(
            req.options.dimensions, self.limits.max_dimensions, "options.dimensions", "dimensions"
        )
        self.text(req.options.instruction, "options.instruction")

    def content(self, c: common_pb2.Content, field: str) -> None:
        kind = c.WhichOneof("kind")
        if kind == "text":
            self.text(c.text, field)
        elif kind == "image":
            self.image(c.image, field)

    # ------------------------------------------------------------------ collections

    def create_collection(self, req: Any) -> None:
        self.collection(req.name, "name")
        self.name(req.model, "model", required=False)
        if req.dimensions > self.limits.max_dimensions:
            raise InvalidArgument(
                f"dimensions={req.dimensions} is above the limit {self.limits.max_dimensions}",
                field="dimensions",
            )
        self.options(req.index_options, "index_options")
        if req.shards > self.limits.max_shards:
            raise InvalidArgument(
                f"shards={req.shards} is above the limit {self.limits.max_shards}", field="shards"
            )

    # ------------------------------------------------------------------ points

    def upsert(self, req: points_pb2.UpsertRequest) -> None:
        self.collection(req.collection)
        self.count(len(req.records), self.limits.max_batch, "records", "records")
        seen: set[str] = set()
        for i, r in enumerate(req.records):
            field = f"records[{i}]"
            self.record_id(r.id, f"{field}.id")
            if r.id in seen:
                raise InvalidArgument(
                    f"{field}.id {quote(r.id)} appears twice in the batch", field=f"{field}.id"
                )
            seen.add(r.id)
            if r.HasField("text"):
                self.text(r.text, f"{field}.text")
            if r.HasField("image"):
                self.image(r.image, f"{field}.image")
            if r.HasField("vector"):
                self.vector(r.vector, f"{field}.vector")
            if r.HasField("payload"):
                self.json_object(r.payload, f"{field}.payload")

    def delete(self, req: points_pb2.DeleteRequest) -> None:
        self.collection(req.collection)
        self.ids(req.ids)

    def get(self, req: points_pb2.GetRequest) -> None:
        self.collection(req.collection)
        self.ids(req.ids)

    def search(self, req: points_pb2.SearchRequest) -> None:
        self.collection(req.collection)
        which = req.WhichOneof("query")
        if which == "vector":
            self.vector(req.vector, "vector")
        elif which == "text":
            self.text(req.text, "text")
        elif which == "image":
            self.image(req.image, "image")
        if req.k > self.limits.max_k:
            raise InvalidArgument(f"k must be in 1..{self.limits.max_k}; got {req.k}", field="k")
        if req.params.nprobe > self.limits.max_nprobe:
            raise InvalidArgument(
                f"params.nprobe must be at most {self.limits.max_nprobe}", field="params.nprobe"
            )
        self.text(req.instruction, "instruction")
        self.filter(req.filter)

    def filter(self, f: points_pb2.Filter) -> None:
        self.count(len(f.must), self.limits.max_filter_conditions, "filter.must", "conditions")
        for i, c in enumerate(f.must):
            field = f"filter.must[{i}]"
            self.name(c.key, f"{field}.key", required=False)
            which = c.WhichOneof("match")
            if which == "equals":
                self.value(c.equals, f"{field}.equals")
            elif which == "any_of":
                values = c.any_of.values
                self.count(len(values), self.limits.max_filter_values, f"{field}.any_of", "values")
                for j, v in enumerate(values):
                    self.value(v, f"{field}.any_of[{j}]")
            elif which == "range":
                for bound in ("gte", "gt", "lte", "lt"):
                    if c.range.HasField(bound):
                        self.number(getattr(c.range, bound), f"{field}.range.{bound}")

    # ------------------------------------------------------------------ linkage

    def job_id(self, value: str) -> None:
        self.name(value, "job_id")

    def start_job(self, req: linkage_pb2.StartJobRequest) -> None:
        self.options(req.spec, "spec", self.limits.max_spec_bytes)
        self.table_source(req.left, "left")
        if req.HasField("right"):
            self.table_source(req.right, "right")

    def table_source(self, src: linkage_pb2.TableSource, side: str) -> None:
        self.name(src.id_column, f"{side}.id_column", required=False)
        if src.encoding:
            self.name(src.encoding, f"{side}.encoding")
            try:
                codecs.lookup(src.encoding)
            except (LookupError, ValueError):  # ValueError: a NUL in the name
                raise InvalidArgument(
                    f"{side}.encoding {quote(src.encoding)} is not a known text encoding",
                    field=f"{side}.encoding",
                ) from None
        which = src.WhichOneof("source")
        if which == "path":
            self.path(src.path, f"{side}.path")
        elif which == "sql":
            self.count(len(src.sql), self.limits.max_sql_chars, f"{side}.sql", "characters")
        elif which == "inline":
            rows = src.inline.rows
            self.count(len(rows), self.limits.max_rows, f"{side}.inline.rows", "rows")
            for i, row in enumerate(rows):
                self.json_object(row, f"{side}.inline.rows[{i}]")

    def path(self, value: str, field: str) -> None:
        """A server path the operating system can be asked about without an OSError."""
        check_path(value, field)

    def get_results(self, req: linkage_pb2.GetResultsRequest) -> None:
        self.job_id(req.job_id)
        if req.page_size > MAX_PAGE:
            raise InvalidArgument(f"page_size must be in 1..{MAX_PAGE}", field="page_size")
        if req.page_token and not PAGE_TOKEN_RE.match(req.page_token):
            raise InvalidArgument(
                f"page_token {quote(req.page_token)} is not one this server issued",
                field="page_token",
            )

    def match(self, req: linkage_pb2.MatchRequest) -> None:
        self.job_id(req.job_id)
        if not req.HasField("record"):
            raise InvalidArgument("record is required", field="record")
        self.json_object(req.record, "record")
        if req.k > self.limits.max_k:
            raise InvalidArgument(f"k must be in 1..{self.limits.max_k}; got {req.k}", field="k")
