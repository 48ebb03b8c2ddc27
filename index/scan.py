"""Search of the partitioned index: faiss scans the probed postings.

The nearest centroids of every query are found at once (one BLAS product); their postings
are faiss inverted lists (`veclink.index.postings.PostingStore`), which faiss's
``search_preassigned`` scans in compiled code, the cost per scanned vector of an
``IndexIVFFlat``. It returns more than ``k`` candidates per query: stale copies (deleted or
replaced ids, not yet compacted) are dropped by the version bits of their faiss ids, and
replicas' duplicate copies by id. A query left with fewer than ``k`` ids while faiss still had
candidates to give is searched again with a deeper candidate list, so results are exact for
the probed postings whatever the share of stale entries. Large batches may instead be
scanned partition-major (`scan_blas`: one BLAS product per probed posting against all the
queries probing it), whichever of the two this index has measured cheaper
(`veclink.index.scan_choice`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import faiss
import numpy as np
from veclink.index.postings import SLOT_MASK, _one_omp_thread, _restore_omp
from veclink.index.rebalance import one_blas_thread
from veclink.index.rerank import scan_quantized
from veclink.index.scan_torch import resolve_device, scan_postings_torch

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex


class _OneQueryBuffers:
    """Output arrays of a single-query search and their faiss pointers, made once per
    thread and shape (a ``swig_ptr`` costs about as much as a numpy call)."""

    def __init__(self, nprobe: int, depth: int) -> None:
        self.coarse = np.empty(nprobe, dtype=np.float32)
        self.lists = np.empty(nprobe, dtype=np.int64)
        self.dist = np.empty(depth, dtype=np.float32)
        self.keys = np.empty(depth, dtype=np.int64)
        arrays = (self.coarse, self.lists, self.dist, self.keys)
        self.ptrs = tuple(faiss.swig_ptr(a) for a in arrays)
        self.params = faiss.SearchParametersIVF()
        self.params.nprobe = nprobe


_local = threading.local()


def scan_one(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The fast path of `scan_postings` for one query routed exactly by faiss: two faiss
    calls into per-thread buffers and a few array operations. None when it does not apply
    (no centroids, replicas, a graph, quantised postings (they are re-ranked), or a stale
    copy or short list among the top ``k``): the general path then answers."""
    store, vm = index.store, index.versions
    parts = len(index.parts)
    if (
        not parts
        or index.options["replicas"] != 1
        or index.centroids.graph is not None
        or store.quantized
    ):
        return None
    nprobe = min(nprobe, parts)
    depth = k + k // 2 + 4
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    buf = cache.get((nprobe, depth))
    if buf is None:
        if len(cache) > 64:
            cache.clear()
        buf = cache[(nprobe, depth)] = _OneQueryBuffers(nprobe, depth)
    coarse, lists, dist, keys = buf.ptrs
    qp = faiss.swig_ptr(q)
    prev = _one_omp_thread(1)
    try:
        store.router.search_c(1, qp, nprobe, coarse, lists)
        store.ivf.search_preassigned_c(1, qp, depth, lists, coarse, dist, keys, False, buf.params)
    finally:
        _restore_omp(prev)
    top = buf.keys[:k]
    slots = top & SLOT_MASK
    if not vm.current_keys(top, slots).all():
        return None
    scores = buf.dist[:k].copy()
    if index.metric == "l2":
        np.negative(scores, out=scores)
    return scores[None], vm.ext.take(slots)[None], int(store.sizes.take(buf.lists).sum())


