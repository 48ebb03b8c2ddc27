"""Image inputs: read files, decode encoded bytes (PNG, JPEG, WebP) with size limits.

Images reach encoders as encoded bytes (gRPC carries bytes, the CLI reads files). Decoding
happens in the encoder's CPU stage; every failure names the input (``inputs[i]``) so the
service maps it to INVALID_ARGUMENT (undecodable / unsupported format) or
RESOURCE_EXHAUSTED (too many bytes or pixels).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from typing import Any

from veclink._optional import require
from veclink.errors import InvalidArgument, ResourceExhausted

#: formats accepted from clients, as PIL names them
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
#: file suffixes the CLI treats as images
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageLimits:
    """Per-image limits checked before (bytes, header size) and during decoding."""

    #: largest encoded image accepted, in bytes
    max_bytes: int = 20 * 1024 * 1024
    #: largest decoded image accepted, width * height
    max_pixels: int = 40_000_000


def is_image_path(path: str) -> bool:
    """Whether ``path`` has one of the image suffixes (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def read_image_file(path: str, limits: ImageLimits | None = None) -> bytes:
    """Read an image file as encoded bytes after checking its size and format header.

    Raises:
        InvalidArgument: the file is missing or not a supported image.
        ResourceExhausted: the file is larger than ``limits.max_bytes``.
    """
    limits = limits or ImageLimits()
    field = f"path {path!r}"
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InvalidArgument(f"cannot read image {path!r}: {exc}", field=field) from exc
    if size > limits.max_bytes:
        raise ResourceExhausted(
            f"image {path!r} has {size} bytes; the limit is {limits.max_bytes}", field=field
        )
    with open(path, "rb") as fh:
        data = fh.read()
    image_format(data, field=field)
    return data


def image_format(data: bytes, *, field: str) -> str:
    """The PIL format name of encoded ``data``, checked against IMAGE_FORMATS."""
    pil = require("PIL.Image", "clip")
    try:
        with pil.open(io.BytesIO(data)) as img:
            fmt = img.format or "unknown"
    except Exception as exc:  # PIL raises several types for garbage
        raise InvalidArgument(
            f"{field} is not a decodable image (accepted: {', '.join(IMAGE_FORMATS)})",
            field=field,
        ) from exc
    if fmt not in IMAGE_FORMATS:
        raise InvalidArgument(
            f"{field} is a {fmt} image; accepted formats: {', '.join(IMAGE_FORMATS)}",
            field=field,
        )
    return fmt


def open_image(data: bytes | bytearray | memoryview, index: int, limits: ImageLimits) -> Any:
    """Open (header only) one encoded image, checking format, bytes and pixel count.

    Cheap enough to run on a whole request before batching, so that errors name the
    position in the request (``inputs[index]``).
    """
    pil = require("PIL.Image", "clip")
    field = f"inputs[{index}]"
    if len(data) > limits.max_bytes:
        raise ResourceExhausted(
            f"{field} has {len(data)} bytes; the limit is {limits.max_bytes}", field=field
        )
    try:
        img = pil.open(io.BytesIO(bytes(data)), formats=list(IMAGE_FORMATS))
    except pil.DecompressionBombError as exc:
        raise ResourceExhausted(f"{field} has too many pixels", field=field) from exc
    except Exception as exc:
        raise InvalidArgument(_undecodable(pil, data, field), field=field) from exc
    # the header gives the size before any pixel is decoded: refuse bombs early
    width, height = img.size
    if width * height > limits.max_pixels:
        raise ResourceExhausted(
            f"{field} is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels}",
            field=field,
        )
    return img


def decode_image(data: bytes | bytearray | memoryview, index: int, limits: ImageLimits) -> Any:
    """Decode one encoded image into an RGB ``PIL.Image``.

    Args:
        data: PNG, JPEG or WebP bytes.
        index: position in the request, used in error fields (``inputs[index]``).
        limits: byte and pixel limits.
    """
    img = open_image(data, index, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: our limit applies
            img.load()
        return img.convert("RGB")
    except Exception as exc:
        field = f"inputs[{index}]"
        raise InvalidArgument(f"{field} is a truncated or corrupt image", field=field) from exc


def _undecodable(pil: Any, data: bytes | bytearray | memoryview, field: str) -> str:
    # say which format it is when PIL knows it, so a GIF is not called garbage
    accepted = ", ".join(IMAGE_FORMATS)
    try:
        with pil.open(io.BytesIO(bytes(data))) as img:
            return f"{field} is a {img.format} image; accepted formats: {accepted}"
    except Exception:
        return f"{field} is not a decodable image (accepted: {accepted})"
