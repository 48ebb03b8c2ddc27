"""Memory of a link job as the tables grow: synthetic N x N tables from D10, peak RSS per stage.

    nice python bench/linkage_scale.py --n 10000 30000 [100000] [--trace] [--timeout 3600]
        [--source ../shared/data/linkage/ccer/D10/imdb.csv]

Builds two tables of N records each from the values of one source table (default: the
IMDB side of D10, pipe-separated UTF-8): every synthetic entity takes each field from a
randomly drawn source row (so 100k distinct entities exist even though the source has
27k rows), and both sides hold a perturbed copy of it (typos, dropped tokens, swapped
fields, missing values; seeded). 80% of the left entities have a copy on the right; the
rest of the right side are entities of its own. The gold mapping is known.

The job runs `veclink.linkage.link` with a hashed bag-of-words stand-in encoder (384
dims, like all-MiniLM-L6-v2): real MiniLM embeddings of 200k texts take about an hour on
this 2-core machine, and the embeddings' memory is the same for any encoder of that dim.
Each N runs in its own process (so peak RSS is its own); a thread samples RSS every 20 ms
and the progress callback says which stage is running. ``--trace`` also records traced
(tracemalloc) peak memory per stage, which slows Python-heavy stages and adds its own
bookkeeping to RSS.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import re
import resource
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "linkage" / "ccer" / "D10" / "imdb.csv"
_WORD = re.compile(r"\w+")


class HashedBowEncoder:
    """Stand-in encoder: words hashed (crc32, signed) into ``dim`` buckets, L2-normalised.

    Follows the Encoder contract (``encode(texts, role) -> float32 (n, dim)``, ``dim``);
    deterministic across processes and fast enough for 200k texts on 2 cores.
    """

    spec: Any = None
    modality = "text"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str], role: str = "document") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in _WORD.findall(text.lower()):
                h = zlib.crc32(w.encode())
                out[i, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1
        return out / norms


# ------------------------------------------------------------------------------ tables


def read_source(path: Path) -> tuple[list[str], list[list[str]]]:
    """Columns (without the id) and rows of a pipe- or comma-separated UTF-8 table."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        head = fh.readline()
        fh.seek(0)
        delim = "|" if head.count("|") > head.count(",") else ","
        rows = list(csv.reader(fh, delimiter=delim))
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    return header[1:], [r[1:] for r in body]


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 3:
        return word
    i = int(rng.integers(len(word) - 1))
    op = int(rng.integers(4))
    c = chr(ord("a") + int(rng.integers(26)))
    if op == 0:  # delete
        return word[:i] + word[i + 1 :]
    if op == 1:  # insert
        return word[:i] + c + word[i:]
    if op == 2:  # substitute
        return word[:i] + c + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # transpose


