"""Embeddings: embed requests and replies, served models."""

from __future__ import annotations

import numpy as np

from veclink.v1 import embeddings_pb2
from veclink.wire.convert.common import (
    ROLE,
    content_from_proto,
    content_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from veclink.wire.types import EmbedQuery, ModelInfo
from veclink.wire.values import from_object, to_object


def embed_to_proto(q: EmbedQuery) -> embeddings_pb2.EmbedRequest:
    return embeddings_pb2.EmbedRequest(
        model=q.model,
        inputs=[content_to_proto(x) for x in q.inputs],
        options=embeddings_pb2.EmbedOptions(
            normalize=q.normalize,
            dimensions=q.dimensions,
            role=ROLE.to_proto(q.role),
            instruction=q.instruction or "",
        ),
    )


def embed_from_proto(req: embeddings_pb2.EmbedRequest) -> EmbedQuery:
    opts = req.options
    return EmbedQuery(
        inputs=tuple(content_from_proto(c, f"inputs[{i}]") for i, c in enumerate(req.inputs)),
        model=req.model,
        role=ROLE.from_proto(opts.role, default="query"),  # type: ignore[arg-type]
        normalize=opts.normalize,
        dimensions=opts.dimensions,
        instruction=opts.instruction or None,
    )


def embeddings_to_proto(name: str, vectors: np.ndarray) -> embeddings_pb2.EmbedResponse:
    return embeddings_pb2.EmbedResponse(
        model=name,
        dimensions=int(vectors.shape[1]),
        embeddings=[vector_to_proto(v) for v in vectors],
    )


def embeddings_from_proto(resp: embeddings_pb2.EmbedResponse) -> np.ndarray:
    """The vectors as one float32 (n, dimensions) array."""
    if not resp.embeddings:
        return np.zeros((0, resp.dimensions), dtype=np.float32)
    return np.stack([vector_from_proto(v) for v in resp.embeddings])


def model_info_to_proto(m: ModelInfo) -> embeddings_pb2.ModelInfo:
    return embeddings_pb2.ModelInfo(
        name=m.name,
        dimensions=m.dimensions,
        modality=m.modality,
        spec=to_object(m.spec, "spec"),
        is_default=m.is_default,
    )


def model_info_from_proto(m: embeddings_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=m.name,
        dimensions=m.dimensions,
        modality=m.modality,
        spec=from_object(m.spec),
        is_default=m.is_default,
    )
