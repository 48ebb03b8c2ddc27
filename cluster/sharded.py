"""`ShardedIndex`: one collection's vectors spread over shards, behind the index contract.

Writes route every vector id to its shard by a stable hash (`veclink.cluster.routing`);
a search fans out to every shard and merges their top k; a get routes by id. The shards
are a `ShardGroup`: in-process `Shard` objects (`LocalShards`, embedded mode) or Ray
actors (`veclink.cluster.ray_shards.RayShards`, cluster mode); this class does not know
which.

The store drives it exactly like a single `WalIndex` (stamps, rollback on reopen,
checkpoints): a write returns once every shard it touched has made its part durable; a
shard that failed makes the whole write fail, and the store's reopen (``rollback``) cuts
the parts other shards had already written, by stamp.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from veclink.cluster.routing import split_by_shard
from veclink.cluster.shard import Shard
from veclink.index import CheckpointPolicy
from veclink.index.base import check_ids, check_k, check_vectors, normalize_rows

from veclink.errors import FailedPrecondition

#: one remote call: (shard number, method name, positional arguments)
Call = tuple[int, str, tuple[Any, ...]]


class ShardGroup(Protocol):
    """The shards of one collection, callable side by side."""

    #: number of shards
    count: int

    def call(self, calls: Sequence[Call]) -> list[Any]:
        """Run the calls (concurrently where the group can) and return their results in order.

        Every call has finished when this returns or raises; the first failure is raised.
        """

    def abandon(self) -> None:
        """Drop what the shards hold in memory without a snapshot (their WAL stays)."""

    def release(self) -> None:
        """Let go of the shards' processes (the data stays on disk)."""


class LocalShards:
    """Shards in this process: embedded mode, and the reference for cluster mode."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self.shards = list(shards)
        self.count = len(self.shards)

    @classmethod
    def open(cls, root: Path, count: int, create: dict[str, Any] | None) -> LocalShards:
        return cls([Shard(str(shard_path(root, s)), create) for s in range(count)])

    def call(self, calls: Sequence[Call]) -> list[Any]:
        return [getattr(self.shards[s], method)(*args) for s, method, args in calls]

    def abandon(self) -> None:
        # the files are closed first, so that a reopen is the only writer of each WAL
        for shard in self.shards:
            shard.abandon()

    def release(self) -> None:
        self.shards = []


def shard_path(root: Path, shard: int) -> Path:
    """The directory of shard ``shard`` under a collection's index directory."""
    return root / f"shard-{shard:04d}"


