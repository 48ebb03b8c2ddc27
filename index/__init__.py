"""Vector indexes behind one `VectorIndex` contract: exact `FlatIndex` and more kinds."""

from __future__ import annotations

from veclink.index.base import VectorIndex
from veclink.index.flat import FlatIndex
from veclink.index.registry import INDEX_KINDS, create_index, open_index, register_index

__all__ = [
    "INDEX_KINDS",
    "FlatIndex",
    "VectorIndex",
    "create_index",
    "open_index",
    "register_index",
]
