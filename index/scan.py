"""Partition-major search of the partitioned index.

For a batch of queries, the nearest centroids of every query are found at once; then each
chosen posting is scanned once against all the queries that probe it (one BLAS matrix
product per posting), stale entries are masked by the version map, and each query keeps
its best ``k`` per posting in a candidate buffer that is reduced at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from veclink.index.scan_torch import resolve_device, scan_postings_torch

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex

#: up to this many queries, each is scanned on its own (see `scan_few`)
FEW_QUERIES = 4


def scan_postings(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (scores (nq, k), ids (nq, k), vectors scanned)."""
    nq = len(q)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    if not index.parts or index.versions.count == 0:
        return out_s, out_i, 0
    dist, pids = index.nearest(q, nprobe, by_ip=index.metric != "l2")
    probe = np.ones(pids.shape, dtype=bool)
    if eps is not None:
        probe = dist <= (1.0 + eps) * dist.min(1, keepdims=True) + 1e-12
    device = resolve_device(index.options["device"])
    if device is not None:
        return scan_postings_torch(index, q, k, dist, pids, probe, device)
    if nq <= FEW_QUERIES:
        return scan_few(index, q, k, pids, probe)
    qi = np.repeat(np.arange(nq), pids.shape[1])[probe.ravel()]
    pi = pids.ravel()[probe.ravel()]
    order = np.argsort(pi, kind="stable")
    qi, pi = qi[order], pi[order]
    uniq, starts = np.unique(pi, return_index=True)
    bounds = [*starts.tolist(), pi.size]

    # an id has at most `replicas` current copies, and a reassignment can bring a primary into
    # the posting that holds its replica: taking k x replicas per posting still leaves k
    # distinct ids after the duplicates are dropped
    per_posting = k * int(index.options["replicas"])
    width = pids.shape[1] * per_posting
    cand_s = np.full((nq, width), -np.inf, dtype=np.float32)
    cand_i = np.full((nq, width), -1, dtype=np.int64)
    fill = np.zeros(nq, dtype=np.int64)
    scanned = 0
    vm = index.versions
    l2 = index.metric == "l2"
    for pid, a, b in zip(uniq.tolist(), bounds[:-1], bounds[1:], strict=True):
        ids, ver, vecs = index.parts[pid].view()
        if not ids.size:
            continue
        qs = qi[a:b]
        sub = q[qs]
        scores = sub @ vecs.T
        if l2:
            scores = 2 * scores - (vecs * vecs).sum(1)[None, :] - (sub * sub).sum(1)[:, None]
        current = vm.current(ids, ver)
        if not current.all():
            scores[:, ~current] = -np.inf
        scanned += ids.size * qs.size
        kk = min(per_posting, ids.size)
        if ids.size > kk:
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        else:
            top = np.broadcast_to(np.arange(kk), (qs.size, kk))
        cols = fill[qs][:, None] + np.arange(kk)[None, :]
        cand_s[qs[:, None], cols] = np.take_along_axis(scores, top, 1)
        cand_i[qs[:, None], cols] = ids[top]
        fill[qs] += kk

    cand_i[np.isneginf(cand_s)] = -1
    if int(index.options["replicas"]) > 1:
        drop_duplicate_ids(cand_s, cand_i)
    kk = min(k, width)
    top = (
        np.argpartition(-cand_s, kk - 1, axis=1)[:, :kk]
        if width > kk
        else np.broadcast_to(np.arange(width), (nq, width))
    )
    top_s = np.take_along_axis(cand_s, top, 1)
    order = np.argsort(-top_s, axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    out_s[:, :kk] = np.take_along_axis(cand_s, top, 1)
    out_i[:, :kk] = np.take_along_axis(cand_i, top, 1)
    out_i[np.isneginf(out_s)] = -1
    return out_s, out_i, scanned


def scan_few(
    index: PartitionedIndex, q: np.ndarray, k: int, pids: np.ndarray, probe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Query-major scan for a handful of queries (single-query latency).

    Partition-major bookkeeping costs tens of microseconds per posting; one query needs only
    a matrix-vector product per posting, and its scores, ids and versions are concatenated
    once, masked by the version map and reduced with a single partial sort.
    """
    nq = len(q)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    scanned = 0
    l2 = index.metric == "l2"
    for i in range(nq):
        views = [index.parts[p].view() for p in pids[i][probe[i]].tolist()]
        views = [v for v in views if v[0].size]
        if not views:
            continue
        if l2:
            scores = np.concatenate([-((v[2] - q[i]) ** 2).sum(1) for v in views])
        else:
            scores = np.concatenate([v[2] @ q[i] for v in views])
        ids = np.concatenate([v[0] for v in views])
        scores[~index.versions.current(ids, np.concatenate([v[1] for v in views]))] = -np.inf
        scanned += ids.size
        width = min(k * int(index.options["replicas"]), ids.size)
        top = np.argpartition(-scores, width - 1)[:width] if ids.size > width else np.arange(width)
        row_s, row_i = scores[top][None, :].astype(np.float32), ids[top][None, :]
        row_i[np.isneginf(row_s)] = -1
        if int(index.options["replicas"]) > 1:
            drop_duplicate_ids(row_s, row_i)
        order = np.argsort(-row_s[0], kind="stable")[:k]
        out_s[i, : order.size] = row_s[0, order]
        out_i[i, : order.size] = row_i[0, order]
    out_i[np.isneginf(out_s)] = -1
    return out_s, out_i, scanned


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
