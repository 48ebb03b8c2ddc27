"""`SlotKeys`: the id -> slot map of the version map, as a few sorted runs (a small LSM).

Ids are any int64 >= 0, so the version map finds an id's slot by binary search over sorted
keys. One sorted array must be rebuilt for every batch of new ids (``np.insert``): O(n) per
batch, two 80 MB copies per 1,000-vector batch at 10M ids. Here the keys live in sorted
runs whose sizes fall geometrically from the oldest to the newest; a batch becomes a new
run, and a run is merged into the one before it while that one is less than RATIO times
its size. An id is then copied O(log n) times over its life, whatever n is, and a lookup is
one vectorised ``searchsorted`` per run (O(log n) runs). Snapshots store one run.
"""

from __future__ import annotations

import numpy as np

#: a run is merged into its predecessor while that one is less than RATIO times as large:
#: runs shrink at least this fast, so there are at most log_RATIO(n) + 1 of them
RATIO = 4


def merge_sorted(
    a_keys: np.ndarray, a_vals: np.ndarray, b_keys: np.ndarray, b_vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted key arrays with no key in common, values alongside: O(|a| + |b| log |a|)."""
    n = a_keys.size + b_keys.size
    at = np.searchsorted(a_keys, b_keys) + np.arange(b_keys.size)
    from_a = np.ones(n, dtype=bool)
    from_a[at] = False
    keys = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.int64)
    keys[at], vals[at] = b_keys, b_vals
    keys[from_a], vals[from_a] = a_keys, a_vals
    return keys, vals


class SlotKeys:
    """Distinct int64 keys -> int64 values (slots); insert new keys, look keys up, in batches."""

    def __init__(self, keys: np.ndarray | None = None, vals: np.ndarray | None = None) -> None:
        #: (keys, values) runs, oldest (largest) first; each run sorted by key
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        if keys is not None and keys.size:
            assert vals is not None
            self.runs.append((np.asarray(keys, dtype=np.int64), np.asarray(vals, dtype=np.int64)))

    def __len__(self) -> int:
        return sum(k.size for k, _ in self.runs)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Values of ``keys``; -1 for keys not present."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.full(keys.size, -1, dtype=np.int64)
        todo = np.arange(keys.size)
        for run_keys, run_vals in reversed(self.runs):  # newest first: small runs are cheap
            if not todo.size:
                break
            want = keys[todo]
            pos = np.searchsorted(run_keys, want)
            np.minimum(pos, run_keys.size - 1, out=pos)
            hit = run_keys[pos] == want
            out[todo[hit]] = run_vals[pos[hit]]
            todo = todo[~hit]
        return out

    def insert(self, keys: np.ndarray, vals: np.ndarray) -> None:
        """Add distinct ``keys`` (none present yet) with their ``vals``."""
        if not keys.size:
            return
        order = np.argsort(keys, kind="stable")
        run = (np.asarray(keys, dtype=np.int64)[order], np.asarray(vals, dtype=np.int64)[order])
        runs = list(self.runs)
        while runs and runs[-1][0].size < RATIO * run[0].size:
            older = runs.pop()
            run = merge_sorted(older[0], older[1], run[0], run[1])
        runs.append(run)
        self.runs = runs  # one assignment: a reader iterating the old list sees it whole

    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        """Merge every run into one; returns it (keys sorted, values alongside)."""
        runs = list(self.runs)
        if not runs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        while len(runs) > 1:
            newer = runs.pop()
            older = runs.pop()
            runs.append(merge_sorted(older[0], older[1], newer[0], newer[1]))
        self.runs = runs  # one assignment, as in `insert`
        return runs[0]

    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.runs)
