"""How postings hold their vectors: float32, or scalar-quantised beside a full-vector store.

``float32`` postings are the vectors themselves (a faiss ``IndexIVFFlat``'s lists).
``fp16`` and ``int8`` postings hold codes (a faiss ``IndexIVFScalarQuantizer``'s lists, not
residuals: centroids move, codes must not depend on them); faiss scans the codes, and the
best ``k x rerank`` candidates are re-scored exactly from `FullVectors`, one float32 row per
id. The full vectors are also what rebalancing moves and re-encodes, so splits, merges,
reassignment and refresh work the same whatever the codes.

int8 ranges. faiss's 8-bit quantiser maps each dimension's ``[vmin, vmin + vdiff]`` to 256
levels and clamps what falls outside. Ranges frozen on the first batch break under drift:
vectors that arrive later outside them are clamped, and a clamped dimension no longer tells
them apart. `Int8Codec` therefore trains each dimension's range on what it has seen with a
margin of a quarter of the span on each side, and when an insert brings a value outside the
range, widens it (to the values seen so far, plus the margin) and re-encodes every posting
from the full vectors: one compiled pass, O(entries x dim). The margin makes each widening
grow a dimension's span by at least a quarter, so the re-encodes are few (logarithmic in how
far the data moves) and cheap next to rebalancing; ranges only grow, so a distribution that
moves away leaves some resolution unused (the exact re-rank absorbs that).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

#: the storage options of postings (`PartitionedIndex`'s ``postings`` option)
CODECS = ("float32", "fp16", "int8")
#: fp16's largest finite value: larger components are clamped, never encoded as inf
FP16_MAX = 65504.0
#: int8 ranges reach this share of a dimension's observed span beyond each end
INT8_MARGIN = 0.25


class FullVectors:
    """One float32 row per slot: the current vector of every id, for quantised postings.

    Rows are slots of the `veclink.index.postings.VersionMap`, so an id's row is found
    without a search; a deleted id's row is kept (its slot is kept for re-adds).

    With a ``path`` the rows live in a memory-mapped file there instead of the heap (the
    SPANN arrangement: compact postings in memory, full vectors on disk): the OS keeps
    the rows that re-ranking touches in its page cache and may evict the rest. The file is
    a cache, rebuilt from the snapshot and the WAL at every open, never fsynced.
    """

    def __init__(self, dim: int, path: Path | None = None) -> None:
        self.dim = dim
        self.path = path
        self.rows = 0  # rows in use (``data`` has spare capacity)
        self._file_made = False
        self.data = np.zeros((0, dim), dtype=np.float32)

    def _alloc(self, cap: int) -> np.ndarray:
        if self.path is None:
            return np.zeros((cap, self.dim), dtype=np.float32)
        if not self._file_made:  # at the first row, so that a refused open touches nothing
            # a fresh inode: an index object of an earlier open may still map the old one
            self.path.unlink(missing_ok=True)
            self.path.touch()
            self._file_made = True
        with open(self.path, "r+b") as f:
            f.truncate(cap * self.dim * 4)
        return np.memmap(self.path, dtype=np.float32, mode="r+", shape=(cap, self.dim))

    def put(self, slots: np.ndarray, vecs: np.ndarray) -> None:
        need = int(slots.max()) + 1 if slots.size else 0
        cap = self.data.shape[0]
        if need > cap:
            # grow by a quarter: a doubling would leave up to half of the largest array idle
            cap = max(need, cap + cap // 4, 1024)
            if self.path is None:
                grown = self._alloc(cap)
                grown[: self.rows] = self.data[: self.rows]
                self.data = grown
            else:  # the file grows in place; map it again (rows past the old end read 0)
                self.data = self._alloc(cap)
        if need > self.rows:
            self.data[self.rows : need] = 0
            self.rows = need
        self.data[slots] = vecs

    def take(self, slots: np.ndarray) -> np.ndarray:
        """Rows of ``slots`` (a copy; slots outside the table give row 0 or the last)."""
        return np.asarray(self.data[: max(self.rows, 1)]).take(slots, axis=0, mode="clip")

    def nbytes(self) -> int:
        """Bytes of the rows on the heap (0 when they are in a file)."""
        return 0 if self.path is not None else int(self.data.nbytes)

    def file_bytes(self) -> int:
        """Bytes of the rows' file (0 without one)."""
        return int(self.data.nbytes) if self.path is not None else 0


