"""CLIP towers behind one small interface: open_clip models and Hugging Face CLIP models.

``ClipTowers`` hides where a CLIP model comes from. Model names:

- ``open_clip:NAME``: an open_clip architecture (built in, or registered with
  ``open_clip.add_model_config``), including timm towers such as ``EVA02-L-14-336``;
  ``pretrained`` = a checkpoint path or an open_clip tag resolved from the user's cache;
  ``None`` = random weights;
- ``hf:DIR``: a Hugging Face ``CLIPModel`` directory (both towers) or a
  ``CLIPVisionModelWithProjection`` directory (images only).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from veclink.encoders.specs import CLIP_PREFIXES as PREFIXES

from veclink._optional import require
from veclink.errors import InvalidArgument

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipTowers:
    """A vision tower with its projection and, optionally, a text tower.

    Attributes:
        module: the whole torch model (for ``.to``/``.eval``/parameters).
        embed_dim: dimension of the shared image/text space.
        has_text: whether ``tokenize``/``encode_texts`` are available.
        image_transform: PIL RGB image -> float tensor ``(3, H, W)``.
    """

    module: nn.Module
    embed_dim: int
    has_text: bool
    image_transform: Callable[[Any], torch.Tensor]

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected (unnormalised) image embeddings ``(n, embed_dim)``."""
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_texts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def vision_trainable(self, unlocked_blocks: int) -> list[nn.Parameter]:
        """Parameters of the projection plus the last ``unlocked_blocks`` vision blocks."""
        raise NotImplementedError

    def vision_state_dict(self) -> dict[str, torch.Tensor]:
        """Vision weights named as in the published checkpoints (``visual.*`` for open_clip,
        ``vision_model.*`` + ``visual_projection.*`` for HF)."""
        raise NotImplementedError

    def load_vision_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def drop_text(self) -> None:
        """Free the text tower (LLM2CLIP replaces it with an LLM + adapter)."""
        for name in self._text_parts:
            if hasattr(self.module, name):
                setattr(self.module, name, None)
        self.has_text = False

    #: attributes of ``module`` that belong to the text tower
    _text_parts: tuple[str, ...] = ()


class OpenClipTowers(ClipTowers):
    _text_parts = (
        "transformer",
        "token_embedding",
        "positional_embedding",
        "ln_final",
        "text_projection",
        "text",
    )

    def __init__(self, name: str, pretrained: str | None) -> None:
        open_clip = require("open_clip", "clip")
        if name not in open_clip.list_models():
            raise InvalidArgument(
                f"unknown open_clip model {name!r}; register its config with "
                "open_clip.add_model_config or use one of open_clip.list_models()",
                field="spec.model",
            )
        kwargs: dict[str, Any] = {}
        if pretrained and not os.path.exists(os.path.expanduser(pretrained)):
            pretrained, kwargs = _cached_open_clip_weights(open_clip, name, pretrained)
        elif pretrained:
            pretrained = os.path.expanduser(pretrained)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, **kwargs
            )
        except (RuntimeError, OSError, ValueError) as exc:
            raise InvalidArgument(
                f"cannot load open_clip weights {pretrained!r} for {name!r}: {exc}",
                field="spec.pretrained",
            ) from exc
        self.module = model
        self.image_transform = preprocess
        self.embed_dim = int(open_clip.get_model_config(name)["embed_dim"])
        self.has_text = hasattr(model, "encode_text")
        self._tokenizer = open_clip.get_tokenizer(name)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self._tokenizer(list(texts))}

    def encode_texts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.encode_text(tokens["input_ids"])

    def vision_trainable(self, unlocked_blocks: int) -> list[nn.Parameter]:
        visual = self.module.visual
        trunk = getattr(visual, "trunk", None)
        if trunk is not None:
            # a timm tower (EVA02...): the projection is open_clip's head or timm's classifier
            params = [*visual.head.parameters(), *trunk.get_classifier().parameters()]
            blocks = getattr(trunk, "blocks", None)
            final_norms = [getattr(trunk, n, None) for n in ("norm", "fc_norm")]
        else:
            params = [visual.proj] if getattr(visual, "proj", None) is not None else []
            blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
            final_norms = [getattr(visual, "ln_post", None)]
        if unlocked_blocks > 0:
            if blocks is None:
                raise InvalidArgument(
                    "unlocking vision blocks needs a ViT vision tower", field="unlock_vision_blocks"
                )
            for block in list(blocks)[-unlocked_blocks:]:
                params += list(block.parameters())
            for norm in final_norms:
                if isinstance(norm, nn.Module):
                    params += list(norm.parameters())
        return params

    def vision_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"visual.{k}": v for k, v in self.module.visual.state_dict().items()}

    def load_vision_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        visual = self.module.visual
        own = _strip(state, "visual.")
        trunk = getattr(visual, "trunk", None)
        if trunk is not None and own and not any(k.startswith("trunk.") for k in own):
            own = _timm_native_to_open_clip(trunk, own)
        _load_strict(visual, own, "visual.")