def perturb(values: list[str], rng: np.random.Generator) -> list[str]:
    """A noisy copy of one record: typos, dropped tokens, a swapped field pair, missing values."""
    out = []
    for v in values:
        if v and rng.random() < 0.08:
            out.append("")
            continue
        words = v.split()
        kept = [w for w in words if len(words) < 2 or rng.random() >= 0.08]
        out.append(" ".join(_typo(w, rng) if rng.random() < 0.12 else w for w in kept))
    if len(out) > 1 and rng.random() < 0.05:
        i, j = rng.choice(len(out), size=2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def synthetic_pair(
    n: int, source: Path, *, overlap: float = 0.8, seed: int = 0
) -> tuple[Any, Any, set[tuple[str, str]]]:
    """Left and right `Table`s of ``n`` records each and the gold (left id, right id) pairs."""
    from veclink.linkage import Table

    columns, rows = read_source(source)
    rng = np.random.default_rng(seed)
    shared = int(round(n * overlap))
    n_entities = n + (n - shared)
    # entity e takes column c from source row picks[e, c]; the first column (the name-like
    # one, e.g. a title) must be present, so draw it from rows where it is
    with_first = np.array([i for i, r in enumerate(rows) if r[0].strip()])
    picks = rng.integers(len(rows), size=(n_entities, len(columns)))
    picks[:, 0] = with_first[rng.integers(len(with_first), size=n_entities)]
    entities = [[rows[p][c] for c, p in enumerate(pk)] for pk in picks.tolist()]
    left_ent = np.arange(n)
    right_ent = np.concatenate([np.arange(shared), np.arange(n, n_entities)])
    rng.shuffle(right_ent)

    def table(ents: np.ndarray, prefix: str, rng: np.random.Generator) -> Any:
        recs = []
        for e in ents.tolist():
            vals = perturb(entities[e], rng)
            recs.append({"id": f"{prefix}{e}", **dict(zip(columns, vals, strict=True))})
        return Table.from_records(recs, id_column="id", name=prefix)

    left = table(left_ent, "L", np.random.default_rng(seed + 1))
    right = table(right_ent, "R", np.random.default_rng(seed + 2))
    gold = {(f"L{e}", f"R{e}") for e in range(shared)}
    return left, right, gold


# ------------------------------------------------------------------------------- measure


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Peak RSS per stage, sampled by a thread; the stage comes from the progress callback."""

    def __init__(self, interval: float = 0.02) -> None:
        self.stage = "setup"
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def progress(self, stage: str, fraction: float) -> None:
        self._sample()
        self.stage = stage

    def _sample(self) -> None:
        rss = _rss_mb()
        if rss > self.peak.get(self.stage, 0.0):
            self.peak[self.stage] = rss

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_once(n: int, source: Path, trace: bool, memory_budget_mb: float | None) -> dict[str, Any]:
    # imports are start-up, not stage memory (spec validation imports the encoders: torch)
    import rapidfuzz  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import veclink.encoders  # noqa: F401
    from veclink.linkage import link

    t0 = time.perf_counter()
    left, right, gold = synthetic_pair(n, source)
    gen_s = time.perf_counter() - t0
    spec: dict[str, Any] = {}
    if memory_budget_mb is not None:
        spec["memory_budget_mb"] = memory_budget_mb
    from veclink.linkage import LinkageSpec
    from veclink.linkage.memory import estimate_memory

    encoder = HashedBowEncoder()
    estimate = estimate_memory(LinkageSpec.from_dict(spec), left, right, encoder.dim)
    base = _rss_mb()
    with RssSampler() as sampler:
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        res = link(left, right, spec, encoder=encoder, progress=sampler.progress)
        seconds = time.perf_counter() - t0
        if trace:
            tracemalloc.stop()
        sampler.progress("results", 0.0)
    lp, rp = left.position(), right.position()
    gold_rows = {(lp[a], rp[b]) for a, b in gold}
    pred = {(a, b) for a, b, _ in res.matches()}
    tp = len(pred & gold)
    p, r = tp / max(len(pred), 1), tp / max(len(gold), 1)
    return {
        "n": n,
        "generate_s": gen_s,
        "seconds": seconds,
        "rss_before_mb": base,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stage_rss_mb": sampler.peak,
        "estimate_mb": estimate.total_mb,
        "estimate_parts": estimate.parts,
        "stages": [(s.name, s.seconds, s.peak_mb) for s in res.stages],
        "candidates": len(res.candidates),
        "pc": res.candidates.pair_completeness(gold_rows),
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "precision": p,
        "recall": r,
    }


def _child(n: int, source: str, trace: bool, budget: float | None, queue: Any) -> None:
    try:
        queue.put(run_once(n, Path(source), trace, budget))
    except Exception as exc:  # report it; the other sizes still run
        import traceback

        queue.put(
            {"n": n, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        )


def measure(n: int, source: Path, trace: bool, budget: float | None, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(n, str(source), trace, budget, queue))
    proc.start()
    try:
        out = queue.get(timeout=timeout)
    except Exception:
        proc.kill()
        return {"n": n, "error": f"timed out after {timeout:.0f} s"}
    proc.join()
    return out


def report(results: list[dict[str, Any]], trace: bool) -> str:
    lines = [
        "| N x N | candidates | pair completeness | F1 | time s | peak RSS MiB | "
        "RSS at start MiB | estimate MiB (job's own) | "
        "peak RSS MiB by stage (traced peak MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['n']:,} | failed: {r['error']} | | | | | | | |")
            continue
        parts = []
        for name, _sec, traced in r["stages"]:
            rss = r["stage_rss_mb"].get(name)
            extra = f" ({traced:.0f})" if trace and traced is not None else ""
            parts.append(f"{name} {rss:.0f}{extra}" if rss else f"{name} -")
        lines.append(
            f"| {r['n']:,} | {r['candidates']:,} | {r['pc']:.3f} | {r['f1']:.3f} | "
            f"{r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} | "
            f"{r.get('estimate_mb', float('nan')):.0f} | {', '.join(parts)} |"
        )
    lines.append("")
    lines.append(
        "stage seconds: "
        + "; ".join(
            f"{r['n']:,}: " + ", ".join(f"{s} {t:.1f}" for s, t, _ in r["stages"])
            for r in results
            if "error" not in r
        )
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 30_000])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--trace", action="store_true", help="also trace memory per stage")
    ap.add_argument("--memory-budget-mb", type=float, default=None)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per size")
    args = ap.parse_args(argv)
    results = []
    for n in args.n:
        r = measure(n, args.source, args.trace, args.memory_budget_mb, args.timeout)
        if "error" in r:
            print(f"N={n}: {r['error']}\n{r.get('trace', '')}", file=sys.stderr)
        results.append(r)
        print(report([r], args.trace), flush=True)
    print()
    print(report(results, args.trace))


if __name__ == "__main__":
    main()
