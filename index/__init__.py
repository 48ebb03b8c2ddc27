"""Vector indexes behind one `VectorIndex` contract: exact `FlatIndex` and the
in-place-rebalancing `PartitionedIndex`."""

from __future__ import annotations

from veclink.index.base import VectorIndex
from veclink.index.durable import CheckpointPolicy, WalIndex
from veclink.index.flat import FlatIndex
from veclink.index.partitioned import PartitionedIndex
from veclink.index.registry import INDEX_KINDS, create_index, open_index, register_index

__all__ = [
    "INDEX_KINDS",
    "CheckpointPolicy",
    "FlatIndex",
    "PartitionedIndex",
    "VectorIndex",
    "WalIndex",
    "create_index",
    "open_index",
    "register_index",
]
