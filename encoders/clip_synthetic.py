"""Seeded synthetic images and tiny CLIP configs for tests, smoke runs and benchmarks.

Nothing here is downloaded: tiny open_clip architectures are registered from config dicts
and coloured-shape images with word captions are drawn with PIL.
"""

from __future__ import annotations

import io
import json
import os
import random

from veclink._optional import require

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


def tiny_open_clip_config(
    *, embed_dim: int = 32, width: int = 64, layers: int = 2, image_size: int = 32, patch: int = 8
) -> dict:
    """An open_clip config dict of a tiny ViT CLIP (CLIP's BPE vocabulary, short context)."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": layers,
            "width": width,
            "head_width": 32,
            "patch_size": patch,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": width,
            "heads": 2,
            "layers": layers,
        },
    }


def register_tiny_eva_trunk(name: str = "veclink_tiny_eva02", *, width: int = 32) -> str:
    """Register (once) a tiny timm EVA02 trunk with the EVA02-CLIP block structure (SwiGLU
    MLP with its inner LayerNorm, separate q/k/v, attention sub-LayerNorm, rotary
    embeddings), 32px images, 8px patches, 2 blocks: the shape of LLM2CLIP's EVA02 towers."""
    timm = require("timm", "clip")
    if name in timm.list_models(name):
        return name
    from timm.models.eva import Eva

    def build(pretrained: bool = False, **kwargs: object) -> object:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return Eva(
            img_size=32,
            patch_size=8,
            embed_dim=width,
            depth=2,
            num_heads=2,
            mlp_ratio=4 * 2 / 3,
            qkv_fused=False,
            swiglu_mlp=True,
            scale_mlp=True,
            scale_attn_inner=True,
            use_rot_pos_emb=True,
            ref_feat_shape=(4, 4),
            **kwargs,
        )

    build.__name__ = name
    timm.models.register_model(build)
    return name


def tiny_eva_open_clip_config(trunk: str, *, embed_dim: int = 32) -> dict:
    """An open_clip config of a CLIP whose vision tower is the timm trunk ``trunk`` with
    timm's classifier as the projection (as open_clip's EVA02-* configs)."""
    config = tiny_open_clip_config(embed_dim=embed_dim)
    config["vision_cfg"] = {
        "image_size": 32,
        "timm_model_name": trunk,
        "timm_model_pretrained": False,
        "timm_pool": "token",
        "timm_proj": None,
    }
    return config


def register_open_clip_config(name: str, config: dict, directory: str) -> str:
    """Write ``config`` as ``NAME.json`` in ``directory`` and register it with open_clip.

    Returns:
        The model name to use as ``open_clip:NAME``.
    """
    open_clip = require("open_clip", "clip")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with open(path, "w") as fh:
        json.dump(config, fh)
    open_clip.add_model_config(path)
    return name


def shape_image(
    color: str, shape: str, *, size: int = 32, rng: random.Random | None = None, fmt: str = "PNG"
) -> bytes:
    """A ``shape`` in ``color`` at a random position and scale on a grey background."""
    pil = require("PIL.Image", "clip")
    draw_mod = require("PIL.ImageDraw", "clip")
    rng = rng or random.Random(0)
    img = pil.new("RGB", (size, size), (128, 128, 128))
    draw = draw_mod.Draw(img)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def shape_classes() -> list[tuple[str, str]]:
    """Every (colour, shape) pair."""
    return [(c, s) for c in COLORS for s in SHAPES]


def caption(color: str, shape: str) -> str:
    return f"a {color} {shape}"


def write_shapes_dataset(
    directory: str, *, per_class: int = 8, size: int = 32, seed: int = 0, fmt: str = "jsonl"
) -> list[tuple[str, str]]:
    """Write images plus ``captions.jsonl`` (or ``captions.csv``) into ``directory``.

    Returns:
        ``(file name, caption)`` rows in the order written.
    """
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    rows = []
    for k in range(per_class):
        for color, shape in shape_classes():
            name = f"{color}_{shape}_{k}.png"
            with open(os.path.join(directory, name), "wb") as fh:
                fh.write(shape_image(color, shape, size=size, rng=rng))
            rows.append((name, caption(color, shape)))
    if fmt == "jsonl":
        with open(os.path.join(directory, "captions.jsonl"), "w") as fh:
            for name, text in rows:
                fh.write(json.dumps({"image": name, "caption": text}) + "\n")
    else:
        import csv

        with open(os.path.join(directory, "captions.csv"), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "caption"])
            writer.writerows(rows)
    return rows


def write_tiny_text_model(directory: str, *, arch: str = "llama", dim: int = 32) -> str:
    """Save a tiny random word-level text model (``llama`` decoder or ``bert`` encoder)
    whose vocabulary covers the shape captions; load it as ``llm-text`` / ``hf-text``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = ["a", "an", "the", "photo", "of", *COLORS, *SHAPES]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    fast.save_pretrained(directory)
    common = dict(
        vocab_size=len(vocab),
        hidden_size=dim,
        intermediate_size=2 * dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    if arch == "bert":
        BertModel(BertConfig(**common)).save_pretrained(directory)
    else:
        LlamaModel(
            LlamaConfig(**common, num_key_value_heads=1, bos_token_id=2, eos_token_id=3)
        ).save_pretrained(directory)
    return directory
