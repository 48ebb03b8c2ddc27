"""LLM2CLIP stage-2 training: align a CLIP vision tower with a frozen LLM text encoder.

The LLM is frozen, so its caption embeddings are computed once up front; then the vision
projection (optionally the last vision blocks), the text adapter and the logit scale
train with the symmetric CLIP contrastive loss. Captions that repeat inside a batch count
as positives of each other, not as negatives. The result is a checkpoint directory that
``load_encoder({"kind": "llm2clip", "checkpoint": DIR})`` reloads.

Data: a folder of images plus ``captions.jsonl`` (``{"image": "a.png", "caption": "..."}``
or ``"captions": [...]``) or ``captions.csv`` (columns ``image``, ``caption``); image paths
are relative to the folder.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from veclink.encoders.base import load_encoder
from veclink.encoders.images import read_image_file
from veclink.encoders.llm2clip import LLM2CLIPEncoder

from veclink.errors import InvalidArgument

CAPTION_FILES = ("captions.jsonl", "captions.csv")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage2Config:
    """Hyper-parameters of a stage-2 run."""

    #: passes over the image/caption pairs
    epochs: int = 10
    #: pairs per contrastive batch (in-batch negatives)
    batch_size: int = 64
    #: AdamW learning rate
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: vision blocks trained besides the projection (0 = projection only)
    unlock_vision_blocks: int = 0
    #: shuffling seed
    seed: int = 0

    def validate(self) -> list[str]:
        problems = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        if self.lr <= 0:
            problems.append("lr: must be > 0")
        if self.unlock_vision_blocks < 0:
            problems.append("unlock_vision_blocks: must be >= 0")
        return problems


@dataclasses.dataclass(frozen=True)
class Stage2Result:
    """What a stage-2 run produced."""

    checkpoint: str
    #: mean loss per epoch
    losses: list[float]
    pairs: int
    seconds: float


def load_pairs(folder: str, captions: str | None = None) -> list[tuple[str, str]]:
    """``(image path, caption)`` pairs from a folder and its captions file.

    Raises:
        InvalidArgument: no captions file, a malformed row (named by line), a missing image.
    """
    if captions is None:
        found = [n for n in CAPTION_FILES if os.path.isfile(os.path.join(folder, n))]
        if not found:
            raise InvalidArgument(
                f"{folder!r} has none of {', '.join(CAPTION_FILES)}", field="captions"
            )
        captions = os.path.join(folder, found[0])
    pairs: list[tuple[str, str]] = []
    with open(captions, newline="") as fh:
        if captions.endswith(".csv"):
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise InvalidArgument(
                    f"{captions}: CSV needs columns image, caption", field="captions"
                )
            rows: Any = ((i + 2, [r["image"], [r["caption"]]]) for i, r in enumerate(reader))
        else:
            rows = _jsonl_rows(captions, fh)
        for line, (image, texts) in rows:
            path = os.path.join(folder, image)
            if not os.path.isfile(path):
                raise InvalidArgument(f"{captions}:{line}: no image {path!r}", field="captions")
            for text in texts:
                if not isinstance(text, str) or not text.strip():
                    raise InvalidArgument(f"{captions}:{line}: empty caption", field="captions")
                pairs.append((path, text))
    if not pairs:
        raise InvalidArgument(f"{captions}: no pairs", field="captions")
    return pairs


def _jsonl_rows(name: str, fh: Any) -> Any:
    for line, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            texts = row["captions"] if "captions" in row else [row["caption"]]
            yield line, (row["image"], texts)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                f"{name}:{line}: need an object with image and caption(s)", field="captions"
            ) from exc


def write_caption_pairs(pairs: Sequence[tuple[str, str]], path: str) -> int:
    """Stage-1 data: captions of the same image as (query, positive) JSONL rows.

    LLM2CLIP stage 1 fine-tunes the LLM caption-contrastively; the rows feed the supervised
    objective of ``veclink train text-encoder``. Returns the number of rows written.
    """
    by_image: dict[str, list[str]] = {}
    for image, text in pairs:
        by_image.setdefault(image, []).append(text)
    count = 0
    with open(path, "w") as fh:
        for texts in by_image.values():
            for a, b in zip(texts, texts[1:] + texts[:1], strict=True):
                if len(texts) > 1 and a != b:
                    fh.write(json.dumps({"query": a, "positive": b}) + "\n")
                    count += 1
    return count


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
    progress: Callable[[int, float], None] | None = None,
) -> Stage2Result:
    """Train ``encoder``'s vision projection (+ blocks) and adapter in place; save to ``out_dir``.

    Args:
        encoder: the LLM2CLIP encoder (its text encoder stays frozen).
        pairs: ``(image path, caption)``.
        out_dir: checkpoint directory written at the end.
        config: hyper-parameters.
        progress: called with ``(epoch, mean loss)`` after each epoch.
    """
    config = config or Stage2Config()
    problems = config.validate()
    if problems:
        raise InvalidArgument("; ".join(problems), field="config")
    start = time.perf_counter()
    unique = sorted({c for _, c in pairs})
    caption_index = {c: i for i, c in enumerate(unique)}
    # the frozen LLM runs once per distinct caption
    llm = torch.from_numpy(encoder.text_encoder.encode(unique, role="document"))
    images = sorted({p for p, _ in pairs})
    pixels = _pixels(encoder, images)
    image_index = {p: i for i, p in enumerate(images)}
    rows = torch.tensor([[image_index[p], caption_index[c]] for p, c in pairs])

    towers = encoder.towers
    for p in towers.module.parameters():
        p.requires_grad_(False)
    vision_params = towers.vision_trainable(config.unlock_vision_blocks)
    params = [*vision_params, *encoder.adapter.parameters(), encoder.logit_scale]
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    device, dtype = encoder.device, encoder.dtype
    encoder.logit_scale.data = encoder.logit_scale.data.to(device)
    rng = random.Random(config.seed)
    losses = []
    encoder.adapter.train()
    try:
        for epoch in range(config.epochs):
            order = list(range(len(rows)))
            rng.shuffle(order)
            total, count = 0.0, 0
            for at in range(0, len(order), config.batch_size):
                batch = rows[order[at : at + config.batch_size]]
                if len(batch) < 2:
                    continue
                img = towers.encode_images(pixels[batch[:, 0]].to(device, dtype))
                txt = encoder.adapt(llm[batch[:, 1]])
                loss = clip_loss(
                    nn.functional.normalize(img.float(), dim=-1),
                    nn.functional.normalize(txt.float(), dim=-1),
                    encoder.logit_scale.clamp(max=4.6052),  # CLIP caps the scale at 100
                    batch[:, 1].to(device),
                )
                optim.zero_grad()
                loss.backward()
                optim.step()
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


def _pixels(encoder: LLM2CLIPEncoder, paths: Sequence[str]) -> torch.Tensor:
    # decode + transform each image once (CPU); errors name the file
    out = []
    for path in paths:
        data = read_image_file(path, encoder.spec.limits)
        out.append(encoder.preprocess([data], "document").pixels[0])
    return torch.stack(out)


def train_llm2clip(
    spec: dict[str, Any],
    data_dir: str,
    out_dir: str,
    config: Stage2Config | None = None,
    *,
    captions: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Stage2Result:
    """Stage 2 end to end: load the ``llm2clip`` spec, read the pairs, train, save."""
    encoder = load_encoder({**spec, "kind": "llm2clip"})
    assert isinstance(encoder, LLM2CLIPEncoder)
    return train_stage2(encoder, load_pairs(data_dir, captions), out_dir, config, progress=progress)


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
    p.add_argument("--unlock-vision-blocks", type=int, default=defaults.unlock_vision_blocks)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.set_defaults(func=cmd_train_clip)
    return p


def cmd_train_clip(args: argparse.Namespace) -> int:
    """Handler of ``veclink train clip``: prints a JSON summary; raises VeclinkError."""
    text = args.spec
    if text.startswith("@"):
        with open(text[1:]) as fh:
            text = fh.read()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--spec is not valid JSON: {exc}", field="spec") from exc
    config = Stage2Config(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        unlock_vision_blocks=args.unlock_vision_blocks,
        seed=args.seed,
    )
    result = train_llm2clip(
        spec,
        args.data,
        args.out,
        config,
        captions=args.captions,
        progress=lambda e, loss: print(f"epoch {e + 1}/{config.epochs} loss {loss:.4f}"),
    )
    print(json.dumps(dataclasses.asdict(result)))
    return 0
