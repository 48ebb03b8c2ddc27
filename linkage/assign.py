"""Selecting pairs: one-to-one assignment and per-record statistics over candidate pairs."""

from __future__ import annotations

import numpy as np


def greedy_one_to_one(left: np.ndarray, right: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mask of pairs chosen best-first so that every left and right row is used at most once.

    With scores from one similarity this is the stable matching: no two records prefer each
    other over what they were given, and incremental matching with bumping reaches it too.
    """
    chosen = np.zeros(len(scores), dtype=bool)
    used_l: set[int] = set()
    used_r: set[int] = set()
    order = np.lexsort((right, left, -scores))  # ties broken by row numbers, deterministic
    for p in order.tolist():
        a, b = int(left[p]), int(right[p])
        if a in used_l or b in used_r:
            continue
        chosen[p] = True
        used_l.add(a)
        used_r.add(b)
    return chosen


def group_max(
    groups: np.ndarray, values: np.ndarray, n: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Per group id in [0, n): the max of ``values`` over rows (where ``mask``), -inf if none."""
    out = np.full(n, -np.inf)
    if mask is not None:
        groups, values = groups[mask], values[mask]
    np.maximum.at(out, groups, values)
    return out


def best_and_second(
    groups: np.ndarray, scores: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: index of its best pair (-1 if none), best score, second-best score (-inf)."""
    order = np.lexsort((-scores, groups))
    g = groups[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    best_idx = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -np.inf)
    second = np.full(n, -np.inf)
    best_idx[g[first]] = order[first]
    best[g[first]] = scores[order[first]]
    sec = np.zeros(len(g), dtype=bool)
    sec[1:] = first[:-1] & ~first[1:]
    second[g[sec]] = scores[order[sec]]
    return best_idx, best, second


def alternative_scores(
    groups: np.ndarray, scores: np.ndarray, selected: np.ndarray, n: int
) -> np.ndarray:
    """For each selected pair: the best score of its group's other pairs (0 when none).

    When a side holds no duplicates these are scores of known non-matches, i.e. samples
    of what a false positive scores (the Auto-FuzzyJoin observation).
    """
    best_other = group_max(groups, scores, n, mask=~selected)
    alt = best_other[groups[selected]]
    return np.where(np.isfinite(alt), alt, 0.0)
