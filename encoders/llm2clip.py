"""LLM2CLIP (kind ``llm2clip``): a CLIP vision tower in the space of an LLM text encoder.

Texts: LLM text encoder (any text ``Encoder``, usually kind ``llm-text``) -> L2-normalised
embedding -> ``TextAdapter`` (residual MLP blocks -> LayerNorm -> Linear). Images: CLIP
vision tower -> projection. Both sides are L2-normalised into one space::

    load_encoder({"kind": "llm2clip",
                  "text_encoder": {"kind": "llm-text", "model": "/models/llm2clip-llama3-cc",
                                   "pooling": "mean", "dtype": "bf16", "device": "cuda"},
                  "checkpoint": "/models/LLM2CLIP-Openai-L-14-336", "device": "cuda"})
    # the EVA02 release is one .pt file: name its tower
    load_encoder({"kind": "llm2clip", "text_encoder": {...}, "device": "cuda",
                  "vision": "open_clip:EVA02-L-14-336",
                  "checkpoint": "/models/LLM2CLIP-EVA02-L-14-336.pt"})

Checkpoints load natively (no remote code) from the published weight layouts:

- EVA/open_clip training layout: ``visual.*``, ``text.text_adaptor.N...``, ``logit_scale``.
  ``visual.*`` is an open_clip ViT (OpenAI/LAION towers) or, for the EVA02 checkpoints,
  EVA-CLIP's native names, mapped onto open_clip's timm tower (``"vision":
  "open_clip:EVA02-L-14-336"``) by timm's own converter;
- Hugging Face layout: ``vision_model.*`` + ``visual_projection.weight`` (CLIP vision
  tower, built from the ``vision_config`` in ``config.json``) and ``*.adaptor.N...``.
  (The HF-format EVA02 release needs its remote code for an EVA tower in HF names; it is
  refused with the names that do not match: use the EVA-CLIP ``.pt`` of that release.)

Adapter block ``N`` is named ``N.ln`` (pre-norm), ``N.fn.0`` (up) and ``N.fn.3`` (down);
after the ``L`` blocks, ``L`` is the final LayerNorm and ``L+1`` the output Linear.
``save_checkpoint`` writes the training layout plus ``llm2clip.json``, so stage-2
checkpoints reload through ``load_encoder`` with the same mapping.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import torch
from torch import nn
from veclink.encoders.base import (
    Modality,
    Role,
    load_encoder,
)
from veclink.encoders.clip import VisionTowerEncoder, seeded_towers
from veclink.encoders.clip_towers import read_state_dict
from veclink.encoders.specs import LLM2CLIPSpec

from veclink.errors import InvalidArgument

CONFIG_FILE = "llm2clip.json"
WEIGHTS_FILE = "model.safetensors"
ADAPTER_PREFIX = "text.text_adaptor."


class ResidualMLPBlock(nn.Module):
    """``x + down(gelu(up(norm(x))))``."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(expansion * dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class TextAdapter(nn.Module):
    """Maps an LLM text embedding into the CLIP space (LLM2CLIP's text adaptor)."""

    def __init__(self, in_dim: int, out_dim: int, *, layers: int = 4, expansion: float = 2.0):
        super().__init__()
        self.blocks = nn.ModuleList(ResidualMLPBlock(in_dim, expansion) for _ in range(layers))
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, llm_embedding: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(llm_embedding, dim=-1)
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x))


# ------------------------------------------------------------- published weight layout

_BLOCK_PARTS = {"ln": "norm", "fn.0": "up", "fn.3": "down"}
_BLOCK_KEY = re.compile(r"^(\d+)\.(ln|fn\.0|fn\.3)\.(weight|bias)$")
_TAIL_KEY = re.compile(r"^(\d+)\.(weight|bias)$")


def adapter_from_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The adapter weights of a published checkpoint, renamed for ``TextAdapter``.

    Returns None when the checkpoint holds no adapter (keys containing ``adaptor.``).
    """
    published = {}
    for key, value in state.items():
        at = key.find("adaptor.")
        if at >= 0:
            published[key[at + len("adaptor.") :]] = value
    if not published:
        return None
    blocks = {int(m.group(1)) for k in published if (m := _BLOCK_KEY.match(k))}
    layers = len(blocks)
    out = {}
    for key, value in published.items():
        if m := _BLOCK_KEY.match(key):
            out[f"blocks.{m.group(1)}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"] = value
        elif (m := _TAIL_KEY.match(key)) and int(m.group(1)) in (layers, layers + 1):
            part = "norm" if int(m.group(1)) == layers else "proj"
            out[f"{part}.{m.group(2)}"] = value
        else:
            raise InvalidArgument(
                f"unrecognised adapter weight {key!r} in checkpoint", field="spec.checkpoint"
            )
    return out


def adapter_to_published(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """``TextAdapter`` weights named as in the EVA/open_clip training layout."""
    parts = {v: k for k, v in _BLOCK_PARTS.items()}
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if key.startswith("blocks."):
            _, index, part = head.split(".")
            out[f"{ADAPTER_PREFIX}{index}.{parts[part]}.{leaf}"] = value
        else:
            index = layers if head == "norm" else layers + 1
            out[f"{ADAPTER_PREFIX}{index}.{leaf}"] = value
    return out


def adapter_shape(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``TextAdapter`` constructor arguments implied by (renamed) adapter weights."""
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    in_dim = int(state["proj.weight"].shape[1])
    expansion = float(state["blocks.0.up.weight"].shape[0]) / in_dim if layers else 2.0
    return {
        "in_dim": in_dim,
        "out_dim": int(state["proj.weight"].shape[0]),
        "layers": layers,
        "expansion": expansion,
    }


