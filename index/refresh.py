"""Refresh: re-check postings' vectors against every centroid, a few postings at a time.

LIRE keeps each split's neighbourhood consistent, but in high-dimensional data a vector's
runner-up centroid is often far from its own in centroid space (on the MiniLM drift
benchmark: typically its ~80th nearest centroid), so after enough splits and re-centrings
elsewhere about one vector in eight sits in a posting whose centroid is no longer its
nearest, and every query then needs more probes to find it. A refresh takes the next
postings of a round-robin cursor, finds the nearest centroid of each of their current
entries with one matrix product against all centroids (the cost of inserting them again),
moves the misplaced ones, drops stale entries, and re-centres the postings it checked or
changed (a local Lloyd step: measured on that benchmark, the re-centring is worth more than
the moves alone).

The worker does it in proportion to the inserts (``refresh`` option: vectors re-checked
per vector inserted), so a full pass over the index happens about once per ``1 / refresh``
times its size in inserts: an incremental, amortised version of a k-means assignment step,
never a global rebuild.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from veclink.index.centroids import clearly_closer
from veclink.index.postings import row_mean

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex

#: entries re-checked per step: one matrix product of this many rows keeps BLAS efficient
#: while holding the index lock for only a few milliseconds
STEP_ENTRIES = 256


#: partition ids looked at per block by `next_postings`
CURSOR_BLOCK = 1024


def next_postings(index: PartitionedIndex, cursor: int, budget: int) -> tuple[list[int], int]:
    """Postings from ``cursor`` on (by partition id, wrapping) holding about ``budget`` entries.

    Walks the store's partition id -> list map from the cursor a block at a time, so a step
    costs O(budget / mean posting size) however many partitions there are (listing and
    sorting every partition id cost ~5 ms a step at 30k partitions, with ~16 steps per
    1,000 inserts).
    """
    pid_list, sizes = index.store.pid_list, index.store.sizes
    cursor = min(cursor, pid_list.size)
    chosen: list[np.ndarray] = []
    total = 0
    for lo, hi in ((cursor, pid_list.size), (0, cursor)):
        for a in range(lo, hi, CURSOR_BLOCK):
            b = min(hi, a + CURSOR_BLOCK)
            pids = a + np.nonzero(pid_list[a:b] >= 0)[0]
            if not pids.size:
                continue
            ends = total + np.cumsum(sizes[pid_list[pids]])
            take = int(np.searchsorted(ends, budget))
            if take < pids.size:  # this one reaches the budget
                chosen.append(pids[: take + 1])
                out = np.concatenate(chosen).tolist()
                return out, out[-1] + 1
            chosen.append(pids)
            total = int(ends[-1])
    out = np.concatenate(chosen).tolist() if chosen else []
    return out, (out[-1] + 1 if out else cursor)


def refresh_postings(
    index: PartitionedIndex, pids: list[int], defer: set[int] | None = None
) -> tuple[int, int, set[int]]:
    """Move the current entries of ``pids`` to their nearest centroid; returns
    (entries checked, entries moved, postings changed).

    The postings that received entries are re-centred too, or, given ``defer``, added to it
    for the caller to re-centre later (reading them all would make the step several postings'
    work: `Rebalancer.recentre_step` does it under the shared lock).
    """
    views = [index.parts[p].view() for p in pids]
    sizes = np.array([v[0].size for v in views], dtype=np.int64)
    if not sizes.sum():
        return 0, 0, set()
    ids = np.concatenate([v[0] for v in views])
    ver = np.concatenate([v[1] for v in views])
    vecs = np.concatenate([v[2] for v in views])
    src = np.repeat(np.asarray(pids, dtype=np.int64), sizes)
    vm = index.versions
    current = vm.current(ids, ver)
    primary = current & (vm.loc[ids] == src)
    dest = src.copy()
    if primary.any():
        # a near centroid (from the projection), kept only where it beats the current one
        cand_dist, cand = index.centroids.nearest_projected(vecs[primary])
        v = vecs[primary]
        own = v - index.cents[index.centroids.rows(src[primary])]
        own_dist = np.einsum("ij,ij->i", own, own)
        better = clearly_closer(cand_dist, own_dist, np.einsum("ij,ij->i", v, v))
        dest[np.nonzero(primary)[0][better]] = cand[better]
    moved = dest != src
    vm.loc[ids[moved]] = dest[moved]
    # rebuild the checked postings from their entries that stay (stale ones are dropped)
    stay = current & ~moved
    changed: set[int] = set()
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for j, p in enumerate(pids):
        a, b = bounds[j], bounds[j + 1]
        if not stay[a:b].all():
            keep = a + np.nonzero(stay[a:b])[0]
            index.parts[p].replace(ids[keep], ver[keep], vecs[keep])
            changed.add(p)
    if moved.any():
        changed |= index._append_grouped(dest[moved], ids[moved], ver[moved], vecs[moved])
    # a Lloyd step over what was checked: postings whose content changed, and the checked
    # ones whose centroid has drifted from their mean as inserts arrived
    if defer is None:
        recenter(index, changed | set(pids))
    else:
        recenter(index, set(pids))
        defer |= changed - set(pids)
    return int(sizes.sum()), int(moved.sum()), changed


def recenter(index: PartitionedIndex, pids: set[int]) -> None:
    """Move each centroid of ``pids`` to the mean of its posting's current entries (stale
    copies do not pull it; with quantised postings they even read their id's current full
    vector, not the one they were written with)."""
    live, means = posting_means(index, pids)
    if live:
        index.move_centroids(index.centroids.rows(np.array(live, dtype=np.int64)), means)


def posting_means(index: PartitionedIndex, pids: set[int]) -> tuple[list[int], np.ndarray]:
    """(the non-empty postings of ``pids``, the means of their current entries)."""
    live = [p for p in pids if p in index.parts and index.parts[p].n]
    means = []
    for p in live:
        ids, ver, vecs = index.parts[p].view()
        current = index.versions.current(ids, ver)
        means.append(row_mean(vecs[current] if current.any() else vecs))
    return live, np.stack(means) if means else np.zeros((0, index.dim), np.float32)
