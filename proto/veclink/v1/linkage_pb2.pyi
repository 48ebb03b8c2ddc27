import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from veclink.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_LINK: _ClassVar[JobKind]
    JOB_KIND_DEDUPE: _ClassVar[JobKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_LINK: JobKind
JOB_KIND_DEDUPE: JobKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class TableSource(_message.Message):
    __slots__ = ("path", "inline", "sql", "id_column", "encoding")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    ID_COLUMN_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    path: str
    inline: InlineTable
    sql: str
    id_column: str
    encoding: str
    def __init__(self, path: _Optional[str] = ..., inline: _Optional[_Union[InlineTable, _Mapping]] = ..., sql: _Optional[str] = ..., id_column: _Optional[str] = ..., encoding: _Optional[str] = ...) -> None: ...

class InlineTable(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.JsonObject]
    def __init__(self, rows: _Optional[_Iterable[_Union[_common_pb2.JsonObject, _Mapping]]] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("kind", "left", "right", "spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    kind: JobKind
    left: TableSource
    right: TableSource
    spec: LinkageSpec
    def __init__(self, kind: _Optional[_Union[JobKind, str]] = ..., left: _Optional[_Union[TableSource, _Mapping]] = ..., right: _Optional[_Union[TableSource, _Mapping]] = ..., spec: _Optional[_Union[LinkageSpec, _Mapping]] = ...) -> None: ...

class LinkageSpec(_message.Message):
    __slots__ = ("fields", "left_id", "right_id", "serialization", "blocking", "precision", "objective", "threshold", "assignment", "reference", "classifier", "cluster", "llm_judge", "encoder", "seed", "memory_budget_mb")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    LEFT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ID_FIELD_NUMBER: _ClassVar[int]
    SERIALIZATION_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LLM_JUDGE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_MB_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[FieldSpec]
    left_id: str
    right_id: str
    serialization: str
    blocking: BlockingSpec
    precision: float
    objective: str
    threshold: float
    assignment: str
    reference: str
    classifier: str
    cluster: str
    llm_judge: LLMJudgeSpec
    encoder: _common_pb2.JsonObject
    seed: int
    memory_budget_mb: float
    def __init__(self, fields: _Optional[_Iterable[_Union[FieldSpec, _Mapping]]] = ..., left_id: _Optional[str] = ..., right_id: _Optional[str] = ..., serialization: _Optional[str] = ..., blocking: _Optional[_Union[BlockingSpec, _Mapping]] = ..., precision: _Optional[float] = ..., objective: _Optional[str] = ..., threshold: _Optional[float] = ..., assignment: _Optional[str] = ..., reference: _Optional[str] = ..., classifier: _Optional[str] = ..., cluster: _Optional[str] = ..., llm_judge: _Optional[_Union[LLMJudgeSpec, _Mapping]] = ..., encoder: _Optional[_Union[_common_pb2.JsonObject, _Mapping]] = ..., seed: _Optional[int] = ..., memory_budget_mb: _Optional[float] = ...) -> None: ...

class FieldSpec(_message.Message):
    __slots__ = ("name", "left", "right", "type", "embed", "compare", "max_chars", "scale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    left: str
    right: str
    type: str
    embed: bool
    compare: bool
    max_chars: int
    scale: float
    def __init__(self, name: _Optional[str] = ..., left: _Optional[str] = ..., right: _Optional[str] = ..., type: _Optional[str] = ..., embed: _Optional[bool] = ..., compare: _Optional[bool] = ..., max_chars: _Optional[int] = ..., scale: _Optional[float] = ...) -> None: ...

class BlockingSpec(_message.Message):
    __slots__ = ("k", "min_k", "margin", "lexical_weight", "lexical_dim", "lexical_blocking_dim", "keys", "max_key_block", "index_kind")
    K_FIELD_NUMBER: _ClassVar[int]
    MIN_K_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_DIM_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_BLOCKING_DIM_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_KEY_BLOCK_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    k: int
    min_k: int
    margin: float
    lexical_weight: float
    lexical_dim: int
    lexical_blocking_dim: int
    keys: _containers.RepeatedCompositeFieldContainer[BlockingKey]
    max_key_block: int
    index_kind: str
    def __init__(self, k: _Optional[int] = ..., min_k: _Optional[int] = ..., margin: _Optional[float] = ..., lexical_weight: _Optional[float] = ..., lexical_dim: _Optional[int] = ..., lexical_blocking_dim: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[BlockingKey, _Mapping]]] = ..., max_key_block: _Optional[int] = ..., index_kind: _Optional[str] = ...) -> None: ...

class BlockingKey(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fields: _Optional[_Iterable[str]] = ...) -> None: ...

class LLMJudgeSpec(_message.Message):
    __slots__ = ("model", "band", "max_pairs", "weight", "device")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    MAX_PAIRS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    model: str
    band: float
    max_pairs: int
    weight: float
    device: str
    def __init__(self, model: _Optional[str] = ..., band: _Optional[float] = ..., max_pairs: _Optional[int] = ..., weight: _Optional[float] = ..., device: _Optional[str] = ...) -> None: ...

class StartJobResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "kind", "state", "stage", "progress", "error", "metrics", "created_at", "finished_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: JobKind
    state: JobState
    stage: str
    progress: float
    error: str
    metrics: _common_pb2.JsonObject
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., progress: _Optional[float] = ..., error: _Optional[str] = ..., metrics: _Optional[_Union[_common_pb2.JsonObject, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetResultsRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class MatchedPair(_message.Message):
    __slots__ = ("left_id", "right_id", "score")
    LEFT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    left_id: str
    right_id: str
    score: float
    def __init__(self, left_id: _Optional[str] = ..., right_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class EntityAssignment(_message.Message):
    __slots__ = ("id", "entity_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    entity_id: str
    def __init__(self, id: _Optional[str] = ..., entity_id: _Optional[str] = ...) -> None: ...

class GetResultsResponse(_message.Message):
    __slots__ = ("pairs", "entities", "next_page_token")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[MatchedPair]
    entities: _containers.RepeatedCompositeFieldContainer[EntityAssignment]
    next_page_token: str
    def __init__(self, pairs: _Optional[_Iterable[_Union[MatchedPair, _Mapping]]] = ..., entities: _Optional[_Iterable[_Union[EntityAssignment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("job_id", "record", "k", "assign")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    record: _common_pb2.JsonObject
    k: int
    assign: bool
    def __init__(self, job_id: _Optional[str] = ..., record: _Optional[_Union[_common_pb2.JsonObject, _Mapping]] = ..., k: _Optional[int] = ..., assign: _Optional[bool] = ...) -> None: ...

class EntityCandidate(_message.Message):
    __slots__ = ("entity_id", "record_id", "score")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    record_id: str
    score: float
    def __init__(self, entity_id: _Optional[str] = ..., record_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("candidates", "assigned_entity_id")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[EntityCandidate]
    assigned_entity_id: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[EntityCandidate, _Mapping]]] = ..., assigned_entity_id: _Optional[str] = ...) -> None: ...
