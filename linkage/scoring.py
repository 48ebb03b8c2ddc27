"""Scoring: from features to match probabilities, and thresholds that meet a precision target.

Without labels (in the spirit of Auto-FuzzyJoin): when a side holds no duplicates, a
record matches at most one record of the other side, so

- every candidate of a record other than its best is a known non-match, and
- the best score among those alternatives is a sample of what a false positive scores.

The first gives self-labels (confident mutual-best pairs as positives, non-best candidates
as negatives) to train a classifier; the second gives the score distribution of false
positives, hence an estimate of the precision of every threshold. The threshold chosen
maximises estimated F1 (or recall) subject to estimated precision >= tau.

With labels, a calibrated classifier is trained on them and the mean probability of the
accepted pairs estimates precision.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from veclink.linkage.assign import best_and_second
from veclink.linkage.blocking import CandidatePairs
from veclink.linkage.classifier import PairClassifier


@dataclasses.dataclass(frozen=True)
class ThresholdCurve:
    """Estimated precision / recall of accepting the selected pairs scoring >= threshold."""

    thresholds: np.ndarray  # descending
    accepted: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    est_precision: float
    #: of the matches among the selected candidates, the share kept (not counting matches
    #: that blocking or the assignment never selected: true recall can only be lower)
    est_recall: float
    #: False when no threshold reaches the precision target (the most precise one is used)
    target_met: bool
    #: plausible range of the precision (see `veclink.linkage.assumptions.precision_interval`)
    interval: tuple[float, float] = (0.0, 1.0)
    #: False when the estimate's assumptions failed on this data (see the job's warnings)
    reliable: bool = True


def initial_scores(values: np.ndarray) -> np.ndarray:
    """Mean of the available similarities per pair: a label-free starting score."""
    with np.errstate(invalid="ignore"):
        s = np.nanmean(np.where(np.isnan(values), np.nan, values), axis=1)
    return np.nan_to_num(s, nan=0.0)


def _groups(pairs: CandidatePairs, reference: str) -> list[tuple[np.ndarray, int]]:
    """Groups within which at most one pair can be a match (depends on the no-dup sides)."""
    if pairs.dedupe:
        n = pairs.n_left
        return [(np.concatenate([pairs.left, pairs.right]), n)]
    out = []
    if reference in ("right", "both"):  # right has no duplicates: a left record matches <= 1
        out.append((pairs.left, pairs.n_left))
    if reference in ("left", "both"):
        out.append((pairs.right, pairs.n_right))
    return out


def self_labels(
    pairs: CandidatePairs, scores: np.ndarray, reference: str, *, margin: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of pairs with self-labels ``(rows, labels)`` from the no-duplicates structure.

    Positives: pairs that are the best of every group they belong to, ahead of the
    runner-up by ``margin``; the upper half of those by margin. Negatives: pairs that are
    not the best of some group and trail its best by ``margin``. For dedupe, where an
    entity may have many records, a negative must trail in both of its records' groups
    and score in the lower half of all candidates.
    """
    n_pairs = len(scores)
    groups = _groups(pairs, reference)
    if not groups or n_pairs == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # entries: (group of the entry, pair of the entry); a dedupe pair is in two groups
    if pairs.dedupe:
        views = [(groups[0][0], np.tile(np.arange(n_pairs), 2), groups[0][1])]
    else:
        views = [(g, np.arange(n_pairs), n) for g, n in groups]
    is_best = np.ones(n_pairs, dtype=bool)
    lead = np.full(n_pairs, np.inf)
    trailing_in = np.zeros(n_pairs, dtype=np.int64)
    for g, pair_of, n in views:
        sc = scores[pair_of]
        best_idx, best, second = best_and_second(g, sc, n)
        entry_best = best_idx[g] == np.arange(len(g))
        not_best_pairs = pair_of[~entry_best]
        is_best[not_best_pairs] = False
        np.minimum.at(lead, pair_of[entry_best], (best - second)[g[entry_best]])
        trailing = ~entry_best & (sc < best[g] - margin)
        np.add.at(trailing_in, pair_of[trailing], 1)
    if pairs.dedupe:
        negative = (trailing_in == 2) & (scores < np.median(scores))
    else:
        negative = trailing_in > 0
    pos_cand = np.flatnonzero(is_best & (lead >= margin) & ~negative)
    if pos_cand.size:
        lead_c = np.minimum(lead[pos_cand], 1.0)
        cut = np.quantile(lead_c, 0.5)
        positive = pos_cand[lead_c >= cut]
    else:
        positive = pos_cand
    neg = np.flatnonzero(negative)
    rows = np.concatenate([positive, neg])
    labels = np.concatenate([np.ones(positive.size, np.int64), np.zeros(neg.size, np.int64)])
    return rows, labels


@dataclasses.dataclass
class AveragedClassifier:
    """Mean probability of several classifiers (the fold models of cross-fitting)."""

    members: list[PairClassifier]

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.score(x) for m in self.members], axis=0)


