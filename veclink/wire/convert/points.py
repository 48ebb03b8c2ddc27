"""Points: records, stored records, hits, filters and searches."""

from __future__ import annotations

from veclink.errors import InvalidArgument
from veclink.v1 import points_pb2
from veclink.wire.convert.common import vector_from_proto, vector_to_proto
from veclink.wire.types import Condition, Filter, Hit, RecordIn, SearchQuery, StoredRecord
from veclink.wire.values import from_object, from_value, to_object, to_value


def record_to_proto(r: RecordIn, field: str = "record") -> points_pb2.Record:
    msg = points_pb2.Record(id=r.id)
    if r.text is not None:
        msg.text = r.text
    if r.image is not None:
        msg.image = r.image
    if r.vector is not None:
        msg.vector.CopyFrom(vector_to_proto(r.vector))
    if r.payload:
        msg.payload.CopyFrom(to_object(r.payload, f"{field}.payload"))
    return msg


def record_from_proto(r: points_pb2.Record) -> RecordIn:
    return RecordIn(
        id=r.id,
        text=r.text if r.HasField("text") else None,
        image=r.image if r.HasField("image") else None,
        vector=vector_from_proto(r.vector) if r.HasField("vector") else None,
        payload=from_object(r.payload),
    )


def stored_record_to_proto(r: StoredRecord) -> points_pb2.StoredRecord:
    msg = points_pb2.StoredRecord(id=r.id, text=r.text or "", payload=to_object(r.payload))
    if r.vector is not None:
        msg.vector.CopyFrom(vector_to_proto(r.vector))
    return msg


def stored_record_from_proto(r: points_pb2.StoredRecord) -> StoredRecord:
    return StoredRecord(
        id=r.id,
        text=r.text or None,
        payload=from_object(r.payload),
        vector=vector_from_proto(r.vector) if r.HasField("vector") else None,
    )


def hit_to_proto(h: Hit) -> points_pb2.Hit:
    msg = points_pb2.Hit(id=h.id, score=h.score, text=h.text or "")
    if h.payload:
        msg.payload.CopyFrom(to_object(h.payload))
    if h.vector is not None:
        msg.vector.CopyFrom(vector_to_proto(h.vector))
    return msg


def hit_from_proto(h: points_pb2.Hit) -> Hit:
    return Hit(
        id=h.id,
        score=h.score,
        text=h.text or None,
        payload=from_object(h.payload),
        vector=vector_from_proto(h.vector) if h.HasField("vector") else None,
    )


BOUNDS = ("gte", "gt", "lte", "lt")


def filter_to_proto(f: Filter) -> points_pb2.Filter:
    out = points_pb2.Filter()
    for i, c in enumerate(f.must):
        field = f"filter.must[{i}]"
        cond = out.must.add(key=c.key)
        if c.op == "equals":
            cond.equals.CopyFrom(to_value(c.value, f"{field}.equals"))
        elif c.op == "any_of":
            values = list(c.value or ())
            cond.any_of.values.extend(
                to_value(v, f"{field}.any_of[{j}]") for j, v in enumerate(values)
            )
            cond.any_of.SetInParent()
        elif c.op == "range":
            cond.range.SetInParent()
            for name in BOUNDS:
                bound = getattr(c, name)
                if bound is not None:
                    setattr(cond.range, name, bound)
        else:
            raise InvalidArgument(
                f"{field}.op must be equals, any_of or range; got {c.op!r}", field=f"{field}.op"
            )
    return out


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
            conditions.append(Condition(key=c.key, op="equals", value=from_value(c.equals)))
        elif which == "any_of":
            values = [from_value(v) for v in c.any_of.values]
            conditions.append(Condition(key=c.key, op="any_of", value=values))
        elif which == "range":
            r = c.range
            bounds = {name: getattr(r, name) if r.HasField(name) else None for name in BOUNDS}
            if all(v is None for v in bounds.values()):
                raise InvalidArgument(f"{field}.range has no bound", field=f"{field}.range")
            conditions.append(Condition(key=c.key, op="range", **bounds))
        else:
            raise InvalidArgument(
                f"{field} needs one of equals, any_of or range", field=f"{field}.match"
            )
    return Filter(must=tuple(conditions))


def search_to_proto(q: SearchQuery) -> points_pb2.SearchRequest:
    req = points_pb2.SearchRequest(
        collection=q.collection,
        k=q.k,
        with_payload=q.with_payload,
        with_vectors=q.with_vectors,
        instruction=q.instruction or "",
    )
    if q.vector is not None:
        req.vector.CopyFrom(vector_to_proto(q.vector))
    if q.text is not None:
        req.text = q.text
    if q.image is not None:
        req.image = q.image
    if q.filter is not None and q.filter.must:
        req.filter.CopyFrom(filter_to_proto(q.filter))
    if q.nprobe:
        req.params.nprobe = q.nprobe
    return req


def search_from_proto(req: points_pb2.SearchRequest) -> SearchQuery:
    which = req.WhichOneof("query")
    return SearchQuery(
        collection=req.collection,
        k=req.k or 10,
        vector=vector_from_proto(req.vector) if which == "vector" else None,
        text=req.text if which == "text" else None,
        image=req.image if which == "image" else None,
        filter=filter_from_proto(req.filter) if req.HasField("filter") else None,
        nprobe=req.params.nprobe or None if req.HasField("params") else None,
        with_payload=req.with_payload,
        with_vectors=req.with_vectors,
        instruction=req.instruction or None,
    )
