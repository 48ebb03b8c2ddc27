"""FlatIndex: exact search with faiss, durable through a WAL and atomic snapshots."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from veclink.index.base import check_ids, check_k, check_vectors, normalize_rows
from veclink.index.durable import WalIndex
from veclink.index.registry import register_index

from veclink.errors import InvalidArgument, NotFound


def finish_scores(scores: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """faiss distances -> veclink scores (higher is better, -inf where no result)."""
    out = -scores if metric == "l2" else scores.copy()
    out[ids < 0] = -np.inf
    return out.astype(np.float32, copy=False)


@register_index
class FlatIndex(WalIndex):
    """Exact inner-product / cosine / L2 search over every live vector."""

    kind = "flat"
    snapshot_name = "flat.faiss"

    def _init_state(self) -> None:
        self._index = self._empty()
        self._present: set[int] = set()

    def _empty(self) -> faiss.IndexIDMap2:
        base = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(base)

    # --------------------------------------------------------------- mutations

    def _apply_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        replaced = [i for i in ids.tolist() if i in self._present]
        if replaced:
            self._index.remove_ids(np.array(replaced, dtype=np.int64))
        self._index.add_with_ids(vectors, ids)
        self._present.update(ids.tolist())

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
        with self.lock.shared():
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
        with self.lock:
            missing = [i for i in ids.tolist() if i not in self._present]
            if missing:
                raise NotFound(f"ids not in the index: {missing[:10]}", field="ids")
            out = np.empty((ids.size, self.dim), dtype=np.float32)
            for row, i in enumerate(ids.tolist()):
                out[row] = self._index.reconstruct(i)
            return out

    def ids(self) -> np.ndarray:
        with self.lock:
            return np.fromiter(self._present, dtype=np.int64, count=len(self._present))

    def __len__(self) -> int:
        return len(self._present)

    # --------------------------------------------------------------- persistence

    def _snapshot_bytes(self) -> bytes:
        return bytes(faiss.serialize_index(self._index).tobytes())

    def _load_snapshot(self, data: bytes) -> None:
        self._index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self._present = set(faiss.vector_to_array(self._index.id_map).tolist())
