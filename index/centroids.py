"""Centroids of the partitioned index: growable rows, exact and projected nearest search.

Centroid rows live in buffers with spare capacity, so a split adds one in amortised O(dim)
instead of copying the whole matrix; `cents` / `pids` are views of them.

Exact nearest-centroid search is one BLAS product against every centroid. Re-checking many
vectors' assignments (the refresh) would pay that in full for each, so `nearest_projected`
first ranks centroids in a low-dimensional PCA projection of the centroids (a quarter of the
dimensions), then measures the winner exactly: on MiniLM vectors (384-d, 96 kept) the
projected winner fixes three quarters of the misplaced vectors, for under a third of the
cost. The projection is refitted when the number of centroids has changed by a quarter.

Above ``graph_min`` centroids every one of these searches asks a `CentroidGraph` (HNSW) for
candidates instead of ranking all centroids: O(log partitions) per vector instead of
O(partitions). The table owns the graph and keeps it in step with every change; building
it (first at the threshold, again when tombstones pile up) is left to the owner
(`graph_due`, `install_graph`), which does it outside the index lock. Rows are removed by
moving the last row into the hole, so dropping a centroid costs O(dim), not a copy of all.
"""

from __future__ import annotations

import numpy as np
from veclink.index.centroid_graph import CentroidGraph

#: below these sizes the exact product is cheap enough and a projection not worth fitting
PROJECT_MIN_DIM = 128
PROJECT_MIN_CENTROIDS = 256
#: the graph answers searches for fewer than 1 / GRAPH_MAX_SHARE of the centroids; asked
#: for more (an exhaustive search), ranking them all is exact and no dearer
GRAPH_MAX_SHARE = 8
#: exact search ranks vectors against all centroids in blocks of at most this many scores
#: (256 MB): a first batch of 2.5M vectors against 10k centroids would need 100 GB at once
NEAREST_BLOCK = 1 << 26


def clearly_closer(best: np.ndarray, own: np.ndarray, vsq: np.ndarray) -> np.ndarray:
    """Mask of entries whose best centroid beats their own by more than rounding error.

    ``best`` and ``own`` are squared distances, or both the same minus ``||v||^2``
    (`CentroidTable.distances`); ``vsq`` the squared norms. Float32 products carry errors of
    about 1e-7 of the norms.
    """
    return best < own - 1e-5 * (vsq + 1e-12)


