"""Memory and recall of the partitioned index per ``postings`` option (float32, fp16, int8).

For each data set and postings option one index is built the same way (inserts of 1,000,
a tenth of the ids deleted along the way, then idle), and the table shows:

- memory, from the index's own accounting (`PartitionedIndex.stats`), per live vector and
  as a multiple of the raw float32 bytes (``d x 4``): "postings" = the faiss lists' buffers
  (codes + 8-byte ids, spare capacity included) and the per-entry versions; "full file" =
  the float32 copy per id that quantised postings re-rank with, which a persisted index
  keeps in a memory-mapped file (the OS caches what re-ranking touches); "heap total" =
  postings + version map + centroids (+ full vectors when they are on the heap);
- "heap": what the build really allocated (glibc ``mallinfo2`` before and after, the index
  built in this thread with rebalancing inline so that every allocation lands in the main
  arena), per live vector and as a multiple of raw; a small index of each kind is built and
  dropped first, so that modules a first build imports are not counted (`warm_up`);
- recall@10 against exact inner product over the live vectors, and queries/s for one batch
  of ``--queries`` (best of 2), at each nprobe; for quantised postings at each ``rerank``.

    python bench/index_memory.py --data ../shared/data          # WordNet + 200k mixture
    python bench/index_memory.py --synthetic-n 1000000 --skip-wordnet
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits
from veclink.index import PartitionedIndex

ROOT = Path(__file__).resolve().parents[1]
K = 10
POSTINGS = ("float32", "fp16", "int8")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def heap_bytes() -> int:
    """Bytes allocated with malloc in the main arena and by mmap (glibc)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    gc.collect()
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def mixture(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, d)).astype(np.float32) * 0.5
    x = centres[rng.integers(0, 256, n)] + rng.normal(size=(n, d)).astype(np.float32)
    return normalise(x)


def normalise(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def build(
    x: np.ndarray, postings: str, rerank: int, path: str | None
) -> tuple[PartitionedIndex, float, int]:
    """Insert ``x`` in batches of 1,000, deleting a tenth of the ids along the way."""
    before = heap_bytes()
    index = PartitionedIndex(
        x.shape[1], path=path, background=False, postings=postings, rerank=rerank
    )
    start = time.perf_counter()
    for a in range(0, len(x), 1000):
        index.add(np.arange(a, min(a + 1000, len(x))), x[a : a + 1000])
        if a and a % 10_000 == 0:  # delete 1,000 of the earlier ids every 10,000 inserted
            index.remove(np.arange(a // 10 - 1000, a // 10))
    seconds = time.perf_counter() - start
    return index, seconds, heap_bytes() - before


def warm_up(postings: list[str], directory: str | None) -> None:
    """Build and drop a small index of each kind first, so that what a first build loads once
    per process (numpy imports ``numpy.ma`` lazily inside ``np.unique``: ~1.5 MB, 14 bytes a
    vector at 100k) is not counted as the measured index's memory."""
    x = mixture(5_000, 32, seed=2)
    for kind in postings:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            path = str(Path(tmp) / "idx") if directory else None
            index, _, _ = build(x, kind, 4, path)
            index.search(x[:100], K)
            index.abandon()
            del index


def ground_truth(x: np.ndarray, live: np.ndarray, q: np.ndarray) -> np.ndarray:
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x[live])
    _, gt = flat.search(q, K)
    return live[gt]


def recall(got: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(a, b).size / K for a, b in zip(got, gt, strict=True)]))


def search_rows(
    index: PartitionedIndex, q: np.ndarray, gt: np.ndarray, nprobes: list[int], reranks: list[int]
) -> list[tuple[int, int, float, float]]:
    """(nprobe, rerank, recall@10, QPS) per setting."""
    rows = []
    for rerank in reranks:
        # the bench varies the re-rank depth of one built index (an index option otherwise)
        index.options["rerank"] = rerank
        for nprobe in nprobes:
            best = np.inf
            for _ in range(2):
                t = time.perf_counter()
                _, got = index.search(q, K, nprobe=nprobe)
                best = min(best, time.perf_counter() - t)
            rows.append((nprobe, rerank, recall(got, gt), len(q) / best))
    return rows


