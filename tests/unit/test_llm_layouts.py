"""Published LLM-embedding checkpoint layouts loaded natively, and latent-attention pooling.

Tiny random models in the layouts of LLM2Vec (config + LoRA adapter in one directory, with
custom modeling code that must never run) and NV-Embed (decoder under ``embedding_model.``,
pooling under ``latent_attention_model.``, sharded safetensors). Expected vectors are
recomputed independently: one unpadded text at a time through the plain transformers model
with an all-visible 4-D mask, and NV-Embed's pooling written out with plain tensor algebra.
"""

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
from veclink.encoders.latent_attention import (
    LATENT_FILE,
    LatentAttentionPooling,
    load_latent,
    save_latent,
)

from veclink.errors import InvalidArgument


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


TEXTS = ["the dog barks", "a cat sleeps on the mat", "money in the bank"]


def _reference(model, tok, text: str, *, prefix: str = "", eos: bool = False):  # type: ignore[no-untyped-def]
    """Hidden states of ``[bos] prefix+text [eos]`` alone, every token seeing every token,
    and the positions pooled by LLM2Vec's rule: the last len(tokens of the text) tokens of
    the joint tokenization (+ EOS)."""
    joint = tok(prefix + text, add_special_tokens=False)["input_ids"]
    n_text = len(tok(text, add_special_tokens=False)["input_ids"])
    ids = [tok.bos_token_id, *joint] + ([tok.eos_token_id] if eos else [])
    visible = torch.zeros(1, 1, len(ids), len(ids))  # additive mask: nothing hidden
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=visible).last_hidden_state
    end = 1 + len(joint)
    text_pos = torch.arange(end - n_text, len(ids))
    return hidden[0], text_pos


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma2"])
def test_mean_pooling_matches_a_plain_per_text_recomputation(kind: str, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model_dir = _fixtures().make_model(kind, tmp_path / kind)
    enc = load_encoder(
        {"kind": "llm-text", "model": str(model_dir), "instruction": "find the animal"}
    )
    ref = AutoModel.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    for role, prefix in (("document", ""), ("query", "find the animal ")):
        got = enc.encode(TEXTS, role=role)  # one batch: left padding, sorted by length
        for i, text in enumerate(TEXTS):
            hidden, pos = _reference(ref, tok, text, prefix=prefix)
            want = torch.nn.functional.normalize(hidden[pos].mean(0), dim=-1).numpy()
            np.testing.assert_allclose(got[i], want, atol=2e-5)


# ------------------------------------------------------------------------------ LLM2Vec


def _adapter(base: Path, out: Path, seed: int, base_name: str | None) -> Path:
    peft = pytest.importorskip("peft")
    from transformers import AutoModel

    cfg = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    torch.manual_seed(seed)
    peft.get_peft_model(AutoModel.from_pretrained(base), cfg).save_pretrained(out)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(adapter_config))
    return out


def test_llm2vec_directory_layout_loads_natively(tmp_path: Path) -> None:
    base = _fixtures().make_model("llama", tmp_path / "base")
    # the published MNTP directory: adapter + tokenizer + a config whose auto_map names
    # custom bidirectional classes; that code must never run
    mntp = _adapter(base, tmp_path / "mntp", seed=3, base_name=str(base))
    _fixtures().make_tokenizer(mntp)
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_llama_encoder.LlamaEncoderModel"}
    (mntp / "config.json").write_text(json.dumps(config))
    (mntp / "modeling_llama_encoder.py").write_text("raise RuntimeError('remote code ran')\n")
    sup = _adapter(base, tmp_path / "supervised", seed=4, base_name=str(base))

    explicit = load_encoder(
        {"kind": "llm-text", "model": str(base), "adapters": [str(mntp), str(sup)]}
    ).encode(TEXTS)
    native = load_encoder({"kind": "llm-text", "model": str(mntp), "adapters": [str(sup)]})
    np.testing.assert_allclose(native.encode(TEXTS), explicit, atol=1e-6)
    plain = load_encoder({"kind": "llm-text", "model": str(base)}).encode(TEXTS)
    assert not np.allclose(plain, explicit, atol=1e-4)

    orphan = _adapter(base, tmp_path / "orphan", seed=5, base_name=None)
    with pytest.raises(InvalidArgument, match="names no base model"):
        load_encoder({"kind": "llm-text", "model": str(orphan)})
    elsewhere = _adapter(base, tmp_path / "elsewhere", seed=6, base_name="org/not-cached-base")
    with pytest.raises(InvalidArgument, match="first in spec.adapters"):
        load_encoder({"kind": "llm-text", "model": str(elsewhere)})


