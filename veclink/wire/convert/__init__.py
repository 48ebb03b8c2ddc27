"""Wire types <-> generated protobuf messages, both directions, for server and client.

Each message has a ``*_to_proto`` and a ``*_from_proto`` here and nowhere else; the server
decodes requests and encodes replies with them, the client the other way round, and the
round-trip tests (tests/unit/test_wire.py) hold the two directions together. One module
per proto file; JSON values keep integers exact (`veclink.wire.values`) and index options
and linkage specs are typed messages (`veclink.wire.options`).
"""

from __future__ import annotations

from veclink.wire.convert.collections import (
    OPTIONS_KIND,
    collection_from_proto,
    collection_to_proto,
    index_options_from_proto,
    index_options_to_proto,
    new_collection_from_proto,
    new_collection_to_proto,
)
from veclink.wire.convert.common import (
    INDEX_KIND,
    METRIC,
    ROLE,
    content_from_proto,
    content_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from veclink.wire.convert.embeddings import (
    embed_from_proto,
    embed_to_proto,
    embeddings_from_proto,
    embeddings_to_proto,
    model_info_from_proto,
    model_info_to_proto,
)
from veclink.wire.convert.linkage import (
    JOB_KIND,
    JOB_STATE,
    job_from_proto,
    job_to_proto,
    match_from_proto,
    match_record_from_proto,
    match_request_to_proto,
    match_to_proto,
    new_job_from_proto,
    new_job_to_proto,
    results_from_proto,
    results_to_proto,
    spec_from_proto,
    spec_to_proto,
    table_source_from_proto,
    table_source_to_proto,
)
from veclink.wire.convert.points import (
    filter_from_proto,
    filter_to_proto,
    hit_from_proto,
    hit_to_proto,
    record_from_proto,
    record_to_proto,
    search_from_proto,
    search_to_proto,
    stored_record_from_proto,
    stored_record_to_proto,
)

__all__ = [
    "INDEX_KIND",
    "JOB_KIND",
    "JOB_STATE",
    "METRIC",
    "OPTIONS_KIND",
    "ROLE",
    "collection_from_proto",
    "collection_to_proto",
    "content_from_proto",
    "content_to_proto",
    "embed_from_proto",
    "embed_to_proto",
    "embeddings_from_proto",
    "embeddings_to_proto",
    "filter_from_proto",
    "filter_to_proto",
    "hit_from_proto",
    "hit_to_proto",
    "index_options_from_proto",
    "index_options_to_proto",
    "job_from_proto",
    "job_to_proto",
    "match_from_proto",
    "match_record_from_proto",
    "match_request_to_proto",
    "match_to_proto",
    "model_info_from_proto",
    "model_info_to_proto",
    "new_collection_from_proto",
    "new_collection_to_proto",
    "new_job_from_proto",
    "new_job_to_proto",
    "record_from_proto",
    "record_to_proto",
    "results_from_proto",
    "results_to_proto",
    "search_from_proto",
    "search_to_proto",
    "spec_from_proto",
    "spec_to_proto",
    "stored_record_from_proto",
    "stored_record_to_proto",
    "table_source_from_proto",
    "table_source_to_proto",
    "vector_from_proto",
    "vector_to_proto",
]