def run(name: str, x: np.ndarray, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    order = rng.permutation(len(x))
    q, base = x[order[: args.queries]], x[order[args.queries :]]
    d = base.shape[1]
    print(f"\n### {name}: {len(base):,} x {d} (+{len(q):,} held-out queries)\n")
    print(
        "| postings | build s | live | postings B/vec (x raw) | full file B/vec "
        "| heap total B/vec (x raw) | heap measured B/vec (x raw) | reencodes | repacks |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    curves = []
    for postings in args.postings:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            path = str(Path(tmp) / "idx") if args.dir else None
            index, seconds, heap = build(base, postings, args.reranks[0], path)
            st = index.stats()
            live = np.sort(index.ids())
            n = live.size
            raw = 4 * d
            per = {
                k: st[k] / n for k in ("postings_bytes", "full_vectors_file_bytes", "memory_bytes")
            }
            print(
                f"| {postings} | {seconds:.1f} | {n:,} | {per['postings_bytes']:.0f} "
                f"({per['postings_bytes'] / raw:.3f}) | {per['full_vectors_file_bytes']:.0f} | "
                f"{per['memory_bytes']:.0f} ({per['memory_bytes'] / raw:.3f}) | {heap / n:.0f} "
                f"({heap / n / raw:.3f}) | {st['reencodes']} | {st['repacks']} |",
                flush=True,
            )
            gt = ground_truth(base, live, q)
            reranks = [0] if postings == "float32" else args.reranks
            for nprobe, rerank, r, qps in search_rows(index, q, gt, args.nprobes, reranks):
                curves.append((postings, nprobe, rerank, r, qps))
            index.abandon()  # no final snapshot: the directory goes
            del index
    print("\n| postings | nprobe | rerank | recall@10 | QPS |")
    print("|---|---|---|---|---|")
    for postings, nprobe, rerank, r, qps in curves:
        rr = "-" if postings == "float32" else str(rerank)
        print(f"| {postings} | {nprobe} | {rr} | {r:.4f} | {qps:,.0f} |")
    print()
    for postings in args.postings:
        mine = [c for c in curves if c[0] == postings and c[3] >= 0.95]
        if mine:
            best = max(mine, key=lambda c: c[4])
            print(
                f"- {postings}: recall 0.95 reached, fastest at nprobe={best[1]}"
                f"{'' if postings == 'float32' else f' rerank={best[2]}'}: "
                f"{best[3]:.4f} at {best[4]:,.0f} QPS"
            )
        else:
            top = max((c for c in curves if c[0] == postings), key=lambda c: c[3])
            print(f"- {postings}: recall 0.95 NOT reached (best {top[3]:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--skip-wordnet", action="store_true")
    ap.add_argument("--synthetic-n", type=int, default=200_000, help="0: no synthetic run")
    ap.add_argument("--synthetic-d", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--postings", nargs="+", default=list(POSTINGS), choices=POSTINGS)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--reranks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument(
        "--dir",
        default="/tmp",
        help="where the indexes are persisted (full vectors of quantised postings in a "
        "memory-mapped file there); '' keeps them in memory",
    )
    args = ap.parse_args()
    with threadpool_limits(1, user_api="blas"):
        warm_up(args.postings, args.dir)
        if not args.skip_wordnet:
            f = args.data / "wordnet" / "minilm_fp16.npy"
            run("WordNet MiniLM", normalise(np.load(f).astype(np.float32)), args)
        if args.synthetic_n:
            run(
                "Gaussian mixture (256 centres)",
                mixture(args.synthetic_n, args.synthetic_d),
                args,
            )


if __name__ == "__main__":
    main()
