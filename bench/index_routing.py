"""Routing cost: exact centroid search against the centroid graph, at 1k, 10k and 100k partitions.

Routing finds the ``nprobe`` nearest centroids of a query (inner product) and the nearest
centroid of an insert (L2). Exact search ranks every centroid (`CentroidTable` without a
graph: one BLAS product; and faiss's flat index, which the single-query search path uses);
the graph (`veclink.index.centroid_graph`) asks an HNSW over the centroids. Centroids are a
random sample of the data (WordNet MiniLM, 384-d, and its PCA to 128-d; `--data`), queries
and inserts are held-out vectors, normalised. Times are CPU time of the calling thread
(``time.thread_time``; BLAS and OpenMP at one thread, so that is all the work) per query or
insert: on a 2-core machine shared with other jobs, wall time measured the neighbours' load
more than the code. single = one call per vector, batch = one call for ``--batch`` vectors.
"recall" is the share of the exact top-``nprobe`` (top-1 for inserts) that the graph returns.

Then the recall effect on search: an index of ``--index-n`` vectors with small partitions,
searched with exact routing and with the graph over the same partitions (recall@10 against
exact k-NN, at several nprobe).

    python bench/index_routing.py                      # ~10 min on 2 busy cores
    python bench/index_routing.py --sizes 1000 10000 --dims 128 --index-n 20000   # quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits
from veclink.index import FlatIndex, PartitionedIndex
from veclink.index.centroid_graph import CentroidGraph
from veclink.index.centroids import CentroidTable

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, d: int) -> np.ndarray:
    x = np.load(path / "wordnet" / "minilm_fp16.npy").astype(np.float32)
    x = x[np.random.default_rng(0).permutation(len(x))]
    if d < x.shape[1]:
        mean = x.mean(0)
        _, vecs = np.linalg.eigh(np.cov((x - mean).T))
        x = (x - mean) @ vecs[:, ::-1][:, :d]
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def per_call(fn, vecs: np.ndarray, single: bool, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Best-of-``repeats`` CPU seconds per vector."""
    best = float("inf")
    for _ in range(repeats):
        t = time.thread_time()
        if single:
            for v in vecs:
                fn(v[None])
        else:
            fn(vecs)
        best = min(best, time.thread_time() - t)
    return best / len(vecs)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def routing(x: np.ndarray, sizes: list[int], args: argparse.Namespace) -> list[str]:
    d = x.shape[1]
    q = x[-args.batch :]
    singles = q[: args.singles]
    rows = []
    for p in sizes:
        cents = x[:p]
        exact = CentroidTable(d)
        exact.reset(np.arange(p), cents)
        t = time.perf_counter()
        graph = CentroidTable(d, graph_min=0)
        graph.reset(np.arange(p), cents)
        graph.install_graph(CentroidGraph(d, graph.pids, graph.cents))
        build = time.perf_counter() - t
        flat = faiss.IndexFlatIP(d)
        flat.add(cents)
        nprobe = args.nprobe
        out = np.empty((1, nprobe), np.float32), np.empty((1, nprobe), np.int64)

        def flat_one(v: np.ndarray, nprobe: int = nprobe, out=out, flat=flat) -> None:  # type: ignore[no-untyped-def]
            flat.search_c(
                1, faiss.swig_ptr(v), nprobe, faiss.swig_ptr(out[0]), faiss.swig_ptr(out[1])
            )

        cells = {}
        for mode, single in (("single", True), ("batch", False)):
            vecs = singles if single else q
            for name, table in (("exact", exact), ("graph", graph)):
                cells[f"{name} {mode}"] = per_call(
                    lambda v, t=table, k=nprobe: t.nearest(v, k, by_ip=True), vecs, single
                )
        cells["faiss flat single"] = per_call(flat_one, singles, True)
        cells["exact insert"] = per_call(lambda v: exact.nearest(v, 1), q, False)  # noqa: B023
        cells["graph insert"] = per_call(lambda v: graph.nearest(v, 1), q, False)  # noqa: B023
        _, want = exact.nearest(q, nprobe, by_ip=True)
        _, got = graph.nearest(q, nprobe, by_ip=True)
        _, want1 = exact.nearest(q, 1)
        _, got1 = graph.nearest(q, 1)
        g = graph.graph
        assert g is not None
        t = time.thread_time()
        for i in range(200):  # a split: one centroid moves, one is added; a merge: one removed
            graph.move(graph.rows(np.array([i])), cents[i : i + 1] * 0.99)
            graph.append(p + i, cents[i] * 1.01)
            graph.drop(p + i)
        change = (time.thread_time() - t) / 200
        row = (
            f"| {d} | {p:,} | {nprobe} | "
            + " | ".join(
                f"{cells[c] * 1e6:,.1f}"
                for c in (
                    "exact single",
                    "faiss flat single",
                    "graph single",
                    "exact batch",
                    "graph batch",
                    "exact insert",
                    "graph insert",
                )
            )
            + f" | {overlap(got, want):.3f} | {np.mean(got1[:, 0] == want1[:, 0]):.3f}"
            + f" | {build:.1f} | {change * 1e6:,.0f} |"
        )
        print(row, flush=True)
        rows.append(row)
    return rows