class ShardedIndex:
    """A collection's index split over shards; the `WalIndex` surface the store uses."""

    def __init__(self, group: ShardGroup, *, kind: str, dim: int, metric: str) -> None:
        self.group = group
        self.kind = kind
        self.dim = dim
        self.metric = metric
        self._closed = False
        self._snapshot_time = time.monotonic()
        self._status: list[dict[str, int]] = group.call(
            [(s, "status", ()) for s in range(group.count)]
        )

    @property
    def shards(self) -> int:
        return self.group.count

    def rollback(self, committed: int) -> None:
        """Make every shard forget writes stamped above ``committed`` (the catalog's commit)."""
        self._status = self.group.call([(s, "rollback", (committed,)) for s in range(self.shards)])

    # ------------------------------------------------------------------ writes

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, stamp: int | None = None) -> None:
        """Upsert; returns once every shard written to has made its part durable."""
        ids = check_ids(ids)
        vectors = check_vectors(vectors, self.dim, ids.size)
        if self.metric == "cosine":
            vectors = normalize_rows(vectors)
        if not ids.size:
            return
        self._check_open()
        parts = [(s, pos) for s, pos in enumerate(split_by_shard(ids, self.shards)) if pos.size]
        results = self.group.call([(s, "add", (ids[pos], vectors[pos], stamp)) for s, pos in parts])
        for (s, _), status in zip(parts, results, strict=True):
            self._status[s] = status

    def remove(self, ids: np.ndarray, *, stamp: int | None = None) -> int:
        """Delete ids; returns how many were present, once every shard made it durable."""
        ids = check_ids(ids)
        self._check_open()
        parts = [(s, pos) for s, pos in enumerate(split_by_shard(ids, self.shards)) if pos.size]
        results = self.group.call([(s, "remove", (ids[pos], stamp)) for s, pos in parts])
        removed = 0
        for (s, _), (count, status) in zip(parts, results, strict=True):
            removed += int(count)
            self._status[s] = status
        return removed

    # ------------------------------------------------------------------ reads

    def search(self, queries: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's top ``k``, merged: ``(scores (n, k), ids (n, k))``, best first."""
        k = check_k(k)
        queries = check_vectors(queries, self.dim, field="queries")
        self._check_open()
        results = self.group.call([(s, "search", (queries, k, params)) for s in range(self.shards)])
        scores = np.concatenate([r[0] for r in results], axis=1)
        ids = np.concatenate([r[1] for r in results], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False),
            np.take_along_axis(ids, order, axis=1).astype(np.int64, copy=False),
        )

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids``, each from its shard; an unknown id raises NotFound."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((ids.size, self.dim), dtype=np.float32)
        parts = [(s, pos) for s, pos in enumerate(split_by_shard(ids, self.shards)) if pos.size]
        results = self.group.call([(s, "get", (ids[pos],)) for s, pos in parts])
        for (_, pos), vectors in zip(parts, results, strict=True):
            out[pos] = vectors
        return out

    def ids(self) -> np.ndarray:
        parts = self.group.call([(s, "ids", ()) for s in range(self.shards)])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        # kept from the shards' replies to writes: the store asks before every search
        return sum(status["size"] for status in self._status)

    @property
    def wal_bytes(self) -> int:
        return sum(status["wal_bytes"] for status in self._status)

    @property
    def wal_records(self) -> int:
        return sum(status["wal_records"] for status in self._status)

    def stats(self) -> dict[str, Any]:
        per_shard = self.group.call([(s, "stats", ()) for s in range(self.shards)])
        return {
            "kind": self.kind,
            "size": sum(int(st.get("size", 0)) for st in per_shard),
            "dim": self.dim,
            "metric": self.metric,
            "shards": self.shards,
            "shard_sizes": [int(st.get("size", 0)) for st in per_shard],
            "wal_records": sum(int(st.get("wal_records", 0)) for st in per_shard),
            "wal_bytes": sum(int(st.get("wal_bytes", 0)) for st in per_shard),
        }

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for every shard's background rebalancing; False if one timed out."""
        return all(self.group.call([(s, "wait_idle", (timeout,)) for s in range(self.shards)]))

    # ------------------------------------------------------------------ persistence

    def checkpoint_due(self, policy: CheckpointPolicy) -> bool:
        """Whether any shard's WAL has grown past ``policy`` (from the cached statuses)."""
        if self._closed or not any(st["wal_records"] for st in self._status):
            return False
        records = max(st["wal_records"] for st in self._status)
        wal_bytes = max(st["wal_bytes"] for st in self._status)
        return bool(
            (policy.records and records >= policy.records)
            or (policy.wal_bytes and wal_bytes >= policy.wal_bytes)
            or (policy.seconds and time.monotonic() - self._snapshot_time >= policy.seconds)
        )

    def flush(self) -> None:
        """Snapshot every shard (only while every stamped write is committed)."""
        self._check_open()
        self._status = self.group.call([(s, "flush", ()) for s in range(self.shards)])
        self._snapshot_time = time.monotonic()

    def close(self) -> None:
        """Snapshot and close every shard, then release their processes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.group.call([(s, "close", ()) for s in range(self.shards)])
        finally:
            self.group.release()

    def drop(self) -> None:
        """Delete every shard's directory (on its own node) and release the shards."""
        self._closed = True
        try:
            self.group.call([(s, "destroy", ()) for s in range(self.shards)])
        finally:
            self.group.release()

    def abandon(self) -> None:
        """Stop using the shards without a snapshot; the store reopens with `rollback`."""
        if self._closed:
            return
        self._closed = True
        self.group.abandon()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition("the index is closed")
