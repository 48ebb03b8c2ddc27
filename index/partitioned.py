"""PartitionedIndex: SPANN/SPFresh-style partitions that rebalance in place.

Vectors live in postings (partitions) around centroids. Inserts append to the nearest
posting; deletes only bump the id's version (the stale entry is skipped by searches and
dropped at the next compaction). A background worker keeps postings bounded with the
LIRE protocol (`veclink.index.rebalance`): split an oversized posting with balanced
2-means, reassign the vectors that a split made closer to another centroid, merge
undersized postings into their neighbours; and, in proportion to inserts, re-checks
postings round-robin against all centroids (`veclink.index.refresh`), which in
high-dimensional data finds the misplaced vectors a split's neighbourhood misses. Nothing
ever rebuilds the whole index. Ids map to dense slots (`veclink.index.postings.VersionMap`).

Search runs in faiss: postings are the inverted lists of an ``IndexIVFFlat`` the index owns
and edits in place, and a faiss copy of the centroids routes the queries
(`veclink.index.postings.PostingStore`, `veclink.index.scan`). Searches share the index lock
(`veclink.index.locks.SharedLock`) and run side by side, faiss without the GIL; writes and
each rebalancing step hold it alone, so a search sees every posting whole.

Durability: every mutation is in the WAL (fsync) before it is acknowledged; a snapshot
stores postings, centroids and the version map with the WAL position it covers. Replay
re-derives the rebalancing, which only moves vectors, never changes the live set.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from veclink.index.base import check_ids, check_k, check_vectors, normalize_rows
from veclink.index.centroid_graph import CentroidGraph
from veclink.index.centroids import CentroidTable
from veclink.index.codecs import CODECS
from veclink.index.durable import WalIndex
from veclink.index.postings import MAX_PARTITION_ID, Posting, PostingStore, VersionMap
from veclink.index.rebalance import Rebalancer
from veclink.index.registry import register_index
from veclink.index.scan import scan_postings
from veclink.index.scan_choice import ScanChooser

from veclink.errors import InvalidArgument, NotFound, ResourceExhausted
from veclink.validation import Problems, is_int, quote

#: compact a posting once more than 1 / STALE_SHARE of its entries are known stale
STALE_SHARE = 8
#: the memory-mapped full vectors of quantised postings, in a persisted index's directory
FULL_VECTORS = "full_vectors.f32"

DEFAULTS: dict[str, Any] = {
    "split_limit": 128,  # a posting above this many entries is split
    "merge_limit": 16,  # a posting below this many live entries is merged away
    "nprobe": 64,  # partitions probed per query by default
    "eps": None,  # probe only centroids within (1 + eps) x the closest distance
    "replicas": 1,  # >1: boundary vectors also go to close postings (RNG rule)
    "replica_eps": 0.1,  # how close a second posting must be to get a replica
    "reassign_neighbors": 8,  # postings checked for LIRE reassignment after a split
    # entries re-checked against all centroids per entry inserted (0: off); on the MiniLM
    # drift benchmark 4 scans ~10% fewer vectors at recall 0.95 than 2, for a 15-40% lower
    # amortised insert rate (BENCHMARKS.md)
    "refresh": 4.0,
    "background": True,  # rebalance in a worker thread (False: inline, for tests)
    "device": "auto",  # search on: "auto" (torch on CUDA when present), "numpy", "cpu", "cuda"
    # from this many partitions on, centroids are searched through an HNSW graph
    # (`veclink.index.centroid_graph`) instead of exactly; below it exact search is cheaper
    # (measured crossover ~15-30k partitions for queries at nprobe 64 and for inserts:
    # bench/index_routing.py, BENCHMARKS.md)
    "graph_min_partitions": 16384,
    # how postings hold vectors: "float32", or "fp16" / "int8" codes scanned by faiss with the
    # best k x rerank candidates re-scored from full float32 vectors (`veclink.index.codecs`)
    "postings": "float32",
    "rerank": 4,  # quantised postings: candidates re-scored exactly per result wanted
}


@register_index
class PartitionedIndex(WalIndex):
    """Partitioned ANN index updated in place (SPFresh / LIRE)."""

    kind = "partitioned"
    snapshot_name = "partitioned.npz"

    def __init__(
        self, dim: int, metric: str = "ip", path: str | None = None, **options: Any
    ) -> None:
        self._restore_options(options)
        super().__init__(dim, metric, path)

    def _restore_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise InvalidArgument(
                f"unknown partitioned index options {unknown}; valid: {', '.join(DEFAULTS)}",
                field="index_options",
            )
        self.options = {**DEFAULTS, **options}
        _check_options(self.options)

    def _options(self) -> dict[str, Any]:
        return dict(self.options)

    def _init_state(self) -> None:
        self.parts: dict[int, Posting] = {}
        full_path = self.path / FULL_VECTORS if self.path is not None else None
        self.store = PostingStore(
            self.dim, self.metric, postings=self.options["postings"], full_path=full_path
        )
        self.centroids = CentroidTable(self.dim, graph_min=self.options["graph_min_partitions"])
        self.next_pid = 0
        self.versions = self.store.versions  # (the store reads entries' versions from it)
        self.scanned_total = 0
        self.queries_total = 0
        self._counters = threading.Lock()
        self.scan_choice = ScanChooser()  # faiss or BLAS scan for a batch, by measured cost

    def _start_background(self) -> None:
        self.rebalancer = Rebalancer(self, background=bool(self.options["background"]))

    def _stop_background(self) -> None:
        self.rebalancer.stop()

    # ------------------------------------------------------------------ centroids
    # `veclink.index.centroids.CentroidTable` holds them; these name what the rest uses.

    @property
    def cents(self) -> np.ndarray:
        return self.centroids.cents

    @property
    def cent_pid(self) -> np.ndarray:
        return self.centroids.pids

    def set_centroids(self, pids: np.ndarray, cents: np.ndarray) -> None:
        self.centroids.reset(pids, cents)
        self._sync_flat_routing()

    def _sync_flat_routing(self) -> None:
        """Rebuild the faiss copy of the centroids that routes queries without a graph; with
        a graph, empty it (the graph routes, and a copy would cost O(partitions) per merge)."""
        if self.centroids.graph is None:
            self.store.route_reset(self.store.pid_list[self.cent_pid], self.cents)
        else:
            self.store.route_reset(np.zeros(0, np.int64), self.cents[:0])

    def move_centroids(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Overwrite centroid rows in place."""
        self.centroids.move(rows, values)
        if self.centroids.graph is None:
            self.store.route_move(rows, self.cents[rows])

    def new_partition(self, centroid: np.ndarray) -> int:
        pid = self.next_pid
        if pid > MAX_PARTITION_ID:  # ~2**31 splits: after about 10**11 inserts
            raise ResourceExhausted(f"an index creates at most {MAX_PARTITION_ID + 1} partitions")
        self.next_pid += 1
        self.parts[pid] = part = self.store.create(pid)
        self.centroids.append(pid, centroid)
        if self.centroids.graph is None:
            self.store.route_append(part.list_no, self.cents[-1])
        return pid

    def drop_partition(self, pid: int) -> Posting:
        """Remove partition ``pid``: its posting and its centroid; returns the posting,
        emptied: copy what it held first."""
        self.centroids.drop(pid)
        if self.centroids.graph is None:  # rows moved (or the graph was just dropped)
            self._sync_flat_routing()
        part = self.parts.pop(pid)
        self.store.drop(pid, part)
        return part

    def install_graph(self, graph: CentroidGraph | None) -> None:
        """Switch centroid search to ``graph`` (built by the rebalancer from this table)."""
        self.centroids.install_graph(graph)
        self._sync_flat_routing()

    def centroid_distances(self, vecs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return self.centroids.distances(vecs, rows)

    def nearest(
        self, vecs: np.ndarray, k: int = 1, by_ip: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.centroids.nearest(vecs, k, by_ip)

    # ------------------------------------------------------------------ mutations

    def _apply_add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        vm = self.versions
        slots = vm.assign(ids)  # from here on postings and the version map speak slots
        replaced = slots[vm.live[slots]]
        self._mark_stale(replaced)
        vm.count += slots.size - replaced.size
        vm.ver[slots] += 1
        vm.live[slots] = True
        self._versions_bumped(slots)
        self.store.admit(slots, vecs)
        if not self.parts:
            self.rebalancer.bootstrap(slots, vecs)
            return
        touched = self.place(slots, vm.ver[slots], vecs, replicate=True)
        self.rebalancer.schedule(
            p for p in touched if self.parts[p].n > self.options["split_limit"]
        )
        self.rebalancer.earn_refresh(slots.size)

    def place(
        self,
        ids: np.ndarray,
        ver: np.ndarray,
        vecs: np.ndarray,
        replicate: bool = False,
        exclude: int | None = None,
    ) -> set[int]:
        """Append entries to their nearest posting(s); returns the postings touched."""
        r = int(self.options["replicas"]) if replicate else 1
        want = r + (exclude is not None)
        dist, pids = self.nearest(vecs, want)
        if exclude is not None:  # drop the excluded partition from each row
            keep = pids != exclude
            order = np.argsort(~keep, axis=1, kind="stable")
            dist = np.take_along_axis(dist, order, 1)[:, : want - 1]
            pids = np.take_along_axis(pids, order, 1)[:, : want - 1]
        primary = pids[:, 0]
        self.versions.loc[ids] = primary
        touched = self._append_grouped(primary, ids, ver, vecs)
        for j in range(1, pids.shape[1]):  # boundary replicas (RNG rule against the primary)
            found = pids[:, j] >= 0  # a graph may return fewer centroids than asked
            cj = self.cents[self.centroids.rows(np.where(found, pids[:, j], primary))]
            c0 = self.cents[self.centroids.rows(primary)]
            gap = ((cj - c0) ** 2).sum(1)
            ok = (dist[:, j] <= (1 + self.options["replica_eps"]) * dist[:, 0]) & (dist[:, j] < gap)
            ok &= found
            if ok.any():
                touched |= self._append_grouped(pids[ok, j], ids[ok], ver[ok], vecs[ok])
        return touched

    def _append_grouped(
        self, pids: np.ndarray, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray
    ) -> set[int]:
        order = np.argsort(pids, kind="stable")
        uniq, starts = np.unique(pids[order], return_index=True)
        bounds = [*starts.tolist(), order.size]
        for pid, a, b in zip(uniq.tolist(), bounds[:-1], bounds[1:], strict=True):
            sel = order[a:b]
            self.parts[pid].append(ids[sel], ver[sel], vecs[sel])
        return set(uniq.tolist())

    def _mark_stale(self, ids: np.ndarray) -> None:
        if not ids.size:
            return
        locs = self.versions.loc[ids]
        pids, counts = np.unique(locs[locs >= 0], return_counts=True)
        for pid, c in zip(pids.tolist(), counts.tolist(), strict=True):
            part = self.parts.get(pid)
            if part is not None:
                part.stale += c

    def _versions_bumped(self, slots: np.ndarray) -> None:
        """Keep every copy's version less than ``2**ver_bits`` behind its id's current one.

        Faiss ids keep a version's low ``ver_bits`` bits: the scan tells stale copies by them,
        and `PostingStore.versions_of` recovers full versions from them, both exact while the
        bound holds. When a version reaches a multiple of ``2**ver_bits`` (once per ~8M updates
        of one id), every posting drops its stale entries, and all entries of the ids that
        reached it: those ids have no current copy yet (callers bump versions before placing
        new copies), and their oldest copy may be exactly ``2**ver_bits`` behind, the one
        distance the bits cannot tell from none.
        """
        vm = self.versions
        mask = self.store.ver_mask
        vm.rekey(slots, mask)
        wrapped = slots[(vm.ver[slots] & mask) == 0]
        if not wrapped.size:
            return
        gone = np.zeros(vm.ver.size, dtype=bool)
        gone[wrapped] = True
        for part in self.parts.values():
            ids, ver, _ = part.view()
            keep = vm.current(ids, ver) & ~gone[ids]
            if not keep.all():
                part.keep(keep)

    def _apply_remove(self, ids: np.ndarray) -> int:
        vm = self.versions
        present = vm.live_slots(ids)
        present = present[present >= 0]
        if not present.size:
            return 0
        self._mark_stale(present)
        vm.ver[present] += 1
        vm.live[present] = False
        self._versions_bumped(present)
        vm.count -= present.size
        locs = np.unique(vm.loc[present])
        vm.loc[present] = -1
        limit = self.options["merge_limit"]
        self.rebalancer.schedule(
            p
            for p in locs.tolist()
            if p in self.parts
            and (
                self.parts[p].n - self.parts[p].stale < limit
                or STALE_SHARE * self.parts[p].stale > self.parts[p].n
            )
        )
        return int(present.size)

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        eps: float | None = None,
        **params: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` over the ``nprobe`` nearest postings (pruned by ``eps``), best first."""
        if params:
            raise InvalidArgument(f"unknown search parameters {sorted(params)}", field="params")
        k = check_k(k)
        q = check_vectors(queries, self.dim, field="queries")
        if self.metric == "cosine":
            q = normalize_rows(q)
        explicit = nprobe is not None
        nprobe = int(nprobe if explicit else self.options["nprobe"])
        if nprobe < 1:
            raise InvalidArgument(f"nprobe must be >= 1; got {nprobe}", field="nprobe")
        if eps is None and not explicit:
            eps = self.options["eps"]
        with self.lock.shared():  # searches run together; writers and rebalancing wait
            self._check_open()
            scores, ids, scanned = scan_postings(self, q, k, nprobe, eps)
        with self._counters:
            self.scanned_total += scanned
            self.queries_total += len(q)
        return scores, ids

    # ------------------------------------------------------------------ reads

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = check_ids(ids)
        with self.lock.shared():
            vm = self.versions
            slots = vm.live_slots(ids)
            missing = ids[slots < 0]
            if missing.size:
                raise NotFound(f"ids not in the index: {missing[:10].tolist()}", field="ids")
            out = np.empty((ids.size, self.dim), dtype=np.float32)
            for row, i in enumerate(slots.tolist()):
                pids, vers, vecs = self.parts[int(vm.loc[i])].view()
                hit = np.nonzero((pids == i) & (vers == vm.ver[i]))[0]
                out[row] = vecs[hit[0]]
            return out

    def ids(self) -> np.ndarray:
        with self.lock.shared():
            return self.versions.live_ids()

    def __len__(self) -> int:
        return int(self.versions.count)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the background worker has nothing left to do."""
        return self.rebalancer.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        with self.lock.shared():
            sizes = np.array([p.n for p in self.parts.values()], dtype=np.int64)
            # the lists' buffers (codes and ids with the version bits, spare capacity included)
            postings = self.store.nbytes()
            full = self.store.full.nbytes() if self.store.full is not None else 0
            full_file = self.store.full.file_bytes() if self.store.full is not None else 0
            memory = postings + full + self.versions.nbytes()
            return {
                **super().stats(),
                "partitions": int(sizes.size),
                "size_max": int(sizes.max()) if sizes.size else 0,
                "size_mean": float(sizes.mean()) if sizes.size else 0.0,
                "size_cv": float(sizes.std() / sizes.mean())
                if sizes.size and sizes.mean()
                else 0.0,
                "over_split_limit": int((sizes > self.options["split_limit"]).sum()),
                "scanned_per_query": self.scanned_total / max(self.queries_total, 1),
                "pending": self.rebalancer.pending_count(),
                "splits": self.rebalancer.splits,
                "merges": self.rebalancer.merges,
                "reassigned": self.rebalancer.reassigned,
                "refreshed": self.rebalancer.refreshed,
                "centroid_graph": self.centroids.graph is not None,
                "graph_builds": self.rebalancer.graph_builds,
                "rebalance_cpu_s": round(self.rebalancer.cpu_seconds, 3),
                "memory_bytes": int(memory + self.centroids.nbytes()),
                "postings_bytes": int(postings),
                "full_vectors_bytes": int(full),
                "full_vectors_file_bytes": int(full_file),
                "reencodes": self.store.reencodes,
                "repacks": self.store.repacks,
                "options": dict(self.options),
            }

    # ------------------------------------------------------------------ persistence

    def _snapshot_bytes(self) -> bytes:
        pids = sorted(self.parts)
        sizes = np.array([self.parts[p].n for p in pids], dtype=np.int64)
        store = self.store
        views = [self.parts[p].view() for p in pids]
        if store.full is not None:  # codes as stored, and the full vectors by slot
            codes = [self.parts[p].codes() for p in pids]
            blocks = {
                "codes": np.concatenate(codes)
                if codes
                else np.zeros((0, store.code_size), np.uint8),
                "full": np.asarray(store.full.data[: store.full.rows]),  # (a file: no copy)
                "codec": store.codec.state(),
            }
        else:
            blocks = {
                "vecs": np.concatenate([v[2] for v in views])
                if views
                else np.zeros((0, self.dim), np.float32)
            }
        arrays = {
            "pids": np.array(pids, dtype=np.int64),
            "sizes": sizes,
            "ids": np.concatenate([v[0] for v in views]) if views else np.zeros(0, np.int64),
            "ver": np.concatenate([v[1] for v in views]) if views else np.zeros(0, np.uint32),
            **blocks,
            "stale": np.array([self.parts[p].stale for p in pids], dtype=np.int64),
            "cent_pid": self.cent_pid.copy(),
            "cents": self.cents.copy(),
            **self.versions.to_arrays(),
            "scalars": np.array([self.next_pid, self.versions.count], dtype=np.int64),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def _load_snapshot(self, data: bytes) -> None:
        store = self.store
        with np.load(io.BytesIO(data)) as z:
            offsets = np.concatenate([[0], np.cumsum(z["sizes"])])
            if store.full is not None:
                full = z["full"]
                store.full.put(np.arange(len(full)), full)
                store.codec.restore(z["codec"])
                store.codec.sync(store.ivf)
            # each z[...] reads the array from the archive again: read each one once
            ids, ver, stale = z["ids"], z["ver"], z["stale"]
            vecs = z["codes"] if store.full is not None else z["vecs"]
            next_pid, count = (int(x) for x in z["scalars"])
            self.next_pid = next_pid
            vm = self.versions = store.versions = VersionMap.from_arrays(z, count)
            # entries carry only their versions' low bits from here on (`versions_of`): a stale
            # copy 2**ver_bits or more behind (none in snapshots this code writes) goes now
            recent = (vm.ver[ids] - ver.astype(np.uint32)) <= np.uint32(store.ver_mask)
            for i, pid in enumerate(z["pids"].tolist()):
                a, b = offsets[i], offsets[i + 1]
                keep = recent[a:b]
                part = store.create(pid)
                part.append(
                    ids[a:b][keep], ver[a:b][keep], vecs[a:b][keep], encoded=store.full is not None
                )
                part.stale = min(int(stale[i]), part.n)
                self.parts[pid] = part
            self.set_centroids(z["cent_pid"], z["cents"])
            vm.rekey(np.arange(vm.size), store.ver_mask)

    def _after_replay(self) -> None:
        # work the previous process left pending (it is not in the snapshot)
        o = self.options
        self.rebalancer.schedule(
            pid
            for pid, p in self.parts.items()
            if p.n > o["split_limit"]
            or p.n - p.stale < o["merge_limit"]
            or STALE_SHARE * p.stale > p.n
        )


def _check_options(o: dict[str, Any]) -> None:
    p = Problems()
    p.integer("split_limit", o["split_limit"], ge=8)
    if p.integer("merge_limit", o["merge_limit"], ge=0) and is_int(o["split_limit"]):
        if o["merge_limit"] * 2 >= o["split_limit"]:
            p.add("merge_limit", "must be less than half of split_limit")
    for name in ("nprobe", "replicas", "reassign_neighbors"):
        p.integer(name, o[name], ge=1)
    p.number("replica_eps", o["replica_eps"], ge=0)
    p.number("refresh", o["refresh"], ge=0, le=16)
    p.number("eps", o["eps"], optional=True, ge=0)
    if not isinstance(o["background"], bool):
        p.add("background", f"must be true or false, got {quote(o['background'])}")
    p.device("device", o["device"], ("auto", "numpy", "cpu", "cuda"))
    p.integer("graph_min_partitions", o["graph_min_partitions"], ge=0)
    p.choice("postings", o["postings"], CODECS)
    p.integer("rerank", o["rerank"], ge=1, le=1024)
    p.raise_if_any("invalid partitioned index options", "index_options")
