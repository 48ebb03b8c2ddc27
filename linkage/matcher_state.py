"""A finished job's `Matcher` as plain data: JSON plus numpy arrays, and back.

The service stores this state with the job's results, so `Match` works after a restart:
the matcher is rebuilt from it on first use. Nothing is pickled: the JSON part holds the
spec, fields, comparator IDF, classifier parameters, threshold, the reference records and
their texts; the arrays (written with ``np.save``, read with ``allow_pickle=False``) hold
the embeddings, lexical IDF, blocking cutoffs and the classifiers' coefficients or trees.
Lexical vectors are recomputed from the stored texts (row by row, so exactly), which keeps
the state small.

The encoder is not part of the state: it is named by ``spec.encoder`` and passed in (or
loaded) when the matcher is rebuilt.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from veclink.linkage.blocking import IndexFactory, default_index_factory
from veclink.linkage.classifier import PairClassifier
from veclink.linkage.compare import Comparator
from veclink.linkage.lexical import LexicalVectorizer
from veclink.linkage.matcher import Matcher
from veclink.linkage.model import LinkModel, Views
from veclink.linkage.scoring import AveragedClassifier
from veclink.linkage.spec import FieldSpec, LinkageSpec
from veclink.linkage.tables import Table

from veclink.errors import InvalidArgument

#: bumped whenever the layout changes; a state of another version is refused, not guessed at
FORMAT = 1
_META = "meta.json"
_NPY = ".npy"


@dataclasses.dataclass(frozen=True)
class MatcherState:
    """A matcher as JSON-able ``meta`` plus named numpy ``arrays``."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def to_parts(self) -> dict[str, bytes]:
        """Named byte strings: ``meta.json`` and one ``.npy`` file per array."""
        parts = {_META: json.dumps(self.meta, allow_nan=True).encode("utf-8")}
        for name, arr in self.arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            parts[name + _NPY] = buf.getvalue()
        return parts

    @classmethod
    def from_parts(cls, parts: Mapping[str, bytes]) -> MatcherState:
        """Inverse of `to_parts`.

        Raises:
            InvalidArgument: a part is missing or unreadable, or the format is not `FORMAT`.
        """
        if _META not in parts:
            raise InvalidArgument("matcher state has no meta.json", field="matcher_state")
        try:
            meta = json.loads(parts[_META].decode("utf-8"))
            arrays = {
                name[: -len(_NPY)]: np.load(io.BytesIO(data), allow_pickle=False)
                for name, data in parts.items()
                if name.endswith(_NPY)
            }
        except ValueError as exc:  # JSON, UTF-8 and npy errors all derive from it
            raise InvalidArgument(
                f"matcher state is unreadable: {exc}", field="matcher_state"
            ) from exc
        if meta.get("format") != FORMAT:
            raise InvalidArgument(
                f"matcher state format {meta.get('format')!r} is not {FORMAT}",
                field="matcher_state",
            )
        return cls(meta, arrays)


def matcher_state(matcher: Matcher) -> MatcherState:
    """The state of a matcher as built from a job (before any record was assigned).

    Raises:
        InvalidArgument: the matcher already holds link assignments (they are not state).
    """
    if matcher.assigned or matcher.claims:
        raise InvalidArgument("save a matcher's state before it assigns records", field="matcher")
    arrays: dict[str, np.ndarray] = {
        "semantic": matcher.views.semantic,
        "cutoffs": matcher.cutoffs,
    }
    meta = {
        "format": FORMAT,
        "mode": matcher.mode,
        "model": _model_meta(matcher.model, arrays),
        "reference": {
            "id_column": matcher.id_column,
            "ids": list(matcher.ids),
            "columns": list(matcher.columns),
            "data": {c: list(v) for c, v in matcher.data.items()},
            "texts": list(matcher.views.texts),
            "full_texts": list(matcher.views.full_texts),
            "lexical": matcher.views.lexical is not None,
        },
        "entity_of": list(matcher.entity_of),
    }
    return MatcherState(meta, arrays)