class HFClipTowers(ClipTowers):
    _text_parts = ("text_model", "text_projection")

    def __init__(self, directory: str) -> None:
        from transformers import CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

        directory = os.path.expanduser(directory)
        config = _read_config(directory)
        if (
            "text_config" in config
            and "vision_config" in config
            and config.get("model_type") == "clip"
            # LLM2CLIP's HF directories say "clip" but hold no text tower: vision only
            and any(k.startswith("text_model.") for k in _weight_names(directory))
        ):
            try:
                self.module = CLIPModel.from_pretrained(directory)
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot load HF CLIP {directory!r}: {exc}", field="spec.model"
                ) from exc
            self.has_text = True
        else:
            # a vision-only CLIP, or a checkpoint (e.g. LLM2CLIP's) whose config carries a
            # CLIP vision_config: build the vision tower natively, no remote code
            vision = dict(config.get("vision_config", config))
            vision = {k: v for k, v in vision.items() if k not in ("model_type", "architectures")}
            projection_dim = config.get("projection_dim", vision.get("projection_dim", 512))
            vision["projection_dim"] = projection_dim
            try:
                self.module = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise InvalidArgument(
                    f"{directory!r}: its vision_config is not a CLIP vision tower ({exc})",
                    field="spec.model",
                ) from exc
            self.has_text = False
            self.load_vision_state_dict(read_state_dict(directory))
        vcfg = self.module.config.vision_config if self.has_text else self.module.config
        self.embed_dim = int(getattr(self.module.config, "projection_dim", vcfg.projection_dim))
        self.image_transform = _hf_image_transform(directory, int(vcfg.image_size))
        self._tokenizer: Any = None
        if self.has_text:
            self._tokenizer = _hf_tokenizer(directory)
            self._context = int(self.module.config.text_config.max_position_embeddings)

    def _vision(self) -> tuple[nn.Module, nn.Module]:
        return self.module.vision_model, self.module.visual_projection

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vision, projection = self._vision()
        return projection(vision(pixel_values=pixels).pooler_output)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self._tokenizer is not None:
            out = self._tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self._context,
                return_tensors="pt",
            )
            return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}
        # no tokenizer saved with the model: CLIP's BPE from open_clip (same vocabulary)
        open_clip = require("open_clip", "clip")
        ids = open_clip.tokenizer.SimpleTokenizer(context_length=self._context)(list(texts))
        eot = ids.argmax(dim=-1, keepdim=True)
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return {"input_ids": ids, "attention_mask": (positions <= eot).long()}

    def encode_texts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.module.text_model(**tokens)
        return self.module.text_projection(out.pooler_output)

    def vision_trainable(self, unlocked_blocks: int) -> list[nn.Parameter]:
        vision, projection = self._vision()
        params = list(projection.parameters())
        if unlocked_blocks > 0:
            for layer in list(vision.encoder.layers)[-unlocked_blocks:]:
                params += list(layer.parameters())
            params += list(vision.post_layernorm.parameters())
        return params

    def vision_state_dict(self) -> dict[str, torch.Tensor]:
        vision, projection = self._vision()
        out = {f"vision_model.{k}": v for k, v in vision.state_dict().items()}
        out.update({f"visual_projection.{k}": v for k, v in projection.state_dict().items()})
        return out

    def load_vision_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        vision, projection = self._vision()
        _load_strict(vision, _strip(state, "vision_model."), "vision_model.")
        _load_strict(projection, _strip(state, "visual_projection."), "visual_projection.")


