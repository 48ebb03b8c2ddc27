"""CLIP encoders (kind ``clip``): images and texts in one space, open_clip or HF CLIP.

Images arrive as encoded bytes (PNG, JPEG, WebP) and are decoded, limit-checked and
transformed in the CPU stage; texts go through CLIP's own text tower::

    enc = load_encoder({"kind": "clip", "model": "open_clip:ViT-B-32", "pretrained": None})
    vecs = enc.encode([png_bytes, "a photo of a dog"])   # one space, cosine = inner product
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder, Modality, Role
from veclink.encoders.clip_towers import ClipTowers, load_towers
from veclink.encoders.images import ImageLimits, decode_image, open_image
from veclink.encoders.specs import ClipSpec, ImageInputSpec
from veclink.encoders.torch_utils import resolve_device, resolve_dtype

from veclink.errors import InvalidArgument


@dataclasses.dataclass
class MixedBatch:
    """A preprocessed batch holding images and/or texts, with their rows in the batch."""

    #: number of inputs in the batch
    size: int
    image_rows: list[int]
    #: ``(len(image_rows), 3, H, W)`` or None
    pixels: torch.Tensor | None
    text_rows: list[int]
    #: tower-specific text batch (token ids, or a text encoder's own batch)
    texts: Any


def split_inputs(inputs: Sequence[str | bytes]) -> tuple[list[int], list[int]]:
    """Row indices of the images (bytes) and of the texts (str) in ``inputs``."""
    images = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    texts = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    return images, texts


def image_pixels(
    towers: ClipTowers,
    inputs: Sequence[str | bytes],
    rows: list[int],
    limits: ImageLimits,
    pool: ThreadPoolExecutor | None = None,
) -> torch.Tensor | None:
    """Decode and transform the images at ``rows`` (CPU stage), on ``pool``'s threads when
    given (PIL decodes and resizes without holding the GIL)."""
    if not rows:
        return None

    def one(r: int) -> torch.Tensor:
        try:
            return towers.image_transform(decode_image(inputs[r], r, limits))
        except InvalidArgument as exc:
            # r is the row in this batch; encode() maps it back to the request's position
            raise BadImage(exc.message, field=exc.field, data=inputs[r]) from exc

    if pool is not None and len(rows) > 1:
        return torch.stack(list(pool.map(one, rows)))  # in order; the first error is raised
    return torch.stack([one(r) for r in rows])


def decode_pool(threads: int) -> ThreadPoolExecutor | None:
    """Threads that decode a batch's images in parallel; None for ``threads <= 1``."""
    return ThreadPoolExecutor(threads, thread_name_prefix="veclink-decode") if threads > 1 else None


class BadImage(InvalidArgument):
    """An image whose header passed but whose pixels do not decode (truncated / corrupt).

    ``field`` names its row in the batch given to ``preprocess``; ``data`` is the input
    object itself, so a caller that batches can name the request position.
    """

    def __init__(self, message: str, *, field: str | None, data: object) -> None:
        super().__init__(message, field=field)
        self.data = data


def encode_naming_inputs(encoder: Encoder, inputs: Sequence[str | bytes], role: Role) -> np.ndarray:
    """``Encoder.encode`` whose decode errors name the position in ``inputs``."""
    inputs = list(inputs)
    try:
        return Encoder.encode(encoder, inputs, role)
    except BadImage as exc:
        i = next((k for k, x in enumerate(inputs) if x is exc.data), None)
        if i is None:
            raise
        field = f"inputs[{i}]"
        raise InvalidArgument(f"{field} is a truncated or corrupt image", field=field) from exc


def seeded_towers(model: str, pretrained: str | None, seed: int) -> ClipTowers:
    """``load_towers`` with weights that no checkpoint sets drawn from ``seed`` (leaving the
    caller's RNG untouched), so that loading the same spec twice gives the same vectors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_towers(model, pretrained)


def check_images(inputs: Sequence[str | bytes], limits: ImageLimits) -> None:
    """Check every image header of a whole request, so errors name ``inputs[i]`` exactly."""
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            open_image(item, i, limits)


def assemble(size: int, dim: int, parts: list[tuple[list[int], torch.Tensor | None]]) -> np.ndarray:
    """Put per-modality embeddings back in batch order, L2-normalised, as float32 numpy."""
    out = np.empty((size, dim), dtype=np.float32)
    for rows, vecs in parts:
        if rows:
            vecs = torch.nn.functional.normalize(vecs.float(), dim=-1)
            out[rows] = vecs.detach().cpu().numpy()
    return out


class VisionTowerEncoder(Encoder):
    """What CLIP and LLM2CLIP share: images (bytes) through a CLIP vision tower, texts
    through a text side that subclasses provide, both L2-normalised into one space.

    Subclasses set ``towers`` and implement ``preprocess_texts`` and ``forward_texts``.
    """

    spec: ImageInputSpec
    towers: ClipTowers

    def _init_run(self, spec: Any) -> None:
        """The batch size, device, dtype and image-decoding threads of ``spec``."""
        self.spec = spec
        self.batch_size = spec.batch_size
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype)
        self._pool = decode_pool(spec.decode_threads)

    @property
    def dim(self) -> int:
        return self.towers.embed_dim

    @abstractmethod
    def preprocess_texts(self, texts: list[str], role: Role) -> Any:
        """CPU stage of the texts of a batch."""

    @abstractmethod
    def forward_texts(self, texts: Any) -> torch.Tensor:
        """Device stage of the texts of a batch: unnormalised embeddings ``(n, dim)``."""

    def check_inputs(self, inputs: Sequence[str | bytes]) -> None:
        super().check_inputs(inputs)
        check_images(inputs, self.spec.limits)

    def encode(self, inputs: Sequence[str | bytes], role: Role = "document") -> np.ndarray:
        return encode_naming_inputs(self, inputs, role)

    def preprocess(self, inputs: Sequence[str | bytes], role: Role) -> MixedBatch:
        image_rows, text_rows = split_inputs(inputs)
        pixels = image_pixels(self.towers, inputs, image_rows, self.spec.limits, self._pool)
        texts = None
        if text_rows:
            texts = self.preprocess_texts([str(inputs[r]) for r in text_rows], role)
        return MixedBatch(len(inputs), image_rows, pixels, text_rows, texts)

    @torch.inference_mode()
    def forward(self, batch: MixedBatch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        images = texts = None
        if batch.pixels is not None:
            images = self.towers.encode_images(batch.pixels.to(self.device, self.dtype))
        if batch.texts is not None:
            texts = self.forward_texts(batch.texts)
        return images, texts

    def postprocess(self, output: Any, batch: MixedBatch) -> np.ndarray:
        images, texts = output
        return assemble(
            batch.size, self.dim, [(batch.image_rows, images), (batch.text_rows, texts)]
        )


class ClipImageEncoder(VisionTowerEncoder):
    """CLIP: images (PNG/JPEG/WebP bytes) through the vision tower, texts through CLIP's text
    tower, both L2-normalised in one space (``multimodal``; ``image`` for vision-only models)."""

    def __init__(self, spec: ClipSpec) -> None:
        self._init_run(spec)
        self.towers = seeded_towers(spec.model, spec.pretrained, spec.seed)
        self.towers.module.eval().to(self.device, self.dtype)

    @property
    def modality(self) -> Modality:
        return "multimodal" if self.towers.has_text else "image"

    def preprocess_texts(self, texts: list[str], role: Role) -> Any:
        return self.towers.tokenize(texts)

    def forward_texts(self, texts: Any) -> torch.Tensor:
        return self.towers.encode_texts({k: v.to(self.device) for k, v in texts.items()})
