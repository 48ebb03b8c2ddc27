"""The built-in encoder specs: frozen, JSON round-trip, importable without torch.

Each spec names its encoder class by import path; the registry imports that module (and
torch with it) only when ``load_encoder`` builds an encoder. So reading, validating and
printing a spec, as the CLI and the client do, never loads a model library.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from veclink.encoders.base import EncoderSpec, register_spec, spec_from_dict
from veclink.encoders.images import ImageLimits

from veclink.errors import InvalidArgument
from veclink.validation import DTYPES, Problems

#: model name prefixes of CLIP towers: open_clip configs or HF CLIP directories
CLIP_PREFIXES = ("open_clip:", "hf:")
HF_POOLINGS = ("mean", "cls")
#: how an hf-text model runs; all but ``torch`` run on the CPU (see ``hf_fast``)
HF_BACKENDS = ("torch", "bf16", "int8", "onnx", "onnx-int8", "auto")
CPU_BACKENDS = ("bf16", "int8", "onnx", "onnx-int8")
INT8_LAYERS = ("attention", "all")
LLM_POOLINGS = ("mean", "weighted_mean", "last_token", "bos", "latent_attention")
#: MoEE's prompt (PromptEOL)
PROMPT_EOL = 'This sentence : "{text}" means in one word:"'
MOE_OUTPUTS = ("hs", "rw", "moee")
#: which token(s) HS and RW are read at: the prompt's last token (MoEE), or the mean over
#: every token of the prompted text
MOE_POOLINGS = ("last_token", "mean")
ROUTER_ACTIVATIONS = ("auto", "logits", "softmax", "sigmoid")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HFTextSpec(EncoderSpec):
    """A Hugging Face encoder-only model with pooling (sentence-transformers style)."""

    kind = "hf-text"

    #: local HF directory, hub id (resolved from the user's cache only) or ``builtin:NAME``
    model: str = "builtin:all-MiniLM-L6-v2"
    #: ``mean`` over non-padding tokens, or the ``cls`` token
    pooling: str = "mean"
    #: L2-normalise outputs (cosine == inner product)
    normalize: bool = True
    #: longer inputs are truncated to this many tokens
    max_length: int = 256
    #: prepended to queries / documents before tokenizing (e.g. E5's ``"query: "``)
    query_prefix: str = ""
    document_prefix: str = ""
    #: most inputs per forward pass
    batch_size: int = 32
    #: most padded tokens (rows x longest row) per forward pass; 0: only batch_size limits
    batch_tokens: int = 0
    #: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present, else the CPU; with a
    #: CPU fast path as ``backend``, the CPU)
    device: str = "auto"
    #: ``fp32``, ``fp16`` or ``bf16``
    dtype: str = "fp32"
    #: ``torch`` (the model as loaded), ``bf16`` (torch, a bfloat16 copy: fast on CPUs with
    #: bf16 matrix units such as AMX, can be slow elsewhere), ``int8`` (torch, int8 weights
    #: in the layers that ``int8_layers`` names), ``onnx`` / ``onnx-int8`` (ONNX Runtime
    #: with fp32 weights / int8 in those layers; extra ``fast``), or ``auto``: of torch and
    #: the fast paths that are installed and give cosine >= 0.99 to the torch vectors on
    #: every probe text, the fastest on this machine (timed once, the decision kept in the
    #: cache directory). The fast paths run on the CPU only; ``auto`` on a GPU runs torch in
    #: fp16 when ``dtype`` is fp32 (cosine >= 0.999 to fp32 on MiniLM), else in ``dtype``.
    backend: str = "torch"
    #: the int8 backends' layers: ``attention`` (the square hidden x hidden projections;
    #: the feed-forward layers stay fp32, their outlier activations do not survive int8)
    #: or ``all`` Linear layers (faster, but cosine ~0.9 to fp32 on MiniLM)
    int8_layers: str = "attention"

    def validate(self) -> list[str]:
        p = _model_problems(self, min_length=1)
        p.choice("spec.pooling", self.pooling, HF_POOLINGS)
        p.integer("spec.batch_tokens", self.batch_tokens, ge=0)
        p.choice("spec.int8_layers", self.int8_layers, INT8_LAYERS)
        if p.choice("spec.backend", self.backend, HF_BACKENDS) and self.backend in CPU_BACKENDS:
            if self.dtype != "fp32":
                p.add("spec.backend", f"{self.backend!r} needs dtype fp32")
            if self.device.startswith("cuda"):
                p.add("spec.backend", f"{self.backend!r} runs on the CPU only")
        return p.items


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageInputSpec(EncoderSpec):
    """What every encoder of images (CLIP, LLM2CLIP) takes: bounds on an image and the
    threads that decode a batch."""

    #: largest encoded image accepted (bytes) -> RESOURCE_EXHAUSTED beyond
    max_image_bytes: int = 20 * 1024 * 1024
    #: largest decoded image accepted (width * height) -> RESOURCE_EXHAUSTED beyond
    max_image_pixels: int = 40_000_000
    #: threads decoding + transforming a batch's images in ``preprocess`` (1 = inline)
    decode_threads: int = 4

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def _image_problems(self, p: Problems) -> None:
        p.integer("spec.max_image_bytes", self.max_image_bytes, ge=1)
        p.integer("spec.max_image_pixels", self.max_image_pixels, ge=1)
        p.integer("spec.decode_threads", self.decode_threads, ge=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClipSpec(ImageInputSpec):
    """A CLIP model (open_clip or HF) encoding images (bytes) and texts into one space."""

    kind = "clip"

    #: ``open_clip:NAME`` (built-in or registered config) or ``hf:DIR`` (HF CLIP directory)
    model: str = "open_clip:ViT-B-32"
    #: open_clip weights: a checkpoint path or a tag from the user's cache; None = random
    pretrained: str | None = None
    #: seed of random weights, so that a spec always names the same model
    seed: int = 0
    batch_size: int = 32
    #: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``
    device: str = "cpu"
    #: ``fp32``, ``fp16`` or ``bf16``
    dtype: str = "fp32"

    def validate(self) -> list[str]:
        p = _run_problems(self)
        if not self.model.startswith(CLIP_PREFIXES):
            p.add("spec.model", f"must start with one of {', '.join(CLIP_PREFIXES)}")
        self._image_problems(p)
        return p.items


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
        p = _model_problems(self, min_length=4)
        p.choice("spec.pooling", self.pooling, LLM_POOLINGS)
        p.integer("spec.latents", self.latents, ge=1)
        if self.template.count("{text}") != 1:
            p.add("spec.template", "must contain {text} exactly once")
        return p.items


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoERouterSpec(EncoderSpec):
    """A mixture-of-experts LLM used through its routers (MoEE)."""

    kind = "moe-router"

    #: local HF directory or hub id (from the user's cache; never downloaded)
    model: str
    #: hs (hidden state), rw (routing weights) or moee (both, weighted by alpha)
    output: str = "moee"
    #: weight of the RW similarity in MoEE: <x, y> = cos(HS) + alpha * cos(RW)
    alpha: float = 1.0
    #: ``{text}`` is replaced by the input
    prompt: str = PROMPT_EOL
    #: last_token (MoEE; with PromptEOL the token that must "say" the meaning) or mean
    pooling: str = "last_token"
    #: auto picks per architecture (see ``moe_router.AUTO_ACTIVATION``; softmax otherwise)
    router_activation: str = "auto"
    #: optional .npz with fixed RW ``mean`` and ``std`` (see estimate_rw_stats)
    rw_stats: str = ""
    adapters: tuple[str, ...] = ()
    max_length: int = 512
    batch_size: int = 8
    dtype: str = "fp32"
    device: str = "cpu"

    def validate(self) -> list[str]:
        p = _model_problems(self, min_length=4)
        p.choice("spec.output", self.output, MOE_OUTPUTS)
        p.number("spec.alpha", self.alpha, ge=0)
        if "{text}" not in self.prompt:
            p.add("spec.prompt", "must contain {text}")
        p.choice("spec.pooling", self.pooling, MOE_POOLINGS)
        p.choice("spec.router_activation", self.router_activation, ROUTER_ACTIVATIONS)
        return p.items


@dataclasses.dataclass(frozen=True, kw_only=True)
class LLM2CLIPSpec(ImageInputSpec):
    """An LLM text encoder + adapter and a CLIP vision tower sharing one space."""

    kind = "llm2clip"

    #: spec (JSON dict) of the LLM text encoder; None = the one recorded in the checkpoint
    text_encoder: dict[str, Any] | None = None
    #: ``open_clip:NAME`` or ``hf:DIR``; empty = from the checkpoint
    vision: str = ""
    #: open_clip vision weights (path or tag); None = random (or the checkpoint's)
    pretrained: str | None = None
    #: a stage-2 directory (llm2clip.json + weights), a published LLM2CLIP HF directory, or
    #: a weights file in a published layout; None = fresh adapter
    checkpoint: str | None = None
    #: fresh adapter shape (ignored when the checkpoint holds an adapter)
    adapter_layers: int = 4
    adapter_expansion: float = 2.0
    #: seed of a fresh adapter's and of a random vision tower's initialisation
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "fp32"

    def __hash__(self) -> int:
        # the nested text_encoder dict is not hashable; the canonical JSON is
        return hash(self.to_json())

    def validate(self) -> list[str]:
        p = _run_problems(self)
        if self.checkpoint is None and not (self.vision and self.text_encoder):
            p.add("spec.vision and spec.text_encoder", "required without spec.checkpoint")
        if self.vision and not self.vision.startswith(CLIP_PREFIXES):
            p.add("spec.vision", f"must start with one of {', '.join(CLIP_PREFIXES)}")
        if self.text_encoder is not None:
            if self.text_encoder.get("kind") in ("clip", "llm2clip"):
                p.add("spec.text_encoder", "must be a text encoder")
            else:
                try:
                    spec_from_dict(self.text_encoder)
                except InvalidArgument as exc:
                    p.add("spec.text_encoder", str(exc))
        p.integer("spec.adapter_layers", self.adapter_layers, ge=0)
        p.number("spec.adapter_expansion", self.adapter_expansion, gt=0)
        self._image_problems(p)
        return p.items


def _run_problems(spec: Any) -> Problems:
    """The checks every model spec shares: batch size, dtype and device."""
    p = Problems()
    p.integer("spec.batch_size", spec.batch_size, ge=1)
    p.choice("spec.dtype", spec.dtype, DTYPES)
    p.device("spec.device", spec.device)
    return p


def _model_problems(spec: Any, *, min_length: int) -> Problems:
    """`_run_problems` plus a required ``model`` and a ``max_length`` of tokens."""
    p = _run_problems(spec)
    p.required("spec.model", spec.model)
    p.integer("spec.max_length", spec.max_length, ge=min_length)
    return p


register_spec(HFTextSpec, "veclink.encoders.hf_text:HFTextEncoder")
register_spec(ClipSpec, "veclink.encoders.clip:ClipImageEncoder")
register_spec(LLMTextSpec, "veclink.encoders.llm_text:LLMTextEncoder")
register_spec(MoERouterSpec, "veclink.encoders.moe_router:MoERouterEncoder")
register_spec(LLM2CLIPSpec, "veclink.encoders.llm2clip:LLM2CLIPEncoder")
