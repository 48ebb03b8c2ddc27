"""Dedupe check: the two tables of a link task as one table, deduplicated.

A dedupe job without labels estimates its precision from a mixture of the scores, checked
against the known-non-match estimate (each record's best alternatives). Two clean sources
in one table are a common real dedupe (records gathered from several systems), with a gold
that is complete for cross-source pairs; neither source repeats an entity, so a pair within
one source is false. Prints per task: pairs accepted, true precision and recall, the
estimate with its interval (and whether the true precision is inside it, to 0.001: a
posterior mean never reaches exactly 1), whether it is marked reliable, and the job's
warnings.

    VECLINK_LINKAGE_DATA=../shared/data/linkage python bench/linkage_dedupe.py
    python bench/linkage_dedupe.py --tasks abt-buy dblp-acm febrl4
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _suite() -> Any:
    """bench/linkage.py (its tasks, gold files and embedding cache), loaded by path."""
    path = Path(__file__).resolve().parent / "linkage.py"
    spec = importlib.util.spec_from_file_location("bench_linkage_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


suite = _suite()


def union_table(name: str, data: Path) -> tuple[object, set[frozenset[str]]]:
    """Both sides of ``name`` in one table (ids prefixed L / R), and the gold as id pairs."""
    from veclink.linkage.tables import Table

    left, right, gold = suite.read_tables(name, data)
    recs = [{"id": "L" + left.ids[i], **left.record(i)} for i in range(len(left))]
    recs += [{"id": "R" + right.ids[i], **right.record(i)} for i in range(len(right))]
    columns = sorted({k for r in recs for k in r})
    table = Table.from_records(
        [{c: r.get(c) for c in columns} for r in recs], id_column="id", name=name
    )
    return table, {frozenset(("L" + a, "R" + b)) for a, b in gold}


def run(name: str, data: Path) -> dict[str, object]:
    from veclink.linkage import dedupe

    table, gold = union_table(name, data)
    enc = suite.CachedEncoder(suite.default_encoder_spec())
    t0 = time.perf_counter()
    res = dedupe(table, {}, encoder=enc)
    seconds = time.perf_counter() - t0
    c, ids = res.candidates, table.ids  # type: ignore[attr-defined]
    accepted = np.flatnonzero(res.accepted)
    hits = np.array(
        [frozenset((ids[int(c.left[p])], ids[int(c.right[p])])) in gold for p in accepted]
    )
    return {
        "pairs": int(accepted.size),
        "precision": float(hits.mean()) if accepted.size else 1.0,
        "recall": float(hits.sum() / len(gold)) if gold else 1.0,
        "est": res.choice.est_precision,
        "interval": res.choice.interval,
        "reliable": res.choice.reliable,
        "warnings": list(res.warnings),
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tasks", nargs="+", default=["abt-buy", "dblp-acm", "febrl4"], choices=list(suite.TASKS)
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("VECLINK_LINKAGE_DATA", suite.DEFAULT_DATA)),
    )
    args = ap.parse_args(argv)
    rows = [
        "| task (both sides in one table) | pairs | P | R | est. P [interval] | inside | reliable "
        "| time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name in args.tasks:
        print(f"deduplicating {name} ...", file=sys.stderr, flush=True)
        r = run(name, args.data)
        lo, hi = r["interval"]  # type: ignore[misc]
        inside = "yes" if lo - 1e-3 <= r["precision"] <= hi + 1e-3 else "**no**"  # type: ignore[operator]
        rows.append(
            f"| {name} | {r['pairs']} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['est']:.3f} [{lo:.3f}, {hi:.3f}] | {inside} | {r['reliable']} "
            f"| {r['seconds']:.1f} |"
        )
        notes += [f"- {name}: {w}" for w in r["warnings"]]  # type: ignore[attr-defined]
    print("\n".join(rows + ([""] + ["Warnings:", ""] + notes if notes else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
