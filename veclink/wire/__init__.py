"""veclink's wire contract, shared by the server and the client.

``veclink.wire.types`` holds the plain types a request asks and a reply says;
``veclink.wire.convert`` turns them into the generated ``veclink.v1`` messages and back
(``veclink.wire.values``: JSON values with exact integers; ``veclink.wire.options``: typed
index options and linkage specs). This package imports neither the server nor the
libraries behind it (index, encoders, linkage), so ``import veclink.client`` stays light.
"""

from __future__ import annotations

from veclink.wire.types import (
    CollectionInfo,
    Condition,
    Embeddings,
    EmbedQuery,
    EntityAssignment,
    EntityCandidate,
    Filter,
    Hit,
    Job,
    JobResults,
    MatchedPair,
    MatchResult,
    ModelInfo,
    NewCollection,
    NewJob,
    RecordIn,
    SearchQuery,
    StoredRecord,
    TableSource,
)

__all__ = [
    "CollectionInfo",
    "Condition",
    "EmbedQuery",
    "Embeddings",
    "EntityAssignment",
    "EntityCandidate",
    "Filter",
    "Hit",
    "Job",
    "JobResults",
    "MatchResult",
    "MatchedPair",
    "ModelInfo",
    "NewCollection",
    "NewJob",
    "RecordIn",
    "SearchQuery",
    "StoredRecord",
    "TableSource",
]
