"""What an Embed request may ask of its vectors: Matryoshka truncation and quantisation.

Quantisation follows sentence-transformers' ``quantize_embeddings`` precisions, with one
difference for int8 / uint8: sentence-transformers calibrates per dimension, from the batch
it is given (or calibration embeddings), so a vector depends on the others in its call;
here each vector has its own symmetric scale (``max |x| / 127``), so a vector is the same
whatever it is sent with, and ``q * scale`` reconstructs it (cosine to float32 >= 0.999 on
all-MiniLM-L6-v2).
"""

from __future__ import annotations

import numpy as np

from veclink.errors import InvalidArgument

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
#: a row within this of unit length counts as normalised (float32 noise of the model)
UNIT_TOLERANCE = 1e-3


def truncate(vectors: np.ndarray, dimensions: int, *, normalize: bool) -> np.ndarray:
    """The first ``dimensions`` components of each row (0: all), L2-normalised when
    ``normalize`` is set or the rows were unit length before truncation."""
    out = np.asarray(vectors, dtype=np.float32)
    unit = False
    if dimensions and dimensions < out.shape[1]:
        norms = np.linalg.norm(out, axis=1)
        unit = bool(len(norms)) and bool(np.all(np.abs(norms - 1.0) <= UNIT_TOLERANCE))
        out = out[:, :dimensions]
    if normalize or unit:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def quantize(vectors: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(values, scales)`` of float32 ``vectors (n, d)`` at ``precision``.

    - ``float32``: the vectors, no scales.
    - ``int8``: int8 ``(n, d)``, ``x ~ q * scale`` with ``scale = max |x| / 127`` per row.
    - ``uint8``: uint8 ``(n, d)`` = int8 + 128, the same scales.
    - ``binary``: int8 ``(n, ceil(d / 8))``: ``np.packbits(x > 0) - 128``; no scales.
    - ``ubinary``: uint8 ``(n, ceil(d / 8))``: ``np.packbits(x > 0)``; no scales.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if precision == "float32":
        return vectors, None
    if precision in ("int8", "uint8"):
        peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors))
        scales = (np.maximum(peak, 1e-30) / 127.0).astype(np.float32)
        q = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
        if precision == "uint8":
            return (q.astype(np.int16) + 128).astype(np.uint8), scales
        return q, scales
    if precision in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=1)
        if precision == "binary":
            return (packed.astype(np.int16) - 128).astype(np.int8), None
        return packed, None
    raise InvalidArgument(
        f"options.precision must be one of {', '.join(PRECISIONS)}; got {precision!r}",
        field="options.precision",
    )