def load_towers(model: str, pretrained: str | None = None) -> ClipTowers:
    """Build the towers that ``model`` names (``open_clip:NAME`` or ``hf:DIR``)."""
    if model.startswith("open_clip:"):
        return OpenClipTowers(model[len("open_clip:") :], pretrained)
    if model.startswith("hf:"):
        if pretrained:
            raise InvalidArgument(
                "spec.pretrained is for open_clip models; hf: directories carry their weights",
                field="spec.pretrained",
            )
        return HFClipTowers(model[len("hf:") :])
    raise InvalidArgument(
        f"model must start with one of {', '.join(PREFIXES)}; got {model!r}", field="spec.model"
    )


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, or of every ``*.safetensors`` (else ``*.bin``) in a dir."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        files = [n for n in names if n.endswith(".safetensors")] or [
            n for n in names if n.endswith((".bin", ".pt", ".pth"))
        ]
        state: dict[str, torch.Tensor] = {}
        for name in files:
            state.update(read_state_dict(os.path.join(path, name)))
        return state
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise InvalidArgument(
            f"cannot read weights {path!r}: {exc}", field="spec.checkpoint"
        ) from exc
    # training checkpoints often wrap the weights
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _weight_names(directory: str) -> list[str]:
    """Tensor names of an HF directory's weights, read from headers (no tensor is loaded)."""
    index = [n for n in os.listdir(directory) if n.endswith(".index.json")]
    if index:
        with open(os.path.join(directory, index[0])) as fh:
            return list(json.load(fh).get("weight_map", {}))
    names = sorted(os.listdir(directory))
    tensors = [n for n in names if n.endswith(".safetensors")]
    if tensors:
        from safetensors import safe_open

        out: list[str] = []
        for name in tensors:
            with safe_open(os.path.join(directory, name), framework="pt") as fh:
                out += list(fh.keys())
        return out
    # pickled weights: their names need the file itself (memory-mapped, not read)
    out = []
    for name in (n for n in names if n.endswith(".bin")):
        state = torch.load(
            os.path.join(directory, name), map_location="cpu", weights_only=True, mmap=True
        )
        out += list(state)
    return out


def _cached_open_clip_weights(open_clip: Any, name: str, tag: str) -> tuple[str, dict[str, Any]]:
    """The local file of an open_clip pretrained tag, from the user's cache only.

    Returns the path plus the tag's model/preprocessing options (QuickGELU, mean/std),
    which open_clip applies only when it resolves a tag itself.
    """
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise InvalidArgument(
            f"pretrained {tag!r} is neither a file nor an open_clip tag of {name!r} "
            f"(tags: {', '.join(tags) or 'none'})",
            field="spec.pretrained",
        )
    candidates = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        # "org/model/" means the default file name, "org/model/file.bin" names it
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        for f in (filename.replace(".bin", ".safetensors"), filename):
            found = try_to_load_from_cache(repo, f)
            if isinstance(found, str):
                candidates.append(found)
    if cfg.get("url"):
        candidates.append(os.path.expanduser(f"~/.cache/clip/{os.path.basename(cfg['url'])}"))
    local = next((c for c in candidates if os.path.exists(c)), None)
    if local is None:
        raise InvalidArgument(
            f"weights of open_clip:{name} tag {tag!r} are not in the local cache; weights are "
            "never downloaded at run time: fetch them first, or give a checkpoint path",
            field="spec.pretrained",
        )
    kwargs: dict[str, Any] = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
    if cfg.get("mean") and cfg.get("std"):
        kwargs.update(image_mean=tuple(cfg["mean"]), image_std=tuple(cfg["std"]))
    return local, kwargs


def _read_config(directory: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, "config.json")) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(
            f"{directory!r} is not a Hugging Face model directory: {exc}", field="spec.model"
        ) from exc


def _hf_image_transform(directory: str, size: int) -> Callable[[Any], torch.Tensor]:
    from torchvision import transforms

    mean, std = OPENAI_MEAN, OPENAI_STD
    path = os.path.join(directory, "preprocessor_config.json")
    if os.path.exists(path):
        with open(path) as fh:
            cfg = json.load(fh)
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def _hf_tokenizer(directory: str) -> Any:
    if not any(
        os.path.exists(os.path.join(directory, n)) for n in ("tokenizer.json", "vocab.json")
    ):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def _timm_native_to_open_clip(
    trunk: nn.Module, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Vision weights in their native layout (e.g. EVA-CLIP's ``visual.blocks.N.attn.q_bias``,
    ``mlp.w1``, ``head``, as in LLM2CLIP's EVA02 checkpoints) renamed for open_clip's timm
    trunk (``trunk.blocks.N.attn.q_proj.bias``, ``mlp.fc1_g``, ``trunk.head``).

    The renaming is timm's own ``checkpoint_filter_fn`` of the trunk's architecture, the
    one timm uses to import those checkpoints; rotary-embedding buffers are dropped there
    (recomputed at build time).
    """
    module = importlib.import_module(type(trunk).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is None:
        return {f"trunk.{k}": v for k, v in state.items()}
    try:
        converted = convert(dict(state), trunk)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(
            f"checkpoint does not match the {type(trunk).__name__} vision tower: {exc}",
            field="spec.checkpoint",
        ) from exc
    return {f"trunk.{k}": v for k, v in converted.items()}


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    # buffers such as HF position_ids may be absent from older checkpoints
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise InvalidArgument(
            "checkpoint does not match the vision tower: "
            f"missing {[prefix + k for k in missing[:5]]}, "
            f"unexpected {[prefix + k for k in unexpected[:5]]}",
            field="spec.checkpoint",
        )
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InvalidArgument(
            f"checkpoint does not match the vision tower: {exc}", field="spec.checkpoint"
        ) from exc
