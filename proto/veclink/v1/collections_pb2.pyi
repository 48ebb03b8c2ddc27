import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from veclink.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Collection(_message.Message):
    __slots__ = ("name", "model", "dimensions", "metric", "index_kind", "count", "created_at", "index_stats", "index_options", "shards")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    INDEX_STATS_FIELD_NUMBER: _ClassVar[int]
    INDEX_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    dimensions: int
    metric: _common_pb2.Metric
    index_kind: _common_pb2.IndexKind
    count: int
    created_at: _timestamp_pb2.Timestamp
    index_stats: _common_pb2.JsonObject
    index_options: IndexOptions
    shards: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., index_kind: _Optional[_Union[_common_pb2.IndexKind, str]] = ..., count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., index_stats: _Optional[_Union[_common_pb2.JsonObject, _Mapping]] = ..., index_options: _Optional[_Union[IndexOptions, _Mapping]] = ..., shards: _Optional[int] = ...) -> None: ...

class IndexOptions(_message.Message):
    __slots__ = ("flat", "partitioned")
    FLAT_FIELD_NUMBER: _ClassVar[int]
    PARTITIONED_FIELD_NUMBER: _ClassVar[int]
    flat: FlatIndexOptions
    partitioned: PartitionedIndexOptions
    def __init__(self, flat: _Optional[_Union[FlatIndexOptions, _Mapping]] = ..., partitioned: _Optional[_Union[PartitionedIndexOptions, _Mapping]] = ...) -> None: ...

class FlatIndexOptions(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartitionedIndexOptions(_message.Message):
    __slots__ = ("split_limit", "merge_limit", "nprobe", "eps", "replicas", "replica_eps", "reassign_neighbors", "refresh", "background", "device", "postings", "rerank", "graph_min_partitions")
    SPLIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MERGE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_EPS_FIELD_NUMBER: _ClassVar[int]
    REASSIGN_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    POSTINGS_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    GRAPH_MIN_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    split_limit: int
    merge_limit: int
    nprobe: int
    eps: float
    replicas: int
    replica_eps: float
    reassign_neighbors: int
    refresh: float
    background: bool
    device: str
    postings: str
    rerank: int
    graph_min_partitions: int
    def __init__(self, split_limit: _Optional[int] = ..., merge_limit: _Optional[int] = ..., nprobe: _Optional[int] = ..., eps: _Optional[float] = ..., replicas: _Optional[int] = ..., replica_eps: _Optional[float] = ..., reassign_neighbors: _Optional[int] = ..., refresh: _Optional[float] = ..., background: _Optional[bool] = ..., device: _Optional[str] = ..., postings: _Optional[str] = ..., rerank: _Optional[int] = ..., graph_min_partitions: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "model", "dimensions", "metric", "index_kind", "index_options", "shards")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    dimensions: int
    metric: _common_pb2.Metric
    index_kind: _common_pb2.IndexKind
    index_options: IndexOptions
    shards: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., index_kind: _Optional[_Union[_common_pb2.IndexKind, str]] = ..., index_options: _Optional[_Union[IndexOptions, _Mapping]] = ..., shards: _Optional[int] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...
