"""FlatIndex: exact search with faiss, durable through a WAL and atomic snapshots."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from veclink.index.base import (
    VectorIndex,
    check_ids,
    check_metric,
    check_vectors,
    normalize_rows,
)
from veclink.index.registry import register_index
from veclink.index.wal import OP_ADD, OP_REMOVE, WriteAheadLog, fsync_dir

from veclink.errors import FailedPrecondition, InvalidArgument, NotFound

META = "meta.json"
SNAPSHOT = "flat.faiss"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a mix."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidArgument(f"k must be a positive integer; got {k!r}", field="k")
    return int(k)


def finish_scores(scores: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """faiss distances -> veclink scores (higher is better, -inf where no result)."""
    out = -scores if metric == "l2" else scores.copy()
    out[ids < 0] = -np.inf
    return out.astype(np.float32, copy=False)


@register_index
class FlatIndex(VectorIndex):
    """Exact inner-product / cosine / L2 search over every live vector."""

    kind = "flat"

    def __init__(self, dim: int, metric: str = "ip", path: str | None = None) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise InvalidArgument(f"dim must be a positive integer; got {dim!r}", field="dim")
        self.dim = dim
        self.metric = check_metric(metric)
        self.path = Path(path) if path else None
        self._lock = threading.RLock()
        self._index = self._empty()
        self._present: set[int] = set()
        self._wal: WriteAheadLog | None = None
        self._closed = False
        if self.path is not None:
            if (self.path / META).exists():
                raise InvalidArgument(f"an index already exists at {self.path}", field="path")
            self.path.mkdir(parents=True, exist_ok=True)
            self._wal = WriteAheadLog(self.path / "wal")
            self._write_meta(0)

    def _empty(self) -> faiss.IndexIDMap2:
        base = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(base)

    def _write_meta(self, lsn: int) -> None:
        assert self.path is not None
        meta = {"kind": self.kind, "dim": self.dim, "metric": self.metric, "snapshot_lsn": lsn}
        write_atomic(self.path / META, json.dumps(meta).encode())

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition("the index is closed")

    # --------------------------------------------------------------- mutations

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = check_ids(ids)
        vectors = check_vectors(vectors, self.dim, ids.size)
        if self.metric == "cosine":
            vectors = normalize_rows(vectors)
        if not ids.size:
            return
        with self._lock:
            self._check_open()
            # WAL order == apply order (both under the lock); the fsync happens after the
            # lock is released so that concurrent writers share it (group commit)
            lsn = self._wal.write(OP_ADD, ids, vectors) if self._wal is not None else 0
            self._apply_add(ids, vectors)
        if self._wal is not None:
            self._wal.sync(lsn)

    def _apply_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        replaced = [i for i in ids.tolist() if i in self._present]
        if replaced:
            self._index.remove_ids(np.array(replaced, dtype=np.int64))
        self._index.add_with_ids(vectors, ids)
        self._present.update(ids.tolist())

    def remove(self, ids: np.ndarray) -> int:
        ids = check_ids(ids)
        with self._lock:
            self._check_open()
            wal = self._wal if ids.size else None
            lsn = wal.write(OP_REMOVE, ids) if wal is not None else 0
            removed = self._apply_remove(ids)
        if wal is not None:
            wal.sync(lsn)
        return removed

    def _apply_remove(self, ids: np.ndarray) -> int:
        present = np.array([i for i in ids.tolist() if i in self._present], dtype=np.int64)
        if present.size:
            self._index.remove_ids(present)
            self._present.difference_update(present.tolist())
        return int(present.size)

    # --------------------------------------------------------------- reads

    def search(self, queries: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        unknown = set(params) - {"nprobe"}
        if unknown:
            raise InvalidArgument(f"unknown search parameters {sorted(unknown)}", field="params")
        q = check_vectors(queries, self.dim, field="queries")
        if self.metric == "cosine":
            q = normalize_rows(q)
        with self._lock:
            self._check_open()
            if self._index.ntotal == 0:
                return (
                    np.full((len(q), k), -np.inf, np.float32),
                    np.full((len(q), k), -1, np.int64),
                )
            dist, ids = self._index.search(q, k)
        return finish_scores(dist, ids, self.metric), ids.astype(np.int64, copy=False)

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = check_ids(ids)
        with self._lock:
            missing = [i for i in ids.tolist() if i not in self._present]
            if missing:
                raise NotFound(f"ids not in the index: {missing[:10]}", field="ids")
            out = np.empty((ids.size, self.dim), dtype=np.float32)
            for row, i in enumerate(ids.tolist()):
                out[row] = self._index.reconstruct(i)
            return out

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._present, dtype=np.int64, count=len(self._present))

    def __len__(self) -> int:
        return len(self._present)

    # --------------------------------------------------------------- persistence

    def flush(self) -> None:
        if self.path is None or self._wal is None:
            return
        with self._lock:
            self._check_open()
            lsn = self._wal.last_lsn
            write_atomic(self.path / SNAPSHOT, faiss.serialize_index(self._index).tobytes())
            self._write_meta(lsn)
            self._wal.rotate(lsn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.flush()
            if self._wal is not None:
                self._wal.close()
            self._closed = True

    @classmethod
    def open(cls, path: str) -> FlatIndex:
        root = Path(path)
        try:
            meta = json.loads((root / META).read_text())
        except FileNotFoundError:
            raise NotFound(f"no index at {path}", field="path") from None
        self = cls.__new__(cls)
        self.dim, self.metric, self.path = int(meta["dim"]), meta["metric"], root
        self._lock = threading.RLock()
        self._closed = False
        snap = root / SNAPSHOT
        if snap.exists():
            self._index = faiss.deserialize_index(np.frombuffer(snap.read_bytes(), dtype=np.uint8))
            self._present = set(faiss.vector_to_array(self._index.id_map).tolist())
        else:
            self._index = self._empty()
            self._present = set()
        self._wal = WriteAheadLog(root / "wal", start_lsn=int(meta["snapshot_lsn"]))
        # replay is idempotent: add is an upsert, remove of a missing id is a no-op
        for rec in self._wal.replay(after=int(meta["snapshot_lsn"])):
            if rec.op == OP_ADD:
                assert rec.vectors is not None
                self._apply_add(rec.ids, rec.vectors)
            elif rec.op == OP_REMOVE:
                self._apply_remove(rec.ids)
        return self

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        if self._wal is not None:
            stats["wal_lsn"] = self._wal.last_lsn
        return stats
