"""`CentroidGraph`: an HNSW graph over the partition centroids, for routing at scale.

Exact routing ranks every centroid for each query and each insert: O(partitions), fine at a
few thousand partitions and dominant at 100k (10M vectors at the default split limit). Above
``graph_min_partitions`` the partitioned index keeps this graph beside its `CentroidTable`
and asks it for candidates; the table then ranks those candidates exactly, so a routing
error can only leave out a centroid, never misorder the ones returned.

One graph serves both rankings the index needs: inner product (queries of ``ip`` /
``cosine`` indexes) and squared L2 (placing inserts, neighbourhoods, merges). Each centroid
``c`` is stored as ``[c, |c|^2 / 2T, r]`` with ``r`` making every stored row's squared norm
``M2``; an inner-product query is sent as ``[q, 0, 0]`` (its L2 distance is
``|q|^2 + M2 - 2 q.c``) and an L2 query as ``[v, -T, 0]`` (``|v|^2 + T^2 + M2 + |c|^2 - 2 v.c``):
both orders are exact on the same graph, whose own geometry stays close to the centroids'
(the two extra coordinates vary slowly with the norm).

faiss's HNSW cannot delete. A merged-away centroid becomes a tombstone: it still guides the
greedy search but is never returned (an ``IDSelectorBitmap`` of live nodes). A centroid that
moves (re-centring after a split or a refresh) is overwritten in place, keeping its edges;
a split's new centroids are inserted properly. When tombstones or moves pile up, or a
centroid outgrows the norm bound, `needs_rebuild` says so and the owner rebuilds the graph
from the table (`veclink.index.rebalance`, outside the index lock, replaying the changes
made meanwhile, logged by the table). The graph is derived state: never persisted; after a
load the worker builds it again, and searches route exactly until it is there.
"""

from __future__ import annotations

import faiss
import numpy as np

#: HNSW out-degree (2x on the base layer) and build-time beam; faiss's defaults for M 32
GRAPH_M = 32
EF_CONSTRUCTION = 40
#: search beam = max(EF_MIN, EF_FACTOR x results wanted); measured on WordNet MiniLM
#: centroids (bench/index_routing.py): top-64 recall ~0.96-0.98 at 100k centroids
EF_FACTOR = 2
EF_MIN = 32
#: rebuild once tombstones exceed this share of the nodes, or in-place moves since the
#: build exceed MOVES_PER_NODE x the live nodes
DEAD_SHARE = 0.25
MOVES_PER_NODE = 4
#: norm bound headroom at build: centroids may grow this much before a rebuild is needed
NORM_HEADROOM = 1.25


