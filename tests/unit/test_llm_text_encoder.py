"""LLM text encoder on tiny random Llama / Mistral / Qwen2 models built from configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from veclink.encoders import LLMTextSpec, load_encoder, spec_from_dict
from veclink.encoders.decoder_llm import forward_hidden, tokenize

from veclink.errors import InvalidArgument

WORDS = (
    "the a dog cat barks sleeps on mat car drives fast slow bank money river water "
    "query passage retrieve relevant given search find animal pet vehicle finance"
).split()


def make_tokenizer(path: Path, byte_level: bool = False):  # type: ignore[no-untyped-def]
    """A tiny tokenizer: whole words, or (``byte_level``) a byte-level BPE like Qwen2's and
    Llama-3's, where a word after a space is its own token (" the" != "the")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        rotations = [" ".join(WORDS[i:] + WORDS[:i]) + " : ," for i in range(len(WORDS))]
        tok.train_from_iterator(rotations, trainer)
    else:
        vocab = {tok: i for i, tok in enumerate([*specials, *WORDS, ":", ","])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(path)
    return fast


def make_model(kind: str, path: Path) -> Path:
    from transformers import (
        Gemma2Config,
        Gemma2Model,
        LlamaConfig,
        LlamaModel,
        MistralConfig,
        MistralModel,
        Qwen2Config,
        Qwen2Model,
    )

    # transformers loads a Qwen2 directory's tokenizer as Qwen2Tokenizer (byte-level BPE)
    # whatever class it was saved as: give it one that is byte-level BPE
    tok = make_tokenizer(path, byte_level=kind == "qwen2")
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg_cls, model_cls = {
        "llama": (LlamaConfig, LlamaModel),
        "mistral": (MistralConfig, MistralModel),
        "qwen2": (Qwen2Config, Qwen2Model),
        # Gemma-2: sliding-window layers next to global ones, logit soft-capping
        "gemma2": (Gemma2Config, Gemma2Model),
    }[kind]
    if kind == "gemma2":
        common.update(head_dim=8, sliding_window=4)
    torch.manual_seed(0)
    model_cls(cfg_cls(**common)).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["llama", "mistral", "qwen2"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(request.param, tmp_path_factory.mktemp(request.param))


TEXTS = ["the dog barks", "a cat sleeps on the mat", "the car drives fast", "money in the bank"]


def save_latent(model_dir: Path, latents: int = 8) -> None:
    from veclink.encoders.llm_text import LATENT_FILE, LatentAttentionPooling

    torch.manual_seed(1)
    torch.save(LatentAttentionPooling(32, latents).state_dict(), model_dir / LATENT_FILE)


@pytest.mark.parametrize(
    "pooling", ["mean", "weighted_mean", "last_token", "bos", "latent_attention"]
)
def test_shapes_and_batch_invariance(model_dir: Path, pooling: str) -> None:
    if pooling == "latent_attention":
        save_latent(model_dir)
    enc = load_encoder({"kind": "llm-text", "model": str(model_dir), "pooling": pooling})
    out = enc.encode(TEXTS)
    assert out.shape == (4, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # a text's vector does not depend on its batch (left padding, positions, masks)
    alone = enc.encode([TEXTS[0]])
    np.testing.assert_allclose(alone[0], out[0], atol=2e-5)


def test_attention_is_bidirectional(model_dir: Path) -> None:
    for bidirectional in (True, False):
        enc = load_encoder(
            {"kind": "llm-text", "model": str(model_dir), "bidirectional": bidirectional}
        )
        a = tokenize(enc.tokenizer, ["the dog barks on the mat"])
        b = tokenize(enc.tokenizer, ["the dog barks on the river"])
        with torch.inference_mode():
            ha = forward_hidden(
                enc.model, a, enc.device, bidirectional=bidirectional
            ).last_hidden_state
            hb = forward_hidden(
                enc.model, b, enc.device, bidirectional=bidirectional
            ).last_hidden_state
        first_changed = not torch.allclose(ha[0, 1], hb[0, 1], atol=1e-6)  # token after <s>
        assert first_changed == bidirectional


def test_instruction_only_for_queries_and_excluded_from_pooling(model_dir: Path) -> None:
    enc = load_encoder(
        {
            "kind": "llm-text",
            "model": str(model_dir),
            "instruction": "given a search query retrieve relevant passage :",
        }
    )
    q = enc.encode(["the dog barks"], role="query")
    d = enc.encode(["the dog barks"], role="document")
    assert not np.allclose(q, d)  # the instruction conditions the text (bidirectional context)
    batch = enc.preprocess(["the dog barks"], "query")
    n_text = len(enc.tokenizer("the dog barks", add_special_tokens=False)["input_ids"])
    assert int(batch.pool_mask.sum()) == n_text  # mean pooling: no EOS (as LLM2Vec)
    assert batch.input_ids[0, -1] != enc.tokenizer.eos_token_id
    other = enc.with_instruction("find the animal :")
    assert other.model is enc.model  # shares weights
    assert not np.allclose(other.encode(["the dog barks"], role="query"), q)


def test_spec_round_trip_and_errors(model_dir: Path) -> None:
    spec = spec_from_dict({"kind": "llm-text", "model": str(model_dir), "adapters": ["a", "b"]})
    assert isinstance(spec, LLMTextSpec) and spec.adapters == ("a", "b")
    assert spec_from_dict(__import__("json").loads(spec.to_json())) == spec
    with pytest.raises(InvalidArgument) as info:
        spec_from_dict({"kind": "llm-text", "model": "", "pooling": "max", "dtype": "int4"})
    msg = str(info.value)
    assert "spec.model" in msg and "spec.pooling" in msg and "spec.dtype" in msg
    with pytest.raises(InvalidArgument, match="cannot load"):
        load_encoder({"kind": "llm-text", "model": str(model_dir / "missing")})


def test_lora_adapters_are_merged_in_order(model_dir: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModel

    adapters = []
    for i in range(2):
        base = AutoModel.from_pretrained(model_dir)
        cfg = peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        torch.manual_seed(10 + i)
        lora = peft.get_peft_model(base, cfg)
        lora.save_pretrained(tmp_path / f"adapter{i}")
        adapters.append(str(tmp_path / f"adapter{i}"))
    plain = load_encoder({"kind": "llm-text", "model": str(model_dir)}).encode(TEXTS)
    one = load_encoder({"kind": "llm-text", "model": str(model_dir), "adapters": adapters[:1]})
    two = load_encoder({"kind": "llm-text", "model": str(model_dir), "adapters": adapters})
    assert not np.allclose(plain, one.encode(TEXTS), atol=1e-4)
    assert not np.allclose(one.encode(TEXTS), two.encode(TEXTS), atol=1e-4)
    # the merged weights equal base + both deltas applied by PEFT itself
    ref = AutoModel.from_pretrained(model_dir)
    for path in adapters:
        ref = peft.PeftModel.from_pretrained(ref, path).merge_and_unload()
    for (name, p), (_, q) in zip(two.model.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    with pytest.raises(InvalidArgument, match="adapter"):
        load_encoder({"kind": "llm-text", "model": str(model_dir), "adapters": ["/nope"]})


def test_template_and_eos_follow_llm2vec(model_dir: Path) -> None:
    # chat-style template: the head and the instruction are not pooled, the text and the
    # template's tail are; EOS only with last-token pooling unless asked for
    enc = load_encoder(
        {
            "kind": "llm-text",
            "model": str(model_dir),
            "template": "<s> query : {text} </s>",
            "instruction": "find the animal",
        }
    )
    tok = enc.tokenizer
    batch = enc.preprocess(["the dog barks"], "query")
    ids = batch.input_ids[0].tolist()
    want = [tok.bos_token_id] + tok(
        "<s> query : find the animal the dog barks </s>", add_special_tokens=False
    )["input_ids"]
    assert ids == want
    pooled = [t for t, m in zip(ids, batch.pool_mask[0].tolist(), strict=True) if m]
    # LLM2Vec's rule: the last len(tokens of "text + tail") tokens of the joint tokenization
    # (with byte-level BPE the first text token is " the", not "the")
    n_text = len(tok("the dog barks </s>", add_special_tokens=False)["input_ids"])
    assert pooled == ids[-n_text:]
    doc = enc.preprocess(["the dog barks"], "document")
    assert int(doc.pool_mask.sum()) == len(pooled)  # documents: same text tokens, no instruction
    last = load_encoder({"kind": "llm-text", "model": str(model_dir), "pooling": "last_token"})
    assert last.preprocess(["the dog"], "document").input_ids[0, -1] == tok.eos_token_id
    no_eos = load_encoder(
        {"kind": "llm-text", "model": str(model_dir), "pooling": "last_token", "add_eos": False}
    )
    assert no_eos.preprocess(["the dog"], "document").input_ids[0, -1] != tok.eos_token_id
    with pytest.raises(InvalidArgument, match="spec.template"):
        spec_from_dict({"kind": "llm-text", "model": "m", "template": "no placeholder"})


def test_causal_mode_is_batch_invariant_too(model_dir: Path) -> None:
    enc = load_encoder(
        {"kind": "llm-text", "model": str(model_dir), "bidirectional": False, "pooling": "mean"}
    )
    out = enc.encode(TEXTS)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(enc.encode([TEXTS[1]])[0], out[1], atol=2e-5)


def test_latent_pooling_needs_its_weights_and_runs_in_bf16(model_dir: Path) -> None:
    from veclink.encoders.llm_text import LATENT_FILE

    (model_dir / LATENT_FILE).unlink(missing_ok=True)
    with pytest.raises(InvalidArgument, match="needs trained weights"):
        load_encoder({"kind": "llm-text", "model": str(model_dir), "pooling": "latent_attention"})
    save_latent(model_dir, latents=5)  # the trained number of latents wins over the spec's
    spec = {"kind": "llm-text", "model": str(model_dir), "pooling": "latent_attention"}
    fp32 = load_encoder(spec).encode(TEXTS)
    bf16 = load_encoder({**spec, "dtype": "bf16"}).encode(TEXTS)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.all((fp32 * bf16).sum(1) > 0.95)
