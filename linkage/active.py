"""Active learning: ask a person (or an oracle) about the pairs the model is least sure of."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from veclink.linkage.blocking import CandidatePairs


@dataclasses.dataclass(frozen=True)
class Question:
    """One pair put to the labeller."""

    row: int  # candidate pair row
    left_id: str
    right_id: str
    left: dict[str, str | None]
    right: dict[str, str | None]
    score: float
    asked: int  # questions asked so far
    budget: int


class StopLabelling(Exception):  # noqa: N818 - a signal, not an error
    """Raised by an `Ask` callback to end the labelling session early."""


#: returns True (same entity), False (different), or None (skip: not counted as a label);
#: raises StopLabelling to stop asking
Ask = Callable[[Question], bool | None]
#: (labelled rows, labels) -> scores of every candidate, or None to keep the current ones
Retrain = Callable[[np.ndarray, np.ndarray], np.ndarray | None]


def active_learning(
    pairs: CandidatePairs,
    scores: np.ndarray,
    ask: Ask,
    describe: Callable[[int, int, float, int], Question],
    retrain: Retrain,
    *,
    budget: int,
    batch: int = 10,
    threshold: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label up to ``budget`` candidate pairs by uncertainty sampling.

    Each round asks about ``batch`` pairs whose current score is closest to the decision
    threshold, at most one pair per record (so one ambiguous record does not use up the
    round), retrains on all answers and rescores.

    Args:
        scores: starting scores of the candidate pairs (e.g. self-trained).
        describe: builds the `Question` for (row, asked, score, budget).
        retrain: turns the answers so far into new scores (then the decision threshold
            is 0.5).

    Returns:
        ``(rows, labels, scores)``: the labelled candidate rows, their 0/1 labels and the
        final scores of every candidate.
    """
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    labels: list[int] = []
    asked: set[int] = set(rows)
    skipped: set[int] = set()
    scores = np.asarray(scores, dtype=np.float64)
    n_asked = 0
    while n_asked < budget:
        order = np.argsort(
            np.abs(scores - threshold) + 1e-9 * rng.random(len(scores)), kind="stable"
        )
        chosen: list[int] = []
        used_l: set[int] = set()
        used_r: set[int] = set()
        for p in order.tolist():
            if p in asked or p in skipped:
                continue
            a, b = int(pairs.left[p]), int(pairs.right[p])
            if a in used_l or b in used_r:
                continue
            chosen.append(p)
            used_l.add(a)
            used_r.add(b)
            if len(chosen) >= min(batch, budget - n_asked):
                break
        if not chosen:
            break
        stop = False
        for p in chosen:
            try:
                answer = ask(describe(p, n_asked, float(scores[p]), budget))
            except StopLabelling:
                stop = True
                break
            if answer is None:
                skipped.add(p)
                continue
            asked.add(p)
            rows.append(p)
            labels.append(int(bool(answer)))
            n_asked += 1
        if rows:
            new = retrain(np.asarray(rows, np.int64), np.asarray(labels, np.int64))
            if new is not None:
                scores, threshold = np.asarray(new, dtype=np.float64), 0.5
        if stop:
            break
    return np.asarray(rows, np.int64), np.asarray(labels, np.int64), scores
