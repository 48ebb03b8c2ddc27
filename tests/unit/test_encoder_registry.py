from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from veclink.encoders import (
    HFTextSpec,
    load_encoder,
    register_encoder,
    spec_from_dict,
    spec_from_json,
)
from veclink.encoders.base import EncoderSpec

from veclink.errors import InvalidArgument


def test_spec_json_round_trip() -> None:
    spec = HFTextSpec(pooling="cls", max_length=64)
    again = spec_from_json(spec.to_json())
    assert again == spec and isinstance(again, HFTextSpec)
    assert json.loads(spec.to_json())["kind"] == "hf-text"


def test_spec_errors_listed_together() -> None:
    with pytest.raises(InvalidArgument) as info:
        spec_from_dict({"kind": "hf-text", "colour": "red", "pooling": "max", "batch_size": 0})
    msg = str(info.value)
    assert "spec.colour" in msg and "spec.pooling" in msg and "spec.batch_size" in msg


def test_unknown_kind_lists_known() -> None:
    with pytest.raises(InvalidArgument, match="hf-text"):
        spec_from_dict({"kind": "nope"})


def test_duplicate_kind_rejected() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Dup(EncoderSpec):
        kind = "hf-text"

    with pytest.raises(ValueError, match="already registered"):
        register_encoder(Dup)(object)


@pytest.fixture(scope="module")
def minilm():
    return load_encoder({"kind": "hf-text"})


def test_default_encoder_offline(minilm) -> None:
    v = minilm.encode(
        ["a domestic animal that barks", "dog: a domesticated canine", "stock exchange"],
        role="query",
    )
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_default_encoder_batch_invariant(minilm) -> None:
    alone = minilm.encode(["the cat sat on the mat"])
    mixed = minilm.encode(
        [
            "a much longer sentence that forces a lot of padding in its batch",
            "the cat sat on the mat",
            "x",
        ]
    )
    np.testing.assert_allclose(alone[0], mixed[1], atol=1e-5)


def test_default_encoder_rejects_bad_input(minilm) -> None:
    with pytest.raises(InvalidArgument) as info:
        minilm.encode(["ok", "  "])
    assert info.value.field == "inputs[1]"
    with pytest.raises(InvalidArgument, match="only accepts text"):
        minilm.encode([b"\x89PNG"])
    assert minilm.encode([]).shape == (0, 384)


def test_demo_vectors_match_the_packaged_model(minilm) -> None:
    from veclink.service.demo import demo_records

    rows, vectors = demo_records()
    assert len(rows) == vectors.shape[0] > 4000
    picks = [0, 1000, 2500, len(rows) - 1]
    fresh = minilm.encode([str(rows[i]["text"]) for i in picks])
    assert (np.sum(fresh * vectors[picks], axis=1) > 0.999).all()
