"""The one place that touches generated protobuf types: proto <-> domain conversions."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2
from veclink.linkage.matcher import MatchResult
from veclink.linkage.store import JobInfo
from veclink.service.domain import (
    CollectionInfo,
    Condition,
    Filter,
    Hit,
    RecordIn,
    SearchQuery,
    StoredRecord,
)
from veclink.service.linkage_jobs import TableSource
from veclink.v1 import collections_pb2, common_pb2, embeddings_pb2, linkage_pb2, points_pb2

from veclink.errors import InvalidArgument

METRIC_TO_PROTO = {
    "cosine": common_pb2.METRIC_COSINE,
    "ip": common_pb2.METRIC_INNER_PRODUCT,
    "l2": common_pb2.METRIC_L2,
}
METRIC_FROM_PROTO = {v: k for k, v in METRIC_TO_PROTO.items()}
INDEX_TO_PROTO = {
    "flat": common_pb2.INDEX_KIND_FLAT,
    "partitioned": common_pb2.INDEX_KIND_PARTITIONED,
}
INDEX_FROM_PROTO = {v: k for k, v in INDEX_TO_PROTO.items()}
ROLE_FROM_PROTO = {common_pb2.ROLE_QUERY: "query", common_pb2.ROLE_DOCUMENT: "document"}


# ----------------------------------------------------------------------- primitives


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def dict_to_struct(d: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if d:
        s.update(d)
    return s


def value_to_python(v: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(v)


def vector_to_numpy(v: common_pb2.Vector) -> np.ndarray:
    return np.asarray(v.values, dtype=np.float32)


def numpy_to_vector(a: np.ndarray) -> common_pb2.Vector:
    return common_pb2.Vector(values=np.asarray(a, dtype=np.float32).ravel().tolist())


def metric_from_proto(m: int) -> str:
    if m == common_pb2.METRIC_UNSPECIFIED:
        return "cosine"
    try:
        return METRIC_FROM_PROTO[m]
    except KeyError:
        raise InvalidArgument(f"unknown metric enum value {m}", field="metric") from None


def index_kind_from_proto(k: int) -> str:
    if k == common_pb2.INDEX_KIND_UNSPECIFIED:
        return ""
    try:
        return INDEX_FROM_PROTO[k]
    except KeyError:
        raise InvalidArgument(f"unknown index_kind enum value {k}", field="index_kind") from None


def role_from_proto(r: int, default: str) -> str:
    if r == common_pb2.ROLE_UNSPECIFIED:
        return default
    try:
        return ROLE_FROM_PROTO[r]
    except KeyError:
        raise InvalidArgument(f"unknown role enum value {r}", field="options.role") from None


def content_to_python(c: common_pb2.Content, field: str) -> str | bytes:
    kind = c.WhichOneof("kind")
    if kind == "text":
        return c.text
    if kind == "image":
        return c.image
    raise InvalidArgument(f"{field} has neither text nor image", field=field)


# ----------------------------------------------------------------------- collections


def collection_to_proto(info: CollectionInfo) -> collections_pb2.Collection:
    msg = collections_pb2.Collection(
        name=info.name,
        model=info.model,
        dimensions=info.dim,
        metric=METRIC_TO_PROTO[info.metric],
        index_kind=INDEX_TO_PROTO.get(info.index_kind, common_pb2.INDEX_KIND_UNSPECIFIED),
        index_options=dict_to_struct(info.index_options),
        count=info.count,
        index_stats=dict_to_struct(info.index_stats),
    )
    msg.created_at.FromDatetime(info.created_at)
    return msg


# ----------------------------------------------------------------------- points


def record_from_proto(r: points_pb2.Record) -> RecordIn:
    payload = struct_to_dict(r.payload) if r.HasField("payload") else {}
    return RecordIn(
        id=r.id,
        text=r.text if r.HasField("text") else None,
        image=r.image if r.HasField("image") else None,
        vector=vector_to_numpy(r.vector) if r.HasField("vector") else None,
        payload=payload,
    )


def stored_record_to_proto(r: StoredRecord) -> points_pb2.StoredRecord:
    msg = points_pb2.StoredRecord(id=r.id, text=r.text or "", payload=dict_to_struct(r.payload))
    if r.vector is not None:
        msg.vector.CopyFrom(numpy_to_vector(r.vector))
    return msg


def hit_to_proto(h: Hit) -> points_pb2.Hit:
    msg = points_pb2.Hit(id=h.id, score=h.score, text=h.text or "")
    if h.payload:
        msg.payload.CopyFrom(dict_to_struct(h.payload))
    if h.vector is not None:
        msg.vector.CopyFrom(numpy_to_vector(h.vector))
    return msg


def filter_from_proto(f: points_pb2.Filter) -> Filter | None:
    if not f.must:
        return None
    conditions = []
    for i, c in enumerate(f.must):
        field = f"filter.must[{i}]"
        if not c.key:
            raise InvalidArgument(f"{field}.key is empty", field=f"{field}.key")
        which = c.WhichOneof("match")
        if which == "equals":
            conditions.append(Condition(key=c.key, op="equals", value=value_to_python(c.equals)))
        elif which == "any_of":
            values = [value_to_python(v) for v in c.any_of.values]
            conditions.append(Condition(key=c.key, op="any_of", value=values))
        elif which == "range":
            r = c.range
            bounds = {
                name: getattr(r, name) if r.HasField(name) else None
                for name in ("gte", "gt", "lte", "lt")
            }
            if all(v is None for v in bounds.values()):
                raise InvalidArgument(f"{field}.range has no bound", field=f"{field}.range")
            conditions.append(Condition(key=c.key, op="range", **bounds))
        else:
            raise InvalidArgument(
                f"{field} needs one of equals, any_of or range", field=f"{field}.match"
            )
    return Filter(must=tuple(conditions))


def search_from_proto(req: points_pb2.SearchRequest) -> SearchQuery:
    which = req.WhichOneof("query")
    return SearchQuery(
        collection=req.collection,
        k=req.k or 10,
        vector=vector_to_numpy(req.vector) if which == "vector" else None,
        text=req.text if which == "text" else None,
        image=req.image if which == "image" else None,
        filter=filter_from_proto(req.filter) if req.HasField("filter") else None,
        nprobe=req.params.nprobe or None if req.HasField("params") else None,
        with_payload=req.with_payload,
        with_vectors=req.with_vectors,
        instruction=req.instruction or None,
    )


# ----------------------------------------------------------------------- embeddings


def model_info_to_proto(
    name: str, dim: int, modality: str, spec: dict[str, Any], is_default: bool
) -> embeddings_pb2.ModelInfo:
    return embeddings_pb2.ModelInfo(
        name=name,
        dimensions=dim,
        modality=modality,
        spec=dict_to_struct(spec),
        is_default=is_default,
    )


def embeddings_to_proto(name: str, vectors: np.ndarray) -> embeddings_pb2.EmbedResponse:
    return embeddings_pb2.EmbedResponse(
        model=name,
        dimensions=int(vectors.shape[1]),
        embeddings=[numpy_to_vector(v) for v in vectors],
    )


# ----------------------------------------------------------------------- linkage

JOB_KIND_FROM_PROTO = {linkage_pb2.JOB_KIND_LINK: "link", linkage_pb2.JOB_KIND_DEDUPE: "dedupe"}
JOB_KIND_TO_PROTO = {v: k for k, v in JOB_KIND_FROM_PROTO.items()}
JOB_STATE_TO_PROTO = {
    "queued": linkage_pb2.JOB_STATE_QUEUED,
    "running": linkage_pb2.JOB_STATE_RUNNING,
    "succeeded": linkage_pb2.JOB_STATE_SUCCEEDED,
    "failed": linkage_pb2.JOB_STATE_FAILED,
    "cancelled": linkage_pb2.JOB_STATE_CANCELLED,
}


def job_kind_from_proto(k: int) -> str:
    try:
        return JOB_KIND_FROM_PROTO[k]
    except KeyError:
        raise InvalidArgument(
            "kind must be JOB_KIND_LINK or JOB_KIND_DEDUPE", field="kind"
        ) from None


def table_source_from_proto(src: linkage_pb2.TableSource, side: str) -> TableSource | None:
    which = src.WhichOneof("source")
    if which is None:
        return None
    return TableSource(
        path=src.path if which == "path" else None,
        rows=[struct_to_dict(r) for r in src.inline.rows] if which == "inline" else None,
        sql=src.sql if which == "sql" else None,
        id_column=src.id_column,
        encoding=src.encoding or None,
    )


def job_to_proto(job: JobInfo) -> linkage_pb2.Job:
    msg = linkage_pb2.Job(
        job_id=job.job_id,
        kind=JOB_KIND_TO_PROTO.get(job.kind, linkage_pb2.JOB_KIND_UNSPECIFIED),
        state=JOB_STATE_TO_PROTO.get(job.state, linkage_pb2.JOB_STATE_UNSPECIFIED),
        stage=job.stage,
        progress=job.progress,
        error=job.error,
        metrics=dict_to_struct(job.metrics),
    )
    msg.created_at.FromDatetime(job.created_at)
    if job.finished_at is not None:
        msg.finished_at.FromDatetime(job.finished_at)
    return msg


def match_to_proto(result: MatchResult) -> linkage_pb2.MatchResponse:
    return linkage_pb2.MatchResponse(
        candidates=[
            linkage_pb2.EntityCandidate(entity_id=c.entity_id, record_id=c.record_id, score=c.score)
            for c in result.candidates
        ],
        assigned_entity_id=result.assigned_entity_id or "",
    )
