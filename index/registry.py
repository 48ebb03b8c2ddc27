"""Index kinds by name: a small registry that rejects duplicates, and the factory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument, NotFound

INDEX_KINDS: dict[str, type] = {}


def register_index(cls: type) -> type:
    """Class decorator: register an index class under its ``kind``."""
    kind = getattr(cls, "kind", "")
    if not kind:
        raise ValueError(f"{cls.__name__} has no kind")
    if kind in INDEX_KINDS:
        raise ValueError(f"index kind {kind!r} is already registered")
    INDEX_KINDS[kind] = cls
    return cls


def create_index(kind: str, dim: int, metric: str = "ip", path: str | None = None, **options: Any):  # type: ignore[no-untyped-def]
    """Create an empty index of a registered kind (persisted under ``path`` if given)."""
    try:
        cls = INDEX_KINDS[kind]
    except KeyError:
        raise InvalidArgument(
            f"unknown index kind {kind!r}; known: {', '.join(sorted(INDEX_KINDS))}",
            field="index_kind",
        ) from None
    return cls(dim, metric=metric, path=path, **options)


def open_index(path: str, committed: int | None = None):  # type: ignore[no-untyped-def]
    """Reopen a persisted index; its kind comes from the metadata in ``path``.

    ``committed``: the caller's last commit stamp; later stamped writes are rolled back
    (see `veclink.index.durable`).
    """
    meta_path = Path(path) / "meta.json"
    try:
        kind = json.loads(meta_path.read_text())["kind"]
    except FileNotFoundError:
        raise NotFound(f"no index at {path}", field="path") from None
    if kind not in INDEX_KINDS:
        raise InvalidArgument(f"index at {path} has unknown kind {kind!r}", field="index_kind")
    return INDEX_KINDS[kind].open(path, committed=committed)
