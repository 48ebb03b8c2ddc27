"""Search cost per scanned vector: veclink's partitioned scan against faiss IndexIVFFlat.

Both search the same partitions: faiss's IVF is built from veclink's own centroids and
posting contents (list j holds exactly the entries of the posting of centroid row j), and
veclink routes ``ip`` queries by inner product like faiss's ``IndexFlatIP`` quantizer, so at
one ``nprobe`` both scan the same vectors (the table checks it: "scan/q"). Each cell is the
best of ``--repeats`` timings; ns/vec = wall time / vectors scanned, routing included for
both. Batches of ``--batch`` queries and single queries (one call per query), at several
nprobe, for d = 50, 128, 384: a Gaussian mixture, and the WordNet MiniLM vectors (PCA to the
lower dimensions) when ``--data`` holds them. "path" is veclink's scan: faiss's kernel, or
for large batches its partition-major BLAS scan when the index measured it cheaper
(`veclink.index.scan_choice`; the path of the last timed batch).
Then searches from 1 and 8 threads of one process on one index (QPS; the index lets readers
run together).

    python bench/index_search.py                  # 100k vectors, ~3-5 min on 2 busy cores
    python bench/index_search.py --n 20000 --dims 50 --nprobes 16  # quick look
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits
from veclink.index import PartitionedIndex, scan
from veclink.index.postings import centroid_rows

ROOT = Path(__file__).resolve().parents[1]
K = 10


def mixture(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, d)).astype(np.float32) * 1.5
    x = centres[rng.integers(0, 256, n)] + rng.normal(size=(n, d)).astype(np.float32)
    return x


def wordnet(path: Path, n: int, d: int, seed: int) -> np.ndarray | None:
    f = path / "wordnet" / "minilm_fp16.npy"
    if not f.exists():
        return None
    x = np.load(f).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = x[rng.permutation(len(x))[:n]]
    if d < x.shape[1]:  # PCA projection to d dimensions
        mean = x.mean(0)
        _, vecs = np.linalg.eigh(np.cov((x - mean).T))
        x = (x - mean) @ vecs[:, ::-1][:, :d]
    return x.astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def faiss_twin(index: PartitionedIndex) -> faiss.IndexIVFFlat:
    """An IndexIVFFlat over veclink's partitions: centroid row j's posting is list j."""
    cents = np.ascontiguousarray(index.cents)
    quantizer = faiss.IndexFlatIP(index.dim)
    quantizer.add(cents)
    ivf = faiss.IndexIVFFlat(quantizer, index.dim, len(cents), faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    for pid, part in index.parts.items():
        ids, ver, vecs = part.view()
        cur = index.versions.current(ids, ver)
        row = int(centroid_rows(index.cent_pid, np.array([pid]))[0])
        ext = np.ascontiguousarray(index.versions.ext[ids[cur]])
        codes = np.ascontiguousarray(vecs[cur])
        ivf.invlists.add_entries(
            row, ext.size, faiss.swig_ptr(ext), faiss.swig_ptr(codes.view(np.uint8))
        )
        ivf.ntotal += ext.size
    return ivf


#: the clock of `best_of`: wall time, or with --cpu-time the calling thread's CPU time (all
#: the work when BLAS and OpenMP run one thread; robust to other jobs on a shared machine)
CLOCK = time.perf_counter


def best_of(repeats: int, *fns) -> list[float]:  # type: ignore[no-untyped-def]
    """Best time of each function over ``repeats`` rounds, the functions interleaved
    within each round so that both sides see the same machine load."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            t = CLOCK()
            fn()
            best[j] = min(best[j], CLOCK() - t)
    return best


def general_path_too(fn):  # type: ignore[no-untyped-def]
    """``fn`` with the single-query fast path (`veclink.index.scan.scan_one`) turned off."""

    def run() -> None:
        fast = scan.scan_one
        scan.scan_one = lambda *a: None
        try:
            fn()
        finally:
            scan.scan_one = fast

    return run


def measure(name: str, x: np.ndarray, args: argparse.Namespace) -> list[dict[str, object]]:
    d = x.shape[1]
    q, x = x[: args.batch], x[args.batch :]
    index = PartitionedIndex(d, metric="ip", background=False, device="numpy")
    t = time.perf_counter()
    index.add(np.arange(len(x)), x)
    build = time.perf_counter() - t
    ivf = faiss_twin(index)
    print(
        f"  {name} d={d}: {len(x):,} vectors, {len(index.parts)} postings, built in {build:.1f}s",
        flush=True,
    )
    rows = []
    singles = q[: args.singles]
    for nprobe in args.nprobes:
        ivf.nprobe = nprobe
        index.scanned_total = index.queries_total = 0
        _, vi = index.search(q, K, nprobe=nprobe)
        scanned_v = index.stats()["scanned_per_query"]
        faiss.cvar.indexIVF_stats.reset()
        _, fi = ivf.search(q, K)
        scanned_f = faiss.cvar.indexIVF_stats.ndis / len(q)
        agree = np.mean([len(set(a) & set(b)) / K for a, b in zip(vi, fi, strict=True)])
        modes = (
            ("batch", "single", "single (general path)")
            if args.ab_fast_path
            else ("batch", "single")
        )
        for mode in modes:
            if mode == "batch":
                tv, tf = best_of(
                    args.repeats,
                    lambda: index.search(q, K, nprobe=nprobe),  # noqa: B023
                    lambda: ivf.search(q, K),
                )
                nq = len(q)
                path = index.scan_choice.last  # the batch scan the index chose, by cost
            else:

                def one_by_one_v() -> None:
                    for row in singles:
                        index.search(row[None], K, nprobe=nprobe)  # noqa: B023

                def one_by_one_f() -> None:
                    for row in singles:
                        ivf.search(row[None], K)

                run_v = one_by_one_v if mode == "single" else general_path_too(one_by_one_v)
                tv, tf = best_of(args.repeats, run_v, one_by_one_f)
                nq = len(singles)
                path = "faiss"
            ns_v = tv / (nq * scanned_v) * 1e9
            ns_f = tf / (nq * scanned_f) * 1e9
            rows.append(
                {
                    "data": name,
                    "d": d,
                    "mode": mode,
                    "nprobe": nprobe,
                    "path": path,
                    "scan/q": f"{scanned_v:.0f}/{scanned_f:.0f}",
                    "agree": agree,
                    "veclink ns/vec": ns_v,
                    "faiss ns/vec": ns_f,
                    "ratio": ns_v / ns_f,
                    "veclink q/s": nq / tv,
                    "faiss q/s": nq / tf,
                }
            )
            print(fmt_row(rows[-1]), flush=True)
    if args.threads:
        threaded(index, ivf, singles, args)
    index.close()
    return rows


