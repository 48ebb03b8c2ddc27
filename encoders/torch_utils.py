"""Device and dtype choices shared by the torch-based encoders."""

from __future__ import annotations

import torch

from veclink.errors import InvalidArgument

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidArgument(
            f"dtype must be one of {', '.join(DTYPES)}; got {name!r}", field="spec.dtype"
        ) from None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgument(
            f"device {name!r} requested but CUDA is not available", field="spec.device"
        )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgument(f"invalid device {name!r}: {exc}", field="spec.device") from exc
