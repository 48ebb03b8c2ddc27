"""LLM-derived text encoders (LLM2Vec-style): a decoder LLM with bidirectional attention.

Serving a published LLM2Vec checkpoint = its base model plus its LoRA adapters, merged in
order (e.g. the MNTP adapter, then the SimCSE or supervised one)::

    load_encoder({"kind": "llm-text", "model": "/models/Meta-Llama-3-8B-Instruct",
                  "adapters": ["/models/llm2vec-mntp", "/models/llm2vec-supervised"],
                  "pooling": "mean", "bidirectional": true, "dtype": "bf16", "device": "cuda",
                  "instruction": "Given a web search query, retrieve relevant passages: "})
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder, EncoderSpec, Modality, Role, register_encoder
from veclink.encoders.decoder_llm import (
    TokenBatch,
    forward_hidden,
    load_decoder,
    set_bidirectional,
    tokenize,
)

POOLINGS = ("mean", "weighted_mean", "last_token", "bos", "latent_attention")
LATENT_FILE = "latent_attention.pt"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LLMTextSpec(EncoderSpec):
    """A decoder LLM used as a text encoder."""

    kind = "llm-text"

    #: local HF directory or hub id (resolved from the user's cache, never downloaded)
    model: str
    #: PEFT LoRA adapter directories merged in order (e.g. MNTP, then SimCSE/supervised)
    adapters: tuple[str, ...] = ()
    #: mean, weighted_mean, last_token (eos), bos, latent_attention (NV-Embed)
    pooling: str = "mean"
    #: bidirectional attention (LLM2Vec); False keeps the causal mask
    bidirectional: bool = True
    #: prepended to queries only and excluded from pooling
    instruction: str = ""
    #: L2-normalise the output
    normalize: bool = True
    max_length: int = 512
    batch_size: int = 16
    dtype: str = "fp32"
    device: str = "cpu"
    #: latent-attention pooling: number of latents (weights saved as latent_attention.pt
    #: in the model directory; without that file they start from a seeded random init)
    latents: int = 512

    def validate(self) -> list[str]:
        problems = []
        if not self.model:
            problems.append("spec.model: required")
        if self.pooling not in POOLINGS:
            problems.append(f"spec.pooling: must be one of {', '.join(POOLINGS)}")
        if self.max_length < 4:
            problems.append("spec.max_length: must be >= 4")
        if self.batch_size < 1:
            problems.append("spec.batch_size: must be >= 1")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            problems.append("spec.dtype: must be one of fp32, fp16, bf16")
        if self.latents < 1:
            problems.append("spec.latents: must be >= 1")
        return problems


class LatentAttentionPooling(torch.nn.Module):
    """NV-Embed pooling: token states attend to a trainable latent array, then an MLP,
    then a masked mean."""

    def __init__(self, dim: int, latents: int = 512, heads: int = 8) -> None:
        super().__init__()
        heads = next(h for h in (heads, 8, 4, 2, 1) if dim % h == 0)
        self.latents = torch.nn.Parameter(torch.randn(latents, dim) / dim**0.5)
        self.attn = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim)
        )

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kv = self.latents.unsqueeze(0).expand(hidden.shape[0], -1, -1).to(hidden.dtype)
        out, _ = self.attn(hidden, kv, kv, need_weights=False)
        out = out + self.mlp(out)
        m = mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool(
    hidden: torch.Tensor, batch: TokenBatch, how: str, latent: torch.nn.Module | None = None
) -> torch.Tensor:
    """Pool left-padded hidden states ``(b, t, d)`` over the text tokens of each row."""
    mask = batch.pool_mask.to(hidden.device)
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "weighted_mean":  # later tokens weigh more (SGPT): weight = rank among text tokens
        w = (mask.cumsum(1) * mask).unsqueeze(-1).to(hidden.dtype)
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)
    if how == "last_token":  # left padding: the last position is every row's last token
        return hidden[:, -1]
    if how == "bos":  # first real token of each row
        first = batch.attention_mask.to(hidden.device).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    assert latent is not None
    return latent(hidden, mask)


@register_encoder(LLMTextSpec)
class LLMTextEncoder(Encoder):
    """Decoder LLM + bidirectional attention + pooling, instruction-aware."""

    def __init__(
        self, spec: LLMTextSpec, *, shared: tuple[Any, Any, Any, Any] | None = None
    ) -> None:
        self.spec = spec
        self.batch_size = spec.batch_size
        if shared is not None:  # a sibling with another instruction shares the weights
            self.tokenizer, self.model, self.device, self.latent = shared
        else:
            self.tokenizer, self.model, self.device = load_decoder(
                spec.model, adapters=spec.adapters, dtype=spec.dtype, device=spec.device
            )
            set_bidirectional(self.model, spec.bidirectional)
            self.latent = self._load_latent() if spec.pooling == "latent_attention" else None
        self._dim = int(self.model.config.hidden_size)

    def _load_latent(self) -> torch.nn.Module:
        dim = int(self.model.config.hidden_size)
        torch.manual_seed(0)
        latent = LatentAttentionPooling(dim, self.spec.latents)
        path = os.path.join(os.path.expanduser(self.spec.model), LATENT_FILE)
        if os.path.exists(path):
            latent.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return latent.eval().to(self.device)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def modality(self) -> Modality:
        return "text"

    def with_instruction(self, instruction: str) -> LLMTextEncoder:
        spec = dataclasses.replace(self.spec, instruction=instruction)
        return LLMTextEncoder(spec, shared=(self.tokenizer, self.model, self.device, self.latent))

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> TokenBatch:
        prefix = self.spec.instruction if role == "query" else ""
        return tokenize(
            self.tokenizer, [str(t) for t in inputs], prefix=prefix, max_length=self.spec.max_length
        )

    @torch.inference_mode()
    def forward(self, batch: TokenBatch) -> torch.Tensor:
        out = forward_hidden(self.model, batch, self.device, bidirectional=self.spec.bidirectional)
        return pool(out.last_hidden_state, batch, self.spec.pooling, self.latent)

    def postprocess(self, output: torch.Tensor, batch: TokenBatch) -> np.ndarray:
        vec = output.float()
        if self.spec.normalize:
            vec = torch.nn.functional.normalize(vec, dim=-1)
        return vec.cpu().numpy().astype(np.float32, copy=False)
