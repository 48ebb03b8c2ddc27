"""Collections: create requests, descriptions, typed index options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from veclink.errors import InvalidArgument
from veclink.v1 import collections_pb2
from veclink.wire.convert.common import INDEX_KIND, METRIC, timestamp
from veclink.wire.options import dict_to_message, message_to_dict
from veclink.wire.types import CollectionInfo, NewCollection
from veclink.wire.values import from_object, to_object

#: options given without an index kind are for the only kind that takes any
OPTIONS_KIND = "partitioned"


def index_options_to_proto(
    kind: str, options: Mapping[str, Any] | None
) -> collections_pb2.IndexOptions:
    """The typed options of an index ``kind`` ("" with options: a partitioned index).

    Raises:
        InvalidArgument: a key the kind does not take, or a value of the wrong type.
    """
    out = collections_pb2.IndexOptions()
    kind = kind or (OPTIONS_KIND if options else "")
    if not kind:
        return out
    INDEX_KIND.to_proto(kind)
    sub = getattr(out, kind)
    sub.SetInParent()
    if options:
        if not sub.DESCRIPTOR.fields:
            raise InvalidArgument(
                f"a {kind} index takes no options; got {', '.join(map(str, options))}",
                field="index_options",
            )
        sub.CopyFrom(dict_to_message(options, type(sub), f"{kind} index options", "index_options"))
    return out


def index_options_from_proto(opts: collections_pb2.IndexOptions) -> tuple[str, dict[str, Any]]:
    """The kind the options are for ("" when none) and the options that were set."""
    kind = opts.WhichOneof("kind")
    if kind is None:
        return "", {}
    return kind, message_to_dict(getattr(opts, kind))


def new_collection_to_proto(c: NewCollection) -> collections_pb2.CreateCollectionRequest:
    return collections_pb2.CreateCollectionRequest(
        name=c.name,
        model=c.model,
        dimensions=c.dim,
        metric=METRIC.to_proto(c.metric),
        index_kind=INDEX_KIND.to_proto(c.index_kind, allow_empty=True),
        index_options=index_options_to_proto(c.index_kind, c.index_options),
        shards=c.shards,
    )


def new_collection_from_proto(req: collections_pb2.CreateCollectionRequest) -> NewCollection:
    kind = INDEX_KIND.from_proto(req.index_kind, default="")
    options_kind, options = index_options_from_proto(req.index_options)
    if kind and options_kind and options_kind != kind:
        raise InvalidArgument(
            f"index_options are for a {options_kind} index but index_kind is {kind}",
            field="index_options",
        )
    return NewCollection(
        name=req.name,
        model=req.model,
        dim=req.dimensions,
        metric=METRIC.from_proto(req.metric, default="cosine"),
        index_kind=kind or options_kind,
        index_options=options,
        shards=req.shards,
    )


def collection_to_proto(info: CollectionInfo) -> collections_pb2.Collection:
    return collections_pb2.Collection(
        name=info.name,
        model=info.model,
        dimensions=info.dim,
        metric=METRIC.to_proto(info.metric),
        index_kind=INDEX_KIND.to_proto(info.index_kind, allow_empty=True),
        index_options=index_options_to_proto(info.index_kind, info.index_options),
        count=info.count,
        created_at=timestamp(info.created_at),
        index_stats=to_object(info.index_stats, "index_stats"),
        shards=info.shards,
    )


def collection_from_proto(c: collections_pb2.Collection) -> CollectionInfo:
    return CollectionInfo(
        name=c.name,
        model=c.model,
        dim=c.dimensions,
        metric=METRIC.from_proto(c.metric, default="cosine"),
        index_kind=INDEX_KIND.from_proto(c.index_kind, default=""),
        index_options=index_options_from_proto(c.index_options)[1],
        count=c.count,
        created_at=c.created_at.ToDatetime(),
        index_stats=from_object(c.index_stats),
        shards=c.shards,
    )
