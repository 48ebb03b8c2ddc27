"""Encoders: text, image and MoE-router models behind one `Encoder` contract.

Importing this package loads the contract, the registry and the built-in specs only; an
encoder class (and torch with it) is imported when it is first used: by
``load_encoder``, or by naming it here (``veclink.encoders.HFTextEncoder``).
"""

from __future__ import annotations

import importlib
from typing import Any

from veclink.encoders.base import (
    Encoder,
    EncoderSpec,
    load_encoder,
    register_encoder,
    register_spec,
    registered_kinds,
    spec_from_dict,
    spec_from_json,
)
from veclink.encoders.specs import ClipSpec, HFTextSpec, LLM2CLIPSpec, LLMTextSpec, MoERouterSpec

DEFAULT_SPEC = HFTextSpec()

#: encoder classes, imported on first access (they import torch)
_LAZY = {
    "ClipImageEncoder": "veclink.encoders.clip",
    "HFTextEncoder": "veclink.encoders.hf_text",
    "LLM2CLIPEncoder": "veclink.encoders.llm2clip",
    "LLMTextEncoder": "veclink.encoders.llm_text",
    "MoERouterEncoder": "veclink.encoders.moe_router",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ClipImageEncoder",
    "ClipSpec",
    "DEFAULT_SPEC",
    "Encoder",
    "EncoderSpec",
    "HFTextEncoder",
    "HFTextSpec",
    "LLM2CLIPEncoder",
    "LLM2CLIPSpec",
    "LLMTextEncoder",
    "LLMTextSpec",
    "MoERouterEncoder",
    "MoERouterSpec",
    "load_encoder",
    "register_encoder",
    "register_spec",
    "registered_kinds",
    "spec_from_dict",
    "spec_from_json",
]
