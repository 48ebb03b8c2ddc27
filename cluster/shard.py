"""`Shard`: one shard of a collection, a durable index in its own directory.

The same class runs in the server process (embedded mode) and as the body of a Ray actor
(cluster mode, see `veclink.cluster.ray_shards`), so both modes share one implementation.

Durability is the index's: a write returns only after its WAL record is fsynced, so a
shard acknowledges a write exactly when it is durable on the shard's disk. Opening an
existing directory replays the whole WAL; that is what a restarted actor does (Ray runs
``__init__`` again with the same arguments). The front-end then rolls back anything its
catalog never committed with `rollback` (writes are stamped, see `veclink.index.durable`).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
from veclink.index import WalIndex, create_index, open_index

from veclink.errors import NotFound


def shard_status(index: WalIndex) -> dict[str, int]:
    """What the front-end caches of a shard after every call: size and WAL backlog."""
    return {"size": len(index), "wal_bytes": index.wal_bytes, "wal_records": index.wal_records}


class Shard:
    """A durable vector index at ``path``, created from ``create`` when it does not exist.

    Args:
        path: the shard's directory on the disk of the process that runs it.
        create: ``{"kind", "dim", "metric", "options"}`` to create the index when ``path``
            holds none; None: the index must exist (a reopened collection never silently
            starts empty).
    """

    def __init__(self, path: str, create: dict[str, Any] | None = None) -> None:
        self.path = path
        self._create = create
        # opened on first use, so that a front-end reopening the collection replays the WAL
        # once, up to its commit (`rollback`), while a restarted actor replays all of it
        self._index: WalIndex | None = None

    @property
    def index(self) -> WalIndex:
        if self._index is None:
            self._index = self._open(None)
        return self._index

    def _open(self, committed: int | None) -> WalIndex:
        if (Path(self.path) / "meta.json").exists():
            return open_index(self.path, committed=committed)
        if self._create is None:
            raise NotFound(
                f"no shard index at {self.path} on {socket.gethostname()}", field="shard"
            )
        spec = self._create
        return create_index(
            spec["kind"],
            int(spec["dim"]),
            metric=spec["metric"],
            path=self.path,
            **dict(spec.get("options") or {}),
        )

    def add(self, ids: np.ndarray, vectors: np.ndarray, stamp: int | None) -> dict[str, int]:
        """Upsert; returns once the write is durable (fsynced), with the new status."""
        # arrays from Ray's object store are read-only views: the index keeps its own copy
        self.index.add(np.array(ids), np.array(vectors), stamp=stamp)
        return shard_status(self.index)

    def remove(self, ids: np.ndarray, stamp: int | None) -> tuple[int, dict[str, int]]:
        """Delete; returns how many were present, once durable, with the new status."""
        removed = self.index.remove(np.array(ids), stamp=stamp)
        return removed, shard_status(self.index)

    def search(
        self, queries: np.ndarray, k: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k, **params)

    def get(self, ids: np.ndarray) -> np.ndarray:
        return self.index.get(ids)

    def ids(self) -> np.ndarray:
        return self.index.ids()

    def status(self) -> dict[str, int]:
        return shard_status(self.index)

    def stats(self) -> dict[str, Any]:
        return self.index.stats()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the index's background rebalancing (a partitioned index) to finish."""
        wait = getattr(self.index, "wait_idle", None)
        return True if wait is None else bool(wait(timeout))

    def flush(self) -> dict[str, int]:
        """Snapshot and truncate the WAL (the front-end calls it when every write is committed)."""
        self.index.flush()
        return shard_status(self.index)

    def rollback(self, committed: int) -> dict[str, int]:
        """Reload from disk keeping only writes stamped at or below ``committed``."""
        if self._index is not None:
            self._index.abandon()
            self._index = None
        self._index = self._open(committed)
        return shard_status(self._index)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()

    def abandon(self) -> None:
        if self._index is not None:
            self._index.abandon()
            self._index = None

    def destroy(self) -> None:
        """Close without a snapshot and delete the shard's directory (collection deleted)."""
        self.abandon()
        shutil.rmtree(self.path, ignore_errors=True)

    def where(self) -> dict[str, Any]:
        """The process and host running this shard (for tests and operators)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "path": self.path}
