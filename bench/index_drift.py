"""Index drift benchmark: veclink's PartitionedIndex against its peers under distribution shift.

The data is split with 16-means; the index is built on clusters holding ~25% of the points,
then the rest streams in over 10 batches (cluster by cluster, so the distribution drifts)
while half of the base is deleted. Recall@10 against exact search over the live set is taken
at batches 0, 5 and 10. Peers in the same run: faiss IVF trained on the base and never
retrained, a full IVF rebuild on the final live set, and hnswlib with mark_deleted.
A uniform (no-shift) control repeats the stream in random order.

    python bench/index_drift.py                        # WordNet MiniLM vectors (117k x 384)
    python bench/index_drift.py --synthetic-n 200000   # Gaussian mixture, 128-d
    python bench/index_drift.py --pca 50               # WordNet projected to 50-d
    python bench/index_drift.py --synthetic-n 200000 --synthetic-d 50
    python bench/index_drift.py --synthetic-n 10000000 --only shifted --skip-hnsw  # 10M x 128

From --scaled-above vectors on (the 10M run), everything that would copy or scan the whole
set at once works in blocks (generation, the 16-means split, ground truth), and an IVF peer
built on more vectors than that is trained by two-level k-means on a sample and routes
through an HNSW over its centroids (`make_ivf`): full k-means with tens of thousands of
lists and exact assignment of millions of vectors take hours on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from veclink.index import PartitionedIndex

ROOT = Path(__file__).resolve().parents[1]
K = 10
NPROBES = (4, 8, 16, 32, 64, 96, 112, 128, 160, 192, 256)
#: rows per block where the whole set would otherwise be copied or scanned at once
BLOCK = 1 << 20
#: an IVF peer built on more vectors than `Scale.above` is trained on this many per list
TRAIN_PER_LIST = 50
#: HNSW routing of a scaled IVF peer: out-degree, and beam max(EF_MIN, EF_FACTOR x nprobe),
#: the rule veclink's centroid graph uses (`veclink.index.centroid_graph`)
PEER_HNSW_M = 32
EF_MIN = 32
EF_FACTOR = 2


#: count only anonymous resident memory: set when the data are a memory-mapped file, whose
#: pages are resident (and evictable) page cache rather than any method's memory
RSS_ANON = False
#: seconds since start, for progress lines on stderr
T0 = time.perf_counter()


def rss_mb() -> float:
    if RSS_ANON:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def progress(what: str) -> None:
    """A progress line on stderr (a 10M run takes most of an hour)."""
    print(f"[{time.perf_counter() - T0:7.0f} s, RSS {rss_mb():,.0f} MB] {what}", file=sys.stderr)


@dataclass
class Workload:
    name: str
    base: np.ndarray  # row numbers
    batches: list[np.ndarray]
    deletes: list[np.ndarray]
    queries: np.ndarray  # vectors


@dataclass
class Result:
    method: str
    curves: dict[int, list[tuple[str, float, float, float]]] = field(default_factory=dict)
    insert_per_s: float = 0.0
    delete_per_s: float = 0.0
    deleted_returned: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def load(args: argparse.Namespace, scratch: Path) -> np.ndarray:
    """The vectors, normalised; a synthetic set of more than ``--scaled-above`` rows is
    written to a memory-mapped file in ``scratch`` (its 5 GB at 10M x 128 then sit in the
    page cache, which the kernel can evict, instead of beside the indexes)."""
    global RSS_ANON
    if args.synthetic_n:
        rng = np.random.default_rng(args.seed)
        n, d = args.synthetic_n, args.synthetic_d
        centres = rng.normal(size=(64, d)).astype(np.float32) * 2
        labels = rng.integers(0, 64, n)
        # in blocks (float64 noise for 10M x 128 would be 10 GB); the generator's stream is
        # the same as one call's, so the data are too
        if n > args.scaled_above:
            x = np.lib.format.open_memmap(
                scratch / "x.npy", mode="w+", dtype=np.float32, shape=(n, d)
            )
            RSS_ANON = True
        else:
            x = np.empty((n, d), dtype=np.float32)
        for s in range(0, n, BLOCK):
            e = min(n, s + BLOCK)
            x[s:e] = centres[labels[s:e]] + rng.normal(size=(e - s, d)).astype(np.float32)
            x[s:e] /= np.linalg.norm(x[s:e], axis=1, keepdims=True)
        return x
    x = np.load(args.data).astype(np.float32)
    if args.pca:
        x = pca(x, args.pca, args.seed)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x)


def pca(x: np.ndarray, d: int, seed: int, sample: int = 50_000) -> np.ndarray:
    """Project ``x`` onto its top ``d`` principal axes (fitted on a random sample of rows)."""
    rng = np.random.default_rng(seed)
    fit = x[rng.permutation(len(x))[:sample]]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return (x - mean) @ vt[:d].T


def workloads(x: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, list[Workload]]:
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(x))
    q_rows, rows = perm[: args.queries], perm[args.queries :]
    queries = x[q_rows]
    km = faiss.Kmeans(x.shape[1], 16, niter=10, seed=args.seed)
    if len(rows) > args.scaled_above:  # k-means samples 256 points per centroid anyway
        km.train(x[np.sort(rng.choice(rows, 256 * 16, replace=False))])
    else:
        km.train(x[rows])
    lab = np.concatenate(
        [km.index.search(x[rows[s : s + BLOCK]], 1)[1][:, 0] for s in range(0, len(rows), BLOCK)]
    )
    order = rng.permutation(16)
    sizes = np.bincount(lab, minlength=16)
    base_clusters = []
    for c in order:
        base_clusters.append(c)
        if sizes[base_clusters].sum() >= 0.25 * len(rows):
            break
    in_base = np.isin(lab, base_clusters)
    base, rest = rows[in_base], rows[~in_base]
    # drift: the stream arrives cluster by cluster
    rank = np.argsort(order)  # rank[c]: when cluster c arrives
    rest = rest[np.argsort(rank[lab[~in_base]], kind="stable")]
    out = []
    for name, base_rows, stream in (
        ("shifted", base, rest),
        ("uniform", *np.split(rng.permutation(rows), [len(base)])),
    ):
        doomed = rng.permutation(base_rows)[: len(base_rows) // 2]
        out.append(
            Workload(
                name,
                base_rows,
                np.array_split(stream, args.batches),
                np.array_split(doomed, args.batches),
                queries,
            )
        )
    return queries, out


_TRUTH: dict[tuple[int, str], np.ndarray] = {}


def truth(x: np.ndarray, live: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top-K rows of ``x[live]`` for ``q`` (cached: the methods share live sets)."""
    key = (len(live), hashlib.sha1(live.tobytes() + q.tobytes()).hexdigest())
    if key not in _TRUTH:
        if len(live) <= 2 * BLOCK:
            flat = faiss.IndexFlatIP(x.shape[1])
            flat.add(x[live])
            _, gt = flat.search(q, K)
        else:  # in blocks, merged by faiss's heaps (no copy of the whole live set)
            heap = faiss.ResultHeap(len(q), K, keep_max=True)
            for s in range(0, len(live), BLOCK):
                block = live[s : s + BLOCK]
                d, i = faiss.knn(q, x[block], K, metric=faiss.METRIC_INNER_PRODUCT)
                heap.add_result(d, np.where(i >= 0, i + s, -1))
            heap.finalize()
            gt = heap.I
        _TRUTH[key] = live[gt]
    return _TRUTH[key]


