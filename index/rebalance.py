"""Incremental rebalancing of the partitioned index (SPFresh's LIRE protocol).

A posting that grows past ``split_limit`` is compacted (stale entries dropped) and, if
still too big, split in two by balanced 2-means. Splitting moves a centroid, so two kinds
of vectors may now sit in the wrong posting, and are reassigned (LIRE):

1. vectors of the split posting whose nearest centroid is now another posting's;
2. vectors of the ``reassign_neighbors`` postings nearest to the old centroid that are
   closer to one of the two new centroids than to their own.

A posting whose live entries fall below ``merge_limit`` is dissolved: each of its vectors
moves to its nearest remaining centroid. All of it runs one posting at a time under the
index lock, in a worker thread; no operation touches more than a neighbourhood.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex


@functools.cache
def _blas_controller() -> object | None:
    try:  # threadpoolctl comes with scikit-learn, a core dependency; degrade without it
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Run BLAS single-threaded for a while.

    Rebalancing multiplies small matrices (a posting against a neighbourhood of centroids);
    a multi-threaded BLAS spends more time waking and spin-waiting for its helper threads
    than computing, which on a busy 2-core machine tripled the rebalancing CPU time.
    """
    controller = _blas_controller()
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")  # type: ignore[attr-defined,no-any-return]


