"""Turning a decoder LLM into a text encoder (the LLM2Vec recipe), with LoRA.

1. ``mntp``: masked next-token prediction with bidirectional attention: some tokens are
   replaced by a mask token and token i is predicted from the hidden state at i - 1
   (the LM head is kept, so the model learns to use its future context);
2. then ``simcse`` (unsupervised: a sentence and itself under two dropout masks are the
   positive pair, the rest of the batch are negatives) or ``supervised`` (pairs file:
   query, positive[, hard negative]; in-batch and hard negatives, InfoNCE).

Each stage trains LoRA adapters, merges them and saves a plain HF model directory (plus the
tokenizer, the adapter on its own, and a ``veclink_training.json`` log) that
``load_encoder({"kind": "llm-text", "model": OUT})`` serves directly.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from veclink.encoders.decoder_llm import (
    TokenBatch,
    forward_hidden,
    load_decoder,
    set_bidirectional,
)
from veclink.encoders.latent_attention import LatentAttentionPooling, save_latent
from veclink.encoders.llm_text import build_inputs, checkpoint_latent, pool, wants_eos
from veclink.training.config import OBJECTIVES, SPEC_FILE, TrainConfig

from veclink._optional import require
from veclink.errors import InvalidArgument
from veclink.tabular import JSONL_SUFFIXES, open_rows

__all__ = ["OBJECTIVES", "SPEC_FILE", "TrainConfig", "serving_spec", "train_text_encoder"]


def read_texts(path: str) -> list[str]:
    texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    if len(texts) < 2:
        raise InvalidArgument(f"{path}: needs at least two non-empty lines", field="data")
    return texts


def read_pairs(path: str) -> list[tuple[str, str, str | None]]:
    """(query, positive, hard negative or None) from CSV/TSV (header: query,positive[,negative])
    or JSONL objects with the same keys."""
    out = []
    suffix = Path(path).suffix.lower()
    rows = open_rows(path, format="jsonl" if suffix in JSONL_SUFFIXES else "csv", label=path)
    for line, row in rows:
        if not row.get("query") or not row.get("positive"):
            raise InvalidArgument(f"{path}:{line}: needs 'query' and 'positive'", field="data")
        out.append((str(row["query"]), str(row["positive"]), row.get("negative") or None))
    if len(out) < 2:
        raise InvalidArgument(f"{path}: needs at least two pairs", field="data")
    return out


def _lora(model: torch.nn.Module, cfg: TrainConfig) -> Any:
    peft = require("peft", "llm")
    targets = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
            and name.rsplit(".", 1)[-1]
            in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        }
    )
    config = peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
    )
    return peft.get_peft_model(model, config)


def _set_attention_dropout(model: torch.nn.Module, p: float) -> None:
    """Set the attention dropout of every attention module (and the config)."""
    config = model.config
    for module in model.modules():
        if hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
            module.attention_dropout = p
    if hasattr(config, "attention_dropout"):
        config.attention_dropout = p


def mask_token_id(tokenizer: Any) -> int:
    """The id MNTP masks with: the mask token, else unk, else ``_`` (LLM2Vec's choice for
    Llama-3 / Qwen2 tokenizers, which have neither), else pad."""
    for candidate in (tokenizer.mask_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return int(candidate)
    underscore = tokenizer.convert_tokens_to_ids("_")
    if isinstance(underscore, int) and underscore != tokenizer.unk_token_id:
        return underscore
    if tokenizer.pad_token_id is None:
        raise InvalidArgument("the tokenizer has no token MNTP can mask with", field="model")
    return int(tokenizer.pad_token_id)


def _mntp_batch(
    tokenizer: Any, texts: Sequence[str], cfg: TrainConfig, rng: random.Random, mask_id: int
) -> tuple[TokenBatch, torch.Tensor]:
    batch = build_inputs(
        tokenizer, texts, template=cfg.template, add_eos=False, max_length=cfg.max_length
    )
    labels = torch.full_like(batch.input_ids, -100)
    vocab = len(tokenizer)
    for i in range(batch.input_ids.shape[0]):
        positions = batch.pool_mask[i].nonzero().flatten().tolist()
        chosen = [p for p in positions if rng.random() < cfg.mask_prob] or [rng.choice(positions)]
        for p in chosen:
            labels[i, p] = batch.input_ids[i, p]
            # BERT's recipe, as LLM2Vec's: 80% masked, 10% a random token, 10% unchanged
            roll = rng.random()
            if roll < 0.8:
                batch.input_ids[i, p] = mask_id
            elif roll < 0.9:
                batch.input_ids[i, p] = rng.randrange(vocab)
    return batch, labels


def train_text_encoder(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run one stage and save the merged model to ``cfg.out``; returns the loss history."""
    cfg.validate()
    from transformers import AutoModelForCausalLM

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    causal = cfg.objective == "mntp"
    tokenizer, model, device = load_decoder(
        cfg.model,
        dtype=cfg.dtype,
        device=cfg.device,
        model_class=AutoModelForCausalLM if causal else None,
    )
    set_bidirectional(model, True)
    inference_dropout = float(getattr(model.config, "attention_dropout", 0.0) or 0.0)
    if cfg.objective == "simcse":
        _set_attention_dropout(model, cfg.simcse_dropout)
    model = _lora(model, cfg)
    if cfg.gradient_checkpointing:
        # non-reentrant: our inputs are embeddings of a frozen table, with no grad of their own
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    base = model.get_base_model()
    encoder = base.model if causal else base  # the decoder without the LM head
    params = [p for p in model.parameters() if p.requires_grad]
    latent = None
    if cfg.pooling == "latent_attention":  # NV-Embed pooling: trained with the adapters
        dim = int(base.config.hidden_size)
        # a checkpoint that ships a pooling (veclink's or NV-Embed's) goes on training it
        latent = checkpoint_latent(cfg.model, dim, torch.float32, device)
        if latent is None:
            latent = LatentAttentionPooling(dim, cfg.latents).to(device)
        latent.train()
        params += list(latent.parameters())
    optim = torch.optim.AdamW(params, lr=cfg.lr)
    data: list[Any] = (
        read_texts(cfg.data) if cfg.objective != "supervised" else read_pairs(cfg.data)
    )
    mask_id = mask_token_id(tokenizer)
    losses = []
    for _ in tqdm(range(cfg.steps), desc=f"train {cfg.objective}", disable=not progress):
        sample = rng.sample(data, min(cfg.batch_size, len(data)))
        if causal:
            batch, labels = _mntp_batch(tokenizer, sample, cfg, rng, mask_id)
            hidden = forward_hidden(encoder, batch, device, bidirectional=True).last_hidden_state
            logits = base.lm_head(hidden)
            # token i is predicted from position i - 1 (the model keeps its next-token head)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1).to(device),
                ignore_index=-100,
            )
        else:
            if cfg.objective == "simcse":  # no instruction: both views are the same text
                left, right, negatives = list(sample), list(sample), []
            else:
                left = [q for q, _, _ in sample]
                right = [p for _, p, _ in sample]
                negatives = [n for _, _, n in sample if n]
            a = _embed(encoder, tokenizer, left, cfg, device, latent, cfg.instruction)
            b = _embed(encoder, tokenizer, right + negatives, cfg, device, latent)
            scores = (a @ b.T / cfg.temperature).masked_fill(
                false_negatives(right, right + negatives).to(device), float("-inf")
            )
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(left), device=device))
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "adapter")
    merged = model.merge_and_unload()
    if cfg.objective == "simcse":  # the saved model keeps its original inference config
        _set_attention_dropout(merged, inference_dropout)
    (merged.model if causal else merged).save_pretrained(out)  # the encoder is the base decoder
    tokenizer.save_pretrained(out)
    if latent is not None:
        save_latent(latent, out)
    spec = serving_spec(cfg)
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    log = {"config": dataclasses.asdict(cfg), "losses": losses, "spec": spec}
    (out / "veclink_training.json").write_text(json.dumps(log, indent=1))
    return log


