"""Compare HS, RW and MoEE side by side on a labelled set, to pick alpha for a model.

Two kinds of CSV (or TSV) files:

- STS pairs: ``text1,text2,score`` -> Spearman correlation of cosine vs score;
- retrieval: ``query,document,relevance`` -> nDCG@10 ranking every document for each query.

    veclink eval moee --model /models/OLMoE-1B-7B --data sts.csv --alpha 0.5 1 2
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from veclink.encoders.base import load_encoder

from veclink.errors import InvalidArgument
from veclink.tabular import open_rows


def read_labelled(path: str) -> tuple[str, list[dict[str, str]]]:
    """The kind of a labelled CSV/TSV (``sts`` or ``retrieval``) and its rows.

    Raises:
        InvalidArgument: the file is missing or has neither set of columns.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"data file {path!r} does not exist", field="data")
    rows = [row for _, row in open_rows(p, format="csv", label=path)]
    cols = set(rows[0]) if rows else set()
    if {"text1", "text2", "score"} <= cols:
        return "sts", rows
    if {"query", "document", "relevance"} <= cols:
        return "retrieval", rows
    raise InvalidArgument(
        f"{path}: needs columns text1,text2,score (STS) or query,document,relevance "
        f"(retrieval); got {sorted(cols)}",
        field="data",
    )


def _parts(vectors: np.ndarray, hs_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Split MoEE vectors (alpha = 1) back into unit HS and unit RW."""
    return vectors[:, :hs_dim], vectors[:, hs_dim:]


def _ndcg(scores: np.ndarray, relevance: np.ndarray, k: int = 10) -> float:
    order = np.argsort(-scores)[:k]
    gains = (2.0 ** relevance[order] - 1) / np.log2(np.arange(2, order.size + 2))
    ideal = np.sort(relevance)[::-1][:k]
    best = ((2.0**ideal - 1) / np.log2(np.arange(2, ideal.size + 2))).sum()
    return float(gains.sum() / best) if best > 0 else 0.0


def evaluate_moee(
    model: str, data: str, alphas: Sequence[float] = (1.0,), **spec: Any
) -> dict[str, float]:
    """Spearman (STS) or nDCG@10 (retrieval) for HS, RW and MoEE at each alpha."""
    from scipy.stats import spearmanr

    kind, rows = read_labelled(data)
    enc = load_encoder(
        {"kind": "moe-router", "model": model, "output": "moee", "alpha": 1.0, **spec}
    )
    hs_dim = enc.hs_dim  # type: ignore[attr-defined]
    methods: dict[str, tuple[float, float]] = {"HS": (1.0, 0.0), "RW": (0.0, 1.0)}
    methods.update({f"MoEE a={a:g}": (1.0, float(a)) for a in alphas})
    results: dict[str, float] = {}
    if kind == "sts":
        a_hs, a_rw = _parts(enc.encode([r["text1"] for r in rows]), hs_dim)
        b_hs, b_rw = _parts(enc.encode([r["text2"] for r in rows]), hs_dim)
        cos_hs, cos_rw = (a_hs * b_hs).sum(1), (a_rw * b_rw).sum(1)
        gold = np.array([float(r["score"]) for r in rows])
        for name, (w_hs, w_rw) in methods.items():
            results[name] = float(spearmanr(w_hs * cos_hs + w_rw * cos_rw, gold).statistic)
        return results
    queries = sorted({r["query"] for r in rows})
    docs = sorted({r["document"] for r in rows})
    rel = np.zeros((len(queries), len(docs)))
    qi, di = {q: i for i, q in enumerate(queries)}, {d: i for i, d in enumerate(docs)}
    for r in rows:
        rel[qi[r["query"]], di[r["document"]]] = float(r["relevance"])
    q_hs, q_rw = _parts(enc.encode(queries, role="query"), hs_dim)
    d_hs, d_rw = _parts(enc.encode(docs, role="document"), hs_dim)
    for name, (w_hs, w_rw) in methods.items():
        sims = w_hs * (q_hs @ d_hs.T) + w_rw * (q_rw @ d_rw.T)
        results[name] = float(np.mean([_ndcg(sims[i], rel[i]) for i in range(len(queries))]))
    return results


def fit_rw_stats(model: str, corpus: str, out: str, **spec: Any) -> None:
    """Estimate fixed RW statistics of ``model`` over a text file (one passage a line) and
    save them to ``out`` (.npz), for the spec's ``rw_stats``."""
    from veclink.encoders.moe_router import estimate_rw_stats

    path = Path(corpus)
    if not path.is_file():
        raise InvalidArgument(f"corpus {corpus!r} does not exist", field="stats_corpus")
    texts = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    spec = {k: v for k, v in spec.items() if k != "rw_stats"}  # raw RW, not normalised
    enc = load_encoder({"kind": "moe-router", "model": model, "output": "rw", **spec})
    estimate_rw_stats(enc, texts, out)  # type: ignore[arg-type]
