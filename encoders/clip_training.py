"""LLM2CLIP stage-2 training: align a CLIP vision tower with a frozen LLM text encoder.

The LLM is frozen, so its caption embeddings are computed once up front (optionally cached
on disk for the next run); then the vision projection (optionally the last vision blocks),
the text adapter and the logit scale train with the symmetric CLIP contrastive loss.
Captions that repeat inside a batch count as positives of each other, not as negatives.
The result is a checkpoint directory that ``load_encoder({"kind": "llm2clip",
"checkpoint": DIR})`` reloads. Data formats: ``veclink.encoders.clip_data``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from veclink.encoders.base import load_encoder
from veclink.encoders.clip_data import (
    CAPTION_FILES,
    ImageBatches,
    ImageFiles,
    caption_embeddings,
    load_pairs,
    write_caption_pairs,
)
from veclink.encoders.llm2clip import LLM2CLIPEncoder

from veclink.errors import InvalidArgument

__all__ = [
    "CAPTION_FILES",
    "Stage2Config",
    "Stage2Result",
    "add_train_subcommand",
    "clip_loss",
    "load_pairs",
    "run_train_clip",
    "train_llm2clip",
    "train_stage2",
    "write_caption_pairs",
]

SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage2Config:
    """Hyper-parameters of a stage-2 run."""

    #: passes over the image/caption pairs
    epochs: int = 10
    #: pairs per contrastive batch (in-batch negatives)
    batch_size: int = 64
    #: AdamW peak learning rate
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: ``constant``, or ``cosine`` decay to 0 after ``warmup_steps`` of linear warm-up
    schedule: str = "cosine"
    warmup_steps: int = 0
    #: vision blocks trained besides the projection (0 = projection only)
    unlock_vision_blocks: int = 0
    #: shuffling seed
    seed: int = 0
    #: decoded images are kept in memory when they take at most this many MiB ...
    image_cache_mb: float = 1024.0
    #: ... else decoded per batch by this many DataLoader worker processes (0 = inline)
    workers: int = 0
    #: bf16 autocast on CUDA when the encoder's weights are fp32
    amp: bool = True

    def validate(self) -> list[str]:
        problems = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        if self.lr <= 0:
            problems.append("lr: must be > 0")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule: must be one of {', '.join(SCHEDULES)}")
        for name in ("warmup_steps", "unlock_vision_blocks", "workers", "image_cache_mb"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        return problems


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


# ------------------------------------------------------------------------------- CLI


def add_train_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``clip`` (LLM2CLIP stage 2) to the ``veclink train`` sub-parsers."""
    p = subparsers.add_parser(
        "clip", help="LLM2CLIP stage 2: align a CLIP vision tower with a frozen LLM encoder"
    )
    p.add_argument("--data", required=True, help="folder of images + captions.jsonl/.csv")
    p.add_argument("--captions", help="captions file (default: DATA/captions.jsonl or .csv)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument(
        "--spec",
        required=True,
        help='llm2clip spec as JSON or @file, e.g. {"vision": "open_clip:ViT-B-16", '
        '"text_encoder": {"kind": "llm-text", "model": "..."}}',
    )
    defaults = Stage2Config()
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--unlock-vision-blocks", type=int, default=defaults.unlock_vision_blocks)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--workers", type=int, default=defaults.workers, help="image decoding processes")
    p.add_argument(
        "--image-cache-mb",
        type=float,
        default=defaults.image_cache_mb,
        help="keep decoded images in memory up to this size, else decode per batch",
    )
    p.add_argument(
        "--caption-cache",
        metavar="NPY",
        help="file of the frozen LLM caption embeddings, reused by the next run",
    )
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.set_defaults(func=run_train_clip)
    return p


def run_train_clip(args: argparse.Namespace) -> int:
    """Handler of ``veclink train clip``: prints progress and a JSON summary line.

    Raises:
        InvalidArgument: bad ``--spec``, config values, data folder or captions file.
    """
    text = args.spec
    if text.startswith("@"):
        try:
            with open(text[1:]) as fh:
                text = fh.read()
        except OSError as exc:
            raise InvalidArgument(f"cannot read --spec file: {exc}", field="spec") from exc
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--spec is not valid JSON: {exc}", field="spec") from exc
    if not isinstance(spec, dict):
        raise InvalidArgument("--spec must be a JSON object", field="spec")
    config = Stage2Config(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        unlock_vision_blocks=args.unlock_vision_blocks,
        seed=args.seed,
        image_cache_mb=args.image_cache_mb,
        workers=args.workers,
        amp=not args.no_amp,
    )
    result = train_llm2clip(
        spec,
        args.data,
        args.out,
        config,
        captions=args.captions,
        caption_cache=args.caption_cache,
        progress=lambda e, loss: print(f"epoch {e + 1}/{config.epochs} loss {loss:.4f}"),
    )
    print(json.dumps(dataclasses.asdict(result)))
    return 0


#: the former name of ``run_train_clip``
cmd_train_clip = run_train_clip
