"""Comparison features, self-labels, precision estimates, thresholds, assignment, clustering."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from veclink.linkage.assign import alternative_scores, best_and_second, greedy_one_to_one
from veclink.linkage.blocking import CandidatePairs
from veclink.linkage.classifier import PairClassifier
from veclink.linkage.cluster import cluster
from veclink.linkage.compare import Comparator, parse_date, parse_number
from veclink.linkage.scoring import (
    choose_threshold,
    curve_from_null,
    curve_from_probabilities,
    self_labels,
)
from veclink.linkage.spec import FieldSpec
from veclink.linkage.tables import Table


def test_parsers() -> None:
    assert parse_number("$1,299.00") == 1299.0
    assert parse_number("12,5 kg") == 12.5
    assert parse_number("n/a") is None
    assert parse_date("19651013") == date(1965, 10, 13)
    assert parse_date("2002") == date(2002, 1, 1)
    assert parse_date("soon") is None


def test_features_by_field_type_with_missing_values() -> None:
    fields = (
        FieldSpec(name="name", type="text"),
        FieldSpec(name="price", type="number"),
        FieldSpec(name="dob", type="date"),
        FieldSpec(name="brand", type="category"),
        FieldSpec(name="given", type="name"),
    )
    left = Table.from_records(
        [
            {
                "id": "a",
                "name": "Sony PS-LX350H turntable",
                "price": "$100",
                "dob": "19650101",
                "brand": "Sony",
                "given": "neumann",
            }
        ],
        id_column="id",
    )
    right = Table.from_records(
        [
            {
                "id": "x",
                "name": "Sony PSLX350H Belt Drive Turntable",
                "price": "99.00",
                "dob": None,
                "brand": "sony",
                "given": "newman",
            },
            {
                "id": "y",
                "name": "Bose speaker AM53BK",
                "price": "400",
                "dob": "19650102",
                "brand": "Bose",
                "given": "smith",
            },
        ],
        id_column="id",
    )
    texts_l = ["Sony PS-LX350H turntable"]
    texts_r = ["Sony PSLX350H Belt Drive Turntable", "Bose speaker AM53BK"]
    comp = Comparator(fields).fit(texts_l, texts_r)
    sem = np.eye(3, dtype=np.float32)
    f = comp.compare(
        left,
        right,
        np.array([0, 0]),
        np.array([0, 1]),
        left_texts=texts_l,
        right_texts=texts_r,
        left_views=(sem[:1], None),
        right_views=(sem[1:], None),
    )
    assert f.values.shape == (2, len(comp.names))
    assert f.column("codes")[0] == 1.0 and f.column("codes")[1] < 0.5
    assert f.column("word_overlap")[0] > f.column("word_overlap")[1]
    assert f.column("price.closeness")[0] > 0.9 > f.column("price.closeness")[1]
    assert np.isnan(f.column("dob.closeness")[0]) and f.column("dob.closeness")[1] > 0.99
    assert f.column("brand.exact").tolist() == [1.0, 0.0]
    assert f.column("given.phonetic").tolist() == [1.0, 0.0]
    assert np.isnan(f.column("lexical")).all()


def _pairs(left: list[int], right: list[int], n_left: int, n_right: int) -> CandidatePairs:
    return CandidatePairs(
        np.array(left), np.array(right), np.zeros(len(left), np.float32), n_left, n_right
    )


def test_self_labels_use_the_no_duplicates_structure() -> None:
    # left 0 clearly matches right 0; its other candidates are non-matches
    pairs = _pairs([0, 0, 0, 1, 1], [0, 1, 2, 1, 2], 2, 3)
    scores = np.array([0.9, 0.3, 0.2, 0.8, 0.75])
    rows, labels = self_labels(pairs, scores, "both")
    lab = dict(zip(rows.tolist(), labels.tolist(), strict=True))
    assert lab[0] == 1
    assert lab[1] == 0 and lab[2] == 0
    assert 3 not in lab or lab[3] == 1  # ahead of its runner-up by only 0.05
    assert lab.get(4, 0) == 0


def test_curve_from_null_estimates_false_positives() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0.6, 1.0, 900)
    false = rng.uniform(0.0, 0.7, 100)
    null = rng.uniform(0.0, 0.7, 2000)
    curve = curve_from_null(np.concatenate([true, false]), null)
    i = np.searchsorted(-curve.thresholds, -0.0, side="left") - 1
    assert abs(curve.precision[i] - 0.9) < 0.03
    j = int(np.argmin(np.abs(curve.thresholds - 0.65)))
    real = ((true >= 0.65).sum()) / ((true >= 0.65).sum() + (false >= 0.65).sum())
    assert abs(curve.precision[j] - real) < 0.02
    choice = choose_threshold(curve, 0.95)
    assert choice.target_met and choice.est_precision >= 0.95
    low = choose_threshold(curve, 0.95, objective="recall")
    assert low.threshold <= choice.threshold + 1e-9
    unreachable = choose_threshold(curve_from_null(false, null), 0.99)
    assert not unreachable.target_met


def test_curve_from_probabilities_is_mean_probability() -> None:
    curve = curve_from_probabilities(np.array([0.9, 0.8, 0.1]))
    assert curve.precision.tolist() == pytest.approx([0.9, 0.85, 0.6])
    assert curve.recall[-1] == pytest.approx(1.0)


def test_greedy_one_to_one_and_alternatives() -> None:
    left = np.array([0, 0, 1, 1])
    right = np.array([0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.85, 0.1])
    chosen = greedy_one_to_one(left, right, scores)
    assert chosen.tolist() == [True, False, False, True]
    best_idx, best, second = best_and_second(left, scores, 2)
    assert best_idx.tolist() == [0, 2] and second.tolist() == [0.8, 0.1]
    alt = alternative_scores(left, scores, chosen, 2)
    assert alt.tolist() == [0.8, 0.85]


def test_classifier_kinds_and_constant_fallback() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0.5).astype(int)
    x[::7, 1] = np.nan
    for kind in ("logistic", "gbm"):
        clf = PairClassifier(kind=kind).fit(x, y)
        p = clf.score(x)
        assert ((p > 0.5) == y).mean() > 0.85
    assert PairClassifier().fit(x[:3], np.ones(3)).score(x).tolist() == [1.0] * 200


def test_correlation_clustering_splits_a_weak_bridge() -> None:
    # two triangles joined by one accepted but weak pair (2-3); the cross pairs are rejected
    left = np.array([0, 0, 1, 3, 3, 4, 2, 1, 2, 0])
    right = np.array([1, 2, 2, 4, 5, 5, 3, 3, 4, 4])
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.55, 0.1, 0.1, 0.1])
    comp = cluster(6, left, right, scores, 0.5, "components")
    assert len(set(comp.tolist())) == 1
    corr = cluster(6, left, right, scores, 0.5, "correlation")
    assert corr.tolist() == [0, 0, 0, 1, 1, 1]


def test_precision_zero_means_the_best_estimated_f1() -> None:
    from veclink.linkage.scoring import ThresholdCurve, choose_threshold

    curve = ThresholdCurve(
        thresholds=np.array([0.9, 0.7, 0.5, 0.3]),
        accepted=np.array([10.0, 20.0, 30.0, 40.0]),
        precision=np.array([1.0, 0.95, 0.8, 0.5]),
        recall=np.array([0.3, 0.6, 0.85, 0.95]),
    )
    best = int(np.argmax(curve.f1))
    free = choose_threshold(curve, 0.0)
    assert free.threshold == curve.thresholds[best] and free.target_met
    strict = choose_threshold(curve, 0.9)
    assert strict.threshold == 0.7  # the best F1 among precision >= 0.9
