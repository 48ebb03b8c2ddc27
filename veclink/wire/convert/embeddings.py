"""Embeddings: embed requests and replies, served models."""

from __future__ import annotations

import numpy as np

from veclink.v1 import embeddings_pb2
from veclink.wire.convert.common import (
    ROLE,
    EnumNames,
    content_from_proto,
    content_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from veclink.wire.types import Embeddings, EmbedQuery, ModelInfo
from veclink.wire.values import from_object, to_object

PRECISION = EnumNames(
    "options.precision",
    {
        "float32": embeddings_pb2.PRECISION_FLOAT32,
        "int8": embeddings_pb2.PRECISION_INT8,
        "uint8": embeddings_pb2.PRECISION_UINT8,
        "binary": embeddings_pb2.PRECISION_BINARY,
        "ubinary": embeddings_pb2.PRECISION_UBINARY,
    },
)
#: numpy dtype of each quantised precision's bytes
_DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


def embed_to_proto(q: EmbedQuery) -> embeddings_pb2.EmbedRequest:
    return embeddings_pb2.EmbedRequest(
        model=q.model,
        inputs=[content_to_proto(x) for x in q.inputs],
        options=embeddings_pb2.EmbedOptions(
            normalize=q.normalize,
            dimensions=q.dimensions,
            role=ROLE.to_proto(q.role),
            instruction=q.instruction or "",
            precision=PRECISION.to_proto(q.precision),
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
        precision=PRECISION.from_proto(opts.precision, default="float32"),
    )


def embeddings_to_proto(e: Embeddings) -> embeddings_pb2.EmbedResponse:
    resp = embeddings_pb2.EmbedResponse(
        model=e.model, dimensions=e.dimensions, precision=PRECISION.to_proto(e.precision)
    )
    if e.precision == "float32":
        resp.embeddings.extend(vector_to_proto(v) for v in e.values)
    else:
        scales = e.scales if e.scales is not None else np.zeros(len(e.values), np.float32)
        resp.quantized.extend(
            embeddings_pb2.QuantizedVector(data=row.tobytes(), scale=float(scale))
            for row, scale in zip(e.values, scales, strict=True)
        )
    return resp


def embeddings_from_proto(resp: embeddings_pb2.EmbedResponse) -> Embeddings:
    """The reply's vectors as one array (see `Embeddings` for each precision's layout)."""
    precision = PRECISION.from_proto(resp.precision, default="float32")
    d = resp.dimensions
    if precision == "float32":
        values = (
            np.stack([vector_from_proto(v) for v in resp.embeddings])
            if resp.embeddings
            else np.zeros((0, d), dtype=np.float32)
        )
        return Embeddings(model=resp.model, precision=precision, dimensions=d, values=values)
    dtype = _DTYPES[precision]
    width = d if precision in ("int8", "uint8") else (d + 7) // 8
    data = b"".join(q.data for q in resp.quantized)
    values = np.frombuffer(data, dtype=dtype).reshape(len(resp.quantized), width).copy()
    scales = None
    if precision in ("int8", "uint8"):
        scales = np.array([q.scale for q in resp.quantized], dtype=np.float32)
    return Embeddings(
        model=resp.model, precision=precision, dimensions=d, values=values, scales=scales
    )


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
