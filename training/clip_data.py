"""Data of LLM2CLIP stage 2: image/caption pairs, frozen caption embeddings, image batches.

- ``load_pairs``: a folder of images plus ``captions.jsonl`` (``{"image": "a.png",
  "caption": "..."}`` or ``"captions": [...]``) or ``captions.csv`` (columns ``image``,
  ``caption``); image paths are relative to the folder.
- ``caption_embeddings``: the frozen LLM runs once per distinct caption, in chunks, into
  float16 rows; with a cache path they are written to disk (``.npy`` + ``.json`` naming
  the text encoder and the captions) and reused by the next run on the same captions.
- ``ImageBatches``: decoded + transformed images per training batch, from memory when the
  whole set is small, else decoded per batch by DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from veclink.encoders.base import Encoder
from veclink.encoders.images import ImageLimits, decode_image, read_image_file

from veclink.errors import InvalidArgument
from veclink.tabular import open_rows

CAPTION_FILES = ("captions.jsonl", "captions.csv")


def load_pairs(folder: str, captions: str | None = None) -> list[tuple[str, str]]:
    """``(image path, caption)`` pairs from a folder and its captions file.

    Raises:
        InvalidArgument: no captions file, a malformed row (named by line), a missing image.
    """
    if captions is None:
        found = [n for n in CAPTION_FILES if os.path.isfile(os.path.join(folder, n))]
        if not found:
            raise InvalidArgument(
                f"{folder!r} has none of {', '.join(CAPTION_FILES)}", field="captions"
            )
        captions = os.path.join(folder, found[0])
    is_csv = captions.endswith(".csv")
    rows = open_rows(captions, format="csv" if is_csv else "jsonl", label=captions)
    if is_csv and not {"image", "caption"} <= set(rows.header):
        raise InvalidArgument(f"{captions}: CSV needs columns image, caption", field="captions")
    pairs: list[tuple[str, str]] = []
    for line, row in rows:
        image = row.get("image")
        texts = row["captions"] if "captions" in row else [row.get("caption")]
        if not isinstance(image, str) or not isinstance(texts, list):
            raise InvalidArgument(
                f"{captions}:{line}: need an object with image and caption(s)", field="captions"
            )
        path = os.path.join(folder, image)
        if not os.path.isfile(path):
            raise InvalidArgument(f"{captions}:{line}: no image {path!r}", field="captions")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InvalidArgument(f"{captions}:{line}: empty caption", field="captions")
            pairs.append((path, text))
    if not pairs:
        raise InvalidArgument(f"{captions}: no pairs", field="captions")
    return pairs


def write_caption_pairs(pairs: Sequence[tuple[str, str]], path: str) -> int:
    """Stage-1 data: captions of the same image as (query, positive) JSONL rows.

    LLM2CLIP stage 1 fine-tunes the LLM caption-contrastively; the rows feed the supervised
    objective of ``veclink train text-encoder``. Returns the number of rows written.
    """
    by_image: dict[str, list[str]] = {}
    for image, text in pairs:
        by_image.setdefault(image, []).append(text)
    count = 0
    with open(path, "w") as fh:
        for texts in by_image.values():
            for a, b in zip(texts, texts[1:] + texts[:1], strict=True):
                if len(texts) > 1 and a != b:
                    fh.write(json.dumps({"query": a, "positive": b}) + "\n")
                    count += 1
    return count


# ------------------------------------------------------------------ caption embeddings


def caption_embeddings(
    text_encoder: Encoder,
    captions: Sequence[str],
    *,
    cache: str | None = None,
    chunk: int = 4096,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Float16 ``(len(captions), dim)`` embeddings of ``captions`` by the frozen encoder.

    Args:
        text_encoder: the LLM text encoder (run with ``role="document"``).
        captions: distinct captions, in the order of the returned rows.
        cache: ``.npy`` path; reused when its ``.json`` sidecar names the same encoder spec
            and captions, else (re)written. The array is memory-mapped, not loaded.
        chunk: captions per ``encode`` call (bounds the float32 working memory).
        progress: called with ``(done, total)`` after each chunk.
    """
    meta = {
        "text_encoder": text_encoder.spec.to_dict(),
        "count": len(captions),
        "dim": text_encoder.dim,
        "captions_sha256": _captions_digest(captions),
    }
    if cache:
        found = _read_cache(cache, meta)
        if found is not None:
            return found
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        out = np.lib.format.open_memmap(
            cache, mode="w+", dtype=np.float16, shape=(len(captions), text_encoder.dim)
        )
    else:
        out = np.empty((len(captions), text_encoder.dim), dtype=np.float16)
    for start in range(0, len(captions), chunk):
        part = list(captions[start : start + chunk])
        out[start : start + len(part)] = text_encoder.encode(part, role="document")
        if progress:
            progress(start + len(part), len(captions))
    if cache:
        out.flush()
        # the sidecar is written last: a run killed mid-way leaves no valid-looking cache
        with open(_sidecar(cache), "w") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
    return out


def _captions_digest(captions: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in captions:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _sidecar(cache: str) -> str:
    return os.path.splitext(cache)[0] + ".json"


def _read_cache(cache: str, meta: dict[str, Any]) -> np.ndarray | None:
    try:
        with open(_sidecar(cache)) as fh:
            recorded = json.load(fh)
        if recorded != json.loads(json.dumps(meta, sort_keys=True)):
            return None
        array = np.load(cache, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return array if array.shape == (meta["count"], meta["dim"]) else None


# ------------------------------------------------------------------------ image batches


class ImageFiles(torch.utils.data.Dataset):
    """Image files -> model-ready pixel tensors (decode, limit checks, tower transform)."""

    def __init__(
        self, paths: Sequence[str], transform: Callable[[Any], torch.Tensor], limits: ImageLimits
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.limits = limits

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        data = read_image_file(path, self.limits)
        try:
            return self.transform(decode_image(data, index, self.limits))
        except InvalidArgument as exc:
            raise InvalidArgument(f"image {path!r}: {exc.message}", field=f"path {path!r}") from exc


class ImageBatches:
    """Pixels of batches of image ids: cached in memory when they fit, else decoded by
    ``workers`` DataLoader processes (0 = in this process) while the model trains."""

    def __init__(self, images: ImageFiles, *, cache_mb: float, workers: int) -> None:
        self.images = images
        self.workers = workers
        first = images[0]
        per_image = first.numel() * first.element_size()
        self.cached: torch.Tensor | None = None
        if per_image * len(images) <= cache_mb * 2**20:
            self.cached = torch.stack([first, *(images[i] for i in range(1, len(images)))])

    def batches(self, ids: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Pixels ``(len(b), 3, H, W)`` for each id batch ``b`` of ``ids``, in order."""
        if self.cached is not None:
            for b in ids:
                yield self.cached[b]
            return
        loader = torch.utils.data.DataLoader(
            self.images,
            batch_sampler=[b.tolist() for b in ids],
            num_workers=self.workers,
            persistent_workers=False,
        )
        yield from loader