class CentroidTable:
    """Partition centroids in capacity buffers, with their squared norms.

    ``graph_min``: from this many centroids on, searches go through a `CentroidGraph`
    (None: never); below half of it the graph is dropped again.
    """

    def __init__(self, dim: int, graph_min: int | None = None) -> None:
        self.dim = dim
        self.graph_min = graph_min
        self.graph: CentroidGraph | None = None
        #: changes since a graph build began (replayed onto it), or None
        self.log: list[tuple[str, int, np.ndarray | None]] | None = None
        self._row = np.full(64, -1, dtype=np.int64)  # partition id -> row (-1: none)
        #: changes to the table so far (a projection fitted outside the lock checks it)
        self.changes = 0
        self.reset(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    @property
    def cents(self) -> np.ndarray:
        return self._cbuf[: self.n]

    @property
    def pids(self) -> np.ndarray:
        return self._pbuf[: self.n]

    def rows(self, pids: np.ndarray) -> np.ndarray:
        """Rows of partition ids (which must have centroids)."""
        return self._row[pids]

    def reset(self, pids: np.ndarray, cents: np.ndarray) -> None:
        """Replace every row (compacts the buffers). Any graph is dropped: searches are exact
        until the owner builds a new one (`graph_due`), which at 100k partitions takes
        minutes, so a snapshot load does not wait for it."""
        self._layout(pids, cents)
        self.graph = None
        self.log = None

    def _layout(self, pids: np.ndarray, cents: np.ndarray) -> None:
        self.changes += 1
        n = len(pids)
        # spare rows: an eighth (a relayout copies the rows and re-projects them, O(n dim) per
        # n/8 splits); doubling left up to half the table, and its projection, unused
        cap = max(n + n // 8, 64)
        self._cbuf = np.zeros((cap, self.dim), dtype=np.float32)
        self._pbuf = np.zeros(cap, dtype=np.int64)
        self._sqbuf = np.zeros(cap, dtype=np.float32)
        self._cbuf[:n] = cents
        self._pbuf[:n] = pids
        self._sqbuf[:n] = (self._cbuf[:n] ** 2).sum(1)
        self.n = n
        self._row[:] = -1
        if n:
            self._grow_row_map(int(self._pbuf[:n].max()))
            self._row[self._pbuf[:n]] = np.arange(n)
        old = getattr(self, "_sketch", None)
        self._sketch: _Projection | None = None
        if old is not None and n:  # keep the fitted directions; re-project the new layout
            self._sketch = old.rebuilt(self._cbuf, n)

    def _grow_row_map(self, pid: int) -> None:
        if pid >= self._row.size:
            grown = np.full(max(pid + 1, 2 * self._row.size), -1, dtype=np.int64)
            grown[: self._row.size] = self._row
            self._row = grown

    # ------------------------------------------------------------------ the graph

    def graph_due(self) -> bool:
        """Whether a graph should be (re)built: the threshold is reached and there is none,
        or the one there has too many tombstones or moves (`CentroidGraph.needs_rebuild`)."""
        if self.graph_min is None or self.n < max(self.graph_min, 1):
            return False
        return self.graph is None or self.graph.needs_rebuild()

    def install_graph(self, graph: CentroidGraph | None) -> None:
        self.graph = graph
        self.log = None

    def _changed(self, op: str, pid: int, value: np.ndarray | None) -> None:
        if self.log is not None:
            self.log.append((op, pid, value))

    # ------------------------------------------------------------------ changes

    def move(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Overwrite centroid rows in place."""
        self.changes += 1
        self._cbuf[rows] = values
        self._sqbuf[rows] = (values * values).sum(-1)
        if self._sketch is not None:
            self._sketch.move(rows, self._cbuf[rows])
        pids = self._pbuf[rows]
        if self.graph is not None:
            self.graph.move(pids, self._cbuf[rows])
        if self.log is not None:
            for pid, value in zip(pids.tolist(), self._cbuf[rows], strict=True):
                self._changed("move", pid, value.copy())

    def append(self, pid: int, centroid: np.ndarray) -> None:
        self.changes += 1
        if self.n == len(self._pbuf):
            self._layout(self.pids.copy(), self.cents.copy())
        self.n += 1
        row = self.n - 1
        self._pbuf[row] = pid
        self._grow_row_map(pid)
        self._row[pid] = row
        value = centroid.astype(np.float32).reshape(1, -1)
        self._cbuf[row] = value
        self._sqbuf[row] = (value * value).sum()
        if self._sketch is not None:
            self._sketch.move(np.array([row]), value)
        if self.graph is not None:
            self.graph.add(pid, value[0])
        self._changed("add", pid, value[0].copy())

    def drop(self, pid: int) -> None:
        """Remove ``pid``'s centroid: the last row moves into its place."""
        self.changes += 1
        row, last = int(self._row[pid]), self.n - 1
        if row != last:
            moved = int(self._pbuf[last])
            self._cbuf[row] = self._cbuf[last]
            self._sqbuf[row] = self._sqbuf[last]
            self._pbuf[row] = moved
            self._row[moved] = row
            if self._sketch is not None:
                self._sketch.copy_row(last, row)
        self._row[pid] = -1
        self.n = last
        if self.graph is not None:
            self.graph.remove(pid)
            if self.graph_min is None or self.n < self.graph_min // 2:
                self.graph = None  # few enough for exact search again
        self._changed("remove", pid, None)

    def distances(self, vecs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Squared L2 distances minus ``||v||^2`` (enough to rank centroids), (n, P).

        ``rows`` restricts the columns to those centroid rows (a neighbourhood).
        """
        if rows is None:
            return self._sqbuf[None, : self.n] - 2.0 * (vecs @ self.cents.T)
        return self._sqbuf[None, rows] - 2.0 * (vecs @ self._cbuf[rows].T)

    def nearest(
        self, vecs: np.ndarray, k: int = 1, by_ip: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances, partition ids) of the ``k`` nearest centroids, nearest first.

        ``by_ip`` ranks centroids by inner product instead (search under ``ip``/``cosine``:
        it favours tight clusters, whose mean has a larger norm, and probes fewer vectors for
        the same recall). Exact: one BLAS matrix product; on these sizes (hundreds to
        thousands of centroids) it beats a faiss flat index, which uses a slower kernel for
        mid-sized query batches. With a graph (and ``k`` a small share of the centroids), its
        answer: approximate, a centroid the graph misses is left out, and a row may end in
        -1 / inf padding.
        """
        k = min(k, self.n)
        if self.graph is not None and k * GRAPH_MAX_SHARE < self.n:
            dist, pids = self.graph.search(vecs, k, by_ip)
            csq = self._sqbuf[self._row[np.maximum(pids, 0)]] if by_ip else None
            return self.graph.to_sqdist(dist, by_ip, csq), pids
        rows_per_block = max(1, NEAREST_BLOCK // max(self.n, 1))
        if len(vecs) > rows_per_block:  # each row's ranking is independent of the others
            blocks = [
                self.nearest(vecs[s : s + rows_per_block], k, by_ip)
                for s in range(0, len(vecs), rows_per_block)
            ]
            return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
        sq = self._sqbuf[: self.n]
        # one (n, P) buffer, transformed in place into the ranking key (smaller is better)
        key = vecs @ self.cents.T
        if by_ip:
            np.negative(key, out=key)
        else:
            key *= -2.0
            key += sq  # squared distance minus ||v||^2
        if k == 1:
            rows = key.argmin(1)[:, None]
        else:
            rows = (
                np.argpartition(key, k - 1, axis=1)[:, :k]
                if k < key.shape[1]
                else np.broadcast_to(np.arange(key.shape[1]), key.shape)
            )
            rows = np.take_along_axis(rows, np.argsort(np.take_along_axis(key, rows, 1), 1), 1)
        picked = np.take_along_axis(key, rows, 1)
        best = sq[rows] + 2.0 * picked if by_ip else picked
        best += (vecs * vecs).sum(1)[:, None]
        return np.maximum(best, 0.0), self.pids[rows]

    def neighbour_rows(self, centroid: np.ndarray, k: int) -> np.ndarray:
        """Rows of the ``k`` centroids nearest to ``centroid`` (a split's neighbourhood)."""
        k = min(k, self.n)
        if self.graph is not None and k * GRAPH_MAX_SHARE < self.n:
            _, pids = self.graph.search(centroid[None], k, by_ip=False)
            return self._row[pids[0][pids[0] >= 0]]
        d = self.distances(centroid[None])[0]
        return np.argpartition(d, k - 1)[:k]

    def nearest_projected(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exact squared L2 distance, partition id) of a near centroid of each vector.

        The centroid is the nearest in the PCA projection (exactly the nearest when the table
        is too small or too low-dimensional to project), or the graph's nearest when there is
        one; its distance is measured exactly, so callers can compare it with the vector's
        current centroid and never move a vector somewhere worse.
        """
        if self.graph is not None:
            _, pids = self.graph.search(vecs, 1, by_ip=False)
            rows = self._row[np.maximum(pids[:, 0], 0)]  # a graph always reaches one node
        elif self.dim < PROJECT_MIN_DIM or self.n < PROJECT_MIN_CENTROIDS:
            dist, pids = self.nearest(vecs, 1)
            return dist[:, 0], pids[:, 0]
        else:
            if self.projection_due():
                self._sketch = _Projection(self._cbuf, self.n)
            assert self._sketch is not None
            rows = self._sketch.nearest_rows(vecs, self.n)
        diff = vecs - self._cbuf[rows]
        return np.einsum("ij,ij->i", diff, diff), self._pbuf[rows]

    def projection_due(self) -> bool:
        """Whether `nearest_projected` would fit its projection again first (the table grew
        or shrank by a quarter since the last fit): an eigen-decomposition of the centroids'
        (dim, dim) scatter, tens of milliseconds at 384 dimensions."""
        if self.graph is not None or self.dim < PROJECT_MIN_DIM or self.n < PROJECT_MIN_CENTROIDS:
            return False
        sketch = self._sketch
        return sketch is None or not 0.8 * sketch.fitted_n <= self.n <= 1.25 * sketch.fitted_n

    def projection_input(self) -> tuple[int, np.ndarray, int]:
        """(changes so far, a copy of the centroid buffer, rows used): what
        `fit_projection_of` needs, copied under a lock and fitted without one."""
        return self.changes, self._cbuf.copy(), self.n

    @staticmethod
    def fit_projection_of(cbuf: np.ndarray, n: int) -> _Projection:
        """A projection fitted to ``cbuf`` (a copy of the table's buffer, ``n`` rows used),
        for `install_projection`."""
        return _Projection(cbuf, n)

    def install_projection(self, fitted: tuple[int, object]) -> None:
        """Use a projection fitted to a copy of the table when the table had ``changes``
        changes; ignored if it changed since."""
        changes, sketch = fitted
        if isinstance(sketch, _Projection) and changes == self.changes:
            if len(sketch.proj) == len(self._cbuf):
                self._sketch = sketch

    def nbytes(self) -> int:
        graph = self.graph.nbytes() if self.graph is not None else 0
        return self._cbuf.nbytes + self._pbuf.nbytes + self._sqbuf.nbytes + graph


class _Projection:
    """Centroids projected on their top principal directions (rows mirror the table's)."""

    def __init__(self, cbuf: np.ndarray, n: int, fit: _Projection | None = None) -> None:
        if fit is None:
            dim = cbuf.shape[1]
            k = max(16, dim // 4)
            cents = cbuf[:n].astype(np.float64)
            mean = cents.mean(0)
            centred = cents - mean
            # top eigenvectors of the (dim, dim) scatter: cheaper than an SVD of (n, dim)
            _, vecs = np.linalg.eigh(centred.T @ centred)
            self.basis = np.ascontiguousarray(vecs[:, ::-1][:, :k], dtype=np.float32)
            self.mean = mean.astype(np.float32)
            self.fitted_n = n
        else:
            self.basis, self.mean, self.fitted_n = fit.basis, fit.mean, fit.fitted_n
        k = self.basis.shape[1]
        self.proj = np.zeros((len(cbuf), k), dtype=np.float32)
        self.sq = np.zeros(len(cbuf), dtype=np.float32)
        self.move(np.arange(n), cbuf[:n])

    def rebuilt(self, cbuf: np.ndarray, n: int) -> _Projection:
        """The same directions over a new row layout."""
        return _Projection(cbuf, n, fit=self)

    def copy_row(self, src: int, dst: int) -> None:
        self.proj[dst] = self.proj[src]
        self.sq[dst] = self.sq[src]

    def move(self, rows: np.ndarray, values: np.ndarray) -> None:
        p = (values - self.mean) @ self.basis
        self.proj[rows] = p
        self.sq[rows] = (p * p).sum(-1)

    def nearest_rows(self, vecs: np.ndarray, n: int) -> np.ndarray:
        key = (vecs - self.mean) @ self.basis @ self.proj[:n].T
        key *= -2.0
        key += self.sq[:n]
        return key.argmin(1)
