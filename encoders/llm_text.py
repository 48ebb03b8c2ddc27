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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.decoder_llm import (
    TokenBatch,
    forward_hidden,
    load_decoder,
    set_bidirectional,
    tokenize,
)
from veclink.encoders.latent_attention import LATENT_FILE, LatentAttentionPooling, load_latent
from veclink.encoders.llm_layouts import load_nv_embed_latent, resolve_layout
from veclink.encoders.specs import LLMTextSpec

from veclink.errors import InvalidArgument


def wants_eos(pooling: str, add_eos: bool | None) -> bool:
    """Whether texts end with EOS: explicit choice, else only for last-token pooling."""
    return pooling == "last_token" if add_eos is None else add_eos


def build_inputs(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    template: str = "{text}",
    instruction: str = "",
    add_eos: bool = False,
    max_length: int = 512,
) -> TokenBatch:
    """The model's input for ``texts``, as serving and training both build it.

    ``template`` wraps instruction + text; the instruction (joined to the text by a space)
    and the template's head are not pooled, the text and the template's tail are.
    """
    head, tail = template.split("{text}")
    instruction = instruction.strip()
    prefix = head + (instruction + " " if instruction else "")
    return tokenize(
        tokenizer, [t + tail for t in texts], prefix=prefix, max_length=max_length, add_eos=add_eos
    )


def checkpoint_latent(
    model: str, dim: int, dtype: torch.dtype, device: Any
) -> LatentAttentionPooling | None:
    """The latent-attention pooling a checkpoint ships, or None.

    NV-Embed's own pooling runs in the decoder's dtype (it is large: 0.7B parameters for
    NV-Embed-v2); a pooling veclink trained is small and stays fp32.
    """
    layout = resolve_layout(model)
    if layout.has_latent:
        return load_nv_embed_latent(layout.weights, dim, dtype=dtype, device=device)
    return load_latent(layout.weights, dim, device=device)


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

    def _load_latent(self) -> LatentAttentionPooling:
        latent = checkpoint_latent(
            self.spec.model, int(self.model.config.hidden_size), self.model.dtype, self.device
        )
        if latent is None:  # random pooling weights would serve meaningless vectors
            raise InvalidArgument(
                f"latent_attention pooling needs trained weights: {self.spec.model!r} has no "
                f"{LATENT_FILE} (train with objective simcse or supervised and pooling "
                "latent_attention) and is not an NV-Embed checkpoint",
                field="spec.pooling",
            )
        return latent

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
        s = self.spec
        return build_inputs(
            self.tokenizer,
            [str(t) for t in inputs],
            template=s.template,
            instruction=s.instruction if role == "query" else "",
            add_eos=wants_eos(s.pooling, s.add_eos),
            max_length=s.max_length,
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
