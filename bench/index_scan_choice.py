"""The batch scan chosen by measured cost against the fixed rule it replaced, on one index.

One static `PartitionedIndex` (WordNet MiniLM vectors PCA-projected to ``--dim``, or a Gaussian
mixture without ``--data``); batches of ``--batch`` queries at several nprobe, timed as QPS in
interleaved rounds (best of ``--repeats``) so every arm sees the same machine load:

- faiss: faiss's per-query kernel, forced;
- blas 1 thread: the partition-major BLAS scan, forced, as it runs now (one BLAS thread);
- blas all threads: the same at the process's BLAS thread count (as it ran before);
- fixed rule (before): the path of the old threshold (`veclink.index.scan_choice.seed_blas`),
  BLAS at the process's thread count;
- chooser: the index's own choice (`veclink.index.scan_choice`), after ``--warm`` batches.

    python bench/index_scan_choice.py --dim 50
    python bench/index_scan_choice.py --dim 128
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import faiss
import numpy as np
from index_search import mixture, normalise, wordnet
from veclink.index import PartitionedIndex, scan
from veclink.index.scan_choice import seed_blas

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("faiss", "blas 1 thread", "blas all threads", "fixed rule (before)", "chooser")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm", type=int, default=10, help="chooser batches before timing")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    args = ap.parse_args()
    d, nq = args.dim, args.batch
    wn = wordnet(Path(args.data), args.n + nq, d, 0)
    name = "wordnet" if wn is not None else "mixture"
    x = normalise(wn if wn is not None else mixture(args.n + nq, d, 0))
    q, x = x[:nq], x[nq:]
    index = PartitionedIndex(d, metric="ip", background=False, device="numpy")
    index.add(np.arange(len(x)), x)
    parts, chooser, pinned = len(index.parts), index.scan_choice, scan.one_blas_thread
    print(
        f"{name} d={d}: {len(x):,} vectors, {parts} postings, batches of {nq}, "
        f"faiss OpenMP threads {faiss.omp_get_max_threads()}, best of {args.repeats}"
    )

    def run(arm: str, nprobe: int) -> tuple[float, str | None]:
        chooser.force = None
        scan.one_blas_thread = pinned
        if arm == "faiss":
            chooser.force = "faiss"
        elif arm.startswith("blas"):
            chooser.force = "blas"
        elif arm.startswith("fixed"):
            chooser.force = "blas" if seed_blas(nq, nprobe, parts, d) else "faiss"
        if arm in ("blas all threads", "fixed rule (before)"):
            scan.one_blas_thread = contextlib.nullcontext  # type: ignore[assignment]
        start = time.perf_counter()
        index.search(q, 10, nprobe=nprobe)
        return time.perf_counter() - start, chooser.last

    print("| nprobe | queries/posting | " + " | ".join(ARMS) + " | chooser's path |")
    print("|---" * (len(ARMS) + 3) + "|")
    try:
        for nprobe in args.nprobes:
            for _ in range(args.warm):
                run("chooser", nprobe)
            best = dict.fromkeys(ARMS, float("inf"))
            paths = []
            for _ in range(args.repeats):
                for arm in ARMS:
                    t, path = run(arm, nprobe)
                    best[arm] = min(best[arm], t)
                    if arm == "chooser":
                        paths.append(str(path))
            cells = " | ".join(f"{nq / best[a]:,.0f}" for a in ARMS)
            print(f"| {nprobe} | {nq * nprobe / parts:.0f} | {cells} | {'/'.join(paths)} |")
    finally:
        scan.one_blas_thread = pinned
        index.close()


if __name__ == "__main__":
    main()
