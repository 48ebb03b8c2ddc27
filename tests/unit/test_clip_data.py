"""LLM2CLIP stage-2 data: caption-embedding cache, streamed image batches, schedules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("open_clip")
from veclink.encoders import load_encoder
from veclink.training.clip import Stage2Config, train_stage2
from veclink.training.clip_data import ImageBatches, ImageFiles, caption_embeddings, load_pairs

from tests.fixtures.clip_synthetic import (
    register_open_clip_config,
    tiny_open_clip_config,
    write_shapes_dataset,
    write_tiny_text_model,
)
from veclink.errors import InvalidArgument


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("clip-data")
    name = register_open_clip_config(
        "veclink-test-data-vit", tiny_open_clip_config(), str(root / "oc")
    )
    write_tiny_text_model(str(root / "bert"), arch="bert")
    write_shapes_dataset(str(root / "data"), per_class=1)
    spec = {
        "kind": "llm2clip",
        "vision": f"open_clip:{name}",
        "text_encoder": {"kind": "hf-text", "model": str(root / "bert")},
        "adapter_layers": 1,
    }
    return {"root": root, "spec": spec, "pairs": load_pairs(str(root / "data"))}


class Counting:
    """A text encoder wrapper that counts the texts it encodes."""

    def __init__(self, inner) -> None:
        self.inner, self.spec, self.dim, self.seen = inner, inner.spec, inner.dim, 0

    def encode(self, texts, role="document"):
        self.seen += len(texts)
        return self.inner.encode(texts, role=role)


def test_caption_embeddings_cached_once(setup: dict, tmp_path) -> None:
    text = Counting(load_encoder(setup["spec"]["text_encoder"]))
    captions = sorted({c for _, c in setup["pairs"]})
    cache = str(tmp_path / "emb" / "captions.npy")
    first = caption_embeddings(text, captions, cache=cache, chunk=5)
    assert text.seen == 12 and first.dtype == np.float16 and first.shape == (12, 32)
    np.testing.assert_allclose(
        first, text.inner.encode(captions).astype(np.float16), rtol=0, atol=1e-3
    )
    meta = json.loads((tmp_path / "emb" / "captions.json").read_text())
    assert meta["count"] == 12 and meta["text_encoder"]["kind"] == "hf-text"
    text.seen = 0
    again = caption_embeddings(text, captions, cache=cache)
    assert text.seen == 0 and isinstance(again, np.memmap)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    # other captions (or another encoder) do not reuse a stale cache
    caption_embeddings(text, captions[:5], cache=cache)
    assert text.seen == 5


def test_streamed_batches_equal_cached(setup: dict) -> None:
    enc = load_encoder(setup["spec"])
    paths = sorted({p for p, _ in setup["pairs"]})
    files = ImageFiles(paths, enc.towers.image_transform, enc.spec.limits)
    ids = [torch.tensor([3, 0, 7]), torch.tensor([11, 2])]
    cached = ImageBatches(files, cache_mb=64, workers=0)
    assert cached.cached is not None
    expected = list(cached.batches(ids))
    for workers in (0, 1):
        streamed = ImageBatches(files, cache_mb=0, workers=workers)
        assert streamed.cached is None
        got = list(streamed.batches(ids))
        assert [g.shape for g in got] == [(3, 3, 32, 32), (2, 3, 32, 32)]
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e)


def test_corrupt_training_image_names_the_file(setup: dict, tmp_path) -> None:
    enc = load_encoder(setup["spec"])
    good = setup["pairs"][0][0]
    bad = tmp_path / "bad.png"
    data = open(good, "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    files = ImageFiles([good, str(bad)], enc.towers.image_transform, enc.spec.limits)
    with pytest.raises(InvalidArgument, match="bad.png") as err:
        files[1]
    assert "bad.png" in (err.value.field or "")


def test_streamed_cosine_run_with_caption_cache_reloads(setup: dict, tmp_path) -> None:
    enc = load_encoder(setup["spec"])
    cache = str(tmp_path / "captions.npy")
    config = Stage2Config(
        epochs=2, batch_size=6, lr=1e-3, schedule="cosine", warmup_steps=1, image_cache_mb=0
    )
    result = train_stage2(enc, setup["pairs"], str(tmp_path / "ck"), config, caption_cache=cache)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    assert (tmp_path / "captions.json").exists()
    again = load_encoder({"kind": "llm2clip", "checkpoint": str(tmp_path / "ck")})
    inputs = ["a red circle", open(setup["pairs"][0][0], "rb").read()]
    np.testing.assert_allclose(again.encode(inputs), enc.encode(inputs), atol=1e-5)


def test_half_precision_weights_are_refused(setup: dict, tmp_path) -> None:
    enc = load_encoder({**setup["spec"], "dtype": "bf16"})
    with pytest.raises(InvalidArgument, match="fp32") as err:
        train_stage2(enc, setup["pairs"], str(tmp_path / "ck"), Stage2Config(epochs=1))
    assert err.value.field == "spec.dtype"


def test_stage2_config_reports_every_problem() -> None:
    problems = Stage2Config(
        epochs=0, lr=0, schedule="linear", warmup_steps=-1, workers=-2
    ).validate()
    text = "; ".join(problems)
    for name in ("epochs", "lr", "schedule", "warmup_steps", "workers"):
        assert name in text