class CentroidGraph:
    """HNSW candidates for the nearest centroids; nodes are labelled with partition ids."""

    def __init__(self, dim: int, pids: np.ndarray, cents: np.ndarray) -> None:
        self.dim = dim
        n = len(pids)
        norms = np.sqrt((cents.astype(np.float64) ** 2).sum(1)) if n else np.zeros(1)
        self.radius = float(max(norms.max(), 1e-6) * NORM_HEADROOM)
        self.t = self.radius
        self.m2 = self.radius**2 + (self.radius**2 / (2 * self.t)) ** 2
        self.hnsw = faiss.IndexHNSWFlat(dim + 2, GRAPH_M)
        self.hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        self._flat = faiss.downcast_index(self.hnsw.storage)
        cap = max(2 * n, 1024)
        self.node_pid = np.full(cap, -1, dtype=np.int64)
        self.pid_node = np.full(max(int(pids.max()) + 1 if n else 0, 1024), -1, dtype=np.int64)
        self._bits = np.zeros(cap // 8 + 1, dtype=np.uint8)
        self._sel = faiss.IDSelectorBitmap(self._bits.size, faiss.swig_ptr(self._bits))
        self._params: dict[int, faiss.SearchParametersHNSW] = {}
        self.live = self.dead = self.moves = 0
        self.over_norm = False
        if n:
            self._append(np.asarray(pids, dtype=np.int64), np.asarray(cents, dtype=np.float32))

    # ------------------------------------------------------------------ changes

    def _lift(self, cents: np.ndarray) -> np.ndarray:
        """Rows as stored: ``[c, |c|^2 / 2T, sqrt(M2 - |c|^2 - a^2)]``."""
        sq = (cents.astype(np.float32) ** 2).sum(1)
        a = sq / np.float32(2 * self.t)
        rest = self.m2 - sq - a * a
        if (rest < 0).any():
            self.over_norm = True  # ranks stay usable; the next rebuild restores exactness
        out = np.empty((len(cents), self.dim + 2), dtype=np.float32)
        out[:, : self.dim] = cents
        out[:, self.dim] = a
        out[:, self.dim + 1] = np.sqrt(np.maximum(rest, 0))
        return out

    def _append(self, pids: np.ndarray, cents: np.ndarray) -> None:
        first = self.hnsw.ntotal
        need = first + len(pids)
        if need > self.node_pid.size:
            cap = max(need, 2 * self.node_pid.size)
            self.node_pid = np.concatenate(
                [self.node_pid, np.full(cap - self.node_pid.size, -1, np.int64)]
            )
            bits = np.zeros(cap // 8 + 1, dtype=np.uint8)
            bits[: self._bits.size] = self._bits
            self._bits = bits
            self._sel = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
            self._params.clear()  # they point at the old selector
        top = int(pids.max())
        if top >= self.pid_node.size:
            grown = np.full(max(top + 1, 2 * self.pid_node.size), -1, dtype=np.int64)
            grown[: self.pid_node.size] = self.pid_node
            self.pid_node = grown
        self.hnsw.add(self._lift(cents))
        nodes = np.arange(first, need)
        self.node_pid[nodes] = pids
        self.pid_node[pids] = nodes
        np.bitwise_or.at(self._bits, nodes >> 3, (1 << (nodes & 7)).astype(np.uint8))
        self.live += len(pids)

    def add(self, pid: int, centroid: np.ndarray) -> None:
        """A new partition's centroid (a proper HNSW insert)."""
        self._append(np.array([pid], dtype=np.int64), centroid.reshape(1, -1))

    def move(self, pids: np.ndarray, values: np.ndarray) -> None:
        """Overwrite centroids in place (edges kept: moves are local re-centrings)."""
        nodes = self.pid_node[pids]
        n = self.hnsw.ntotal
        xb = faiss.rev_swig_ptr(self._flat.get_xb(), n * (self.dim + 2)).reshape(n, -1)
        xb[nodes] = self._lift(values)
        self.moves += len(nodes)

    def remove(self, pid: int) -> None:
        """Tombstone a centroid: still walked through, never returned."""
        node = int(self.pid_node[pid])
        self._bits[node >> 3] &= np.uint8(~(1 << (node & 7)) & 0xFF)
        self.node_pid[node] = -1
        self.pid_node[pid] = -1
        self.live -= 1
        self.dead += 1

    def replay(self, changes: list[tuple[str, int, np.ndarray | None]]) -> None:
        """Apply changes the `CentroidTable` logged while this graph was being built."""
        for op, pid, value in changes:
            if op == "add":
                assert value is not None
                self._append(np.array([pid], dtype=np.int64), value.reshape(1, -1))
            elif op == "move":
                assert value is not None
                if pid < self.pid_node.size and self.pid_node[pid] >= 0:
                    self.move(np.array([pid]), value.reshape(1, -1))
            elif pid < self.pid_node.size and self.pid_node[pid] >= 0:
                self.remove(pid)

    def needs_rebuild(self) -> bool:
        nodes = self.live + self.dead
        return (
            self.over_norm
            or self.dead > DEAD_SHARE * nodes
            or self.moves > MOVES_PER_NODE * max(self.live, 1)
        )

    # ------------------------------------------------------------------ search

    def search(self, vecs: np.ndarray, k: int, by_ip: bool) -> tuple[np.ndarray, np.ndarray]:
        """(distance in the lifted space, partition id), (n, k) each, nearest first; -1 and
        inf pad rows when fewer live centroids were reached. `to_sqdist` converts."""
        n = len(vecs)
        k = max(1, min(k, self.live))
        q = np.zeros((n, self.dim + 2), dtype=np.float32)
        q[:, : self.dim] = vecs
        if not by_ip:
            q[:, self.dim] = -self.t
        ef = max(EF_MIN, EF_FACTOR * k)
        params = self._params.get(ef)
        if params is None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            params.sel = self._sel
            self._params[ef] = params
        dist = np.empty((n, k), dtype=np.float32)
        nodes = np.empty((n, k), dtype=np.int64)
        self.hnsw.search_c(
            n, faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(nodes), params
        )
        found = nodes >= 0
        pids = np.where(found, self.node_pid.take(nodes, mode="clip"), -1)
        dist[~found] = np.inf
        return dist, pids

    def to_sqdist(self, dist: np.ndarray, by_ip: bool, csq: np.ndarray) -> np.ndarray:
        """Squared L2 distances from `search`'s (``csq``: the centroids' squared norms)."""
        if by_ip:  # |q|^2 + M2 - 2 q.c  ->  |q|^2 + |c|^2 - 2 q.c
            out = dist - np.float32(self.m2) + csq
        else:  # |v|^2 + T^2 + M2 + |c|^2 - 2 v.c
            out = dist - np.float32(self.t**2 + self.m2)
        return np.maximum(out, 0.0, out=out)

    def nbytes(self) -> int:
        nodes = self.hnsw.ntotal
        # vectors + base-layer links (2M int32) + arrays; upper layers are ~1/M of that
        return (
            nodes * ((self.dim + 2) * 4 + 2 * GRAPH_M * 4)
            + self.node_pid.nbytes
            + self.pid_node.nbytes
            + self._bits.nbytes
        )
