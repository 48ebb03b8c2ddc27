"""LLM2CLIP stage-2 training: align a CLIP vision tower with a frozen LLM text encoder.

The LLM is frozen, so its caption embeddings are computed once up front (optionally cached
on disk for the next run); then the vision projection (optionally the last vision blocks),
the text adapter and the logit scale train with the symmetric CLIP contrastive loss.
Captions that repeat inside a batch count as positives of each other, not as negatives.
The result is a checkpoint directory that ``load_encoder({"kind": "llm2clip",
"checkpoint": DIR})`` reloads. Data formats: ``veclink.training.clip_data``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from veclink.encoders.base import load_encoder
from veclink.encoders.llm2clip import LLM2CLIPEncoder
from veclink.training.clip_data import (
    CAPTION_FILES,
    ImageBatches,
    ImageFiles,
    caption_embeddings,
    load_pairs,
    write_caption_pairs,
)
from veclink.training.config import SCHEDULES, Stage2Config

from veclink.errors import InvalidArgument

__all__ = [
    "CAPTION_FILES",
    "SCHEDULES",
    "Stage2Config",
    "Stage2Result",
    "clip_loss",
    "load_pairs",
    "train_llm2clip",
    "train_stage2",
    "write_caption_pairs",
]


@dataclasses.dataclass(frozen=True)
class Stage2Result:
    """What a stage-2 run produced."""

    checkpoint: str
    #: mean loss per epoch
    losses: list[float]
    pairs: int
    seconds: float


def clip_loss(
    images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, caption_ids: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE on normalised embeddings; equal caption ids are all positives."""
    logits = scale.exp() * images @ texts.T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    ) / 2


def train_stage2(
    encoder: LLM2CLIPEncoder,
    pairs: Sequence[tuple[str, str]],
    out_dir: str,
    config: Stage2Config | None = None,
    *,
    caption_cache: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Stage2Result:
    """Train ``encoder``'s vision projection (+ blocks) and adapter in place; save to ``out_dir``.

    Args:
        encoder: the LLM2CLIP encoder (its text encoder stays frozen).
        pairs: ``(image path, caption)``.
        out_dir: checkpoint directory written at the end.
        config: hyper-parameters.
        caption_cache: ``.npy`` path of the frozen caption embeddings (reused when they
            match the text encoder and captions, else written).
        progress: called with ``(epoch, mean loss)`` after each epoch.
    """
    config = config or Stage2Config()
    problems = config.validate()
    if problems:
        raise InvalidArgument("; ".join(problems), field="config")
    if encoder.dtype != torch.float32:
        # AdamW on half-precision weights loses small updates; bf16 autocast does the speed
        raise InvalidArgument(
            "train with spec.dtype fp32 (on CUDA the forward pass runs under bf16 autocast); "
            "the frozen text encoder may keep its own dtype",
            field="spec.dtype",
        )
    start = time.perf_counter()
    unique = sorted({c for _, c in pairs})
    caption_index = {c: i for i, c in enumerate(unique)}
    llm = caption_embeddings(encoder.text_encoder, unique, cache=caption_cache)
    paths = sorted({p for p, _ in pairs})
    image_index = {p: i for i, p in enumerate(paths)}
    images = ImageBatches(
        ImageFiles(paths, encoder.towers.image_transform, encoder.spec.limits),
        cache_mb=config.image_cache_mb,
        workers=config.workers,
    )
    rows = torch.tensor([[image_index[p], caption_index[c]] for p, c in pairs])

    towers = encoder.towers
    for p in towers.module.parameters():
        p.requires_grad_(False)
    params = [
        *towers.vision_trainable(config.unlock_vision_blocks),
        *encoder.adapter.parameters(),
        encoder.logit_scale,
    ]
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    steps_per_epoch = len(_batches(len(rows), config.batch_size, random.Random(0)))
    sched = _schedule(optim, config, steps_per_epoch * config.epochs)
    device, dtype = encoder.device, encoder.dtype
    encoder.logit_scale.data = encoder.logit_scale.data.to(device)
    autocast: Any = contextlib.nullcontext
    if config.amp and device.type == "cuda" and dtype == torch.float32:

        def autocast() -> Any:
            return torch.autocast("cuda", dtype=torch.bfloat16)

    losses = []
    # the towers stay in eval mode: frozen parts keep their normalisation statistics
    encoder.adapter.train()
    try:
        for epoch in range(config.epochs):
            order = [rows[b] for b in _batches(len(rows), config.batch_size, rng)]
            total, count = 0.0, 0
            for batch, pixels in zip(order, images.batches([b[:, 0] for b in order]), strict=True):
                caps = batch[:, 1]
                llm_rows = torch.from_numpy(llm[caps.numpy()]).float()
                with autocast():
                    img = towers.encode_images(pixels.to(device, dtype, non_blocking=True))
                    txt = encoder.adapt(llm_rows)
                loss = clip_loss(
                    nn.functional.normalize(img.float(), dim=-1),
                    nn.functional.normalize(txt.float(), dim=-1),
                    encoder.logit_scale.clamp(max=math.log(100)),  # CLIP caps the scale at 100
                    caps.to(device),
                )
                optim.zero_grad()
                loss.backward()
                optim.step()
                sched.step()
                total, count = total + float(loss.detach()), count + 1
            losses.append(total / max(count, 1))
            if progress:
                progress(epoch, losses[-1])
    finally:
        encoder.adapter.eval()
        for p in params:
            p.requires_grad_(False)
    encoder.save_checkpoint(out_dir)
    return Stage2Result(out_dir, losses, len(pairs), time.perf_counter() - start)


def _batches(n: int, size: int, rng: random.Random) -> list[list[int]]:
    # shuffled pair indices; a lone last pair has no negative and is dropped
    order = list(range(n))
    rng.shuffle(order)
    return [b for at in range(0, n, size) if len(b := order[at : at + size]) >= 2]


def _schedule(
    optim: torch.optim.Optimizer, config: Stage2Config, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        done = (step - config.warmup_steps) / max(1, steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return torch.optim.lr_scheduler.LambdaLR(optim, factor)


def train_llm2clip(
    spec: dict[str, Any],
    data_dir: str,
    out_dir: str,
    config: Stage2Config | None = None,
    *,
    captions: str | None = None,
    caption_cache: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Stage2Result:
    """Stage 2 end to end: load the ``llm2clip`` spec, read the pairs, train, save."""
    encoder = load_encoder({**spec, "kind": "llm2clip"})
    if not isinstance(encoder, LLM2CLIPEncoder):
        raise InvalidArgument("spec must name an llm2clip encoder", field="spec")
    return train_stage2(
        encoder,
        load_pairs(data_dir, captions),
        out_dir,
        config,
        caption_cache=caption_cache,
        progress=progress,
    )
