"""Fitted pair classifiers as JSON parameters plus numpy arrays, and back (no pickle).

`PairClassifier` (logistic regression or gradient-boosted trees, Platt calibration) and
`AveragedClassifier` (the fold models of cross-fitting). A logistic model is rebuilt as the
scikit-learn estimator from its coefficients; a tree ensemble becomes a `TreeEnsemble`,
which predicts exactly what scikit-learn predicted from the same trees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from veclink.linkage.classifier import PairClassifier
from veclink.linkage.scoring import AveragedClassifier

from veclink.errors import InvalidArgument


def classifier_state(clf: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """JSON-able parameters of a classifier; its arrays go into ``arrays`` under ``prefix``.

    Raises:
        InvalidArgument: a classifier or estimator type this module cannot store.
    """
    if clf is None:
        return None
    if isinstance(clf, AveragedClassifier):
        return {
            "type": "averaged",
            "members": [
                classifier_state(m, f"{prefix}.{i}", arrays) for i, m in enumerate(clf.members)
            ],
        }
    if not isinstance(clf, PairClassifier):
        raise InvalidArgument(
            f"cannot store a classifier of type {type(clf).__name__}", field="classifier"
        )
    out: dict[str, Any] = {
        "type": "pair",
        "kind": clf.kind,
        "seed": clf.seed,
        "constant": clf.constant,
        "platt": None if clf.platt is None else [float(v) for v in clf.platt],
        "model": None,
    }
    for name in ("center", "scale"):
        value = getattr(clf, name)
        if value is not None:
            arrays[f"{prefix}.{name}"] = np.asarray(value)
    out["standardised"] = clf.center is not None
    if clf.model is not None:
        out["model"] = _estimator_meta(clf.model, prefix, arrays)
    return out


def load_classifier(meta: dict[str, Any] | None, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of `classifier_state` (None for None)."""
    if meta is None:
        return None
    if meta["type"] == "averaged":
        return AveragedClassifier(
            [load_classifier(m, f"{prefix}.{i}", arrays) for i, m in enumerate(meta["members"])]
        )
    if meta["type"] != "pair":
        raise InvalidArgument(f"unknown classifier type {meta['type']!r}", field="classifier")
    std = meta.get("standardised", False)
    return PairClassifier(
        kind=meta["kind"],
        seed=int(meta["seed"]),
        model=None if meta["model"] is None else _estimator_at(meta["model"], prefix, arrays),
        constant=None if meta["constant"] is None else float(meta["constant"]),
        center=arrays[f"{prefix}.center"] if std else None,
        scale=arrays[f"{prefix}.scale"] if std else None,
        platt=None if meta["platt"] is None else (float(meta["platt"][0]), float(meta["platt"][1])),
    )


def _estimator_meta(model: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The fitted parameters of the scikit-learn estimator inside a `PairClassifier`."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(model, LogisticRegression):
        arrays[f"{prefix}.coef"] = model.coef_
        arrays[f"{prefix}.intercept"] = model.intercept_
        arrays[f"{prefix}.classes"] = model.classes_
        return {"type": "logistic"}
    if isinstance(model, HistGradientBoostingClassifier | TreeEnsemble):
        trees = model if isinstance(model, TreeEnsemble) else TreeEnsemble.from_sklearn(model)
        for name, arr in trees.arrays().items():
            arrays[f"{prefix}.trees.{name}"] = arr
        return {"type": "trees"}
    raise InvalidArgument(
        f"cannot store an estimator of type {type(model).__name__}", field="classifier"
    )


def _estimator_at(meta: dict[str, Any], prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    if meta["type"] == "logistic":
        from sklearn.linear_model import LogisticRegression

        # the fitted attributes are all predict_proba reads: same code, same numbers
        lr = LogisticRegression()
        lr.coef_ = arrays[f"{prefix}.coef"]
        lr.intercept_ = arrays[f"{prefix}.intercept"]
        lr.classes_ = arrays[f"{prefix}.classes"]
        lr.n_features_in_ = int(lr.coef_.shape[1])
        return lr
    if meta["type"] == "trees":
        tag = f"{prefix}.trees."
        return TreeEnsemble(**{k[len(tag) :]: v for k, v in arrays.items() if k.startswith(tag)})
    raise InvalidArgument(f"unknown estimator type {meta['type']!r}", field="classifier")


@dataclasses.dataclass
class TreeEnsemble:
    """A binary gradient-boosted tree ensemble evaluated in numpy.

    Holds the numeric trees of a fitted `HistGradientBoostingClassifier` in flat arrays
    (node ``i``'s children are absolute node numbers; tree ``t`` starts at ``roots[t]``)
    and predicts what it predicts: the same comparisons in float64 (NaN follows
    ``missing_left``), leaf values summed tree by tree from the baseline, then the sigmoid.
    """

    baseline: np.ndarray  # float64 (1,): the raw prediction before any tree
    roots: np.ndarray  # int64 (n_trees,)
    feature: np.ndarray  # int64 (n_nodes,)
    threshold: np.ndarray  # float64 (n_nodes,)
    missing_left: np.ndarray  # bool (n_nodes,)
    left: np.ndarray  # int64 (n_nodes,)
    right: np.ndarray  # int64 (n_nodes,)
    leaf: np.ndarray  # bool (n_nodes,)
    value: np.ndarray  # float64 (n_nodes,)

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """Raises InvalidArgument for a multi-class model or categorical splits."""
        if model.n_trees_per_iteration_ != 1:
            raise InvalidArgument("only binary tree ensembles can be stored", field="classifier")
        nodes = [p.nodes for it in model._predictors for p in it]
        if not nodes or any(n["is_categorical"].any() for n in nodes):
            raise InvalidArgument(
                "only numeric tree ensembles with at least one tree can be stored",
                field="classifier",
            )
        sizes = np.array([len(n) for n in nodes], np.int64)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        allnodes = np.concatenate(nodes)
        offset = np.repeat(roots, sizes)
        return cls(
            baseline=np.asarray(model._baseline_prediction, np.float64).reshape(1),
            roots=roots,
            feature=allnodes["feature_idx"].astype(np.int64),
            threshold=allnodes["num_threshold"].astype(np.float64),
            missing_left=allnodes["missing_go_to_left"].astype(bool),
            left=allnodes["left"].astype(np.int64) + offset,
            right=allnodes["right"].astype(np.int64) + offset,
            leaf=allnodes["is_leaf"].astype(bool),
            value=allnodes["value"].astype(np.float64),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 2)`` class probabilities, like scikit-learn's."""
        from scipy.special import expit

        x = np.asarray(x, dtype=np.float64)
        rows = np.arange(len(x))
        raw = np.full(len(x), self.baseline[0], np.float64)
        for root in self.roots.tolist():
            node = np.full(len(x), root, np.int64)
            inner = np.flatnonzero(~self.leaf[node])
            while inner.size:
                nd = node[inner]
                val = x[rows[inner], self.feature[nd]]
                go_left = np.where(np.isnan(val), self.missing_left[nd], val <= self.threshold[nd])
                node[inner] = np.where(go_left, self.left[nd], self.right[nd])
                inner = inner[~self.leaf[node[inner]]]
            raw += self.value[node]
        p = expit(raw)
        return np.column_stack([1 - p, p])
