"""Postings (partitions) of the partitioned index, and the per-id version map."""

from __future__ import annotations

import numpy as np


def row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of the rows of a float32 block, as one BLAS vector product.

    Rebalancing re-centres thousands of small postings; ``ndarray.mean`` costs about four
    times as much per call on blocks of this size (its Python-level bookkeeping dominates).
    """
    return (np.ones(len(x), dtype=np.float32) @ x) / np.float32(len(x))


def centroid_rows(cent_pid: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Centroid rows of partition ids (``cent_pid`` holds the partition id of each row)."""
    order = np.argsort(cent_pid)
    return order[np.searchsorted(cent_pid, pids, sorter=order)]


class Posting:
    """A growable array of (slot, version, vector) entries of one partition.

    A slot stands for an id (see `VersionMap`); "ids" below means slots.
    """

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
            self._grow(max(need, 2 * self.ids.size))
        self.ids[self.n : need] = ids
        self.ver[self.n : need] = ver
        self.vecs[self.n : need] = vecs
        self.n = need

    def _grow(self, cap: int) -> None:
        """Reallocate the buffers to ``cap`` entries, keeping the first ``n``."""
        n = self.n
        ids = np.empty(cap, dtype=np.int64)
        ver = np.empty(cap, dtype=np.uint32)
        vecs = np.empty((cap, self.vecs.shape[1]), dtype=np.float32)
        ids[:n], ver[:n], vecs[:n] = self.ids[:n], self.ver[:n], self.vecs[:n]
        self.ids, self.ver, self.vecs = ids, ver, vecs

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.ids[: self.n], self.ver[: self.n], self.vecs[: self.n]

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the entries where ``mask`` is true (in order)."""
        ids, ver, vecs = self.view()
        self.replace(ids[mask], ver[mask], vecs[mask])

    def replace(self, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray) -> None:
        """Make ``(ids, ver, vecs)`` the whole content (none of it stale)."""
        self.n = self.stale = 0
        if self.ids.size > 2 * max(ids.size, 32):
            # a split or compaction left most of the buffers empty (a posting that grew to
            # twice the split limit keeps half or less): give the slack back
            self._grow(max(ids.size + ids.size // 4, 32))
        self.append(ids, ver, vecs)

    def nbytes(self) -> int:
        return self.ids.nbytes + self.ver.nbytes + self.vecs.nbytes


class VersionMap:
    """Per-slot version counters and liveness; an entry is current iff its version matches.

    Callers choose any int64 id >= 0, so ids are not array positions: each id seen gets a
    dense slot (kept after a delete, so a re-added id keeps counting versions up), and
    postings store slots. ``keys`` (sorted ids) and ``key_slot`` map ids to slots with one
    vectorised binary search; ``ext`` maps slots back to ids.
    Versions are 32-bit so a stale copy can never come back to life by wrap-around.
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.key_slot = np.zeros(0, dtype=np.int64)
        self.ext = np.zeros(0, dtype=np.int64)
        self.ver = np.zeros(0, dtype=np.uint32)
        self.live = np.zeros(0, dtype=bool)
        #: partition of the primary copy, -1 when none
        self.loc = np.zeros(0, dtype=np.int64)
        self.size = 0  # slots in use (the arrays above have spare capacity)
        self.count = 0  # live ids

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids``; -1 for ids never seen."""
        pos = np.searchsorted(self.keys, ids)
        pos = np.minimum(pos, max(self.keys.size - 1, 0))
        out = np.full(ids.size, -1, dtype=np.int64)
        if self.keys.size:
            hit = self.keys[pos] == ids
            out[hit] = self.key_slot[pos[hit]]
        return out

    def assign(self, ids: np.ndarray) -> np.ndarray:
        """Slots of distinct ``ids``, creating slots for ids never seen."""
        slots = self.lookup(ids)
        new = slots < 0
        if new.any():
            fresh = ids[new]
            first = self.size
            self._grow(first + fresh.size)
            slots[new] = np.arange(first, first + fresh.size)
            self.ext[first : first + fresh.size] = fresh
            self.size += fresh.size
            order = np.argsort(fresh)
            at = np.searchsorted(self.keys, fresh[order])
            self.keys = np.insert(self.keys, at, fresh[order])
            self.key_slot = np.insert(self.key_slot, at, slots[new][order])
        return slots

    def _grow(self, need: int) -> None:
        cap = self.ver.size
        if need <= cap:
            return
        new = max(need, 2 * cap, 1024)
        self.ext = np.concatenate([self.ext, np.full(new - cap, -1, np.int64)])
        self.ver = np.concatenate([self.ver, np.zeros(new - cap, np.uint32)])
        self.live = np.concatenate([self.live, np.zeros(new - cap, bool)])
        self.loc = np.concatenate([self.loc, np.full(new - cap, -1, np.int64)])

    def current(self, slots: np.ndarray, ver: np.ndarray) -> np.ndarray:
        """Mask of entries that are the live, latest copy of their id."""
        return self.live[slots] & (self.ver[slots] == ver)

    def live_slots(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids`` (-1 where the id is not live)."""
        slots = self.lookup(ids)
        dead = slots < 0
        dead[~dead] = ~self.live[slots[~dead]]
        slots[dead] = -1
        return slots

    def live_ids(self) -> np.ndarray:
        return self.ext[: self.size][self.live[: self.size]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        n = self.size
        return {
            "vm_keys": self.keys,
            "vm_key_slot": self.key_slot,
            "vm_ext": self.ext[:n],
            "vm_ver": self.ver[:n],
            "vm_live": self.live[:n],
            "vm_loc": self.loc[:n],
        }

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray] | np.lib.npyio.NpzFile, count: int) -> VersionMap:
        vm = cls()
        vm.ver, vm.live, vm.loc = (z[k].copy() for k in ("vm_ver", "vm_live", "vm_loc"))
        n = vm.ver.size
        if "vm_ext" in z:
            vm.ext, vm.keys, vm.key_slot = (
                z[k].copy() for k in ("vm_ext", "vm_keys", "vm_key_slot")
            )
        else:  # snapshots from before slots: the slot was the id itself
            vm.ext = np.arange(n, dtype=np.int64)
            vm.keys = np.nonzero(vm.ver)[0].astype(np.int64)
            vm.key_slot = vm.keys.copy()
        vm.size, vm.count = n, count
        return vm

    def nbytes(self) -> int:
        return sum(
            a.nbytes for a in (self.keys, self.key_slot, self.ext, self.ver, self.live, self.loc)
        )
