"""``veclink train text-encoder|clip`` and ``veclink eval moee``.

The parsers take their choices and defaults from ``veclink.training.config`` (no torch);
the training code loads when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from veclink.cli.common import int_at_least, non_negative_int, positive_float, positive_int
from veclink.encoders.specs import LLM_POOLINGS, MOE_POOLINGS
from veclink.training.config import OBJECTIVES, SCHEDULES, SPEC_FILE, Stage2Config, TrainConfig

from veclink.errors import InvalidArgument


def add_parsers(sub: Any) -> None:
    """Register ``train`` and ``eval`` on the top-level sub-parsers."""
    p = sub.add_parser("train", help="train encoders")
    tsub = p.add_subparsers(dest="what", required=True)
    add_text_encoder(tsub)
    add_clip(tsub)

    p = sub.add_parser("eval", help="evaluate encoders")
    esub = p.add_subparsers(dest="what", required=True)
    add_eval_moee(esub)


def add_text_encoder(subparsers: Any) -> None:
    """``veclink train text-encoder ...``"""
    p = subparsers.add_parser(
        "text-encoder", help="MNTP, then SimCSE or supervised contrastive, with LoRA"
    )
    p.add_argument(
        "--model", required=True, help="base model directory (or a previous stage's output)"
    )
    p.add_argument(
        "--data", required=True, help="text file (mntp, simcse) or pairs CSV/JSONL (supervised)"
    )
    p.add_argument("--out", required=True, help="output directory (a model load_encoder serves)")
    p.add_argument("--objective", choices=OBJECTIVES, default="mntp")
    for name, typ, default in (
        ("steps", positive_int, 100),
        ("batch-size", int_at_least(2), 16),
        ("lr", positive_float, 1e-4),
        ("lora-r", positive_int, 8),
        ("max-length", positive_int, 128),
        ("latents", positive_int, 512),
    ):
        p.add_argument(f"--{name}", type=typ, default=default)
    p.add_argument("--simcse-dropout", type=float, default=0.3)
    p.add_argument("--temperature", type=positive_float, default=0.05)
    p.add_argument(
        "--instruction", default="", help="supervised: prepended to queries, as when served"
    )
    p.add_argument("--template", default="{text}", help="wraps every text, e.g. a chat template")
    p.add_argument(
        "--add-eos",
        default=None,
        type=lambda v: {"true": True, "false": False}[v.lower()],
        help="true/false; default: only for last_token pooling",
    )
    p.add_argument(
        "--gradient-checkpointing", action="store_true", help="less memory, slower steps"
    )
    p.add_argument("--pooling", default="mean", choices=LLM_POOLINGS)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train_text_encoder)


def run_train_text_encoder(args: argparse.Namespace) -> int:
    """Handler of ``veclink train text-encoder``."""
    from veclink.training.text_encoder import train_text_encoder

    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        objective=args.objective,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lora_r=args.lora_r,
        max_length=args.max_length,
        latents=args.latents,
        simcse_dropout=args.simcse_dropout,
        temperature=args.temperature,
        instruction=args.instruction,
        template=args.template,
        add_eos=args.add_eos,
        gradient_checkpointing=args.gradient_checkpointing,
        pooling=args.pooling,
        dtype=args.dtype,
        device=args.device,
    )
    log = train_text_encoder(cfg, progress=not args.quiet)
    first, last = log["losses"][0], log["losses"][-1]
    print(f"{cfg.objective}: loss {first:.4f} -> {last:.4f}; saved to {cfg.out}")
    print(f"serve it with the encoder spec in {Path(cfg.out) / SPEC_FILE}:")
    print(json.dumps(log["spec"]))
    return 0


def add_clip(subparsers: Any) -> argparse.ArgumentParser:
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
    p.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--lr", type=positive_float, default=defaults.lr)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    p.add_argument("--warmup-steps", type=non_negative_int, default=defaults.warmup_steps)
    p.add_argument(
        "--unlock-vision-blocks", type=non_negative_int, default=defaults.unlock_vision_blocks
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=defaults.workers,
        help="image decoding processes",
    )
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
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines, only the summary")
    p.set_defaults(func=run_train_clip)
    return p


def run_train_clip(args: argparse.Namespace) -> int:
    """Handler of ``veclink train clip``: prints progress and a JSON summary line.

    Raises:
        InvalidArgument: bad ``--spec``, config values, data folder or captions file.
    """
    from veclink.training.clip import train_llm2clip

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
        progress=None
        if args.quiet
        else lambda e, loss: print(f"epoch {e + 1}/{config.epochs} loss {loss:.4f}"),
    )
    print(json.dumps(dataclasses.asdict(result)))
    return 0


def add_eval_moee(subparsers: Any) -> None:
    """``veclink eval moee ...``"""
    p = subparsers.add_parser("moee", help="HS vs RW vs MoEE on an STS or retrieval CSV")
    p.add_argument("--model", required=True, help="MoE checkpoint directory")
    p.add_argument("--data", required=True, help="text1,text2,score or query,document,relevance")
    p.add_argument("--alpha", type=float, nargs="+", default=[1.0])
    p.add_argument("--prompt", help="prompt with {text} (default PromptEOL)")
    p.add_argument("--pooling", choices=MOE_POOLINGS, default="last_token")
    p.add_argument("--rw-stats", default="", help=".npz of fixed RW mean/std (optional)")
    p.add_argument(
        "--stats-corpus",
        help="text file (one passage a line): estimate the RW statistics from it once and "
        "write them to --rw-stats, then evaluate with them",
    )
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``veclink eval moee``: a Markdown table of the methods' scores."""
    from veclink.training.moee_eval import evaluate_moee, fit_rw_stats, read_labelled

    extra: dict[str, Any] = {
        "device": args.device,
        "dtype": args.dtype,
        "pooling": args.pooling,
        "rw_stats": args.rw_stats,
        "batch_size": args.batch_size,
    }
    if args.prompt:
        extra["prompt"] = args.prompt
    kind, _ = read_labelled(args.data)
    if args.stats_corpus:
        if not args.rw_stats:
            raise InvalidArgument("--stats-corpus needs --rw-stats OUT.npz", field="rw_stats")
        fit_rw_stats(args.model, args.stats_corpus, args.rw_stats, **extra)
    results = evaluate_moee(args.model, args.data, args.alpha, **extra)
    metric = "Spearman" if kind == "sts" else "nDCG@10"
    print(f"| method | {metric} |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} |")
    return 0