def self_train(
    pairs: CandidatePairs,
    values: np.ndarray,
    reference: str,
    *,
    kind: str = "logistic",
    rounds: int = 2,
    folds: int = 2,
    seed: int = 0,
) -> tuple[AveragedClassifier | None, np.ndarray]:
    """Train a classifier on self-labels, ``rounds`` times; returns it and the pair scores.

    The last round is cross-fitted: records are split into ``folds`` and each pair is
    scored by a model that never saw the self-labels of its record. Non-best candidates
    are the negatives the model is trained on, and also the samples of false-positive
    scores that precision is estimated from; scoring them in-sample would make false
    positives look rarer than they are. The returned model averages the fold models (for
    records that were not in the job). Falls back to the mean-similarity score when there
    are too few self-labels.
    """
    scores = initial_scores(values)
    model: AveragedClassifier | None = None
    rng = np.random.default_rng(seed)
    fold_of_record = rng.permutation(max(pairs.n_left, 1)) % max(folds, 1)
    fold = fold_of_record[pairs.left] if len(pairs) else np.zeros(0, np.int64)
    for round_no in range(rounds):
        rows, labels = self_labels(pairs, scores, reference)
        if labels.sum() < 5 or (labels == 0).sum() < 5:
            break
        last = round_no == rounds - 1
        parts = range(folds) if last and folds > 1 else [None]
        members, new = [], np.empty_like(scores)
        for f in parts:
            train = rows if f is None else rows[fold[rows] != f]
            y = labels if f is None else labels[fold[rows] != f]
            if y.sum() < 3 or (y == 0).sum() < 3:
                members = []
                break
            weight = np.where(y == 1, (y == 0).sum() / max(y.sum(), 1), 1.0)
            clf = PairClassifier(kind=kind, seed=seed).fit(values[train], y, sample_weight=weight)
            members.append(clf)
            target = slice(None) if f is None else fold == f
            new[target] = clf.score(values[target])
        if not members:
            break
        model, scores = AveragedClassifier(members), new
    return model, scores


# --------------------------------------------------------------------------- thresholds


def mixture_posterior(scores: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """P(match | score) from a two-Gaussian mixture over the logits of the scores.

    Used for dedupe, where an entity may hold many records and known non-matches cannot
    be read off the structure. None when the mixture does not separate two groups.
    """
    from sklearn.mixture import GaussianMixture

    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    x = np.log(p / (1 - p)).reshape(-1, 1)
    if x.shape[0] < 10 or np.ptp(x) < 1e-6:
        return None
    gm = GaussianMixture(2, random_state=seed, n_init=2).fit(x)
    means = gm.means_.ravel()
    hi = int(np.argmax(means))
    spread = float(np.sqrt(gm.covariances_.ravel()).max())
    if means[hi] - means[1 - hi] < spread:
        return None
    post = gm.predict_proba(x)[:, hi]
    # the mixture's tails can flip far outside the data; keep it monotone in the score
    order = np.argsort(x.ravel(), kind="stable")
    post[order] = np.maximum.accumulate(post[order])
    return post


def curve_from_null(
    selected_scores: np.ndarray, null_scores: np.ndarray, *, quantile: float = 0.5
) -> ThresholdCurve:
    """Precision / recall estimates of thresholds from false-positive score samples.

    The number F of false pairs among the selected ones is estimated from the low end,
    where nearly everything selected is false (Storey's estimator): with lambda the
    ``quantile`` of the null scores, F = #(selected < lambda) / quantile. The false pairs
    above a threshold t are then F * P(null >= t).
    """
    s = np.sort(np.asarray(selected_scores, dtype=np.float64))[::-1]
    null = np.sort(np.asarray(null_scores, dtype=np.float64))
    if s.size == 0:
        z = np.zeros(0)
        return ThresholdCurve(z, z, z, z)
    thresholds = np.unique(s)[::-1]
    accepted = np.searchsorted(-s, -thresholds, side="right").astype(np.float64)
    if null.size:
        lam = float(np.quantile(null, quantile))
        below = float((s < lam).sum())
        n_false = min(float(s.size), below / quantile)
        # P(null >= t), with one pseudo-sample so that it is never exactly zero
        tail = (null.size - np.searchsorted(null, thresholds, side="left") + 0.5) / (
            null.size + 0.5
        )
        false_above = np.minimum(n_false * tail, accepted)
    else:
        false_above = np.zeros_like(accepted)
    true_above = accepted - false_above
    total_true = max(float(true_above.max()), 1e-9)
    precision = np.clip(true_above / accepted, 0, 1)
    recall = np.clip(true_above / total_true, 0, 1)
    return ThresholdCurve(thresholds, accepted, precision, recall)


def curve_from_probabilities(selected_scores: np.ndarray) -> ThresholdCurve:
    """Estimates from calibrated probabilities: precision = mean p of the accepted pairs."""
    s = np.sort(np.asarray(selected_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        z = np.zeros(0)
        return ThresholdCurve(z, z, z, z)
    thresholds = np.unique(s)[::-1]
    accepted_n = np.searchsorted(-s, -thresholds, side="right")
    cum = np.cumsum(s)
    true_above = cum[accepted_n - 1]
    precision = true_above / accepted_n
    recall = true_above / max(cum[-1], 1e-9)
    return ThresholdCurve(thresholds, accepted_n.astype(np.float64), precision, recall)


def choose_threshold(curve: ThresholdCurve, tau: float, objective: str = "f1") -> ThresholdChoice:
    """Best threshold with estimated precision >= tau.

    ``objective="f1"``: the one with the best estimated F1 (more recall is taken only
    while it is worth its false positives); ``"recall"``: the lowest one (Auto-FuzzyJoin's
    rule). When no threshold reaches tau, the most precise one is returned, marked.
    """
    if curve.thresholds.size == 0:
        return ThresholdChoice(1.0, 1.0, 0.0, False)
    ok = curve.precision >= tau
    if not ok.any():
        i = int(np.argmax(curve.precision))
        return ThresholdChoice(
            float(curve.thresholds[i]), float(curve.precision[i]), float(curve.recall[i]), False
        )
    cand = np.flatnonzero(ok)
    if objective == "recall":
        i = int(cand[np.argmax(curve.recall[cand] + 1e-12 * np.arange(cand.size))])
    else:
        i = int(cand[np.argmax(curve.f1[cand])])
    return ThresholdChoice(
        float(curve.thresholds[i]), float(curve.precision[i]), float(curve.recall[i]), True
    )
