"""Details of the LLM2Vec training recipe: MNTP masking, gradient checkpointing, and a
trained model served with the inputs it was trained on (instruction, template, EOS)."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from veclink.encoders import load_encoder
from veclink.encoders.llm_text import build_inputs
from veclink.training.text_encoder import TrainConfig, _mntp_batch, train_text_encoder

from veclink.errors import InvalidArgument

pytest.importorskip("peft")


def _fixtures():  # type: ignore[no-untyped-def]
    name = "llm_text_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_llm_text_encoder.py")
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def test_mntp_masks_80_10_10(tmp_path: Path) -> None:
    fx = _fixtures()
    tok = fx.make_tokenizer(tmp_path)
    texts = [" ".join(random.Random(i).choices(fx.WORDS, k=30)) for i in range(40)]
    cfg = TrainConfig(model="m", data="d", out="o", mask_prob=0.5, max_length=64)
    mask_id = tok.unk_token_id
    batch, labels = _mntp_batch(tok, texts, cfg, random.Random(0), mask_id)
    picked = labels != -100
    assert not picked[batch.pool_mask == 0].any()  # only text tokens are predicted
    n = int(picked.sum())
    assert 0.4 < n / int(batch.pool_mask.sum()) < 0.6
    masked = float((batch.input_ids[picked] == mask_id).sum()) / n
    kept = float((batch.input_ids[picked] == labels[picked]).sum()) / n
    assert 0.75 < masked < 0.85 and 0.06 < kept < 0.14


def _pairs(tmp_path: Path) -> Path:
    rng = random.Random(0)
    topics = {"dog barks": "animal pet", "car drives": "vehicle", "bank money": "finance"}
    rows = ["query,positive,negative"]
    for _ in range(32):
        q, other = rng.sample(sorted(topics), 2)
        rows.append(f"{q} {rng.choice(['fast', 'slow'])},the {topics[q]},the {topics[other]}")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows))
    return path


def test_trained_model_is_served_with_its_training_inputs(tmp_path: Path) -> None:
    base = _fixtures().make_model("mistral", tmp_path / "base")
    common = dict(
        model=str(base),
        data=str(_pairs(tmp_path)),
        objective="supervised",
        steps=3,
        batch_size=6,
        lr=5e-3,
        instruction="find the animal :",
        template="<s> query : {text}",
        add_eos=True,
    )
    plain = train_text_encoder(TrainConfig(out=str(tmp_path / "a"), **common), progress=False)
    ckpt = train_text_encoder(
        TrainConfig(out=str(tmp_path / "b"), gradient_checkpointing=True, **common),
        progress=False,
    )
    # recomputing activations changes memory, not the arithmetic (dropout RNG is replayed)
    np.testing.assert_allclose(ckpt["losses"], plain["losses"], rtol=1e-4)

    spec = json.loads((tmp_path / "a" / "encoder_spec.json").read_text())
    assert spec["instruction"] == "find the animal :" and spec["add_eos"] is True
    enc = load_encoder(spec)
    queries = ["dog barks fast", "car drives slow"]
    served = enc.preprocess(queries, "query")
    trained = build_inputs(
        enc.tokenizer,
        queries,
        template="<s> query : {text}",
        instruction="find the animal :",
        add_eos=True,
        max_length=enc.spec.max_length,
    )
    assert torch.equal(served.input_ids, trained.input_ids)
    assert torch.equal(served.pool_mask, trained.pool_mask)
    assert enc.encode(queries, role="query").shape == (2, 32)

    with pytest.raises(InvalidArgument, match="template"):
        TrainConfig(model=str(base), data=str(_pairs(tmp_path)), out="x", template="x").validate()
