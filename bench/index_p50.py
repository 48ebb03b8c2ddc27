"""Single-query latency of the partitioned index on static WordNet, per postings option.

Builds one `PartitionedIndex` per ``--postings`` option from the WordNet MiniLM vectors
(all but 1,000 held-out queries, inserted 1,000 at a time, then ``wait_idle``), and for each
nprobe prints recall@10 (exact inner-product truth) and the p50 CPU time of one-query
searches (``thread_time``, 600 calls). Issue 14, item 2: p50 <= 0.5 ms at recall 0.95.

    python bench/index_p50.py --data ../shared/data/wordnet/minilm_fp16.npy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from veclink.index.partitioned import PartitionedIndex

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/wordnet/minilm_fp16.npy"))
    ap.add_argument("--postings", nargs="+", default=["float32", "int8", "fp16"])
    ap.add_argument("--nprobes", type=int, nargs="+", default=[64, 80, 96, 112, 128])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    x = np.load(args.data).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = np.random.default_rng(args.seed).permutation(len(x))
    q, base = x[perm[:1000]], perm[1000:]
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x[base])
    gt = base[flat.search(q, 10)[1]]
    print("| postings | nprobe | recall@10 | p50 ms (CPU) |\n|---|---|---|---|")
    for postings in args.postings:
        index = PartitionedIndex(x.shape[1], metric="ip", postings=postings)
        for s in range(0, len(base), 1000):
            rows = base[s : s + 1000]
            index.add(rows, x[rows])
        index.wait_idle()
        for nprobe in args.nprobes:
            got = index.search(q, 10, nprobe=nprobe)[1]
            rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, gt, strict=True)])
            lat = []
            for _ in range(2):
                for i in range(300):
                    t = time.thread_time_ns()
                    index.search(q[i : i + 1], 10, nprobe=nprobe)
                    lat.append(time.thread_time_ns() - t)
            print(f"| {postings} | {nprobe} | {rec:.4f} | {np.median(lat) / 1e6:.3f} |", flush=True)
        index.close()


if __name__ == "__main__":
    main()