class Codec:
    """Encodes float32 vectors into a posting's codes (float32: the bytes themselves)."""

    name: ClassVar[str] = "float32"
    qtype: ClassVar[int | None] = None

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.code_size = 4 * dim

    @property
    def quantized(self) -> bool:
        return self.qtype is not None

    def encode(self, vecs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(vecs, dtype=np.float32).view(np.uint8).reshape(len(vecs), -1)

    def admit(self, vecs: np.ndarray) -> bool:
        """Take new vectors into account; True when existing codes must be re-encoded."""
        return False

    def state(self) -> np.ndarray:
        """What a snapshot must keep to decode the codes it holds."""
        return np.zeros(0, dtype=np.float32)

    def restore(self, state: np.ndarray) -> None:
        """Take back `state`."""

    def sync(self, index: faiss.IndexIVF) -> None:
        """Copy the trained parameters into the faiss index that scans the codes."""


class Fp16Codec(Codec):
    name = "fp16"
    qtype = faiss.ScalarQuantizer.QT_fp16

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.code_size = 2 * dim

    def encode(self, vecs: np.ndarray) -> np.ndarray:
        v = np.clip(np.asarray(vecs, dtype=np.float32), -FP16_MAX, FP16_MAX)
        return v.astype(np.float16).view(np.uint8).reshape(len(v), -1)


class Int8Codec(Codec):
    name = "int8"
    qtype = faiss.ScalarQuantizer.QT_8bit

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.code_size = dim
        #: per-dimension extremes of every vector admitted so far (the ranges cover them)
        self.lo = np.full(dim, np.inf, dtype=np.float32)
        self.hi = np.full(dim, -np.inf, dtype=np.float32)
        self.sq = faiss.ScalarQuantizer(dim, self.qtype)
        self._set_range(np.zeros(dim, np.float32), np.zeros(dim, np.float32))

    def _set_range(self, lo: np.ndarray, hi: np.ndarray) -> None:
        span = hi - lo
        # a constant dimension still needs a non-zero step (faiss divides by it)
        scale = np.maximum(np.abs(lo), np.abs(hi))
        span = np.maximum(span, 1e-6 * np.maximum(scale, 1e-6))
        self.vmin = (lo - INT8_MARGIN * span).astype(np.float32)
        self.vdiff = ((1 + 2 * INT8_MARGIN) * span).astype(np.float32)
        faiss.copy_array_to_vector(np.concatenate([self.vmin, self.vdiff]), self.sq.trained)

    def admit(self, vecs: np.ndarray) -> bool:
        if not len(vecs):
            return False
        lo = np.minimum(self.lo, vecs.min(0))
        hi = np.maximum(self.hi, vecs.max(0))
        self.lo, self.hi = lo, hi
        if (lo >= self.vmin).all() and (hi <= self.vmin + self.vdiff).all():
            return False
        self._set_range(lo, hi)
        return True

    def encode(self, vecs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.code_size), dtype=np.uint8)
        return self.sq.compute_codes(x)

    def state(self) -> np.ndarray:
        return np.stack([self.lo, self.hi, self.vmin, self.vdiff])

    def restore(self, state: np.ndarray) -> None:
        self.lo, self.hi, vmin, vdiff = (np.array(r, dtype=np.float32) for r in state)
        self.vmin, self.vdiff = vmin, vdiff
        faiss.copy_array_to_vector(np.concatenate([vmin, vdiff]), self.sq.trained)

    def sync(self, index: faiss.IndexIVF) -> None:
        faiss.copy_array_to_vector(np.concatenate([self.vmin, self.vdiff]), index.sq.trained)


_CODECS: dict[str, type[Codec]] = {"float32": Codec, "fp16": Fp16Codec, "int8": Int8Codec}


def make_codec(name: str, dim: int) -> Codec:
    """The codec of the ``postings`` option ``name`` (one of `CODECS`, checked before)."""
    return _CODECS[name](dim)