def serving_spec(cfg: TrainConfig) -> dict[str, Any]:
    """The ``llm-text`` spec that serves a stage's output as it was trained."""
    spec: dict[str, Any] = {
        "kind": "llm-text",
        "model": str(Path(cfg.out).resolve()),
        "pooling": "mean" if cfg.objective == "mntp" else cfg.pooling,
        "bidirectional": True,
    }
    if cfg.objective == "supervised" and cfg.instruction:
        spec["instruction"] = cfg.instruction
    if cfg.template != "{text}":
        spec["template"] = cfg.template
    if cfg.add_eos is not None:
        spec["add_eos"] = cfg.add_eos
    return spec


def false_negatives(positives: Sequence[str], candidates: Sequence[str]) -> torch.Tensor:
    """(rows, candidates) mask of candidates that repeat a row's positive text elsewhere in
    the batch: the same text is not a negative of itself (duplicates in a corpus would
    otherwise put a floor under the loss and teach the model to pull copies apart)."""
    mask = torch.tensor([[c == p for c in candidates] for p in positives], dtype=torch.bool)
    mask[torch.arange(len(positives)), torch.arange(len(positives))] = False
    return mask


def _embed(
    encoder: Any,
    tokenizer: Any,
    texts: list[str],
    cfg: TrainConfig,
    device: Any,
    latent: torch.nn.Module | None = None,
    instruction: str = "",
) -> torch.Tensor:
    # built exactly as the served encoder builds its inputs
    batch = build_inputs(
        tokenizer,
        texts,
        template=cfg.template,
        instruction=instruction,
        add_eos=wants_eos(cfg.pooling, cfg.add_eos),
        max_length=cfg.max_length,
    )
    hidden = forward_hidden(encoder, batch, device, bidirectional=True).last_hidden_state
    return torch.nn.functional.normalize(pool(hidden, batch, cfg.pooling, latent).float(), dim=-1)
