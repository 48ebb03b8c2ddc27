"""The assumptions behind label-free estimates, checked on the job's own data.

Precision without labels rests on a structure: when a side holds no duplicates, every
candidate of a record other than its match is a known non-match, and the best of them is
a sample of what a false positive scores (see `veclink.linkage.scoring`). Real tables break
this (a catalogue listing one product twice, a bibliography with 1:N versions), and then the
estimate is wrong with confidence. This module

- checks each side of a link job for duplicates: a duplicate on one side gives records of
  the other side several candidates above the match threshold, more than the ambiguity
  between distinct look-alike records gives in the opposite direction;
- turns the findings into the assignment used (one-to-one, one-to-many, many-to-one,
  many-to-many) and the side whose structure the estimate may rely on;
- gives the precision estimate an interval (bootstrap over pairs, and the spread over the
  estimator's tuning quantile), and lists what the user must be told.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from veclink.linkage.blocking import CandidatePairs

#: fewest self-labelled positives / negatives for a label-free estimate to mean something
MIN_SELF_LABELS = 20


@dataclasses.dataclass(frozen=True)
class SideDuplicates:
    """Outcome of the duplicate check of one side of a link job."""

    side: str  # "left" | "right"
    records: int
    #: records of the other side with several candidates of this side above the threshold
    observed: int
    #: the same count in the opposite direction: what look-alike records alone produce
    expected: float
    flagged: bool
    #: a few pairs of this side's records that look like one entity, as (id, id, score)
    examples: tuple[tuple[str, str, float], ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "side": self.side,
            "records": self.records,
            "other_side_records_with_several_matches": self.observed,
            "expected_without_duplicates": round(self.expected, 2),
            "duplicates_detected": self.flagged,
            "examples": [list(e) for e in self.examples],
        }


def several_above(groups: np.ndarray, scores: np.ndarray, n: int, threshold: float) -> np.ndarray:
    """Per group id in [0, n): how many of its pairs score at or above ``threshold``."""
    return np.bincount(groups[scores >= threshold], minlength=n)


def duplicate_test(
    side: str, pairs: CandidatePairs, scores: np.ndarray, threshold: float, ids: Sequence[str]
) -> SideDuplicates:
    """Does ``side`` (``"left"`` or ``"right"``, whose record ids are ``ids``) hold duplicates?

    When a side repeats an entity, the other side's record of that entity has two or more
    candidates above the match threshold. Near-identical *distinct* entities (episodes of a
    series, variants of a product) make records ambiguous too, but on both sides alike; a
    duplicate on one side makes it one-sided. So the count of other-side records with
    several candidates above the threshold is set against the same count in the opposite
    direction, which is what ambiguity alone produces. Flagged when the excess is both
    significant (3 Poisson standard deviations) and material (a tenth of the other side's
    records, at least 5). Switching a whole job away from one-to-one lets every record take
    several partners, so it is kept for common duplication (a citation index listing a paper
    several times); below that the job stays one-to-one and the check is reported. Clusters
    of look-alike records that one source holds many more of (episodes titled "Pilot") are
    one-sided too, and on the development suite a bar at 2% switched two tasks that way
    and cost them 0.3-0.4 F1.
    """
    if side == "right":
        groups_other, n_other, groups_this, n_this = (
            pairs.left,
            pairs.n_left,
            pairs.right,
            pairs.n_right,
        )
    else:
        groups_other, n_other, groups_this, n_this = (
            pairs.right,
            pairs.n_right,
            pairs.left,
            pairs.n_left,
        )
    partner = groups_this
    this_ids = ids
    many_other = several_above(groups_other, scores, n_other, threshold) >= 2
    many_this = several_above(groups_this, scores, n_this, threshold) >= 2
    observed, expected = int(many_other.sum()), float(many_this.sum())
    excess = observed - expected
    flagged = excess > 3 * math.sqrt(expected + 1) and excess > max(5.0, 0.1 * n_other)
    examples: list[tuple[str, str, float]] = []
    for g in np.flatnonzero(many_other)[:3]:
        rows = np.flatnonzero((groups_other == g) & (scores >= threshold))[:2]
        if rows.size == 2:
            a, b = (this_ids[int(partner[r])] for r in rows)
            examples.append((a, b, round(float(min(scores[rows])), 4)))
    return SideDuplicates(side, n_this, observed, expected, bool(flagged), tuple(examples))


def resolve_assignment(requested: str, left_dups: bool, right_dups: bool) -> str:
    """The assignment a link job uses: the requested one, or what the checks call for."""
    if requested != "auto":
        return requested
    if left_dups and right_dups:
        return "many_to_many"
    if right_dups:
        return "one_to_many"
    if left_dups:
        return "many_to_one"
    return "one_to_one"


def reference_for(assignment: str, requested: str = "auto") -> str:
    """The side(s) known to hold no duplicates, which label-free estimates rely on."""
    if requested != "auto":
        return requested
    return {
        "one_to_one": "both",
        "one_to_many": "left",  # the right side repeats entities: only left is clean
        "many_to_one": "right",
        "many_to_many": "none",
    }[assignment]


def precision_at(
    selected_scores: np.ndarray, null_scores: np.ndarray, threshold: float, quantile: float
) -> float:
    """Null-sample precision estimate of accepting selected pairs >= threshold (one quantile)."""
    s, null = selected_scores, null_scores
    accepted = float((s >= threshold).sum())
    if accepted == 0:
        return 1.0
    if null.size == 0:
        return float("nan")
    lam = float(np.quantile(null, quantile))
    n_false = min(float(s.size), float((s < lam).sum()) / quantile)
    tail = (float((null >= threshold).sum()) + 0.5) / (null.size + 0.5)
    return float(1.0 - min(n_false * tail, accepted) / accepted)


def precision_interval(
    selected_scores: np.ndarray,
    null_scores: np.ndarray,
    threshold: float,
    *,
    quantiles: tuple[float, ...] = (0.3, 0.5, 0.7),
    rounds: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[float, float]:
    """An interval for the estimated precision at ``threshold``.

    Two sources of doubt: sampling (a bootstrap over the selected pairs and over the null
    samples) and the estimator's tuning (the quantile of the null below which selected pairs
    are taken as false, varied over ``quantiles``). The interval spans the central ``level``
    of all bootstrap estimates pooled over the quantiles.
    """
    s = np.asarray(selected_scores, np.float64)
    null = np.asarray(null_scores, np.float64)
    if s.size == 0 or null.size == 0:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        sb = s[rng.integers(0, s.size, s.size)]
        nb = null[rng.integers(0, null.size, null.size)]
        values += [precision_at(sb, nb, threshold, q) for q in quantiles]
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    tail = (1 - level) / 2
    return (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail)))


def mixture_interval(
    scores: np.ndarray,
    threshold: float,
    *,
    rounds: int = 30,
    level: float = 0.9,
    sample: int = 20000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """An interval for a mixture-based precision estimate (dedupe without labels).

    The estimate is the mean posterior P(match | score) of the pairs scoring at least
    ``threshold`` under a two-component mixture of the scores
    (`veclink.linkage.scoring.mixture_posterior`). Its doubt is the mixture's own: the
    scores are resampled (at most ``sample`` at a time), the mixture refitted and the
    precision recomputed, ``rounds`` times. None when the mixture fails to separate two
    groups in more than a quarter of the rounds: then it is no basis for an estimate.
    """
    from veclink.linkage.scoring import mixture_posterior

    s = np.asarray(scores, np.float64)
    if s.size == 0:
        return None
    rng = np.random.default_rng(seed)
    values, failed = [], 0
    for r in range(rounds):
        boot = s[rng.integers(0, s.size, min(s.size, sample))]
        post = mixture_posterior(boot, seed + r)
        keep = boot >= threshold
        if post is None:
            failed += 1
            continue
        values.append(float(post[keep].mean()) if keep.any() else 1.0)
    if failed > rounds / 4 or not values:
        return None
    tail = (1 - level) / 2
    return (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))
