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
from collections.abc import Sequence
from typing import Any

import torch
from veclink.encoders.llm_layouts import local_dir, resolve_layout
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

    LLM2Vec (config + adapter in one directory) and NV-Embed checkpoints are recognised
    (``llm_layouts``): an LLM2Vec directory's own adapter is merged before ``adapters``.

    Args:
        model: local directory or hub id (never downloaded here: resolved from the cache).
        adapters: PEFT LoRA adapter directories, merged one after the other.
        dtype: fp32, fp16 or bf16.
        device: cpu, cuda, cuda:N or auto.
        model_class: transformers class to load with (default ``AutoModel``).
    """
    from transformers import AutoModel, AutoTokenizer

    # LLM2Vec / NV-Embed checkpoints need custom code elsewhere: their parts load natively
    layout = resolve_layout(model)
    # every name is checked before minutes are spent loading weights
    chain = layout.adapters + tuple(local_dir(a, "spec.adapters", "adapter") for a in adapters)
    peft = require("peft", "llm") if chain else None
    dev = resolve_device(device)
    cls = model_class or AutoModel
    try:
        # a hub id resolves from the user's cache only: weights are never downloaded here
        tokenizer = AutoTokenizer.from_pretrained(layout.tokenizer, local_files_only=True)
        net = cls.from_pretrained(
            layout.weights, dtype=resolve_dtype(dtype), local_files_only=True, **layout.load_kwargs
        )
    except OSError as exc:
        raise InvalidArgument(f"cannot load model {model!r}: {exc}", field="spec.model") from exc
    for adapter in chain:
        net = peft.PeftModel.from_pretrained(net, adapter).merge_and_unload()  # type: ignore[union-attr]
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

    Prefix and text are tokenized together (as the model saw such strings in training, so
    e.g. ``" the"`` stays one BPE token at the boundary); character offsets tell which
    tokens belong to the text. Texts too long for ``max_length`` lose their end.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    rows, pools = [], []
    for text in texts:
        pre, body = _split_tokens(tokenizer, prefix, text)
        budget = max_length - len(bos) - len(pre) - len(eos)
        if budget < 1:
            raise InvalidArgument(
                f"the instruction takes {len(pre)} tokens, leaving no room within "
                f"max_length={max_length}",
                field="instruction",
            )
        body = body[:budget]
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


def _split_tokens(tokenizer: Any, prefix: str, text: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prefix + text`` split into (prefix tokens, text tokens)."""
    if not prefix:
        return [], tokenizer(text, add_special_tokens=False)["input_ids"]
    if not getattr(tokenizer, "is_fast", False):  # no offsets: tokenize the parts apart
        return (
            tokenizer(prefix, add_special_tokens=False)["input_ids"],
            tokenizer(text, add_special_tokens=False)["input_ids"],
        )
    enc = tokenizer(prefix + text, add_special_tokens=False, return_offsets_mapping=True)
    # a token that reaches into the text (e.g. " the" across the boundary) is text
    ids = enc["input_ids"]
    n_pre = next(
        (i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > len(prefix)), len(ids)
    )
    return ids[:n_pre], ids[n_pre:]


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
        # one 4-D mask serves every layer, sliding-window ones included: every token sees
        # every token (as in LLM2Vec's bidirectional models; windows exceed embedded texts)
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
