"""The `VectorIndex` contract that every index kind implements.

Semantics every implementation shares (checked by tests/contract/test_index_contract.py):

- ids are int64 >= 0, chosen by the caller (the catalog maps external ids to them);
- ``add`` is an upsert: adding an id that is present replaces its vector;
- ``search`` returns ``(scores, ids)`` of shape ``(n_queries, k)``, best first, where a
  higher score is better for every metric (``ip``/``cosine``: inner product; ``l2``:
  negative squared distance); missing results are padded with id -1 and score -inf;
- a removed id is never returned again;
- an index opened with a ``path`` is durable: once ``add``/``remove`` returns, the
  change survives a crash (kill -9) and is there after ``open(path)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from veclink.errors import InvalidArgument

METRICS = ("ip", "cosine", "l2")


class VectorIndex(ABC):
    """A mutable set of (int64 id, float32 vector) pairs searchable by similarity."""

    #: registry key written into the index's metadata, e.g. ``"flat"``
    kind: ClassVar[str]

    dim: int
    metric: str

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors. Durable on return when the index has a path."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Delete ids; returns how many were present. Durable on return."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores float32 (n, k), ids int64 (n, k))``, best first."""

    @abstractmethod
    def get(self, ids: np.ndarray) -> np.ndarray:
        """Return the stored vectors of ``ids`` (float32 (n, dim)); unknown ids raise NotFound.

        For ``cosine`` the stored vectors are the normalised ones.
        """

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All live ids (int64, unordered)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of live ids."""

    @abstractmethod
    def flush(self) -> None:
        """Write a snapshot so that reopening does not need to replay the WAL."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files and background workers. Idempotent."""

    @classmethod
    @abstractmethod
    def open(cls, path: str) -> VectorIndex:
        """Reopen a persisted index (snapshot + WAL replay)."""

    def stats(self) -> dict[str, Any]:
        """Implementation-specific statistics (sizes, pending work...)."""
        return {"kind": self.kind, "size": len(self), "dim": self.dim, "metric": self.metric}

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(
            f"metric must be one of {', '.join(METRICS)}; got {metric!r}", field="metric"
        )
    return metric


def check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidArgument(f"k must be a positive integer; got {k!r}", field="k")
    return int(k)


def check_ids(ids: Any) -> np.ndarray:
    """Validate and convert ids to a 1-D int64 array of non-negative, distinct values."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InvalidArgument(f"ids must be 1-D, got shape {arr.shape}", field="ids")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgument(f"ids must be integers, got dtype {arr.dtype}", field="ids")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise InvalidArgument("ids must be >= 0", field="ids")
    if np.unique(arr).size != arr.size:
        raise InvalidArgument("ids must be distinct within one call", field="ids")
    return arr


def check_vectors(
    vectors: Any, dim: int, n: int | None = None, field: str = "vectors"
) -> np.ndarray:
    """Validate a (n, dim) float matrix of finite values; returns a C-contiguous float32 copy."""
    arr = np.asarray(vectors)
    if arr.ndim == 1 and n is None:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidArgument(f"{field} must be 2-D (n, {dim}), got shape {arr.shape}", field=field)
    if arr.shape[1] != dim:
        raise InvalidArgument(
            f"{field} have dimension {arr.shape[1]}, the index expects {dim}", field=field
        )
    if n is not None and arr.shape[0] != n:
        raise InvalidArgument(
            f"{field} has {arr.shape[0]} rows but {n} ids were given", field=field
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InvalidArgument(f"{field} contain NaN or infinite values", field=field)
    return arr


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32, copy=False)