def threaded(
    index: PartitionedIndex, ivf: faiss.IndexIVFFlat, q: np.ndarray, args: argparse.Namespace
) -> None:
    """Single-query searches from 1 and 8 threads for ``--thread-seconds`` each: QPS."""
    nprobe = args.nprobes[len(args.nprobes) // 2]
    ivf.nprobe = nprobe
    for label, search in (
        ("veclink", lambda v: index.search(v, K, nprobe=nprobe)),
        ("faiss", lambda v: ivf.search(v, K)),
    ):
        qps = {}
        for n_threads in (1, 8):
            done = [0] * n_threads
            stop = time.perf_counter() + args.thread_seconds

            def work(slot: int, stop: float = stop) -> None:
                i = slot
                while time.perf_counter() < stop:
                    search(q[i % len(q)][None])  # noqa: B023
                    done[slot] += 1  # noqa: B023
                    i += n_threads  # noqa: B023

            threads = [threading.Thread(target=work, args=(s,)) for s in range(n_threads)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            qps[n_threads] = sum(done) / (time.perf_counter() - t)
        print(
            f"    threads ({label}, nprobe {nprobe}, single queries): 1 -> {qps[1]:,.0f} q/s, "
            f"8 -> {qps[8]:,.0f} q/s (x{qps[8] / qps[1]:.2f})",
            flush=True,
        )


COLS = (
    "data",
    "d",
    "mode",
    "nprobe",
    "path",
    "scan/q",
    "agree",
    "veclink ns/vec",
    "faiss ns/vec",
    "ratio",
    "veclink q/s",
    "faiss q/s",
)


def fmt_row(r: dict[str, object]) -> str:
    cells = []
    for c in COLS:
        v = r[c]
        if c == "agree":
            cells.append(f"{v:.3f}")
        elif c == "ratio":
            cells.append(f"{v:.2f}x")
        elif isinstance(v, float):
            cells.append(f"{v:,.1f}" if v < 100 else f"{v:,.0f}")
        else:
            cells.append(str(v))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="vectors per data set")
    ap.add_argument("--dims", type=int, nargs="+", default=[50, 128, 384])
    ap.add_argument("--nprobes", type=int, nargs="+", default=[8, 32, 96])
    ap.add_argument("--batch", type=int, default=1000, help="queries per batch")
    ap.add_argument("--singles", type=int, default=200, help="single queries timed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS and OpenMP threads of numpy and faiss, for both (per-core cost)",
    )
    ap.add_argument("--threads", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--ab-fast-path",
        action="store_true",
        help="also time single queries with the one-query fast path off (before/after)",
    )
    ap.add_argument(
        "--cpu-time", action="store_true", help="time by the thread's CPU time, not wall time"
    )
    ap.add_argument("--thread-seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.thread_time
    # both sides single-threaded: the table compares per-core kernels; on this busy 2-core
    # machine a second BLAS thread's wake-ups made a (1000 x 1600) product 18x slower
    threadpool_limits(args.blas_threads)
    faiss.omp_set_num_threads(args.blas_threads)
    print(
        f"index search: {args.n:,} vectors, k={K}, batch {args.batch}, {args.singles} single "
        f"queries, best of {args.repeats}, BLAS/OpenMP threads {args.blas_threads}",
        flush=True,
    )
    rows = []
    for d in args.dims:
        rows += measure("mixture", normalise(mixture(args.n + args.batch, d, args.seed)), args)
        wn = wordnet(Path(args.data), args.n + args.batch, d, args.seed)
        if wn is not None:
            rows += measure("wordnet", normalise(wn), args)
    print()
    print("| " + " | ".join(COLS) + " |")
    print("|" + "---|" * len(COLS))
    for r in rows:
        print(fmt_row(r))
    ratios = np.array([r["ratio"] for r in rows], dtype=float)
    print(
        f"\nratio veclink/faiss per scanned vector: median {np.median(ratios):.2f}x, "
        f"max {ratios.max():.2f}x (target <= 1.3x)"
    )


if __name__ == "__main__":
    main()