def recall(got: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got, gt, strict=True)]))


#: timed searches per setting, the best kept (--repeats)
REPEATS = 1


def timed_qps(fn, q: np.ndarray) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """``fn(q)`` and its QPS: the best of `REPEATS` calls (a load spike on a shared machine
    hits one call, not the setting)."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        got = fn(q)
        best = min(best, time.perf_counter() - start)
    return got, len(q) / best


def latency(fn, q: np.ndarray, n: int = 200) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for row in q[:n]:
        start = time.perf_counter()
        fn(row[None])
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


# ---------------------------------------------------------------------- methods


def run_veclink(
    x: np.ndarray, w: Workload, args: argparse.Namespace
) -> tuple[Result, PartitionedIndex]:
    res = Result(
        "veclink partitioned" + ("" if args.postings == "float32" else f" ({args.postings})")
    )
    ix = PartitionedIndex(
        x.shape[1],
        metric="ip",
        split_limit=args.split_limit,
        merge_limit=args.split_limit // 8,
        postings=args.postings,
    )
    start, cpu = time.perf_counter(), time.process_time()
    ix.add(w.base, x[w.base])
    ix.wait_idle()
    res.build = (time.perf_counter() - start, time.process_time() - cpu)  # type: ignore[attr-defined]
    progress(f"veclink: base of {len(w.base):,} built, {len(ix.parts):,} partitions")
    deleted = np.zeros(len(x), dtype=bool)
    paths: list[tuple[int, str | None]] = []
    ins_t = del_t = ins_cpu = 0.0
    n_ins = n_del = 0
    for b in range(len(w.batches) + 1):
        if b:
            rows = w.batches[b - 1]
            start, cpu = time.perf_counter(), time.process_time()
            for s in range(0, len(rows), 1000):
                ix.add(rows[s : s + 1000], x[rows[s : s + 1000]])
            ix.wait_idle()
            ins_t += time.perf_counter() - start
            ins_cpu += time.process_time() - cpu
            n_ins += len(rows)
            start = time.perf_counter()
            ix.remove(w.deletes[b - 1])
            del_t += time.perf_counter() - start
            n_del += len(w.deletes[b - 1])
            deleted[w.deletes[b - 1]] = True
            ix.wait_idle()
            progress(
                f"veclink: batch {b}, {n_ins / ins_t:,.0f} inserts/s, {len(ix.parts):,} partitions"
            )
        if b in (0, len(w.batches) // 2, len(w.batches)):
            gt = truth(x, np.sort(ix.ids()), w.queries)
            curve = []
            for nprobe in NPROBES:
                before = (ix.scanned_total, ix.queries_total)
                (_, got), qps = timed_qps(lambda q, n=nprobe: ix.search(q, K, nprobe=n), w.queries)
                scanned = (ix.scanned_total - before[0]) / (ix.queries_total - before[1])
                res.deleted_returned += int(deleted[got[got >= 0]].sum())
                curve.append((f"nprobe={nprobe}", recall(got, gt), scanned, qps))
                paths.append((nprobe, ix.scan_choice.last))
            res.curves[b] = curve
    res.insert_per_s = n_ins / ins_t
    res.insert_cpu = ins_cpu  # type: ignore[attr-defined]
    res.inserts = n_ins  # type: ignore[attr-defined]
    res.delete_per_s = n_del / del_t
    st = ix.stats()
    res.extra = {
        "partitions": str(st["partitions"]),
        "size mean": f"{st['size_mean']:.0f}",
        "size max / CV": f"{st['size_max']} / {st['size_cv']:.2f}",
        "over limit": str(st["over_split_limit"]),
        "rebalance CPU s": f"{st['rebalance_cpu_s']:.1f}",
        "memory MB": f"{st['memory_bytes'] / 2**20:.0f}",
        "postings MB": f"{st['postings_bytes'] / 2**20:.0f}",
    }
    # the batch scan the index chose (by measured cost) at each nprobe of the final state
    res.extra["batch scan (final)"] = ", ".join(
        f"{n}:{p}" for n, p in paths[-len(NPROBES) :] if p is not None
    )
    res.memory = (st["memory_bytes"], len(ix))  # type: ignore[attr-defined]
    if args.postings != "float32":  # quantised: the int8 ranges' widenings, the full copy
        res.extra["re-encodes"] = str(st["reencodes"])
        res.extra["full vectors MB"] = f"{st['full_vectors_bytes'] / 2**20:.0f}"
    return res, ix


def ivf_scan(index: faiss.IndexIVF, q: np.ndarray, nprobe: int) -> tuple[np.ndarray, float, float]:
    set_nprobe(index, nprobe)
    faiss.cvar.indexIVF_stats.reset()
    (_, got), qps = timed_qps(lambda qq: index.search(qq, K), q)
    return got, faiss.cvar.indexIVF_stats.ndis / (len(q) * REPEATS), qps


def make_ivf(
    x: np.ndarray, rows: np.ndarray, mean_len: int, scaled_above: int
) -> faiss.IndexIVFFlat:
    """An IVF over ``x[rows]`` with lists of ``mean_len`` vectors on average.

    Up to ``scaled_above`` rows: faiss's k-means (10 iterations, 256 points per list) and an
    exact (flat) quantizer. Above: two-level k-means (faiss.contrib.clustering; sqrt(nlist)
    coarse clusters, each split in proportion to its size) on TRAIN_PER_LIST sampled points
    per list, and an HNSW quantizer over the centroids, which assigns the added vectors and
    routes queries with the beam rule of veclink's centroid graph (`set_nprobe`).
    """
    d = x.shape[1]
    nlist = max(1, len(rows) // mean_len)
    if len(rows) <= scaled_above:
        quant = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 1234
        ivf.train(x[rows])
        ivf.add_with_ids(x[rows], rows.astype(np.int64))
        return ivf
    rng = np.random.default_rng(1234)
    sample = x[np.sort(rng.choice(rows, min(len(rows), TRAIN_PER_LIST * nlist), replace=False))]
    cents = two_level_kmeans(sample, nlist, seed=1234)
    nlist = len(cents)
    del sample
    quant = faiss.IndexHNSWFlat(d, PEER_HNSW_M, faiss.METRIC_INNER_PRODUCT)
    quant.add(np.ascontiguousarray(cents, dtype=np.float32))
    ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    set_nprobe(ivf, 1)
    for s in range(0, len(rows), BLOCK):
        block = rows[s : s + BLOCK]
        ivf.add_with_ids(x[block], block.astype(np.int64))
    return ivf


def two_level_kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` centroids by two-level k-means: sqrt(k) coarse clusters, each cut into a share
    of the ``k`` proportional to its size (at least one each, at most its points).

    faiss.contrib.clustering.two_level_clustering does the same but can give a small coarse
    cluster no share and then fails (the mixture's components make such clusters).
    """
    d = x.shape[1]
    k1 = max(1, int(math.sqrt(k)))
    coarse = faiss.Kmeans(d, k1, niter=10, seed=seed, max_points_per_centroid=2000)
    coarse.train(x)
    label = coarse.index.search(x, 1)[1][:, 0]
    counts = np.bincount(label, minlength=k1)
    share = counts * (k / counts.sum())
    alloc = np.minimum(np.maximum(np.floor(share).astype(np.int64), counts > 0), counts)
    while alloc.sum() < min(k, counts.sum()):  # largest shortfall first, where points allow
        room = np.where(alloc < counts, share - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > k:
        alloc[int(np.argmax(alloc))] -= 1
    out = []
    for c in np.nonzero(alloc)[0].tolist():
        part = np.ascontiguousarray(x[label == c])
        if alloc[c] == 1:
            out.append(part.mean(0, keepdims=True))
            continue
        km = faiss.Kmeans(d, int(alloc[c]), niter=20, seed=seed + c, min_points_per_centroid=1)
        km.train(part)
        out.append(km.centroids)
    return np.concatenate(out).astype(np.float32)


def set_nprobe(ivf: faiss.IndexIVF, nprobe: int) -> None:
    """Set ``nprobe``, and an HNSW quantizer's beam to veclink's rule for that many."""
    ivf.nprobe = nprobe
    quant = faiss.downcast_index(ivf.quantizer)
    if isinstance(quant, faiss.IndexHNSW):
        quant.hnsw.efSearch = max(EF_MIN, EF_FACTOR * nprobe)


def ivf_bytes(ivf: faiss.IndexIVF) -> int:
    """Bytes of an IVF's list entries (vectors + ids, no spare capacity) and quantizer."""
    entries = sum(ivf.invlists.list_size(i) for i in range(ivf.nlist))
    quant = faiss.downcast_index(ivf.quantizer)
    per_centroid = ivf.d * 4 + (2 * PEER_HNSW_M * 4 if isinstance(quant, faiss.IndexHNSW) else 0)
    return entries * (ivf.code_size + 8) + ivf.nlist * per_centroid


def run_ivf(x: np.ndarray, w: Workload, args: argparse.Namespace) -> tuple[Result, np.ndarray]:
    res = Result("faiss IVF (frozen)")
    ivf = make_ivf(x, w.base, args.list_len, args.scaled_above)
    progress(f"frozen IVF: built on {len(w.base):,}, {ivf.nlist:,} lists")
    live = np.zeros(len(x), dtype=bool)
    live[w.base] = True
    deleted = np.zeros(len(x), dtype=bool)
    ins_t = del_t = 0.0
    n_ins = n_del = 0
    for b in range(len(w.batches) + 1):
        if b:
            rows = w.batches[b - 1]
            start = time.perf_counter()
            for s in range(0, len(rows), 1000):
                chunk = rows[s : s + 1000]
                ivf.add_with_ids(x[chunk], chunk.astype(np.int64))
            ins_t += time.perf_counter() - start
            n_ins += len(rows)
            start = time.perf_counter()
            ivf.remove_ids(w.deletes[b - 1].astype(np.int64))
            del_t += time.perf_counter() - start
            n_del += len(w.deletes[b - 1])
            live[rows] = True
            live[w.deletes[b - 1]] = False
            deleted[w.deletes[b - 1]] = True
            progress(f"frozen IVF: batch {b}")
        if b in (0, len(w.batches) // 2, len(w.batches)):
            gt = truth(x, np.nonzero(live)[0], w.queries)
            curve = []
            for nprobe in NPROBES:
                got, scanned, qps = ivf_scan(ivf, w.queries, nprobe)
                res.deleted_returned += int(deleted[got[got >= 0]].sum())
                curve.append((f"nprobe={nprobe}", recall(got, gt), scanned, qps))
            res.curves[b] = curve
    res.insert_per_s = n_ins / ins_t
    res.delete_per_s = n_del / del_t
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    res.extra = {
        "partitions": str(ivf.nlist),
        "size mean": f"{sizes.mean():.0f}",
        "size max / CV": f"{sizes.max()} / {sizes.std() / sizes.mean():.2f}",
    }
    res.ivf = ivf  # type: ignore[attr-defined]
    res.memory = (ivf_bytes(ivf), ivf.ntotal)  # type: ignore[attr-defined]
    return res, np.nonzero(live)[0]


def run_rebuild(x: np.ndarray, live: np.ndarray, w: Workload, args: argparse.Namespace) -> Result:
    res = Result("faiss IVF full rebuild")
    cpu = time.process_time()
    wall = time.perf_counter()
    ivf = make_ivf(x, live, args.list_len, args.scaled_above)
    progress(f"rebuilt IVF: {ivf.nlist:,} lists")
    res.extra = {
        "rebuild CPU s": f"{time.process_time() - cpu:.1f}",
        "rebuild wall s": f"{time.perf_counter() - wall:.1f}",
    }
    gt = truth(x, live, w.queries)
    res.curves[len(w.batches)] = [
        (f"nprobe={n}", recall(got, gt), scanned, qps)
        for n in NPROBES
        for got, scanned, qps in [ivf_scan(ivf, w.queries, n)]
    ]
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    res.extra["partitions"] = str(ivf.nlist)
    res.extra["size mean"] = f"{sizes.mean():.0f}"
    res.extra["size max / CV"] = f"{sizes.max()} / {sizes.std() / sizes.mean():.2f}"
    res.ivf = ivf  # type: ignore[attr-defined]
    res.memory = (ivf_bytes(ivf), ivf.ntotal)  # type: ignore[attr-defined]
    return res


def run_hnsw(x: np.ndarray, w: Workload, live: np.ndarray) -> Result:
    import hnswlib

    res = Result("hnswlib (mark_deleted)")
    index = hnswlib.Index(space="ip", dim=x.shape[1])
    total = len(w.base) + sum(len(b) for b in w.batches)
    index.init_index(max_elements=total, M=16, ef_construction=100, random_seed=1)
    index.add_items(x[w.base], w.base)
    start = time.perf_counter()
    n = 0
    for rows in w.batches:
        for s in range(0, len(rows), 1000):
            index.add_items(x[rows[s : s + 1000]], rows[s : s + 1000])
        n += len(rows)
    res.insert_per_s = n / (time.perf_counter() - start)
    start = time.perf_counter()
    deleted = np.concatenate(w.deletes)
    for i in deleted.tolist():
        index.mark_deleted(i)
    res.delete_per_s = len(deleted) / (time.perf_counter() - start)
    gt = truth(x, live, w.queries)
    curve = []
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(ef)
        (got, _), qps = timed_qps(lambda q: index.knn_query(q, k=K), w.queries)
        res.deleted_returned += int(np.isin(got, deleted).sum())
        curve.append((f"ef={ef}", recall(got, gt), float("nan"), qps))
    res.curves[len(w.batches)] = curve
    res.hnsw = index  # type: ignore[attr-defined]
    return res


# ---------------------------------------------------------------------- report


def at_recall(curve: list[tuple[str, float, float, float]], target: float):  # type: ignore[no-untyped-def]
    """The cheapest setting reaching ``target`` recall (or the best one if none does)."""
    ok = [c for c in curve if c[1] >= target]
    return ok[0] if ok else max(curve, key=lambda c: c[1])


def interpolate(curve: list[tuple[str, float, float, float]], target: float) -> tuple[float, float]:
    """(scanned, QPS) at ``target`` recall, log-linear between the two settings around it."""
    pts = sorted(curve, key=lambda c: c[1])
    for lo, hi in zip(pts, pts[1:], strict=False):
        if lo[1] <= target <= hi[1] and hi[1] > lo[1]:
            t = (target - lo[1]) / (hi[1] - lo[1])
            scanned = math.exp(math.log(lo[2]) + t * (math.log(hi[2]) - math.log(lo[2])))
            qps = math.exp(math.log(lo[3]) + t * (math.log(hi[3]) - math.log(lo[3])))
            return scanned, qps
    return float("nan"), float("nan")


def recall_at(curve: list[tuple[str, float, float, float]], scanned: float) -> float:
    """Recall at ``scanned`` vectors per query, log-linear between the settings around it."""
    pts = sorted(curve, key=lambda c: c[2])
    for lo, hi in zip(pts, pts[1:], strict=False):
        if lo[2] <= scanned <= hi[2]:
            t = (math.log(scanned) - math.log(lo[2])) / (math.log(hi[2]) - math.log(lo[2]))
            return lo[1] + t * (hi[1] - lo[1])
    return float("nan")


def targets(results: list[Result], batches: int, uniform: bool = False) -> None:
    """The issue's targets, as ratios between methods of this run."""
    ours, ivf, rebuild = results[0], results[1], results[2]
    o, i, r = (x.curves[batches] for x in (ours, ivf, rebuild))
    so, qo = interpolate(o, 0.95)
    si, qi = interpolate(i, 0.95)
    sr, _ = interpolate(r, 0.95)
    best_o, best_r = max(c[1] for c in o), max(c[1] for c in r)
    o_at = max((c for c in o if c[2] <= 1.25 * sr), key=lambda c: c[1], default=None)
    cpu = float(ours.extra["rebalance CPU s"])
    rebuild_cpu = float(rebuild.extra["rebuild CPU s"])
    print("\n| target | measured |")
    print("|---|---|")
    print(f"| best recall within 1 point of the rebuild's | {best_o:.4f} vs {best_r:.4f} |")
    print(
        f"| recall at <= 1.25x the rebuild's scanned at 0.95 ({1.25 * sr:,.0f}), measured | "
        f"{o_at[1]:.4f} ({o_at[0]}) |"
        if o_at
        else "| ... | none |"
    )
    print(
        f"| recall at 1.25x the rebuild's scanned at 0.95, interpolated (>= 0.95) | "
        f"{recall_at(o, 1.25 * sr):.4f} |"
    )
    print(
        f"| scanned at recall 0.95: veclink / rebuild <= 1.25 | {so / sr:.2f} "
        f"({so:,.0f} / {sr:,.0f}) |"
    )
    print(f"| scanned at recall 0.95: IVF / veclink >= 2 | {si / so:.2f} ({si:,.0f} / {so:,.0f}) |")
    print(f"| QPS at recall 0.95: veclink / IVF >= 1.8 | {qo / qi:.2f} ({qo:,.0f} / {qi:,.0f}) |")
    print(
        f"| rebalancing CPU / full rebuild CPU <= 0.30 | {cpu / rebuild_cpu:.2f} "
        f"({cpu:.1f} s / {rebuild_cpu:.1f} s) |"
    )
    print(f"| inserts/s >= 10k (incl. going idle) | {ours.insert_per_s:,.0f} |")
    print(f"| deletes/s >= 100k | {ours.delete_per_s:,.0f} |")
    print(f"| deleted ids returned == 0 | {ours.deleted_returned} |")
    print(f"| size max / CV after wait_idle (CV <= 0.5) | {ours.extra['size max / CV']} |")
    if uniform:
        print(
            f"| (uniform) recall at the IVF's scanned for 0.95: veclink - IVF >= -0.005 | "
            f"{recall_at(o, si) - 0.95:+.4f} |"
        )
        print(f"| (uniform) QPS at recall 0.95: veclink / IVF >= 0.95 | {qo / qi:.2f} |")


def report(name: str, results: list[Result], batches: int) -> None:
    print(f"\n## {name}\n")
    print("| method | batch | setting | recall@10 | scanned/query | QPS |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for b, curve in sorted(r.curves.items()):
            for setting, rec, scanned, qps in curve:
                sc = "-" if math.isnan(scanned) else f"{scanned:,.0f}"
                print(f"| {r.method} | {b} | {setting} | {rec:.4f} | {sc} | {qps:,.0f} |")
    print(
        "\n| method | final recall@10 at <=0.95 target: setting / recall / scanned / QPS "
        "| best recall | insert/s | delete/s | deleted ids returned | other |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        final = r.curves[batches]
        s, rec, sc, qps = at_recall(final, 0.95)
        best = max(c[1] for c in final)
        scs = "-" if math.isnan(sc) else f"{sc:,.0f}"
        other = "; ".join(f"{k}: {v}" for k, v in r.extra.items())
        ins = f"{r.insert_per_s:,.0f}" if r.insert_per_s else "-"
        dels = f"{r.delete_per_s:,.0f}" if r.delete_per_s else "-"
        print(
            f"| {r.method} | {s} / {rec:.4f} / {scs} / {qps:,.0f} | {best:.4f} | {ins} | "
            f"{dels} | {r.deleted_returned} | {other} |"
        )


def memory_table(results: list[Result]) -> None:
    """Bytes per live vector: the index's own count, and the process's resident growth;
    and veclink's insert cost in CPU time (the process's: both threads), which a loaded
    machine's wall-clock rate hides."""
    for r in results:
        if hasattr(r, "insert_cpu"):
            wall, cpu = r.build  # type: ignore[attr-defined]
            print(
                f"\n{r.method}: base build {wall:.1f} s wall / {cpu:.1f} s CPU; streamed inserts "
                f"{r.insert_per_s:,.0f}/s wall, {r.insert_cpu:.1f} s CPU "  # type: ignore[attr-defined]
                f"({r.inserts / r.insert_cpu:,.0f} inserts per CPU-second)"  # type: ignore[attr-defined]
            )
    print("\n| method | vectors | index MB | index B/vector | RSS +MB | RSS B/vector |")
    print("|---|---|---|---|---|---|")
    for r in results:
        nbytes, n = getattr(r, "memory", (0, 0))
        rss = float(r.extra.get("RSS +MB", "nan"))
        if not n:
            print(f"| {r.method} | - | - | - | {rss:,.0f} | - |")
            continue
        print(
            f"| {r.method} | {n:,} | {nbytes / 2**20:,.0f} | {nbytes / n:,.0f} | {rss:,.0f} | "
            f"{rss * 2**20 / n:,.0f} |"
        )


def plot(path: Path, name: str, results: list[Result], batches: int) -> None:
    """Recall@10 against vectors scanned (batches 0, 5, 10) and against QPS (final batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = ("tab:blue", "tab:red", "tab:green", "tab:purple")
    styles = {0: ":", batches // 2: "--", batches: "-"}
    for r, colour in zip(results, colours, strict=False):
        for b, curve in sorted(r.curves.items()):
            rec = [c[1] for c in curve]
            scanned = [c[2] for c in curve]
            if not math.isnan(scanned[0]):
                left.plot(
                    scanned,
                    rec,
                    styles[b],
                    color=colour,
                    marker=".",
                    label=f"{r.method}, batch {b}",
                )
            if b == batches:
                right.plot(
                    [c[3] for c in curve], rec, "-", color=colour, marker=".", label=r.method
                )
    left.set(
        xscale="log",
        xlabel="vectors scanned per query",
        ylabel="recall@10",
        title=f"{name}: recall vs work (dotted: batch 0, dashed: {batches // 2}, solid: {batches})",
    )
    right.set(
        xscale="log",
        xlabel="queries per second (2,000-query batch)",
        ylabel="recall@10",
        title=f"{name}: final state, recall vs QPS",
    )
    for ax in (left, right):
        ax.set_ylim(0.8, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.mkdir(parents=True, exist_ok=True)
    fig.savefig(path / f"index_drift_{name}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/wordnet/minilm_fp16.npy"))
    ap.add_argument(
        "--synthetic-n",
        type=int,
        default=0,
        metavar="N",
        help="use an N x D Gaussian mixture (D: --synthetic-d) instead of --data",
    )
    ap.add_argument("--synthetic-d", type=int, default=128, metavar="D")
    ap.add_argument(
        "--pca",
        type=int,
        default=0,
        metavar="D",
        help="project --data onto its top D principal axes (then re-normalise)",
    )
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument(
        "--split-limit",
        type=int,
        default=128,
        help="veclink split limit (the index's default); its postings then hold ~0.6x this "
        "many vectors on average",
    )
    ap.add_argument(
        "--list-len",
        type=int,
        default=0,
        help="mean inverted-list length of the IVF peers (0: veclink's final mean partition "
        "size, so that every method scans lists of the same granularity)",
    )
    ap.add_argument(
        "--postings",
        nargs="+",
        default=["float32"],
        choices=("float32", "fp16", "int8"),
        help="veclink's postings options, one veclink run each (fp16 / int8: quantised, "
        "re-ranked from float32); the targets are checked for the first",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed batch searches per setting and method, the best kept (QPS columns)",
    )
    ap.add_argument(
        "--scaled-above",
        type=int,
        default=2_000_000,
        metavar="N",
        help="above N vectors: work in blocks, and build IVF peers on more than N vectors "
        "with two-level k-means on a sample and an HNSW quantizer (see make_ivf)",
    )
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--only", choices=("shifted", "uniform"))
    ap.add_argument(
        "--plot", type=Path, metavar="DIR", help="also write index_drift_<workload>.png here"
    )
    args = ap.parse_args()
    global REPEATS
    REPEATS = max(1, args.repeats)

    with tempfile.TemporaryDirectory(prefix="index_drift_") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> None:
    x = load(args, scratch)
    progress("data ready")
    print(
        f"# index drift: {x.shape[0]:,} x {x.shape[1]} "
        f"({'synthetic' if args.synthetic_n else Path(args.data).name}"
        f"{f', PCA {args.pca}' if args.pca and not args.synthetic_n else ''}), "
        f"{args.queries} queries, "
        f"{args.batches} batches, split_limit {args.split_limit}, faiss threads "
        f"{faiss.omp_get_max_threads()}, best of {REPEATS} timed searches per setting"
    )
    _, works = workloads(x, args)
    progress("workloads ready")
    for w in works:
        if not args.only or w.name == args.only:
            run_workload(x, w, args)


def run_workload(x: np.ndarray, w: Workload, args: argparse.Namespace) -> None:
    args = argparse.Namespace(**vars(args))  # list_len is settled per workload
    final = args.batches
    results = []
    more = []  # veclink with further postings options: reported after the peers
    for i, postings in enumerate(args.postings):
        rss0 = rss_mb()
        ours, ix = run_veclink(x, w, argparse.Namespace(**{**vars(args), "postings": postings}))
        ours.extra["RSS +MB"] = f"{rss_mb() - rss0:.0f}"
        if not args.list_len:
            args.list_len = round(ix.stats()["size_mean"])
        nprobe = int(at_recall(ours.curves[final], 0.95)[0].split("=")[1])
        p50, p99 = latency(lambda q, i=ix, n=nprobe: i.search(q, K, nprobe=n), w.queries)
        ours.extra["p50/p99 ms"] = f"{p50:.2f} / {p99:.2f}"
        (more if i else results).append(ours)
        ix.close()
        del ix
        gc.collect()
    print(f"IVF peers: mean list length {args.list_len}")
    rss0 = rss_mb()
    ivf, live = run_ivf(x, w, args)
    ivf.extra["RSS +MB"] = f"{rss_mb() - rss0:.0f}"
    frozen = ivf.ivf  # type: ignore[attr-defined]
    set_nprobe(frozen, int(at_recall(ivf.curves[final], 0.95)[0].split("=")[1]))
    p50, p99 = latency(lambda q, f=frozen: f.search(q, K), w.queries)
    ivf.extra["p50/p99 ms"] = f"{p50:.2f} / {p99:.2f}"
    results.append(ivf)
    del frozen, ivf.ivf  # type: ignore[attr-defined]
    gc.collect()
    rss0 = rss_mb()
    rebuild = run_rebuild(x, live, w, args)
    rebuild.extra["RSS +MB"] = f"{rss_mb() - rss0:.0f}"
    rebuilt = rebuild.ivf  # type: ignore[attr-defined]
    set_nprobe(rebuilt, int(at_recall(rebuild.curves[final], 0.95)[0].split("=")[1]))
    p50, p99 = latency(lambda q, r=rebuilt: r.search(q, K), w.queries)
    rebuild.extra["p50/p99 ms"] = f"{p50:.2f} / {p99:.2f}"
    results.append(rebuild)
    del rebuilt, rebuild.ivf  # type: ignore[attr-defined]
    gc.collect()
    if not args.skip_hnsw:
        rss0 = rss_mb()
        hn = run_hnsw(x, w, live)
        hn.extra["RSS +MB"] = f"{rss_mb() - rss0:.0f}"
        graph = hn.hnsw  # type: ignore[attr-defined]
        graph.set_ef(int(at_recall(hn.curves[final], 0.95)[0].split("=")[1]))
        p50, p99 = latency(lambda q: graph.knn_query(q, k=K), w.queries)
        hn.extra["p50/p99 ms"] = f"{p50:.2f} / {p99:.2f}"
        results.append(hn)
    results += more
    report(w.name, results, final)
    if args.plot:
        plot(args.plot, w.name, results, final)
    targets(results, final, uniform=w.name == "uniform")
    memory_table(results)
    print(f"\nRSS now {rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
