"""Published checkpoint layouts of LLM embedding models, loaded natively (no remote code).

- plain: a Hugging Face model directory (or a hub id in the user's cache);
- LLM2Vec: a directory holding ``adapter_config.json`` + LoRA weights (+ tokenizer, and a
  ``config.json`` whose ``auto_map`` names custom bidirectional classes we do not run). The
  decoder is the base model the adapter names (``base_model_name_or_path``), with this
  adapter merged first; veclink's own bidirectional switch replaces the custom classes;
- NV-Embed: ``config.json`` of ``model_type`` ``nvembed``; the decoder's weights are stored
  under ``embedding_model.`` (a Mistral with bidirectional attention) and the latent-attention
  pooling under ``latent_attention_model.``, which loads into ``LatentAttentionPooling``.

``resolve_layout`` says where each part comes from; ``decoder_llm.load_decoder`` and the LLM
text encoder act on it. Nothing is ever downloaded: hub ids resolve from the local cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import torch
from veclink.encoders.latent_attention import LatentAttentionPooling, build_latent

from veclink.errors import InvalidArgument

NV_EMBED_PREFIX = "latent_attention_model."
# NV-Embed's module names -> LatentAttentionPooling's
_NV_EMBED_KEYS = {
    "latents": "latents",
    "cross_attend_blocks.0.norm.weight": "norm.weight",
    "cross_attend_blocks.0.norm.bias": "norm.bias",
    "cross_attend_blocks.0.norm_context.weight": "norm_context.weight",
    "cross_attend_blocks.0.norm_context.bias": "norm_context.bias",
    "cross_attend_blocks.0.fn.to_q.weight": "to_q.weight",
    "cross_attend_blocks.0.fn.to_kv.weight": "to_kv.weight",
    "cross_attend_blocks.0.fn.to_out.weight": "to_out.weight",
    "cross_attend_blocks.1.norm.weight": "ff_norm.weight",
    "cross_attend_blocks.1.norm.bias": "ff_norm.bias",
    "cross_attend_blocks.1.fn.net.0.weight": "ff_in.weight",
    "cross_attend_blocks.1.fn.net.0.bias": "ff_in.bias",
    "cross_attend_blocks.1.fn.net.2.weight": "ff_out.weight",
    "cross_attend_blocks.1.fn.net.2.bias": "ff_out.bias",
}
_MAX_ADAPTER_DEPTH = 8


@dataclasses.dataclass(frozen=True)
class DecoderLayout:
    """Where a decoder checkpoint's parts come from."""

    #: "plain", "llm2vec" or "nv-embed"
    name: str
    #: directory (or cached hub id) the decoder weights load from
    weights: str
    #: directory the tokenizer loads from
    tokenizer: str
    #: LoRA adapter directories that belong to the checkpoint, merged before the spec's own
    adapters: tuple[str, ...] = ()
    #: extra ``from_pretrained`` arguments (NV-Embed: the decoder config and a key mapping)
    load_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the checkpoint ships latent-attention pooling weights (NV-Embed)
    has_latent: bool = False


