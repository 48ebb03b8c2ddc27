"""Decoder-only LLMs as encoders: loading, LoRA merging, bidirectional attention, batching.

Shared by the LLM text encoder (LLM2Vec-style) and the MoE-router encoder (MoEE).

Bidirectional attention on transformers 5: flipping ``config.is_causal`` is not enough,
because every forward rebuilds a causal mask. We set ``is_causal = False`` on every module
that has it (the attention kernels read it) AND pass a materialised bidirectional 4-D mask
(``create_bidirectional_mask(..., allow_is_bidirectional_skip=False)``) with
``inputs_embeds``, which the model uses as given.

Batches are left-padded with explicit position ids counted from the first real token, so
a text's hidden states do not depend on how long its batch neighbours are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
from veclink.encoders.torch_utils import resolve_device, resolve_dtype

from veclink._optional import require
from veclink.errors import InvalidArgument


@dataclasses.dataclass
class TokenBatch:
    """A left-padded batch: ids, attention mask, and which tokens count for pooling."""

    input_ids: torch.Tensor  # (b, t)
    attention_mask: torch.Tensor  # (b, t) 1 = real token
    pool_mask: torch.Tensor  # (b, t) 1 = token of the text itself (not instruction/padding)
    position_ids: torch.Tensor  # (b, t)


def load_decoder(
    model: str,
    *,
    adapters: Sequence[str] = (),
    dtype: str = "fp32",
    device: str = "cpu",
    model_class: Any = None,
) -> tuple[Any, Any, torch.device]:
    """Load tokenizer and base model from a local HF directory (or the user's hub cache),
    merge LoRA adapters in order, and move to ``device``.

    Args:
        model: local directory or hub id (never downloaded here: resolved from the cache).
        adapters: PEFT LoRA adapter directories, merged one after the other.
        dtype: fp32, fp16 or bf16.
        device: cpu, cuda, cuda:N or auto.
        model_class: transformers class to load with (default ``AutoModel``).
    """
    from transformers import AutoModel, AutoTokenizer

    path = os.path.expanduser(model)
    dev = resolve_device(device)
    cls = model_class or AutoModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        net = cls.from_pretrained(path, dtype=resolve_dtype(dtype))
    except OSError as exc:
        raise InvalidArgument(f"cannot load model {model!r}: {exc}", field="spec.model") from exc
    for adapter in adapters:
        peft = require("peft", "llm")
        adapter_path = os.path.expanduser(adapter)
        if not os.path.isdir(adapter_path):
            raise InvalidArgument(f"adapter {adapter!r} is not a directory", field="spec.adapters")
        net = peft.PeftModel.from_pretrained(net, adapter_path).merge_and_unload()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    net.eval().to(dev)
    return tokenizer, net, dev


def set_bidirectional(model: torch.nn.Module, bidirectional: bool) -> None:
    """Switch every attention module (and the config) between causal and bidirectional."""
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = not bidirectional
    config = getattr(model, "config", None)
    if config is not None:
        config.is_causal = not bidirectional


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    prefix: str = "",
    max_length: int = 512,
    add_eos: bool = True,
) -> TokenBatch:
    """Tokenize ``prefix + text`` with the prefix excluded from ``pool_mask``; left padding.

    Prefix and text are tokenized separately, so the pooling boundary is exact.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    budget = max_length - len(bos) - len(pre) - len(eos)
    if budget < 1:
        raise InvalidArgument(
            f"the instruction takes {len(pre)} tokens, leaving no room within "
            f"max_length={max_length}",
            field="instruction",
        )
    rows, pools = [], []
    for text in texts:
        body = tokenizer(text, add_special_tokens=False)["input_ids"][:budget]
        rows.append(bos + pre + body + eos)
        pools.append([0] * (len(bos) + len(pre)) + [1] * (len(body) + len(eos)))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    pool = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, pm) in enumerate(zip(rows, pools, strict=True)):
        ids[i, width - len(row) :] = torch.tensor(row)
        att[i, width - len(row) :] = 1
        pool[i, width - len(row) :] = torch.tensor(pm)
    positions = (att.cumsum(1) - 1).clamp(min=0)
    return TokenBatch(ids, att, pool, positions)


def forward_hidden(
    model: Any,
    batch: TokenBatch,
    device: torch.device,
    *,
    bidirectional: bool,
    output_router_logits: bool = False,
) -> Any:
    """Run the decoder; returns the model output (``last_hidden_state``, router logits...)."""
    from transformers.masking_utils import create_bidirectional_mask

    ids = batch.input_ids.to(device)
    att = batch.attention_mask.to(device)
    pos = batch.position_ids.to(device)
    embeds = model.get_input_embeddings()(ids)
    extra: dict[str, Any] = {}
    if output_router_logits:
        extra["output_router_logits"] = True
    if bidirectional:
        mask = create_bidirectional_mask(
            config=model.config,
            inputs_embeds=embeds,
            attention_mask=att,
            allow_is_bidirectional_skip=False,
        )
    else:
        mask = att
    return model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False, **extra
    )
