"""Encoders: text, image and MoE-router models behind one `Encoder` contract."""

from __future__ import annotations

from veclink.encoders.base import (
    Encoder,
    EncoderSpec,
    load_encoder,
    register_encoder,
    registered_kinds,
    spec_from_dict,
    spec_from_json,
)
from veclink.encoders.clip import ClipImageEncoder, ClipSpec
from veclink.encoders.hf_text import HFTextEncoder, HFTextSpec
from veclink.encoders.llm2clip import LLM2CLIPEncoder, LLM2CLIPSpec
from veclink.encoders.llm_text import LLMTextEncoder, LLMTextSpec
from veclink.encoders.moe_router import MoERouterEncoder, MoERouterSpec

DEFAULT_SPEC = HFTextSpec()

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
    "registered_kinds",
    "spec_from_dict",
    "spec_from_json",
]