# -------------------------------------------------------------------------- the encoder


def _resolve(spec: LLM2CLIPSpec) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Vision name, text encoder spec and checkpoint weights, spec values first."""
    vision, text, state = spec.vision, spec.text_encoder, {}
    if spec.checkpoint:
        path = os.path.expanduser(spec.checkpoint)
        if not os.path.exists(path):
            raise InvalidArgument(f"checkpoint {path!r} does not exist", field="spec.checkpoint")
        recorded = {}
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            with open(os.path.join(path, CONFIG_FILE)) as fh:
                recorded = json.load(fh)
        elif os.path.isfile(os.path.join(path, "config.json")):
            recorded = {"vision": f"hf:{path}"}  # a published HF LLM2CLIP directory
        vision = vision or recorded.get("vision", "")
        text = text or recorded.get("text_encoder")
        state = read_state_dict(path)
    missing = [n for n, v in (("spec.vision", vision), ("spec.text_encoder", text)) if not v]
    if missing:
        raise InvalidArgument(
            f"{' and '.join(missing)}: required (not recorded in the checkpoint)", field="spec"
        )
    return vision, dict(text), state


class LLM2CLIPEncoder(VisionTowerEncoder):
    """LLM2CLIP: texts through LLM encoder + adapter, images (bytes) through CLIP vision."""

    def __init__(self, spec: LLM2CLIPSpec) -> None:
        self._init_run(spec)
        self.vision, self.text_spec, state = _resolve(spec)
        self.towers = seeded_towers(self.vision, spec.pretrained, spec.seed)
        self.towers.drop_text()
        self.text_encoder = load_encoder(self.text_spec)
        if self.text_encoder.modality != "text":
            raise InvalidArgument("spec.text_encoder: must be a text encoder", field="spec")
        if any(k.startswith(("visual.", "vision_model.")) for k in state):
            self.towers.load_vision_state_dict(state)
        adapter_state = adapter_from_published(state)
        if adapter_state is not None:
            shape = adapter_shape(adapter_state)
        else:
            shape = {
                "in_dim": self.text_encoder.dim,
                "out_dim": self.towers.embed_dim,
                "layers": spec.adapter_layers,
                "expansion": spec.adapter_expansion,
            }
        if (shape["in_dim"], shape["out_dim"]) != (self.text_encoder.dim, self.towers.embed_dim):
            raise InvalidArgument(
                f"adapter maps {shape['in_dim']} -> {shape['out_dim']} but the text encoder has "
                f"dim {self.text_encoder.dim} and the vision tower {self.towers.embed_dim}",
                field="spec.checkpoint",
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            self.adapter = TextAdapter(
                shape["in_dim"],
                shape["out_dim"],
                layers=shape["layers"],
                expansion=shape["expansion"],
            )
        if adapter_state is not None:
            self.adapter.load_state_dict(adapter_state)
        scale = state.get("logit_scale")
        init = scale.detach().float().reshape(()) if scale is not None else math.log(1 / 0.07)
        # frozen for inference; veclink.training.clip unfreezes what it trains
        self.logit_scale = nn.Parameter(torch.as_tensor(init), requires_grad=False)
        self.adapter.requires_grad_(False)
        self.towers.module.eval().to(self.device, self.dtype)
        self.adapter.eval().to(self.device, self.dtype)

    @property
    def modality(self) -> Modality:
        return "multimodal"

    def preprocess_texts(self, texts: list[str], role: Role) -> Any:
        return self.text_encoder.preprocess(texts, role)

    def forward_texts(self, texts: Any) -> torch.Tensor:
        llm = self.text_encoder.postprocess(self.text_encoder.forward(texts), texts)
        return self.adapt(torch.from_numpy(llm))

    def adapt(self, llm_embeddings: torch.Tensor) -> torch.Tensor:
        """Adapter output (unnormalised) for LLM text embeddings ``(n, text_dim)``."""
        return self.adapter(llm_embeddings.to(self.device, self.dtype))

    def save_checkpoint(self, directory: str) -> str:
        """Write ``llm2clip.json`` + weights (training layout); returns ``directory``."""
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        state = dict(self.towers.vision_state_dict())
        adapter = {k: v for k, v in self.adapter.state_dict().items()}
        state.update(adapter_to_published(adapter, len(self.adapter.blocks)))
        state["logit_scale"] = self.logit_scale.detach().reshape(())
        state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
        save_file(state, os.path.join(directory, WEIGHTS_FILE))
        with open(os.path.join(directory, CONFIG_FILE), "w") as fh:
            json.dump({"vision": self.vision, "text_encoder": self.text_spec}, fh, indent=2)
        return directory
