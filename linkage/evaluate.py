"""Evaluation against gold pairs: precision, recall, F1; blocking completeness and reduction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from veclink.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class PairMetrics:
    true_positives: int
    predicted: int
    gold: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


def pair_metrics(
    predicted: Iterable[tuple[str, str]],
    gold: Iterable[tuple[str, str]],
    *,
    symmetric: bool = False,
) -> PairMetrics:
    """Compare predicted id pairs with gold id pairs (``symmetric`` for dedupe: order ignored)."""

    def norm(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        out = set()
        for a, b in pairs:
            a, b = str(a), str(b)
            out.add((min(a, b), max(a, b)) if symmetric else (a, b))
        return out

    pred, g = norm(predicted), norm(gold)
    return PairMetrics(len(pred & g), len(pred), len(g))


def cluster_pairs(ids: Iterable[str], entity_ids: Iterable[str]) -> set[tuple[str, str]]:
    """All within-entity pairs implied by a clustering (for pairwise dedupe metrics)."""
    groups: dict[str, list[str]] = {}
    for rid, eid in zip(ids, entity_ids, strict=True):
        groups.setdefault(eid, []).append(rid)
    out = set()
    for members in groups.values():
        members = sorted(members)
        out.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return out


def read_pairs(
    path: str | Path,
    *,
    left_column: str | None = None,
    right_column: str | None = None,
    encoding: str | None = None,
) -> list[tuple[str, str]]:
    """Gold pairs from a CSV (default: its first two columns; encoding and delimiter sniffed)."""
    from veclink.tabular import open_rows

    if not Path(path).is_file():
        raise InvalidArgument(f"gold file {str(path)!r} does not exist", field="gold")
    rows = open_rows(path, encoding=encoding, label="gold", format="csv")
    header = list(rows.header)
    if not header:
        return []
    missing = [c for c in (left_column, right_column) if c is not None and c not in header]
    if missing or len(header) < 2:
        raise InvalidArgument(
            f"gold file {str(path)!r}: "
            + (f"column(s) {missing!r} not found" if missing else "needs two columns")
            + f"; header seen: {header!r}",
            field="gold",
        )
    left = left_column or header[0]
    right = right_column or header[1]
    return [
        (record[left].strip(), record[right].strip())
        for _, record in rows
        if left in record and right in record
    ]


__all__ = ["PairMetrics", "cluster_pairs", "pair_metrics", "read_pairs"]
