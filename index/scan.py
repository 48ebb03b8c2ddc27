"""Search of the partitioned index: faiss scans the probed postings.

The nearest centroids of every query are found at once (one BLAS product); their postings
are faiss inverted lists (`veclink.index.postings.PostingStore`), which faiss's
``search_preassigned`` scans in compiled code, the cost per scanned vector of an
``IndexIVFFlat``. It returns more than ``k`` candidates per query: stale copies (deleted or
replaced ids, not yet compacted) are dropped by the version bits of their faiss ids, and
replicas' duplicate copies by id. A query left with fewer than ``k`` ids while faiss still had
candidates to give is searched again with a deeper candidate list, so results are exact for
the probed postings whatever the share of stale entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from veclink.index.postings import SLOT_MASK
from veclink.index.scan_torch import resolve_device, scan_postings_torch

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex


def scan_postings(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (scores (nq, k), ids (nq, k), vectors scanned); ids are the caller's."""
    nq = len(q)
    if not index.parts or index.versions.count == 0:
        return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64), 0
    device = resolve_device(index.options["device"])
    store = index.store
    vm = index.versions
    replicas = int(index.options["replicas"])
    # stale copies and replicas take candidate places: ask for some more than needed, and
    # again, deeper, for the queries that come back short
    depth = k * replicas + k // 2 + 4
    if eps is None and device is None:
        scores, keys, lists = store.route_and_scan(q, min(nprobe, len(index.parts)), depth)
        sizes = store.sizes[lists]
    else:
        dist, pids = index.nearest(q, nprobe, by_ip=index.metric != "l2")
        probe = np.ones(pids.shape, dtype=bool)
        if eps is not None:
            probe = dist <= (1.0 + eps) * dist.min(1, keepdims=True) + 1e-12
        if device is not None:
            s, slots, scanned = scan_postings_torch(index, q, k, dist, pids, probe, device)
            return s, np.where(slots >= 0, vm.ext.take(slots, mode="clip"), -1), scanned
        lists = store.pid_list[pids]
        lists[~probe] = -1
        sizes = np.where(probe, store.sizes[lists], 0)
        scores, keys = store.scan(q, depth, lists)
    scanned = int(sizes.sum())
    slots = keys & SLOT_MASK
    # a key is current iff it is its slot's `cur_key`; -1 (no entry) maps to the last slot
    # by clipping and never equals a key
    current = vm.cur_key.take(slots, mode="clip") == keys
    if replicas == 1 and current[:, :k].all():  # the common case: the top k are all current
        return scores[:, :k], vm.ext.take(slots[:, :k]), scanned
    entries = sizes.sum(1)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    rows = np.arange(nq)
    while True:
        found = keep_current(scores, slots, current, replicas)
        # each row's current entries in faiss's order (best first)
        order = np.argsort(found < 0, axis=1, kind="stable")[:, :k]
        out_s[rows] = np.take_along_axis(scores, order, 1)
        out_i[rows] = np.take_along_axis(found, order, 1)
        short = ((found >= 0).sum(1) < k) & (entries[rows] > depth)
        rows = rows[short]
        if not rows.size:
            break
        depth = int(min(4 * depth, entries[rows].max()))
        scores, keys = store.scan(q[rows], depth, lists[rows])
        slots = keys & SLOT_MASK
        current = vm.cur_key.take(slots, mode="clip") == keys
    found = out_i >= 0
    out_s[~found] = -np.inf
    out_i[found] = vm.ext[out_i[found]]
    return out_s, out_i, scanned


def keep_current(
    scores: np.ndarray, slots: np.ndarray, current: np.ndarray, replicas: int
) -> np.ndarray:
    """``slots`` where ``current`` (-1 elsewhere); with replicas, only each id's best copy per
    row. ``scores`` of dropped entries become -inf (in place)."""
    found = np.where(current, slots, -1)
    scores[~current] = -np.inf
    if replicas > 1:
        drop_duplicate_ids(scores, found)
    return found


def drop_duplicate_ids(cand_s: np.ndarray, cand_i: np.ndarray) -> None:
    """Replicas put one id in several postings: keep its best copy per query (in place)."""
    # per row: sort by id, then best score first; every later copy of an id is a duplicate
    order = np.lexsort((-cand_s, cand_i), axis=-1)
    sorted_ids = np.take_along_axis(cand_i, order, 1)
    dup = np.zeros(cand_i.shape, dtype=bool)
    dup[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    rows, cols = np.nonzero(dup)
    drop = order[rows, cols]
    cand_s[rows, drop] = -np.inf
    cand_i[rows, drop] = -1
