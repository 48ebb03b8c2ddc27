"""`PairClassifier`: P(match | features) from labelled pairs, calibrated on people's labels.

``gbm`` is scikit-learn's HistGradientBoosting (handles missing features natively);
``logistic`` is a standardised logistic regression over imputed features plus
missing-value indicators.

`fit_with_labels` trains on people's labels plus the self-labels of the unsupervised
scorer as a prior worth ``prior_weight`` labels: a handful of answers cannot pull the model
somewhere silly, hundreds dominate it. Its probabilities are then calibrated by Platt
scaling fitted on cross-validated predictions for the people's labels, so that the mean
probability of accepted pairs estimates their precision.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from veclink._optional import require
from veclink.errors import InvalidArgument

#: rows scored at a time by `PairClassifier.score`
SCORE_CHUNK = 65536


def _design(x: np.ndarray) -> np.ndarray:
    """Impute NaN with 0 and append missing indicators (for linear models)."""
    miss = np.isnan(x)
    return np.hstack([np.where(miss, 0.0, x), miss.astype(np.float32)])


@dataclasses.dataclass
class PairClassifier:
    """A binary classifier over pair features with a ``predict_proba``-like ``score``."""

    kind: str = "gbm"
    seed: int = 0
    model: Any = None
    constant: float | None = None
    #: logistic only: per-column mean and scale of the design matrix
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    #: Platt calibration ``sigmoid(a * logit(p) + b)``, when fitted
    platt: tuple[float, float] | None = None

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> PairClassifier:
        """Train on features ``x`` and 0/1 labels ``y``.

        Raises:
            InvalidArgument: no labelled pairs.
        """
        require("sklearn", "linkage")
        y = np.asarray(y).astype(int)
        if y.size == 0:
            raise InvalidArgument("no labelled pairs to train on", field="labels")
        if y.min() == y.max():  # one class only: a constant model, honestly
            self.constant, self.model = float(y[0]), None
            return self
        self.constant = None
        self.model = self._base(len(y))
        if self.kind == "logistic":
            d = _design(np.asarray(x, dtype=np.float32))
            self.center = d.mean(axis=0)
            self.scale = np.where(d.std(axis=0) > 0, d.std(axis=0), 1.0)
        xx = self._prepare(x)
        if self.kind == "gbm":
            # scikit-learn's binning fails on a column that is missing everywhere (e.g. a
            # field empty in the whole table); constant, it is never split on at predict
            empty = np.isnan(xx).all(axis=0)
            if empty.any():
                xx = np.where(empty, 0.0, xx).astype(xx.dtype)
        if sample_weight is None:
            self.model.fit(xx, y)
        else:
            self.model.fit(xx, y, sample_weight=sample_weight)
        return self

    def _base(self, n: int) -> Any:
        if self.kind == "logistic":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=1.0, max_iter=2000)
        if self.kind == "gbm":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=200 if n > 2000 else 100,
                learning_rate=0.1,
                max_leaf_nodes=15,
                min_samples_leaf=max(5, min(20, n // 50)),
                l2_regularization=1.0,
                random_state=self.seed,
            )
        raise InvalidArgument(
            f"unknown classifier {self.kind!r} (gbm, logistic)", field="classifier"
        )

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.kind != "logistic":
            return x
        return (_design(x) - self.center) / self.scale

    def score(self, x: np.ndarray) -> np.ndarray:
        """P(match) per row, float64 in [0, 1]."""
        if self.constant is not None:
            return np.full(len(x), self.constant)
        if self.model is None:
            raise RuntimeError("PairClassifier.score called before fit")
        if len(x) == 0:
            return np.zeros(0)
        # a chunk of rows at a time: the design matrix (imputed + indicators, standardised)
        # is several copies of the features, which must not exist for all pairs at once
        p = np.empty(len(x), np.float64)
        for s in range(0, len(x), SCORE_CHUNK):
            p[s : s + SCORE_CHUNK] = self.model.predict_proba(
                self._prepare(x[s : s + SCORE_CHUNK])
            )[:, 1]
        if self.platt is not None:
            a, b = self.platt
            p = 1.0 / (1.0 + np.exp(-(a * _logit(p) + b)))
        return p


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def balanced_weights(y: np.ndarray, total: float) -> np.ndarray:
    """Weights giving each class half of ``total``."""
    y = np.asarray(y)
    w = np.zeros(len(y))
    for cls in (0, 1):
        n = int((y == cls).sum())
        if n:
            w[y == cls] = total / (2 * n) if (y == 1 - cls).any() else total / n
    return w


def fit_with_labels(
    x_lab: np.ndarray,
    y_lab: np.ndarray,
    *,
    x_prior: np.ndarray | None = None,
    y_prior: np.ndarray | None = None,
    prior_weight: float = 100.0,
    kind: str = "logistic",
    seed: int = 0,
    folds: int = 3,
    min_per_class: int = 8,
    calibrate: bool = True,
) -> PairClassifier:
    """A classifier from people's labels (plus self-labels as a prior), Platt-calibrated.

    Raises:
        InvalidArgument: no labels at all.
    """
    y_lab = np.asarray(y_lab).astype(int)
    if y_lab.size == 0 and (y_prior is None or len(y_prior) == 0):
        raise InvalidArgument("no labelled pairs to train on", field="labels")
    has_prior = x_prior is not None and y_prior is not None and len(y_prior) > 0

    def train(rows: np.ndarray) -> PairClassifier:
        xs, ys, ws = [x_lab[rows]], [y_lab[rows]], [balanced_weights(y_lab[rows], float(len(rows)))]
        if has_prior:
            xs.append(x_prior)
            ys.append(np.asarray(y_prior).astype(int))
            ws.append(balanced_weights(ys[-1], prior_weight))
        return PairClassifier(kind=kind, seed=seed).fit(
            np.vstack(xs), np.concatenate(ys), sample_weight=np.concatenate(ws)
        )

    every = np.arange(len(y_lab))
    clf = train(every)
    n_min = int(min((y_lab == 0).sum(), (y_lab == 1).sum())) if y_lab.size else 0
    if calibrate and n_min >= min_per_class and clf.constant is None:
        rng = np.random.default_rng(seed)
        fold = np.empty(len(y_lab), np.int64)
        for cls in (0, 1):  # stratified folds
            idx = rng.permutation(np.flatnonzero(y_lab == cls))
            fold[idx] = np.arange(idx.size) % folds
        oof = np.empty(len(y_lab))
        for f in range(folds):
            oof[fold == f] = train(every[fold != f]).score(x_lab[fold == f])
        from sklearn.linear_model import LogisticRegression

        platt = LogisticRegression(C=100.0).fit(_logit(oof).reshape(-1, 1), y_lab)
        clf.platt = (float(platt.coef_[0, 0]), float(platt.intercept_[0]))
    return clf


def apply_platt(p: np.ndarray, platt: tuple[float, float]) -> np.ndarray:
    a, b = platt
    return 1.0 / (1.0 + np.exp(-(a * _logit(np.asarray(p, dtype=np.float64)) + b)))


def compose_platt(
    first: tuple[float, float] | None, then: tuple[float, float]
) -> tuple[float, float]:
    """The single Platt map equal to applying ``first`` and then ``then``."""
    if first is None:
        return then
    a1, b1 = first
    a2, b2 = then
    return a2 * a1, a2 * b1 + b2


def calibrate_selected(
    scores: np.ndarray,
    selected: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    *,
    min_per_class: int = 2,
) -> tuple[float, float] | None:
    """Platt parameters fitted on the labelled rows that are selected (None: too few)."""
    if rows.size == 0:
        return None
    keep = selected[rows]
    y = labels[keep]
    if (y == 1).sum() < min_per_class or (y == 0).sum() < min_per_class:
        return None
    from sklearn.linear_model import LogisticRegression

    x = _logit(np.asarray(scores, dtype=np.float64)[rows[keep]]).reshape(-1, 1)
    fit = LogisticRegression(C=100.0).fit(x, y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])
