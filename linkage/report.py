"""A self-contained HTML report of a link or dedupe job (plots embedded as base64 PNG).

It shows the precision / recall against threshold curves (estimated, and true when gold
pairs are given), score histograms, the entity-size distribution, the pairs closest to
the threshold on both sides, and stage timings.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from veclink._optional import require


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    require("matplotlib.pyplot", "linkage").close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def _table(rows: Iterable[Iterable[Any]], header: Iterable[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _gold_mask(result: Any, gold: set[tuple[str, str]] | None) -> np.ndarray | None:
    if gold is None:
        return None
    c = result.candidates
    left = result.left if hasattr(result, "left") else result.table
    right = result.right if hasattr(result, "right") else result.table
    li, ri = left.ids, right.ids
    dedupe = c.dedupe
    out = np.zeros(len(c), dtype=bool)
    for p, (a, b) in enumerate(zip(c.left.tolist(), c.right.tolist(), strict=True)):
        x, y = li[a], ri[b]
        out[p] = (x, y) in gold or (dedupe and (y, x) in gold)
    return out


def write_report(
    result: Any, path: str | os.PathLike[str], *, gold: Iterable[tuple[str, str]] | None = None
) -> None:
    """Write the HTML report of a `LinkResult` or `DedupeResult` to ``path``.

    Args:
        gold: true pairs (ids) when known; adds the true curves and metrics.
    """
    plt = require("matplotlib.pyplot", "linkage")
    plt.switch_backend("Agg")
    gold_set = None if gold is None else {(str(a), str(b)) for a, b in gold}
    is_link = hasattr(result, "right")
    truth = _gold_mask(result, gold_set)
    selected = result.selected
    scores = result.scores
    sections: list[str] = []

    # summary
    m = result.metrics()
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in m.items() if k != "stages"]
    if gold_set is not None:
        from veclink.linkage.evaluate import cluster_pairs, pair_metrics

        if is_link:
            pm = pair_metrics([(a, b) for a, b, _ in result.matches()], gold_set)
            pc = float(truth.sum()) / len(gold_set) if gold_set else float("nan")  # type: ignore[union-attr]
        else:
            pm = pair_metrics(
                cluster_pairs(result.table.ids, result.entity_ids()), gold_set, symmetric=True
            )
            pc = float(truth.sum()) / len(gold_set) if gold_set else float("nan")  # type: ignore[union-attr]
        rows += [
            ("true precision", f"{pm.precision:.4f}"),
            ("true recall", f"{pm.recall:.4f}"),
            ("true F1", f"{pm.f1:.4f}"),
            ("blocking pair completeness", f"{pc:.4f}"),
        ]
    sections.append("<h2>Summary</h2>" + _table(rows, ["metric", "value"]))
    sections.append(_alignment(result))

    # precision / recall vs threshold
    fig, ax = plt.subplots(figsize=(6.5, 4))
    curve = result.curve
    if curve.thresholds.size:
        ax.plot(curve.thresholds, curve.precision, label="precision (estimated)", color="C0")
        ax.plot(
            curve.thresholds,
            curve.recall,
            label="recall among candidates (estimated)",
            color="C1",
        )
    if truth is not None and gold_set:
        th = np.unique(scores[selected])[::-1]
        order = np.argsort(-scores[selected], kind="stable")
        s_sorted = scores[selected][order]
        tp = np.cumsum(truth[selected][order])
        n = np.searchsorted(-s_sorted, -th, side="right")
        ax.plot(th, tp[n - 1] / n, "--", color="C0", label="precision (true)")
        ax.plot(th, tp[n - 1] / len(gold_set), "--", color="C1", label="recall (true)")
    ax.axvline(result.threshold, color="k", lw=0.8, label=f"threshold {result.threshold:.3g}")
    ax.axhline(result.spec.precision, color="grey", lw=0.6, ls=":", label="precision target")
    ax.set_xlabel("score threshold")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    sections.append("<h2>Precision and recall against threshold</h2>" + _img(_png(fig), "curve"))

    # score histograms
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bins = np.linspace(0, 1, 41)
    if truth is not None:
        ax.hist(scores[truth], bins=bins, alpha=0.6, label="true matches", color="C2")
        ax.hist(scores[~truth], bins=bins, alpha=0.6, label="non-matches", color="C3")
    else:
        ax.hist(scores[selected], bins=bins, alpha=0.6, label="selected pairs", color="C0")
        ax.hist(result.null_scores, bins=bins, alpha=0.6, label="known non-matches", color="C3")
    ax.axvline(result.threshold, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.legend(fontsize=8)
    sections.append("<h2>Score distributions</h2>" + _img(_png(fig), "histogram"))

    # entity sizes
    if is_link:
        sizes = np.bincount(np.unique([e for _, _, e in result.entities()], return_inverse=True)[1])
    else:
        sizes = np.bincount(result.entity)
    fig, ax = plt.subplots(figsize=(5, 3))
    counts = np.bincount(sizes)
    ax.bar(np.arange(counts.size)[1:], counts[1:])
    ax.set_xlabel("records per entity")
    ax.set_ylabel("entities")
    sections.append("<h2>Entity sizes</h2>" + _img(_png(fig), "entity sizes"))

    # pairs near the threshold
    sections.append("<h2>Pairs nearest the threshold</h2>" + _near(result, truth, selected))

    sections.append(
        "<h2>Stages</h2>"
        + _table(
            [
                (s.name, f"{s.seconds:.2f}", "" if s.peak_mb is None else f"{s.peak_mb:.0f}")
                for s in result.stages
            ],
            ["stage", "seconds", "peak MiB (traced)"],
        )
    )
    title = "veclink link report" if is_link else "veclink dedupe report"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
font-size:13px;vertical-align:top;text-align:left}}</style></head>
<body><h1>{title}</h1>{"".join(sections)}</body></html>"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(doc)


def _alignment(result: Any) -> str:
    """The inputs as read and the column alignment (or the spec's fields)."""
    tables = (
        {"left": result.left, "right": result.right}
        if hasattr(result, "right")
        else {"table": result.table}
    )
    read = [
        (side, t.name, t.info.encoding or "", repr(t.info.delimiter) if t.info.delimiter else "")
        for side, t in tables.items()
        if t.info is not None
    ]
    out = ""
    if read:
        out += "<h2>Inputs</h2>" + _table(read, ["side", "file", "encoding", "delimiter"])
    al = getattr(result, "alignment", None)
    if al is None:
        fields = [(f.name, f.left_column, f.right_column, f.type) for f in result.model.fields]
        return (
            out
            + "<h2>Fields (from the spec)</h2>"
            + _table(fields, ["field", "left column", "right column", "type"])
        )
    rows = [
        (m.left, m.right, m.type, f"{m.score:.2f}", f"{m.name_score:.2f}", f"{m.content_score:.2f}")
        for m in al.matches
    ]
    rows += [(c, "(none)", "", "", "", "") for c in al.left_only]
    rows += [("(none)", c, "", "", "", "") for c in al.right_only]
    header = ["left column", "right column", "type", "score", "name", "content"]
    notes = "".join(f"<p><b>Note:</b> {html.escape(n)}</p>" for n in al.notes)
    return out + "<h2>Column alignment</h2>" + _table(rows, header) + notes


def _near(result: Any, truth: np.ndarray | None, selected: np.ndarray, n: int = 10) -> str:
    c = result.candidates
    left = result.left if hasattr(result, "left") else result.table
    right = result.right if hasattr(result, "right") else result.table
    lt = result.left_views.texts if hasattr(result, "left_views") else result.views.texts
    rt = result.right_views.texts if hasattr(result, "right_views") else result.views.texts
    rows_sel = np.flatnonzero(selected)
    s = result.scores[rows_sel]
    above = rows_sel[s >= result.threshold][np.argsort(s[s >= result.threshold])][:n]
    below = rows_sel[s < result.threshold][np.argsort(-s[s < result.threshold])][:n]
    out = []
    for p in [*above.tolist(), *below.tolist()]:
        a, b = int(c.left[p]), int(c.right[p])
        row = [
            "accepted" if result.scores[p] >= result.threshold else "rejected",
            f"{result.scores[p]:.4f}",
            f"{left.ids[a]}: {lt[a][:200]}",
            f"{right.ids[b]}: {rt[b][:200]}",
        ]
        if truth is not None:
            row.append("match" if truth[p] else "non-match")
        out.append(row)
    header = ["decision", "score", "left record", "right record"]
    if truth is not None:
        header.append("gold")
    return _table(out, header)