def local_dir(name: str, field: str, what: str = "model") -> str:
    """A directory, or a hub id resolved from the user's cache only (never downloaded)."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # not a repo id, or not cached: both mean "not found here"
        raise InvalidArgument(
            f"{what} {name!r} is neither a directory nor a hub id in the local cache",
            field=field,
        ) from exc


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _has_weights(directory: str) -> bool:
    return any(
        f.endswith((".safetensors", ".bin")) and not f.startswith("adapter_model")
        for f in os.listdir(directory)
    )


def resolve_layout(model: str, _depth: int = 0) -> DecoderLayout:
    """Recognise the layout of ``model`` (a directory or a cached hub id).

    A name that is neither a directory nor cached is passed on as is, so that the loader
    reports it as "cannot load model".
    """
    try:
        path = local_dir(model, "spec.model")
    except InvalidArgument:
        return DecoderLayout("plain", os.path.expanduser(model), os.path.expanduser(model))
    config = _read_json(os.path.join(path, "config.json")) or {}
    if config.get("model_type") == "nvembed":
        return _nv_embed_layout(path, config)
    adapter = _read_json(os.path.join(path, "adapter_config.json"))
    if adapter is not None and not _has_weights(path):
        base = adapter.get("base_model_name_or_path")
        if not base:
            raise InvalidArgument(
                f"{model!r} holds a LoRA adapter but names no base model "
                "(base_model_name_or_path); give the base as spec.model and this "
                "directory in spec.adapters",
                field="spec.model",
            )
        if _depth >= _MAX_ADAPTER_DEPTH:
            raise InvalidArgument(f"{model!r}: adapters name each other in a loop", "spec.model")
        try:
            local_dir(base, "spec.model")
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"{model!r} is a LoRA adapter over {base!r}, which is neither a directory nor "
                f"in the local cache: give the base model's directory as spec.model and "
                f"{model!r} first in spec.adapters",
                field="spec.model",
            ) from exc
        inner = resolve_layout(base, _depth + 1)
        has_tokenizer = any(f.startswith("tokenizer") for f in os.listdir(path))
        return dataclasses.replace(
            inner,
            name="llm2vec" if inner.name == "plain" else inner.name,
            tokenizer=path if has_tokenizer else inner.tokenizer,
            adapters=(*inner.adapters, path),
        )
    return DecoderLayout("plain", path, path)


def _nv_embed_layout(path: str, config: dict[str, Any]) -> DecoderLayout:
    from transformers import AutoConfig

    text = dict(config.get("text_config") or {})
    # NV-Embed names its decoder "bidir_mistral": a Mistral whose mask we make bidirectional
    model_type = re.sub(r"^bidir_", "", str(text.pop("model_type", "mistral")))
    try:
        decoder_config = AutoConfig.for_model(model_type, **text)
    except ValueError as exc:
        raise InvalidArgument(
            f"NV-Embed checkpoint {path!r}: unknown decoder type {model_type!r}",
            field="spec.model",
        ) from exc
    return DecoderLayout(
        "nv-embed",
        path,
        path,
        load_kwargs={"config": decoder_config, "key_mapping": {r"^embedding_model\.": ""}},
        has_latent=True,
    )


def load_nv_embed_latent(
    path: str, dim: int, *, dtype: torch.dtype = torch.float32, device: Any = "cpu"
) -> LatentAttentionPooling:
    """The latent-attention pooling stored in an NV-Embed checkpoint directory."""
    from safetensors import safe_open

    config = _read_json(os.path.join(path, "config.json")) or {}
    lat = config.get("latent_attention_config") or {}
    index = _read_json(os.path.join(path, "model.safetensors.index.json"))
    if index is not None:
        files = sorted({f for k, f in index["weight_map"].items() if k.startswith(NV_EMBED_PREFIX)})
    else:
        files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        with safe_open(os.path.join(path, name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith(NV_EMBED_PREFIX):
                    theirs = key[len(NV_EMBED_PREFIX) :]
                    if theirs not in _NV_EMBED_KEYS:
                        raise InvalidArgument(
                            f"NV-Embed checkpoint {path!r}: unexpected pooling weight {key!r}",
                            field="spec.model",
                        )
                    state[_NV_EMBED_KEYS[theirs]] = f.get_tensor(key)
    missing = sorted(set(_NV_EMBED_KEYS.values()) - set(state))
    if missing:
        raise InvalidArgument(
            f"NV-Embed checkpoint {path!r} lacks pooling weights: {', '.join(missing)}",
            field="spec.model",
        )
    state["heads"] = torch.tensor(int(lat.get("num_cross_heads", 8)))
    return build_latent(state, dim, dtype=dtype, device=device, src=path)