def scan_postings(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (scores (nq, k), ids (nq, k), vectors scanned); ids are the caller's."""
    nq = len(q)
    if nq == 1 and eps is None and resolve_device(index.options["device"]) is None:
        found = scan_one(index, q, k, nprobe)
        if found is not None:
            return found
    if not index.parts or index.versions.count == 0:
        return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64), 0
    device = resolve_device(index.options["device"])
    store = index.store
    if store.quantized and device is None:  # codes scanned by faiss, then an exact re-rank
        return scan_quantized(index, q, k, nprobe, eps)
    if device is not None:
        dist, pids, probe = route(index, q, nprobe, eps)
        s, slots, scanned = scan_postings_torch(index, q, k, dist, pids, probe, device)
        return s, external_ids(index, slots), scanned
    # faiss's per-query kernel or the partition-major BLAS scan: the same hits, at costs
    # that move with load and data, so the one measured cheaper (`veclink.index.scan_choice`)
    chooser = index.scan_choice
    choice = chooser.choose(nq, nprobe, len(index.parts), index.dim)
    start = time.perf_counter()
    if choice.path == "blas":
        _, pids, probe = route(index, q, nprobe, eps)
        # one BLAS thread: the products are small, and a second thread's wake-ups and
        # spin-waits made this scan up to 8x slower on a busy machine (BENCHMARKS.md)
        with one_blas_thread():
            s, slots, scanned = scan_blas(index, q, k, pids, probe)
        found = s, external_ids(index, slots), scanned
    else:
        found = scan_faiss(index, q, k, nprobe, eps)
    chooser.record(choice, found[2], time.perf_counter() - start)
    return found


def scan_faiss(
    index: PartitionedIndex, q: np.ndarray, k: int, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """faiss's per-query scan of each query's probed postings: as `scan_postings`."""
    nq = len(q)
    store, vm = index.store, index.versions
    replicas = int(index.options["replicas"])
    # stale copies and replicas take candidate places: ask for some more than needed, and
    # again, deeper, for the queries that come back short
    depth = k * replicas + k // 2 + 4
    scores, keys, lists, sizes = scan_probed(index, q, nprobe, eps, depth)
    scanned = int(sizes.sum())
    slots = keys & SLOT_MASK
    current = vm.current_keys(keys, slots)  # (-1, no entry: never current)
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
        current = vm.current_keys(keys, slots)
    found = out_i >= 0
    out_s[~found] = -np.inf
    out_i[found] = vm.ext[out_i[found]]
    return out_s, out_i, scanned


def external_ids(index: PartitionedIndex, slots: np.ndarray) -> np.ndarray:
    """The caller's ids of version-map ``slots`` (-1 stays -1)."""
    return np.where(slots >= 0, index.versions.ext.take(slots, mode="clip"), -1)


def scan_probed(
    index: PartitionedIndex, q: np.ndarray, nprobe: int, eps: float | None, depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """faiss's scan of each query's probed postings, ``depth`` candidates deep: (scores, keys,
    lists probed, their sizes) as `PostingStore.scan`; routed by faiss in the same call when
    nothing prunes or a graph routes, else by `route`."""
    store = index.store
    if eps is None and index.centroids.graph is None:
        scores, keys, lists = store.route_and_scan(q, min(nprobe, len(index.parts)), depth)
        return scores, keys, lists, store.sizes[lists]
    _, pids, probe = route(index, q, nprobe, eps)
    lists, sizes = probed_lists(index, pids, probe)
    scores, keys = store.scan(q, depth, lists)
    return scores, keys, lists, sizes


def route(
    index: PartitionedIndex, q: np.ndarray, nprobe: int, eps: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's ``nprobe`` nearest centroids: (dist, pids, probe), ``probe`` False where a
    graph returned fewer centroids than asked or ``eps`` prunes one as too far."""
    dist, pids = index.nearest(q, nprobe, by_ip=index.metric != "l2")
    probe = pids >= 0  # a graph may return fewer centroids than asked
    if eps is not None:
        probe &= dist <= (1.0 + eps) * dist.min(1, keepdims=True) + 1e-12
    return dist, pids, probe


def probed_lists(
    index: PartitionedIndex, pids: np.ndarray, probe: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The faiss lists of the probed postings (-1: skipped) and their sizes (0 if skipped)."""
    store = index.store
    lists = store.pid_list[np.maximum(pids, 0)]
    lists[~probe] = -1
    return lists, np.where(probe, store.sizes[lists], 0)


def scan_blas(
    index: PartitionedIndex, q: np.ndarray, k: int, pids: np.ndarray, probe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Partition-major scan of a query batch: (scores, slots, vectors scanned).

    Each chosen posting is scanned once against all the queries that probe it (one BLAS
    matrix product), stale entries are masked by the version map, and each query keeps its
    best ``k`` per posting in a candidate buffer that is reduced at the end.
    """
    nq = len(q)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
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