def load_matcher(
    state: MatcherState,
    *,
    encoder: Any = None,
    index_factory: IndexFactory = default_index_factory,
) -> Matcher:
    """Rebuild the matcher of `matcher_state`; it matches exactly like the original.

    Args:
        encoder: the job's encoder (default: loaded from ``spec.encoder``).

    Raises:
        InvalidArgument: the state is incomplete or inconsistent (the message says what).
    """
    try:
        meta, arrays = state.meta, state.arrays
        ref = meta["reference"]
        model = _model_from_meta(meta["model"], arrays, encoder)
        full_texts = [str(t) for t in ref["full_texts"]]
        lexical = None
        if ref["lexical"]:
            if model.lexical is None:
                raise InvalidArgument("lexical views without a lexical vectorizer", field="lexical")
            lexical = model.lexical.transform(full_texts)
        views = Views([str(t) for t in ref["texts"]], full_texts, arrays["semantic"], lexical)
        columns = tuple(ref["columns"])
        reference = Table(
            name="reference",
            id_column=ref["id_column"],
            ids=tuple(ref["ids"]),
            columns=columns,
            data={c: tuple(ref["data"][c]) for c in columns},
        )
        return Matcher(
            model,
            reference,
            views,
            list(meta["entity_of"]),
            mode=meta["mode"],
            cutoffs=arrays["cutoffs"],
            index_factory=index_factory,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"matcher state is incomplete: {type(exc).__name__}: {exc}", field="matcher_state"
        ) from exc


# ------------------------------------------------------------------------- the model


def _model_meta(model: LinkModel, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if model.comparator is None:
        raise InvalidArgument("the model is not fitted (no comparator)", field="model")
    out: dict[str, Any] = {
        "spec": model.spec.to_dict(),
        "fields": [dataclasses.asdict(f) for f in model.fields],
        "threshold": float(model.threshold),
        "comparator": {
            "fields": [dataclasses.asdict(f) for f in model.comparator.fields],
            "idf": model.comparator.idf,
            "default_idf": model.comparator.default_idf,
        },
        "lexical": None,
        "classifier": _classifier_meta(model.classifier, "classifier", arrays),
    }
    if model.lexical is not None:
        if model.lexical.idf is None:
            raise InvalidArgument("the lexical vectorizer is not fitted", field="lexical")
        out["lexical"] = {"dim": model.lexical.dim, "n": model.lexical.n}
        arrays["lexical_idf"] = model.lexical.idf
    return out


def _model_from_meta(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], encoder: Any
) -> LinkModel:
    spec = LinkageSpec.from_dict(meta["spec"])
    if encoder is None:
        from veclink.encoders import load_encoder

        encoder = load_encoder(spec.encoder)
    cmp = meta["comparator"]
    comparator = Comparator(
        tuple(FieldSpec(**f) for f in cmp["fields"]),
        idf={str(w): float(v) for w, v in cmp["idf"].items()},
        default_idf=float(cmp["default_idf"]),
    )
    lexical = None
    if meta["lexical"] is not None:
        lex = meta["lexical"]
        lexical = LexicalVectorizer(dim=int(lex["dim"]), n=int(lex["n"]), idf=arrays["lexical_idf"])
    return LinkModel(
        spec=spec,
        fields=tuple(FieldSpec(**f) for f in meta["fields"]),
        encoder=encoder,
        lexical=lexical,
        comparator=comparator,
        classifier=_classifier_at(meta["classifier"], "classifier", arrays),
        threshold=float(meta["threshold"]),
    )


# -------------------------------------------------------------------- the classifiers


def _classifier_meta(clf: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    if clf is None:
        return None
    if isinstance(clf, AveragedClassifier):
        return {
            "type": "averaged",
            "members": [
                _classifier_meta(m, f"{prefix}.{i}", arrays) for i, m in enumerate(clf.members)
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


def _classifier_at(meta: dict[str, Any] | None, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    if meta is None:
        return None
    if meta["type"] == "averaged":
        return AveragedClassifier(
            [_classifier_at(m, f"{prefix}.{i}", arrays) for i, m in enumerate(meta["members"])]
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
