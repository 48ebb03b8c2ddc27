"""Incremental rebalancing of the partitioned index (SPFresh's LIRE protocol, plus refresh).

A posting that grows past ``split_limit`` is compacted (stale entries dropped) and, if
still too big, split in two by balanced 2-means (a posting several times over the limit,
when inserts outpace the worker, is cut by k-means into postings of half the limit).
Splitting moves centroids, so vectors may now sit in the wrong posting, and are reassigned
(LIRE) over the neighbourhood: the new postings and the ``reassign_neighbors`` postings
nearest to the old centroid. Every current entry there goes to its nearest centroid of the
neighbourhood, then those centroids move to their postings' means (one local Lloyd step,
a posting per step: `veclink.index.reassign`).

A posting whose live entries fall below ``merge_limit`` is dissolved: each of its vectors
moves to its nearest remaining centroid. Inserts also earn refresh steps
(`veclink.index.refresh`), which re-check postings round-robin against every centroid.
All of it runs one step at a time in a worker thread (a split's install and reassignment
first, then splits and merges, then refresh). The expensive parts (a split's clustering, a
reassignment's distances, re-centring after a refresh, repacking the lists, fitting the
centroid projection) run outside the exclusive lock, on copies or under the shared lock;
each step holds the lock alone for about one posting's worth of work (a split of a posting
far over the limit is installed a few new postings per step), so a search waits at most
that long for rebalancing (`Rebalancer.holds` records the work of each hold).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import faiss
import numpy as np
from veclink.index.centroid_graph import CentroidGraph
from veclink.index.postings import centroid_rows, row_mean
from veclink.index.reassign import Carve, Reassignment
from veclink.index.refresh import STEP_ENTRIES, next_postings, posting_means, refresh_postings

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex

__all__ = ["Rebalancer", "balanced_two_means", "centroid_rows"]

#: `Rebalancer._next`'s step that repacks the postings' lists (`veclink.index.repack`)
REPACK = -1
#: the first batch is k-means-ed into at most this many postings; bigger ones are then cut
#: by the worker's splits (k-means of each), a two-level clustering: one k-means into
#: n / (limit / 2) lists costs O(n^2 / limit), ~20 CPU-minutes for 2.5M 128-d vectors
BOOTSTRAP_MAX_LISTS = 2048
#: `Rebalancer._next`'s step that advances a split's install or reassignment
#: (`veclink.index.reassign`)
REASSIGN = -2
#: `Rebalancer._next`'s step that re-centres the postings a refresh step moved entries into
RECENTRE = -3


@dataclasses.dataclass(frozen=True)
class Hold:
    """One exclusive hold of the index lock by the worker (`Rebalancer.holds`)."""

    kind: str  # "split", "carve", "reassign", "merge", "compact", "refresh", "repack", "graph"
    entries: int  # posting entries read or written during it (`PostingStore.entries_touched`)


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


def balanced_two_means(
    x: np.ndarray,
    rng: np.random.Generator,
    iters: int = 8,
    min_share: float = 0.25,
    min_size: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``x`` in two around two centroids; returns (c0, c1, in_first).

    Each side keeps at least ``min_share`` of the rows and at least ``min_size`` of them (the
    merge limit: a split must not make a posting that the merge rule would fold straight back,
    or the two would undo each other forever), with one exception: when the larger side is
    copies of one vector, the split keeps them apart from the rest as they are. A balanced
    cut would put some copies beside other vectors, under a centroid farther from them than
    the copies' own, and reassignment would move them straight back; kept together they
    split later into halves with equal centroids, which reassignment leaves alone.
    """
    n = len(x)
    first = int(rng.integers(n))
    far = int(np.argmax(((x - x[first]) ** 2).sum(1)))
    c = np.stack([x[first], x[far]]).astype(np.float32)
    sq = (x * x).sum(1)
    left = np.zeros(n, dtype=bool)
    prev: np.ndarray | None = None
    for _ in range(iters):
        d = sq[:, None] - 2 * (x @ c.T) + (c * c).sum(1)[None, :]
        left = d[:, 0] <= d[:, 1]
        lo = max(int(min_share * n), min(min_size, n // 2))
        if not lo <= left.sum() <= n - lo and not _copies_apart(x, left):
            # too lopsided: cut at the balanced point instead
            order = np.argsort(d[:, 0] - d[:, 1], kind="stable")
            cut = lo if left.sum() < lo else n - lo
            left = np.zeros(n, dtype=bool)
            left[order[:cut]] = True
        if prev is not None and (left == prev).all():
            break  # assignments settled: the centroids below would not move
        prev = left
        # both means in one product with the (2, n) membership matrix
        member = np.stack([left, ~left]).astype(np.float32)
        c = (member @ x) / member.sum(1, keepdims=True)
    return c[0], c[1], left


def are_copies(x: np.ndarray) -> bool:
    """True when the rows are copies of one vector, to rounding error."""
    spread = ((x - row_mean(x)) ** 2).sum(1).max()
    return bool(spread <= 1e-6 * ((x * x).sum(1).max() + 1e-12))


def group_means(
    x: np.ndarray, label: np.ndarray, k: int, empty: np.ndarray | None = None
) -> np.ndarray:
    """Mean of the rows of each label in ``[0, k)``; an empty label's row is taken from
    ``empty`` (required when some label may be empty)."""
    counts = np.bincount(label, minlength=k)
    order = np.argsort(label, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    xs = x[order]
    out = np.empty((k, x.shape[1]), dtype=np.float32) if empty is None else empty.copy()
    for j in np.nonzero(counts)[0].tolist():
        out[j] = row_mean(xs[bounds[j] : bounds[j + 1]])
    return out


def _copies_apart(x: np.ndarray, left: np.ndarray) -> bool:
    """Both sides non-empty and the larger one copies of a vector."""
    k = int(left.sum())
    if k == 0 or k == len(x):
        return False
    return are_copies(x[left] if 2 * k >= len(x) else x[~left])


def chunk_copies(
    x: np.ndarray, cents: np.ndarray, label: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut every cluster above ``limit`` that is copies of one vector into chunks of about
    half the limit, each under the same centroid (ties: reassignment leaves them be).

    No centroid can divide copies, so this is the only way a posting of them stays bounded.
    """
    counts = np.bincount(label, minlength=len(cents))
    extra_c, label = [], label.copy()
    for j in np.nonzero(counts > limit)[0].tolist():
        rows = np.nonzero(label == j)[0]
        if not are_copies(x[rows]):
            continue  # a later split can divide it
        pieces = math.ceil(rows.size / max(limit // 2, 1))
        for part in np.array_split(rows, pieces)[1:]:
            label[part] = len(cents) + len(extra_c)
            extra_c.append(cents[j])
    if extra_c:
        cents = np.concatenate([cents, np.stack(extra_c)])
    return cents, label


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means of a posting's vectors into at most ``k`` non-empty clusters.

    Returns (centroids (k', dim) float32, label in ``[0, k')`` of each row); k' < k when
    clusters end up empty, which in practice means rows that are copies of a few vectors.
    """
    n = len(x)
    k = min(k, n)
    c = x[rng.choice(n, size=k, replace=False)].astype(np.float32)
    sq = (x * x).sum(1)
    label = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        d = sq[:, None] - 2 * (x @ c.T) + (c * c).sum(1)[None, :]
        label = d.argmin(1)
        counts = np.bincount(label, minlength=k)
        empty = np.nonzero(counts == 0)[0]
        if empty.size:  # reseed empty clusters on the points farthest from their centroid
            far = np.argsort(-d[np.arange(n), label])[: empty.size]
            label[far] = empty
        # a reseed can empty the cluster it took its point from (duplicates make it likely):
        # such a centroid stays where it was, never the NaN mean of nothing, which argmin
        # would then prefer over every real distance
        c = group_means(x, label, k, empty=c)
    used = np.nonzero(np.bincount(label, minlength=k))[0]
    if used.size < k:  # return only non-empty clusters, labels renumbered densely
        remap = np.full(k, -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        c, label = c[used], remap[label]
    return c, label


def fold_small_clusters(
    x: np.ndarray, cents: np.ndarray, label: np.ndarray, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move the rows of clusters smaller than ``min_size`` to their nearest larger cluster.

    A split must not create postings that the merge rule removes at once. Returns the
    remaining clusters' centroids (means of their rows) and labels renumbered densely; the
    input unchanged when fewer than two clusters are large enough (the caller then bisects).
    """
    counts = np.bincount(label, minlength=len(cents))
    big = np.nonzero(counts >= min_size)[0]
    if big.size == len(cents) or big.size < 2:
        return cents, label
    small = ~np.isin(label, big)
    xs = x[small]
    d = (cents[big] ** 2).sum(1)[None, :] - 2.0 * (xs @ cents[big].T)
    label = label.copy()
    label[small] = big[d.argmin(1)]
    remap = np.full(len(cents), -1, dtype=np.int64)
    remap[big] = np.arange(big.size)
    label = remap[label]
    return group_means(x, label, big.size), label


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """A split computed outside the exclusive lock: the entries it saw and their clusters."""

    ids: np.ndarray
    ver: np.ndarray
    cents: np.ndarray
    label: np.ndarray

    def labels_for(self, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """Cluster of each entry the posting holds now: the planned one for the entries the
        plan saw, the nearest planned centroid for entries added since."""
        order = np.argsort(self.ids, kind="stable")
        pos = np.minimum(np.searchsorted(self.ids, ids, sorter=order), self.ids.size - 1)
        at = order[pos]
        seen = (self.ids[at] == ids) & (self.ver[at] == ver)
        label = np.empty(ids.size, dtype=np.int64)
        label[seen] = self.label[at[seen]]
        if not seen.all():
            v = vecs[~seen]
            d = (self.cents * self.cents).sum(1)[None, :] - 2.0 * (v @ self.cents.T)
            label[~seen] = d.argmin(1)
        if not (label == 0).any():  # the posting keeps cluster 0: never leave it empty
            label[0] = 0
        return label


class Rebalancer:
    """Keeps postings between ``merge_limit`` and ``split_limit``, in the background."""

    def __init__(self, index: PartitionedIndex, background: bool = True) -> None:
        self.index = index
        self.background = background
        self.pending: dict[int, None] = {}  # ordered set of partition ids
        self.cond = threading.Condition()
        self.busy = False
        self.stopping = False
        self.splits = self.merges = self.reassigned = self.refreshed = 0
        self.graph_builds = 0
        self.cpu_seconds = 0.0
        #: entries the worker still owes to refresh (earned by inserts), and where it resumes
        self.refresh_credit = 0.0
        self.refresh_cursor = 0
        self.rng = np.random.default_rng(0)
        self._inline = False
        #: a split's install or reassignment in progress; the worker finishes it first
        self.job: Carve | Reassignment | None = None
        #: postings that refresh steps moved entries into, to re-centre (`recentre_step`)
        self.recentre_due: set[int] = set()
        #: set to a list to record every exclusive hold (instrumentation for tests and benches)
        self.holds: list[Hold] | None = None
        self.thread: threading.Thread | None = None
        if background:
            self.thread = threading.Thread(target=self._loop, name="veclink-rebalance", daemon=True)
            self.thread.start()

    # ------------------------------------------------------------------ scheduling

    def schedule(self, pids: Iterable[int]) -> None:
        with self.cond:
            for pid in pids:
                self.pending[int(pid)] = None
            if not self.has_work():
                return
            self.cond.notify_all()
        if not self.background and not self._inline:
            self._drain_inline()

    def earn_refresh(self, inserted: int) -> None:
        """Inserts earn refresh work: ``refresh`` entries re-checked per entry inserted."""
        rate = float(self.index.options["refresh"])
        if rate > 0:
            self.refresh_credit += rate * inserted
            self.schedule(())

    def has_work(self) -> bool:
        return (
            self.job is not None
            or bool(self.recentre_due)
            or bool(self.pending)
            or self.refresh_credit >= STEP_ENTRIES
            or self.index.store.repack_due()
            or self.graph_due()
        )

    def graph_due(self) -> bool:
        """A centroid graph to build (`veclink.index.centroids.CentroidTable.graph_due`)."""
        return self.index.centroids.graph_due() and not self.index._closed

    def _next(self) -> int | None:
        """Oversized and undersized postings first; refresh steps only when none is waiting
        (under a burst of inserts, splitting promptly is what keeps postings well shaped); a
        split's install or reassignment in progress before all of them, then a repack that
        grows the lists when they are running out."""
        if self.job is not None:
            return REASSIGN
        if self.recentre_due:
            return RECENTRE
        if self.index.store.grow_due():
            # before the splits that would fill the lists: running out means copying them
            # all inside one exclusive hold (`PostingStore._grow`)
            return REPACK
        if self.pending:
            pid = next(iter(self.pending))
            del self.pending[pid]
            return pid
        if self.index.store.repack_due():
            return REPACK
        return None

    def _drain_inline(self) -> None:
        self._inline = True
        try:
            while self.has_work():
                if self.graph_due():
                    self.build_graph()
                else:
                    self._timed(self._next())
        finally:
            self._inline = False

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.has_work() and not self.stopping:
                    self.busy = False
                    self.cond.notify_all()
                    self.cond.wait()
                if self.stopping:
                    self.busy = False
                    self.cond.notify_all()
                    return
                graph = self.graph_due()
                pid = None if graph else self._next()
                self.busy = True
            if graph:
                self.build_graph()
            else:
                self._timed(pid)

    def _timed(self, pid: int | None) -> None:
        start = time.thread_time()
        if pid == REPACK:
            self.repack()
        elif pid == REASSIGN:
            self.reassign_step()
        elif pid == RECENTRE:
            self.recentre_step()
        else:
            plan = None if pid is None else self.plan_split(pid)
            fitted = self._fit_projection() if pid is None else None
            splits, merges = self.splits, self.merges
            with self._exclusive() as hold:
                if not self.index._closed:
                    if pid is None:
                        hold[0] = "refresh"
                        if fitted is not None:
                            self.index.centroids.install_projection(fitted)
                        self.refresh()
                    else:
                        self.maintain(pid, plan)
                        hold[0] = (
                            "split"
                            if self.splits > splits or self.job is not None
                            else "merge"
                            if self.merges > merges
                            else "compact"
                        )
        self.cpu_seconds += time.thread_time() - start

    def _fit_projection(self) -> tuple[int, object] | None:
        """Fit the centroid projection that refresh steps search with, when it is due, on a
        copy and outside the exclusive lock (`CentroidTable.fit_projection_of`)."""
        table = self.index.centroids
        with self.index.lock.shared():
            if self.index._closed or not table.projection_due():
                return None
            changes, cbuf, n = table.projection_input()
        with one_blas_thread():
            return changes, table.fit_projection_of(cbuf, n)

    @contextlib.contextmanager
    def _exclusive(self, kind: str = "") -> Iterator[list[str]]:
        """Hold the index lock alone (BLAS single-threaded); records the hold in `holds` when
        that is a list (the caller names its kind in the list yielded)."""
        ix = self.index
        with ix.lock, one_blas_thread():
            hold = [kind]
            before = ix.store.entries_touched()
            yield hold
            if self.holds is not None:
                self.holds.append(Hold(hold[0], ix.store.entries_touched() - before))

    def recentre_step(self) -> None:
        """Re-centre the postings a refresh step moved entries into: their means read under
        the shared lock (searches go on), the centroids moved under the exclusive lock (no
        entry read there). Entries written in between are missed until the next re-centring,
        as any centroid lags the inserts that follow it."""
        ix = self.index
        pids, self.recentre_due = self.recentre_due, set()
        with ix.lock.shared():
            if ix._closed:
                return
            with one_blas_thread():
                live, means = posting_means(ix, pids)
        with self._exclusive("recentre"):
            live_now = [j for j, p in enumerate(live) if p in ix.parts]
            if live_now and not ix._closed:
                pids_now = np.array([live[j] for j in live_now], dtype=np.int64)
                ix.move_centroids(ix.centroids.rows(pids_now), means[live_now])

    def reassign_step(self) -> None:
        """Advance the split's install by a few clusters, or its reassignment by one posting
        (`veclink.index.reassign`): the posting's entries copied under the shared lock, their
        nearest centroids found with no lock held, the moves applied under the exclusive
        lock."""
        ix, job = self.index, self.job
        assert job is not None
        if isinstance(job, Carve):
            with self._exclusive("carve"):
                if ix._closed:
                    self.job = None
                elif job.step(ix, budget=ix.options["split_limit"]):
                    self.splits += 1
                    self.job = self._reassignment(job.old_centroid, job.new + [job.pid])
            return
        with ix.lock.shared():
            entries = None if ix._closed else job.copy_entries(ix)
        with one_blas_thread():
            moves = job.decide(entries)
        with self._exclusive("reassign"):
            if ix._closed:
                self.job = None
                return
            self.reassigned += job.apply(ix, moves)
            if job.done:
                self.job = None
                self.schedule(job.finish(ix))

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: not self.has_work() and not self.busy, timeout)

    def pending_count(self) -> int:
        """Postings waiting for a split/merge/compaction or a split's reassignment, plus owed
        refresh steps."""
        job = self.job  # (read once: the worker may end it meanwhile)
        due = len(self.pending) + bool(self.recentre_due)
        due += job.remaining() if job is not None else 0
        return due + int(self.refresh_credit // STEP_ENTRIES)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join()

    def build_graph(self) -> None:
        """(Re)build the centroid graph outside the index lock, then switch to it.

        The centroids are copied under the shared lock (searches go on), the graph is built
        with no lock held (faiss, GIL released: seconds at 100k partitions), the changes the
        table logged meanwhile are replayed onto it, and only the last few of them and the
        switch itself happen under the exclusive lock.
        """
        ix = self.index
        start = time.thread_time()
        with ix.lock.shared():
            if ix._closed or not ix.centroids.graph_due():
                return
            table = ix.centroids
            pids, cents = table.pids.copy(), table.cents.copy()
            table.log = []
        graph = CentroidGraph(ix.dim, pids, cents)
        for _ in range(8):  # catch up outside the lock while changes keep coming
            with ix.lock.shared():
                if table.log is None:
                    return  # the table was reset meanwhile (a reload): start again later
                changes, table.log = table.log, []
            graph.replay(changes)
            if len(changes) < 16:
                break
        with self._exclusive("graph"):
            if ix._closed or table.log is None:
                return  # closed, or the table was reset meanwhile (a reload)
            graph.replay(table.log)
            ix.install_graph(graph)
            self.graph_builds += 1
        self.cpu_seconds += time.thread_time() - start

    # ------------------------------------------------------------------ operations

    def bootstrap(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """First vectors of an empty index: k-means them into postings of about half the limit
        (at most BOOTSTRAP_MAX_LISTS of them; splits then cut the bigger ones)."""
        ix = self.index
        target = ix.options["split_limit"] // 2
        nlist = max(1, min(math.ceil(len(vecs) / target), BOOTSTRAP_MAX_LISTS))
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

    def plan_split(self, pid: int) -> SplitPlan | None:
        """Cluster a posting that is due for a split, outside the exclusive lock.

        The posting's current entries are copied under the shared lock (searches and writes
        go on), and the clustering, the expensive part of a split (k-means of a posting
        that outgrew its limit several times over took 100+ ms), runs with no lock held;
        `split` then applies it under the exclusive lock to whatever the posting holds by
        then (entries added meanwhile go to their nearest new centroid).
        """
        ix = self.index
        with ix.lock.shared():
            part = ix.parts.get(pid)
            if ix._closed or part is None or part.n <= ix.options["split_limit"]:
                return None
            ids, ver, vecs = part.view()
            current = ix.versions.current(ids, ver)
            ids, ver, vecs = ids[current], ver[current], vecs[current]  # copies
        if ids.size <= ix.options["split_limit"]:
            return None  # compaction alone will do
        with one_blas_thread():
            cents, label = self._cluster(vecs)
            cents, label = chunk_copies(vecs, cents, label, ix.options["split_limit"])
        return SplitPlan(ids=ids, ver=ver, cents=cents, label=label)

    def _cluster(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centroids and labels for splitting a posting of ``vecs``."""
        o = self.index.options
        limit, n = o["split_limit"], len(vecs)
        if n > 2 * limit:
            # a posting that outgrew its limit several times over (inserts outpacing the
            # worker) is cut into postings of about half the limit at once: repeated
            # bisection of a pile gives worse cells than one k-means of it
            cents, label = kmeans(vecs, math.ceil(n / (limit // 2)), self.rng)
            cents, label = fold_small_clusters(vecs, cents, label, o["merge_limit"])
            if len(cents) >= 2 and np.bincount(label).max() <= n // 2:
                return cents, label
            # k-means could not divide it (copies of one vector)
        c0, c1, first = balanced_two_means(vecs, self.rng, min_size=o["merge_limit"])
        return np.stack([c0, c1]), (~first).astype(np.int64)

    def maintain(self, pid: int, plan: SplitPlan | None = None) -> None:
        ix = self.index
        part = ix.parts.get(pid)
        if part is None:
            return
        if plan is not None and plan.ids.size > 2 * ix.options["split_limit"]:
            # far over the limit: installed a few new postings per step (no compaction of
            # the whole posting here; it is compacted once it is small again)
            row = int(ix.centroids.rows(np.array([pid]))[0])
            self.job = Carve(pid, plan.ids, plan.ver, plan.label, plan.cents, ix.cents[row].copy())
            return
        ids, ver, _ = part.view()
        current = ix.versions.current(ids, ver)
        if not current.all():
            part.keep(current)
        if part.n > ix.options["split_limit"]:
            if plan is None and self.background:
                # it outgrew the limit after `plan_split` looked: cluster it outside the lock
                # at its next turn rather than in this exclusive hold
                self.schedule((pid,))
                return
            self.split(pid, plan)
        elif part.n < ix.options["merge_limit"] and len(ix.parts) > 1:
            self.merge(pid)

    def split(self, pid: int, plan: SplitPlan | None = None) -> None:
        ix = self.index
        part = ix.parts[pid]
        ids, ver, vecs = (a.copy() for a in part.view())
        row = int(ix.centroids.rows(np.array([pid]))[0])
        old_centroid = ix.cents[row].copy()
        if plan is None:
            cents, label = self._cluster(vecs)
            cents, label = chunk_copies(vecs, cents, label, ix.options["split_limit"])
        else:  # clustered (and copies chunked) outside the lock
            cents, label = plan.cents, plan.labels_for(ids, ver, vecs)
        part.keep(label == 0)
        ix.move_centroids(np.array([row]), cents[:1])
        new = [pid]
        loc = ix.versions.loc
        order = np.argsort(label, kind="stable")  # each cluster's rows, in one pass
        bounds = np.searchsorted(label[order], np.arange(len(cents) + 1))
        for j in range(1, len(cents)):
            other = ix.new_partition(cents[j])
            sel = order[bounds[j] : bounds[j + 1]]
            ix.parts[other].append(ids[sel], ver[sel], vecs[sel])
            moved = ids[sel]
            loc[moved[loc[moved] == pid]] = other
            new.append(other)
        self.splits += 1
        self.job = self._reassignment(old_centroid, new)  # next, a posting per step

    def _reassignment(self, old_centroid: np.ndarray, new: list[int]) -> Reassignment:
        """The LIRE reassignment after a split into the postings ``new``.

        The neighbourhood of the old centroid bounds all LIRE work: SPFresh's observation
        that a split can only pull vectors across nearby partition boundaries.
        """
        ix = self.index
        n_neigh = ix.options["reassign_neighbors"] + len(new)
        rows = ix.centroids.neighbour_rows(old_centroid, n_neigh)
        rows = np.union1d(rows, ix.centroids.rows(np.array(new)))
        return Reassignment.start(ix, rows)

    def repack(self) -> None:
        """One step of a repack of the postings' lists (`veclink.index.repack`): a chunk
        copied while searches go on, or, once all are copied, the swap."""
        ix = self.index
        with ix.lock.shared():
            if ix._closed or not ix.store.repack_due():
                return
            done = ix.store.repack_step()
        if done:
            with self._exclusive("repack"):
                old = None if ix._closed else ix.store.repack_finish()
            del old  # the old lists are freed here, with the lock released

    def refresh(self) -> None:
        """One refresh step (`veclink.index.refresh`); reschedules itself while owed."""
        ix = self.index
        if len(ix.parts) < 2:
            self.refresh_credit = 0.0
            return
        pids, self.refresh_cursor = next_postings(ix, self.refresh_cursor, STEP_ENTRIES)
        checked, moved, changed = refresh_postings(ix, pids, defer=self.recentre_due)
        self.refreshed += checked
        self.reassigned += moved
        self.refresh_credit = max(0.0, self.refresh_credit - max(checked, 1))
        o = ix.options
        self.schedule(
            p
            for p in changed
            if p in ix.parts and not o["merge_limit"] <= ix.parts[p].n <= o["split_limit"]
        )

    def merge(self, pid: int) -> None:
        ix = self.index
        ids, ver, vecs = (a.copy() for a in ix.parts[pid].view())
        dest = np.zeros(0, dtype=np.int64)
        if ids.size:  # each entry goes to its nearest other partition
            _, near = ix.nearest(vecs, 2)
            dest = np.where(near[:, 0] == pid, near[:, 1], near[:, 0])
            if (dest < 0).any():  # a graph search found no other centroid: try again later
                return
            to, count = np.unique(dest, return_counts=True)
            grown = np.array([ix.parts[p].n for p in to.tolist()]) + count
            if (grown > ix.options["split_limit"]).any():
                # it would overflow a neighbour, whose split could cut off a small posting
                # again (copies of one vector all want the same centroid): merge and split
                # would then undo each other forever; keep this posting small instead
                return
        ix.drop_partition(pid)
        self.merges += 1
        if not ids.size:
            return
        loc = ix.versions.loc
        primary = loc[ids] == pid
        loc[ids[primary]] = dest[primary]
        self.reassigned += int(ids.size)
        touched = ix._append_grouped(dest, ids, ver, vecs)
        self.schedule(p for p in touched if ix.parts[p].n > ix.options["split_limit"])