def centroid_rows(cent_pid: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Centroid rows of partition ids."""
    order = np.argsort(cent_pid)
    return order[np.searchsorted(cent_pid, pids, sorter=order)]


def balanced_two_means(
    x: np.ndarray, rng: np.random.Generator, iters: int = 8, min_share: float = 0.25
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``x`` into two equal halves around two centroids; returns (c0, c1, in_first)."""
    n = len(x)
    first = int(rng.integers(n))
    far = int(np.argmax(((x - x[first]) ** 2).sum(1)))
    c = np.stack([x[first], x[far]]).astype(np.float32)
    sq = (x * x).sum(1)
    left = np.zeros(n, dtype=bool)
    for _ in range(iters):
        d = sq[:, None] - 2 * (x @ c.T) + (c * c).sum(1)[None, :]
        left = d[:, 0] <= d[:, 1]
        lo = int(min_share * n)
        if not lo <= left.sum() <= n - lo:  # too lopsided: cut at the balanced point instead
            order = np.argsort(d[:, 0] - d[:, 1], kind="stable")
            cut = lo if left.sum() < lo else n - lo
            left = np.zeros(n, dtype=bool)
            left[order[:cut]] = True
        new = np.stack([x[left].mean(0), x[~left].mean(0)]).astype(np.float32)
        if np.abs(new - c).max() < 1e-6:
            break
        c = new
    return c[0], c[1], left


class Rebalancer:
    """Keeps postings between ``merge_limit`` and ``split_limit``, in the background."""

    def __init__(self, index: PartitionedIndex, background: bool = True) -> None:
        self.index = index
        self.background = background
        self.pending: dict[int, None] = {}  # ordered set of partition ids
        self.cond = threading.Condition()
        self.busy = False
        self.stopping = False
        self.splits = self.merges = self.reassigned = 0
        self.cpu_seconds = 0.0
        self.rng = np.random.default_rng(0)
        self._inline = False
        self.thread: threading.Thread | None = None
        if background:
            self.thread = threading.Thread(target=self._loop, name="veclink-rebalance", daemon=True)
            self.thread.start()

    # ------------------------------------------------------------------ scheduling

    def schedule(self, pids: Iterable[int]) -> None:
        with self.cond:
            for pid in pids:
                self.pending[int(pid)] = None
            if not self.pending:
                return
            self.cond.notify_all()
        if not self.background and not self._inline:
            self._drain_inline()

    def _drain_inline(self) -> None:
        self._inline = True
        try:
            while self.pending:
                pid = next(iter(self.pending))
                del self.pending[pid]
                self._timed(pid)
        finally:
            self._inline = False

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.busy = False
                    self.cond.notify_all()
                    self.cond.wait()
                if self.stopping:
                    self.busy = False
                    self.cond.notify_all()
                    return
                pid = next(iter(self.pending))
                del self.pending[pid]
                self.busy = True
            self._timed(pid)

    def _timed(self, pid: int) -> None:
        start = time.thread_time()
        with self.index.lock, one_blas_thread():
            if not self.index._closed:
                self.maintain(pid)
        self.cpu_seconds += time.thread_time() - start

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: not self.pending and not self.busy, timeout)

    def pending_count(self) -> int:
        return len(self.pending)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join()

    # ------------------------------------------------------------------ operations

    def bootstrap(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """First vectors of an empty index: k-means them into postings of about half the limit."""
        ix = self.index
        target = ix.options["split_limit"] // 2
        nlist = max(1, math.ceil(len(vecs) / target))
        if nlist == 1:
            cents = vecs.mean(0, keepdims=True)
        else:
            km = faiss.Kmeans(ix.dim, nlist, niter=10, seed=1234, min_points_per_centroid=1)
            km.train(vecs)
            cents = km.centroids
        for c in cents:
            ix.new_partition(c)
        touched = ix.place(ids, ix.versions.ver[ids], vecs, replicate=True)
        self.schedule(p for p in touched if ix.parts[p].n > ix.options["split_limit"])

    def maintain(self, pid: int) -> None:
        ix = self.index
        part = ix.parts.get(pid)
        if part is None:
            return
        ids, ver, _ = part.view()
        current = ix.versions.current(ids, ver)
        if not current.all():
            part.keep(current)
        if part.n > ix.options["split_limit"]:
            self.split(pid)
        elif part.n < ix.options["merge_limit"] and len(ix.parts) > 1:
            self.merge(pid)

    def split(self, pid: int) -> None:
        ix = self.index
        part = ix.parts[pid]
        ids, ver, vecs = (a.copy() for a in part.view())
        row = int(centroid_rows(ix.cent_pid, np.array([pid]))[0])
        old_centroid = ix.cents[row].copy()
        c0, c1, first = balanced_two_means(vecs, self.rng)
        part.keep(first)
        ix.move_centroids(np.array([row]), c0[None])
        other = ix.new_partition(c1)
        ix.parts[other].append(ids[~first], ver[~first], vecs[~first])
        moved = ids[~first]
        loc = ix.versions.loc
        loc[moved[loc[moved] == pid]] = other
        self.splits += 1
        touched = {pid, other}
        # the neighbourhood of the old centroid bounds all LIRE work: SPFresh's observation
        # that a split can only pull vectors across nearby partition boundaries
        d_old = ix.centroid_distances(old_centroid[None])[0]
        n_neigh = min(ix.options["reassign_neighbors"] + 2, d_old.size)
        rows = np.argpartition(d_old, n_neigh - 1)[:n_neigh]
        rows = np.union1d(rows, centroid_rows(ix.cent_pid, np.array([pid, other])))
        neigh = ix.cent_pid[rows]
        # LIRE 1: the split posting's vectors that are now nearer another centroid
        near = neigh[ix.centroid_distances(vecs, rows).argmin(1)]
        now = np.where(first, pid, other)
        for p in (pid, other):
            side = now == p
            targets = np.full(ix.parts[p].n, p, dtype=np.int64)
            targets[: int(side.sum())] = near[side]
            touched |= self._move(p, targets != p, targets)
        # LIRE 2: neighbours' vectors that are now closer to another centroid of the
        # neighbourhood. LIRE only asks about the two new centroids; asking about all of them
        # costs the same one matrix product and, with the recentring below, makes every split
        # a local Lloyd step, which keeps partition quality close to a fresh k-means.
        cols = [
            (c, q)
            for c, q in enumerate(neigh.tolist())
            if q not in (pid, other) and q in ix.parts and ix.parts[q].n
        ]
        if cols:
            sizes = np.array([ix.parts[q].n for _, q in cols])
            cand = np.concatenate([ix.parts[q].view()[2] for _, q in cols])
            d = ix.centroid_distances(cand, rows)
            best = d.argmin(1)
            own = np.repeat(np.array([c for c, _ in cols]), sizes)
            closer = d[np.arange(best.size), best] < d[np.arange(best.size), own]
            start = 0
            for (_, q), n in zip(cols, sizes.tolist(), strict=True):
                sel = closer[start : start + n]
                if sel.any():
                    # entries appended to q by earlier moves sit after its first n
                    targets = np.full(ix.parts[q].n, q, dtype=np.int64)
                    targets[:n] = neigh[best[start : start + n]]
                    touched |= self._move(q, targets != q, targets)
                start += n
            touched |= {q for _, q in cols}
        if ix.options.get("recenter", True):
            self._recenter(touched)
        self.schedule(
            p for p in touched if p in ix.parts and ix.parts[p].n > ix.options["split_limit"]
        )

    def _recenter(self, pids: set[int]) -> None:
        """One local Lloyd step: move each touched centroid to the mean of its posting."""
        ix = self.index
        live = [p for p in pids if p in ix.parts and ix.parts[p].n]
        if not live:
            return
        rows = centroid_rows(ix.cent_pid, np.array(live))
        ix.move_centroids(rows, np.stack([ix.parts[p].view()[2].mean(0) for p in live]))

    def _move(self, src: int, mask: np.ndarray, targets: np.ndarray) -> set[int]:
        """Move the masked entries of posting ``src`` to ``targets`` (aligned with entries)."""
        if not mask.any():
            return set()
        ix = self.index
        ids, ver, vecs = (a[mask].copy() for a in ix.parts[src].view())
        dest = targets[mask]
        ix.parts[src].keep(~mask)
        loc = ix.versions.loc
        primary = loc[ids] == src
        loc[ids[primary]] = dest[primary]
        self.reassigned += int(mask.sum())
        return ix._append_grouped(dest, ids, ver, vecs)

    def merge(self, pid: int) -> None:
        ix = self.index
        ids, ver, vecs = (a.copy() for a in ix.parts.pop(pid).view())
        keep = ix.cent_pid != pid
        ix.set_centroids(ix.cent_pid[keep], ix.cents[keep])
        self.merges += 1
        if not ids.size:
            return
        _, near = ix.nearest(vecs, 1)
        dest = near[:, 0]
        loc = ix.versions.loc
        primary = loc[ids] == pid
        loc[ids[primary]] = dest[primary]
        self.reassigned += int(ids.size)
        touched = ix._append_grouped(dest, ids, ver, vecs)
        self.schedule(p for p in touched if ix.parts[p].n > ix.options["split_limit"])
