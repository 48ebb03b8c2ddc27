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

from veclink.errors import InvalidArgument

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
    #: prepended to queries only (joined by a space) and excluded from pooling
    instruction: str = ""
    #: wraps instruction + text, e.g. a chat template; pooling covers the text and what
    #: follows ``{text}`` (LLM2Vec's Llama-3-Instruct checkpoints use
    #: ``<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>``)
    template: str = "{text}"
    #: append the EOS token; None = only for last_token pooling (LLM2Vec's convention)
    add_eos: bool | None = None
    #: L2-normalise the output
    normalize: bool = True
    max_length: int = 512
    batch_size: int = 16
    dtype: str = "fp32"
    device: str = "cpu"
    #: latent-attention pooling: number of latents when training it; served weights come
    #: from latent_attention.pt in the model directory (written by veclink training)
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
        if self.template.count("{text}") != 1:
            problems.append("spec.template: must contain {text} exactly once")
        if self.add_eos not in (None, True, False):
            problems.append("spec.add_eos: must be true, false or null")
        return problems


def wants_eos(pooling: str, add_eos: bool | None) -> bool:
    """Whether texts end with EOS: explicit choice, else only for last-token pooling."""
    return pooling == "last_token" if add_eos is None else add_eos


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
        # pooling weights stay fp32 under a bf16/fp16 decoder
        hidden = hidden.to(self.latents.dtype)
        kv = self.latents.unsqueeze(0).expand(hidden.shape[0], -1, -1)
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
        path = os.path.join(os.path.expanduser(self.spec.model), LATENT_FILE)
        if not os.path.exists(path):
            # random pooling weights would serve meaningless vectors without a word
            raise InvalidArgument(
                f"latent_attention pooling needs trained weights: {path} does not exist "
                "(train with objective simcse or supervised and pooling latent_attention)",
                field="spec.pooling",
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        # the number of latents is the trained one, whatever spec.latents says
        dim = int(self.model.config.hidden_size)
        latent = LatentAttentionPooling(dim, int(state["latents"].shape[0]))
        try:
            latent.load_state_dict(state)
        except RuntimeError as exc:
            raise InvalidArgument(
                f"{path} does not fit this model: {exc}", field="spec.pooling"
            ) from exc
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
        head, tail = self.spec.template.split("{text}")
        instruction = self.spec.instruction.strip() if role == "query" else ""
        prefix = head + (instruction + " " if instruction else "")
        return tokenize(
            self.tokenizer,
            [str(t) + tail for t in inputs],
            prefix=prefix,
            max_length=self.spec.max_length,
            add_eos=wants_eos(self.spec.pooling, self.spec.add_eos),
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
