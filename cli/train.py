"""``veclink train text-encoder|clip`` and ``veclink eval moee``."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Register ``train`` and ``eval`` on the top-level sub-parsers."""
    from veclink.encoders.clip_training import add_train_subcommand as add_train_clip
    from veclink.encoders.moee_eval import add_eval_subcommand
    from veclink.encoders.training import add_train_subcommand

    p = sub.add_parser("train", help="train encoders")
    tsub = p.add_subparsers(dest="what", required=True)
    add_train_subcommand(tsub)
    add_train_clip(tsub)

    p = sub.add_parser("eval", help="evaluate encoders")
    esub = p.add_subparsers(dest="what", required=True)
    add_eval_subcommand(esub)