def search_recall(x: np.ndarray, args: argparse.Namespace) -> list[str]:
    """recall@10 of one index searched with exact routing and with the graph."""
    d = x.shape[1]
    base, q = x[: args.index_n], x[-args.batch :]
    index = PartitionedIndex(
        d, metric="ip", split_limit=args.split_limit, merge_limit=args.split_limit // 4,
        background=False, device="numpy", graph_min_partitions=1 << 40,
    )  # fmt: skip
    t = time.perf_counter()
    for start in range(0, len(base), 1000):
        index.add(np.arange(start, min(start + 1000, len(base))), base[start : start + 1000])
    built = time.perf_counter() - t
    flat = FlatIndex(d, metric="ip")
    flat.add(np.arange(len(base)), base)
    _, truth = flat.search(q, 10)
    parts = len(index.parts)
    t = time.perf_counter()
    graph = CentroidGraph(d, index.cent_pid.copy(), index.cents.copy())
    graph_s = time.perf_counter() - t
    print(
        f"  d={d}: {len(base):,} vectors, {parts:,} partitions (built in {built:.0f}s); "
        f"graph built in {graph_s:.1f}s",
        flush=True,
    )
    rows = []
    for nprobe in args.search_nprobes:
        cells = []
        for g in (None, graph):
            index.install_graph(g)
            t = time.thread_time()
            _, got = index.search(q, 10, nprobe=nprobe)
            batch = time.thread_time() - t
            t = time.thread_time()
            for v in q[: args.singles]:
                index.search(v[None], 10, nprobe=nprobe)
            single = (time.thread_time() - t) / args.singles
            cells.append((overlap(got, truth), batch / len(q) * 1e6, single * 1e6))
        (re, be, se), (rg, bg, sg) = cells
        row = (
            f"| {d} | {parts:,} | {nprobe} | {re:.4f} | {rg:.4f} | {rg - re:+.4f} | "
            f"{se:,.0f} | {sg:,.0f} | {be:,.0f} | {bg:,.0f} |"
        )
        print(row, flush=True)
        rows.append(row)
    index.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 384])
    ap.add_argument("--nprobe", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=200)
    ap.add_argument("--index-n", type=int, default=100_000)
    ap.add_argument("--split-limit", type=int, default=32)
    ap.add_argument("--search-nprobes", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()
    threadpool_limits(1)
    faiss.omp_set_num_threads(1)
    routing_rows, search_rows = [], []
    for d in args.dims:
        x = load(Path(args.data), d)
        print(f"routing, d={d}: us per vector", flush=True)
        routing_rows += routing(x, args.sizes, args)
        if not args.skip_search:
            search_rows += search_recall(x, args)
    print()
    print(
        "| d | partitions | nprobe | exact single | faiss flat single | graph single | exact batch "
        "| graph batch | exact insert | graph insert | graph recall@nprobe | insert top-1 "
        "| graph build s | split+merge us |"
    )
    print("|" + "---|" * 14)
    print("\n".join(routing_rows))
    if search_rows:
        print()
        print(
            "| d | partitions | nprobe | recall@10 exact routing | graph | diff | single us exact "
            "| single us graph | batch us/q exact | batch us/q graph |"
        )
        print("|" + "---|" * 10)
        print("\n".join(search_rows))


if __name__ == "__main__":
    main()