# ------------------------------------------------------------------------------ NV-Embed

HEADS = 2


def _nv_embed_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny NV-Embed-v2 directory: bidir_mistral decoder + NV-Embed pooling, 2 shards."""
    from safetensors.torch import save_file
    from transformers import MistralConfig, MistralModel

    out = tmp_path / "nv-embed"
    tok = _fixtures().make_tokenizer(out)
    dim, latents = 32, 6
    cfg = MistralConfig(
        vocab_size=len(tok),
        hidden_size=dim,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    decoder = {f"embedding_model.{k}": v for k, v in MistralModel(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    inner = HEADS * dim  # NV-Embed's heads are as wide as the model (cross_dim_head = hidden)
    p = "latent_attention_model."
    pooling = {
        p + "latents": rand(latents, dim) * 5,
        p + "cross_attend_blocks.0.norm.weight": 1 + rand(dim),
        p + "cross_attend_blocks.0.norm.bias": rand(dim),
        p + "cross_attend_blocks.0.norm_context.weight": 1 + rand(dim),
        p + "cross_attend_blocks.0.norm_context.bias": rand(dim),
        p + "cross_attend_blocks.0.fn.to_q.weight": rand(inner, dim),
        p + "cross_attend_blocks.0.fn.to_kv.weight": rand(2 * inner, dim),
        p + "cross_attend_blocks.0.fn.to_out.weight": rand(dim, inner),
        p + "cross_attend_blocks.1.norm.weight": 1 + rand(dim),
        p + "cross_attend_blocks.1.norm.bias": rand(dim),
        p + "cross_attend_blocks.1.fn.net.0.weight": rand(8 * dim, dim),
        p + "cross_attend_blocks.1.fn.net.0.bias": rand(8 * dim),
        p + "cross_attend_blocks.1.fn.net.2.weight": rand(dim, 4 * dim),
        p + "cross_attend_blocks.1.fn.net.2.bias": rand(dim),
    }
    shards = {"model-00001-of-00002.safetensors": decoder}
    shards["model-00002-of-00002.safetensors"] = pooling
    weight_map = {}
    for name, tensors in shards.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / name))
        weight_map.update(dict.fromkeys(tensors, name))
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    text_config = {**cfg.to_dict(), "model_type": "bidir_mistral"}
    config = {
        "architectures": ["NVEmbedModel"],
        "auto_map": {"AutoModel": "modeling_nvembed.NVEmbedModel"},
        "model_type": "nvembed",
        "hidden_size": dim,
        "latent_attention_config": {
            "model_type": "latent_attention",
            "num_latents_value": latents,
            "num_cross_heads": HEADS,
            "hidden_dim": dim,
            "latent_dim": dim,
            "cross_dim_head": dim,
            "output_normalize": True,
        },
        "text_config": text_config,
        "add_eos": True,
        "is_mask_instruction": True,
        "padding_side": "right",
    }
    (out / "config.json").write_text(json.dumps(config))
    (out / "modeling_nvembed.py").write_text("raise RuntimeError('remote code ran')\n")
    return out, {**decoder, **pooling}


def _nv_pool(w: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """NV-Embed's latent attention on (t, d) states, in plain tensor algebra."""
    p = "latent_attention_model.cross_attend_blocks."
    d = hidden.shape[-1]

    def ln(x: torch.Tensor, key: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (d,), w[key + ".weight"], w[key + ".bias"])

    q = ln(hidden, p + "0.norm") @ w[p + "0.fn.to_q.weight"].T
    ctx = ln(w["latent_attention_model.latents"], p + "0.norm_context")
    k, v = (ctx @ w[p + "0.fn.to_kv.weight"].T).chunk(2, dim=-1)
    heads = []
    for h in range(HEADS):
        sl = slice(h * d, (h + 1) * d)
        att = torch.softmax(q[:, sl] @ k[:, sl].T / d**0.5, dim=-1)
        heads.append(att @ v[:, sl])
    x = torch.cat(heads, dim=-1) @ w[p + "0.fn.to_out.weight"].T + hidden
    a, gate = (ln(x, p + "1.norm") @ w[p + "1.fn.net.0.weight"].T + w[p + "1.fn.net.0.bias"]).chunk(
        2, dim=-1
    )
    ff = (a * torch.nn.functional.gelu(gate)) @ w[p + "1.fn.net.2.weight"].T
    return x + ff + w[p + "1.fn.net.2.bias"]


