"""The LLM2Vec recipe on a tiny random Llama: MNTP, then SimCSE / supervised, with LoRA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from veclink.encoders import load_encoder
from veclink.training.text_encoder import TrainConfig, train_text_encoder

from veclink.errors import InvalidArgument

pytest.importorskip("peft")


def _model(tmp_path: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "llm_fixtures", Path(__file__).with_name("test_llm_text_encoder.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_model("llama", tmp_path / "base")


SUBJECTS = ["the dog", "a cat", "the car", "the bank"]
VERBS = {"the dog": "barks", "a cat": "sleeps", "the car": "drives", "the bank": "money"}


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.choice(SUBJECTS)
        out.append(f"{s} {VERBS[s]} {rng.choice(['fast', 'slow', 'on the mat', 'in the river'])}")
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_mntp_then_supervised_loss_falls_and_checkpoint_serves(tmp_path: Path) -> None:
    base = _model(tmp_path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_texts(200)))
    mntp = train_text_encoder(
        TrainConfig(
            model=str(base),
            data=str(corpus),
            out=str(tmp_path / "mntp"),
            objective="mntp",
            steps=40,
            batch_size=16,
            lr=5e-3,
            lora_r=8,
        ),
        progress=False,
    )
    assert _mean(mntp["losses"][-8:]) < _mean(mntp["losses"][:8])

    pairs = tmp_path / "pairs.csv"
    rows = ["query,positive,negative"]
    for s in SUBJECTS * 10:
        other = random.Random(len(rows)).choice([x for x in SUBJECTS if x != s])
        rows.append(f"{s},{s} {VERBS[s]},{other} {VERBS[other]}")
    pairs.write_text("\n".join(rows))
    sup = train_text_encoder(
        TrainConfig(
            model=str(tmp_path / "mntp"),
            data=str(pairs),
            out=str(tmp_path / "sup"),
            objective="supervised",
            steps=30,
            batch_size=8,
            lr=5e-3,
        ),
        progress=False,
    )
    assert _mean(sup["losses"][-6:]) < _mean(sup["losses"][:6])

    enc = load_encoder({"kind": "llm-text", "model": str(tmp_path / "sup")})
    before = load_encoder({"kind": "llm-text", "model": str(base)})
    texts = ["the dog barks", "the car drives"]
    assert enc.encode(texts).shape == (2, 32)
    assert not np.allclose(enc.encode(texts), before.encode(texts), atol=1e-3)
    assert (tmp_path / "sup" / "adapter").is_dir()
    assert (tmp_path / "sup" / "veclink_training.json").exists()


def test_simcse_runs_and_bad_config_is_rejected(tmp_path: Path) -> None:
    base = _model(tmp_path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_texts(60, seed=1)))
    log = train_text_encoder(
        TrainConfig(
            model=str(base),
            data=str(corpus),
            out=str(tmp_path / "simcse"),
            objective="simcse",
            steps=15,
            batch_size=8,
            lr=5e-3,
        ),
        progress=False,
    )
    assert _mean(log["losses"][-4:]) < _mean(log["losses"][:4])
    # training dropout (the SimCSE views) is not left in the served model's config
    saved = json.loads((tmp_path / "simcse" / "config.json").read_text())
    assert saved.get("attention_dropout", 0.0) == 0.0
    # latent-attention pooling trains with the adapters and is saved with the checkpoint
    log = train_text_encoder(
        TrainConfig(
            model=str(base),
            data=str(corpus),
            out=str(tmp_path / "latent"),
            objective="simcse",
            steps=15,
            batch_size=8,
            lr=2e-3,
            pooling="latent_attention",
            latents=8,
            simcse_dropout=0.1,
        ),
        progress=False,
    )
    assert _mean(log["losses"][-4:]) < _mean(log["losses"][:4])
    assert (tmp_path / "latent" / "latent_attention.pt").exists()
    enc = load_encoder(
        {
            "kind": "llm-text",
            "model": str(tmp_path / "latent"),
            "pooling": "latent_attention",
            "latents": 8,
        }
    )
    assert enc.encode(["the dog barks"]).shape == (1, 32)
    with pytest.raises(InvalidArgument) as info:
        train_text_encoder(
            TrainConfig(
                model=str(base),
                data=str(tmp_path / "none.txt"),
                out=str(tmp_path / "x"),
                objective="magic",
                batch_size=1,
            )
        )
    msg = str(info.value)
    assert "objective" in msg and "batch_size" in msg and "does not exist" in msg


def test_mntp_mask_token_without_mask_or_unk() -> None:
    from types import SimpleNamespace

    from veclink.training.text_encoder import mask_token_id

    def tok(**ids: int | None) -> SimpleNamespace:
        base = {"mask_token_id": None, "unk_token_id": None, "pad_token_id": 0}
        return SimpleNamespace(
            **{**base, **ids}, convert_tokens_to_ids=lambda t: 62 if t == "_" else None
        )

    assert mask_token_id(tok(mask_token_id=5, unk_token_id=1)) == 5
    assert mask_token_id(tok(unk_token_id=1)) == 1
    assert mask_token_id(tok()) == 62  # Llama-3 / Qwen2: neither mask nor unk


def test_train_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from veclink.cli.train import add_text_encoder

    base = _model(tmp_path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_texts(20, seed=2)))
    parser = argparse.ArgumentParser()
    add_text_encoder(parser.add_subparsers())
    args = parser.parse_args(
        ["text-encoder", "--model", str(base), "--data", str(corpus), "--out",
         str(tmp_path / "out"), "--objective", "simcse", "--steps", "2", "--batch-size", "4"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert "simcse: loss" in capsys.readouterr().out
    enc = load_encoder({"kind": "llm-text", "model": str(tmp_path / "out")})
    assert enc.encode(["the dog barks"]).shape == (1, 32)
