"""Embed output options: Matryoshka truncation and sentence-transformers' precisions."""

from __future__ import annotations

import numpy as np
import pytest
from veclink.encoders.outputs import PRECISIONS, quantize, truncate

from veclink.errors import InvalidArgument
from veclink.wire.types import PRECISIONS as WIRE_PRECISIONS
from veclink.wire.types import Embeddings


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_server_and_the_wire_know_the_same_precisions() -> None:
    assert PRECISIONS == WIRE_PRECISIONS


def test_truncation_renormalises_unit_vectors_only() -> None:
    unit = _unit(4, 64)
    short = truncate(unit, 16, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        short * np.linalg.norm(unit[:, :16], axis=1)[:, None], unit[:, :16], atol=1e-6
    )
    raw = unit * 3.0  # a model that does not normalise keeps its scale
    np.testing.assert_allclose(truncate(raw, 16, normalize=False), raw[:, :16])
    np.testing.assert_allclose(
        np.linalg.norm(truncate(raw, 16, normalize=True), axis=1), 1.0, atol=1e-6
    )
    np.testing.assert_array_equal(truncate(unit, 0, normalize=False), unit)


def test_int8_is_per_vector_and_reconstructs() -> None:
    x = _unit(50, 384, seed=1)
    q, scales = quantize(x, "int8")
    assert q.dtype == np.int8 and scales is not None and scales.shape == (50,)
    assert (np.abs(q).max(axis=1) == 127).all()
    back = Embeddings(model="m", precision="int8", dimensions=384, values=q, scales=scales)
    cos = np.sum(back.to_float32() * x, axis=1) / np.linalg.norm(back.to_float32(), axis=1)
    assert cos.min() > 0.999
    # a row's bytes do not depend on the rows beside it (no batch calibration)
    alone, _ = quantize(x[7:8], "int8")
    np.testing.assert_array_equal(alone[0], q[7])
    u, uscales = quantize(x, "uint8")
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u.astype(np.int16) - 128, q)
    np.testing.assert_array_equal(uscales, scales)


def test_binary_packs_sign_bits_as_sentence_transformers() -> None:
    x = _unit(3, 20, seed=2)
    ub, none = quantize(x, "ubinary")
    assert none is None and ub.dtype == np.uint8 and ub.shape == (3, 3)
    np.testing.assert_array_equal(np.unpackbits(ub, axis=1)[:, :20], (x > 0).astype(np.uint8))
    b, _ = quantize(x, "binary")
    assert b.dtype == np.int8
    np.testing.assert_array_equal(b.astype(np.int16), ub.astype(np.int16) - 128)
    st = pytest.importorskip("sentence_transformers.quantization")
    np.testing.assert_array_equal(st.quantize_embeddings(x, precision="binary"), b)
    np.testing.assert_array_equal(st.quantize_embeddings(x, precision="ubinary"), ub)


def test_float32_passes_through_and_unknown_is_refused() -> None:
    x = _unit(2, 8)
    values, scales = quantize(x, "float32")
    assert scales is None
    np.testing.assert_array_equal(values, x)
    with pytest.raises(InvalidArgument, match="precision") as err:
        quantize(x, "int4")
    assert err.value.field == "options.precision"