def test_nv_embed_checkpoint_loads_natively_and_matches_its_reference(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, MistralConfig, MistralModel

    path, weights = _nv_embed_checkpoint(tmp_path)
    spec = {
        "kind": "llm-text",
        "model": str(path),
        "pooling": "latent_attention",
        "add_eos": True,  # NV-Embed appends EOS and pools it with the text
        "instruction": "find the animal :",
    }
    enc = load_encoder(spec)
    assert enc.dim == 32 and enc.latent is not None

    config = json.loads((path / "config.json").read_text())["text_config"]
    ref = MistralModel(MistralConfig(**{k: v for k, v in config.items() if k != "model_type"}))
    prefix = "embedding_model."
    ref.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    ref.eval()
    tok = AutoTokenizer.from_pretrained(path)
    for role, pre in (("document", ""), ("query", "find the animal : ")):
        got = enc.encode(TEXTS, role=role)
        for i, text in enumerate(TEXTS):
            hidden, pos = _reference(ref, tok, text, prefix=pre, eos=True)
            with torch.no_grad():
                want = _nv_pool(weights, hidden)[pos].mean(0)
            want = torch.nn.functional.normalize(want, dim=-1).numpy()
            np.testing.assert_allclose(got[i], want, atol=3e-5)


# ------------------------------------------------------------------ latent-attention pooling


def test_fresh_latent_pooling_is_the_mean_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 16)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    fresh = LatentAttentionPooling(16, latents=4, heads=4)
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(fresh(hidden, mask), mean)

    with torch.no_grad():  # as if trained
        for p in fresh.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    assert load_latent(str(tmp_path), 16) is None  # nothing saved yet
    save_latent(fresh, tmp_path)
    back = load_latent(str(tmp_path), 16)
    assert back is not None and back.num_heads == 4 and back.dim_head == 4
    torch.testing.assert_close(back(hidden, mask), fresh(hidden, mask))
    with pytest.raises(InvalidArgument, match="hidden size 16"):
        load_latent(str(tmp_path), 32)
    torch.save({"attn.in_proj_weight": torch.zeros(3)}, tmp_path / LATENT_FILE)
    with pytest.raises(InvalidArgument, match="not a latent-attention pooling"):
        load_latent(str(tmp_path), 16)


TOPICS = {  # queries and positives share no word: the pairing has to be learned
    "animal": ("dog cat barks sleeps", "animal pet"),
    "vehicle": ("car drives fast slow", "vehicle"),
    "finance": ("bank money", "finance"),
    "water": ("river water", "mat"),
}


def test_latent_pooling_trains_with_the_adapters_and_serves(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from veclink.training.text_encoder import TrainConfig, train_text_encoder

    base = _fixtures().make_model("llama", tmp_path / "base")
    rng = random.Random(0)
    rows = ["query,positive,negative"]
    for _ in range(64):
        topic, other = rng.sample(sorted(TOPICS), 2)
        q_words, p_words = TOPICS[topic][0].split(), TOPICS[topic][1].split()
        query = " ".join(rng.choice(q_words) for _ in range(3))
        rows.append(f"{query},the {' '.join(p_words)},the {TOPICS[other][1]}")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows))
    log = train_text_encoder(
        TrainConfig(
            model=str(base),
            data=str(pairs),
            out=str(tmp_path / "out"),
            objective="supervised",
            steps=24,
            batch_size=8,
            lr=5e-3,
            pooling="latent_attention",
            latents=8,
        ),
        progress=False,
    )
    losses = log["losses"]
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])
    assert (tmp_path / "out" / LATENT_FILE).exists()
    served = load_encoder(
        {"kind": "llm-text", "model": str(tmp_path / "out"), "pooling": "latent_attention"}
    )
    as_mean = load_encoder({"kind": "llm-text", "model": str(tmp_path / "out")})
    queries = ["dog barks", "car drives"]
    vecs = served.encode(queries)
    assert vecs.shape == (2, 32)
    assert not np.allclose(vecs, as_mean.encode(queries), atol=1e-3)  # trained, not the mean
    docs = served.encode(["the animal pet", "the vehicle"])
    assert (vecs @ docs.T).argmax(1).tolist() == [0, 1]
