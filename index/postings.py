"""Postings (partitions) of the partitioned index, and the per-id version map."""

from __future__ import annotations

import numpy as np


class Posting:
    """A growable array of (id, version, vector) entries of one partition."""

    __slots__ = ("ids", "ver", "vecs", "n", "stale")

    def __init__(self, dim: int, capacity: int = 32) -> None:
        self.ids = np.empty(capacity, dtype=np.int64)
        self.ver = np.empty(capacity, dtype=np.uint32)
        self.vecs = np.empty((capacity, dim), dtype=np.float32)
        self.n = 0
        #: entries known to be stale (deleted or replaced); a hint for compaction
        self.stale = 0

    def append(self, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray) -> None:
        need = self.n + ids.size
        if need > self.ids.size:
            cap = max(need, 2 * self.ids.size)
            self.ids = np.resize(self.ids, cap)
            self.ver = np.resize(self.ver, cap)
            grown = np.empty((cap, self.vecs.shape[1]), dtype=np.float32)
            grown[: self.n] = self.vecs[: self.n]
            self.vecs = grown
        self.ids[self.n : need] = ids
        self.ver[self.n : need] = ver
        self.vecs[self.n : need] = vecs
        self.n = need

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.ids[: self.n], self.ver[: self.n], self.vecs[: self.n]

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the entries where ``mask`` is true (in order)."""
        ids, ver, vecs = self.view()
        kept = int(mask.sum())
        self.ids[:kept] = ids[mask]
        self.ver[:kept] = ver[mask]
        self.vecs[:kept] = vecs[mask]
        self.n = kept
        self.stale = 0

    def nbytes(self) -> int:
        return self.ids.nbytes + self.ver.nbytes + self.vecs.nbytes


class VersionMap:
    """Per-id version counters and liveness; an entry is current iff its version matches.

    Versions are 32-bit so a stale copy can never come back to life by wrap-around.
    """

    def __init__(self) -> None:
        self.ver = np.zeros(0, dtype=np.uint32)
        self.live = np.zeros(0, dtype=bool)
        #: partition of the primary copy, -1 when none
        self.loc = np.zeros(0, dtype=np.int64)
        self.count = 0

    def ensure(self, max_id: int) -> None:
        size = self.ver.size
        if max_id < size:
            return
        new = max(max_id + 1, 2 * size, 1024)
        self.ver = np.concatenate([self.ver, np.zeros(new - size, np.uint32)])
        self.live = np.concatenate([self.live, np.zeros(new - size, bool)])
        self.loc = np.concatenate([self.loc, np.full(new - size, -1, np.int64)])

    def current(self, ids: np.ndarray, ver: np.ndarray) -> np.ndarray:
        """Mask of entries that are the live, latest copy of their id."""
        return self.live[ids] & (self.ver[ids] == ver)

    def known(self, ids: np.ndarray) -> np.ndarray:
        inside = ids < self.live.size
        out = np.zeros(ids.size, dtype=bool)
        out[inside] = self.live[ids[inside]]
        return out

    def nbytes(self) -> int:
        return self.ver.nbytes + self.live.nbytes + self.loc.nbytes
