"""MoE-router embeddings (MoEE): the routing weights of a mixture-of-experts LLM + its hidden state.

For a text wrapped in a prompt (PromptEOL by default), the model runs causally once:

- RW: the router scores of the last token at every MoE layer, concatenated (layers x
  experts). Raw logits for OLMoE / Qwen-MoE (as the MoEE reference does), softmax for
  DeepSeek-V2 and routers that route by softmax (Mixtral), sigmoid for DeepSeek-V3;
- HS: the last layer's hidden state of the last token.

``output="moee"`` returns ``[hs/|hs|, sqrt(alpha) * rw/|rw|]``, whose inner product is
``cos(HS) + alpha * cos(RW)``: MoEE collections use the ordinary index. Nothing depends on
the batch: optional RW statistics (``rw_stats``, a .npz with ``mean`` and ``std``) are
estimated once per model with `estimate_rw_stats` and applied fixed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.decoder_llm import TokenBatch, forward_hidden, load_decoder, tokenize
from veclink.encoders.specs import MoERouterSpec

from veclink.errors import InvalidArgument

#: how each architecture's router turns logits into routing weights
AUTO_ACTIVATION = {
    "olmoe": "logits",
    "qwen2_moe": "logits",
    "qwen3_moe": "logits",
    "deepseek_v2": "softmax",
    "deepseek_v3": "sigmoid",
}


class MoERouterEncoder(Encoder):
    """HS, RW or MoEE vectors from a mixture-of-experts LLM."""

    def __init__(self, spec: MoERouterSpec) -> None:
        self.spec = spec
        self.batch_size = spec.batch_size
        self.tokenizer, self.model, self.device = load_decoder(
            spec.model, adapters=spec.adapters, dtype=spec.dtype, device=spec.device
        )
        cfg = self.model.config
        self.activation = (
            AUTO_ACTIVATION.get(cfg.model_type, "softmax")
            if spec.router_activation == "auto"
            else spec.router_activation
        )
        probe = self._run(tokenize(self.tokenizer, ["x"], add_eos=False))
        if not probe[1].shape[1]:
            raise InvalidArgument(
                f"model {spec.model!r} ({cfg.model_type}) returns no router logits: "
                "not a mixture-of-experts model",
                field="spec.model",
            )
        self.hs_dim, self.rw_dim = int(probe[0].shape[1]), int(probe[1].shape[1])
        self.rw_mean = self.rw_std = None
        if spec.rw_stats:
            path = os.path.expanduser(spec.rw_stats)
            if not os.path.exists(path):
                raise InvalidArgument(
                    f"rw_stats {spec.rw_stats!r} does not exist", field="spec.rw_stats"
                )
            with np.load(path) as z:
                self.rw_mean = torch.from_numpy(z["mean"]).float()
                self.rw_std = torch.from_numpy(z["std"]).float()

    @property
    def dim(self) -> int:
        return {"hs": self.hs_dim, "rw": self.rw_dim, "moee": self.hs_dim + self.rw_dim}[
            self.spec.output
        ]

    @property
    def modality(self) -> Modality:
        return "text"

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> TokenBatch:
        texts = [self.spec.prompt.replace("{text}", str(t)) for t in inputs]
        # no EOS: the prompt's own last token is the one whose routing we read
        return tokenize(self.tokenizer, texts, max_length=self.spec.max_length, add_eos=False)

    @torch.inference_mode()
    def _run(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(HS (b, hidden), RW (b, layers * experts)) of each row's last token."""
        out = forward_hidden(
            self.model, batch, self.device, bidirectional=False, output_router_logits=True
        )
        b, t = batch.input_ids.shape
        layers = [r for r in (getattr(out, "router_logits", None) or ()) if r is not None]
        scores = [r.reshape(b, t, -1).float() for r in layers]
        if self.activation == "softmax":
            scores = [s.softmax(-1) for s in scores]
        elif self.activation == "sigmoid":
            scores = [s.sigmoid() for s in scores]
        hs = self._pool(out.last_hidden_state.float(), batch)
        rw = torch.cat([self._pool(s, batch) for s in scores], dim=-1) if scores else None
        return hs, rw if rw is not None else hs.new_zeros((b, 0))

    def _pool(self, x: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        if self.spec.pooling == "last_token":
            return x[:, -1]  # left padding: every row's last token is at -1
        m = batch.attention_mask.to(x.device).unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(batch)

    def postprocess(self, output: Any, batch: TokenBatch) -> np.ndarray:
        hs, rw = (x.cpu() for x in output)
        if self.rw_mean is not None and self.rw_std is not None:
            rw = (rw - self.rw_mean) / self.rw_std.clamp(min=1e-6)
        hs = torch.nn.functional.normalize(hs, dim=-1)
        rw = torch.nn.functional.normalize(rw, dim=-1)
        if self.spec.output == "hs":
            vec = hs
        elif self.spec.output == "rw":
            vec = rw
        else:
            vec = torch.cat([hs, float(self.spec.alpha) ** 0.5 * rw], dim=-1)
        return vec.numpy().astype(np.float32, copy=False)


def estimate_rw_stats(encoder: MoERouterEncoder, texts: Sequence[str], path: str) -> None:
    """Estimate fixed RW mean/std over a corpus once per model, saved for ``rw_stats``."""
    if len(texts) < 2:
        raise InvalidArgument("need at least two texts to estimate statistics", field="texts")
    rows = []
    for start in range(0, len(texts), encoder.batch_size):
        batch = encoder.preprocess(texts[start : start + encoder.batch_size], "document")
        rows.append(encoder._run(batch)[1].cpu())
    rw = torch.cat(rows)
    np.savez(path, mean=rw.mean(0).numpy(), std=rw.std(0).numpy())
