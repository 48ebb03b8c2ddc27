"""A job's matcher saved as JSON + npy parts and loaded back scores exactly like the original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from veclink.linkage import Table, dedupe, link, read_table
from veclink.linkage.classifier_state import TreeEnsemble
from veclink.linkage.matcher_state import MatcherState, load_matcher, matcher_state

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


S = support


@pytest.fixture(scope="module")
def tables():
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    return left, right


@pytest.fixture(scope="module", params=["logistic", "gbm", "aligned"])
def linked(request, tables):
    left, right = tables
    spec = {"fields": S.DBLP_FIELDS, "classifier": request.param}
    if request.param == "aligned":
        # no fields in the spec: the job aligns the columns itself, and a right column
        # without a partner is compared as part of the record's text (model.unaligned)
        spec = {}
        rows = [
            {"id": rid, **right.record(i), "shelf": f"shelf {i % 7} row {i % 3}"}
            for i, rid in enumerate(right.ids)
        ]
        right = Table.from_records(rows, id_column="id", name="acm")
    return link(left, right, spec, encoder=S.HashEncoder(), index_factory=S.index_factory())


def _reload(matcher):
    """Through bytes, as the store keeps it."""
    parts = matcher_state(matcher).to_parts()
    assert all(isinstance(v, bytes) for v in parts.values())
    return load_matcher(
        MatcherState.from_parts(parts), encoder=S.HashEncoder(), index_factory=S.index_factory()
    )


def test_loaded_model_computes_the_same_features_and_probabilities(linked) -> None:
    left, right = linked.left, linked.right
    original = linked.matcher(index_factory=S.index_factory())
    loaded = _reload(original)
    assert loaded.model.threshold == linked.model.threshold
    assert loaded.model.fields == linked.model.fields
    assert loaded.model.spec == linked.model.spec
    assert loaded.ids == list(right.ids)
    assert loaded.model.classifier is not None  # the self-trained model, not the fallback
    assert loaded.model.unaligned == linked.model.unaligned
    if "shelf" in right.columns:
        assert loaded.model.unaligned[1] == ("shelf",)
    # the reference views: texts and embeddings stored, lexical vectors recomputed exactly
    assert loaded.views.texts == linked.right_views.texts
    np.testing.assert_array_equal(loaded.views.semantic, linked.right_views.semantic)
    # (sparse matrices: compare them dense)
    np.testing.assert_array_equal(
        loaded.views.lexical.toarray(), linked.right_views.lexical.toarray()
    )
    # every candidate pair of the job: same features, same probabilities
    c = linked.candidates
    lv = loaded.model.views(left, "left")
    np.testing.assert_array_equal(lv.lexical.toarray(), linked.left_views.lexical.toarray())
    feats = loaded.model.features(left, right, lv, loaded.views, c.left, c.right)
    assert feats.names == linked.features.names
    np.testing.assert_array_equal(feats.values, linked.features.values)  # NaN == NaN here
    np.testing.assert_array_equal(loaded.model.score(feats), linked.model.score(linked.features))


def test_loaded_matcher_answers_like_the_original(linked, tables) -> None:
    left, _ = tables
    original = linked.matcher(index_factory=S.index_factory())
    loaded = _reload(original)
    for i, rid in enumerate(left.ids):
        rec = {"id": rid, **left.record(i)}
        a, b = original.match(rec, k=10), loaded.match(rec, k=10)
        assert a == b, rid  # candidates (ids, entities, scores) and assignment
    assert original.assignments() == loaded.assignments()
    assert len(original.assignments()) >= 0.5 * len(left)


def test_dedupe_matcher_round_trip() -> None:
    table = read_table(FIX / "febrl1_sample.csv", id_column="rec_id")
    fields = [{"name": c} for c in ("given_name", "surname", "address_1", "suburb", "postcode")]
    result = dedupe(
        table,
        {"left_id": "rec_id", "fields": fields},
        encoder=S.HashEncoder(),
        index_factory=S.index_factory(),
    )
    original = result.matcher(index_factory=S.index_factory())
    loaded = _reload(original)
    assert loaded.entity_of == result.entity_ids()
    for i in range(0, len(table), 7):  # new copies join entities and are indexed
        rec = {**table.record(i), "rec_id": f"copy-{i}"}
        assert original.match(rec) == loaded.match(rec)
    stranger = {"given_name": "zyxw", "surname": "qqqq", "rec_id": "z"}
    assert original.match(stranger) == loaded.match(stranger)


def test_tree_ensemble_predicts_like_scikit_learn() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.random((600, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values take the learned side
    y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 3], nan=0.4)) > 0.9).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    trees = TreeEnsemble.from_sklearn(model)
    test = rng.random((300, 6)).astype(np.float32)
    test[rng.random(test.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(trees.predict_proba(test), model.predict_proba(test))


def test_unreadable_or_foreign_state_is_refused(linked) -> None:
    parts = matcher_state(linked.matcher(index_factory=S.index_factory())).to_parts()
    meta = json.loads(parts["meta.json"])
    with pytest.raises(InvalidArgument, match="format"):
        MatcherState.from_parts({**parts, "meta.json": json.dumps({**meta, "format": 99}).encode()})
    with pytest.raises(InvalidArgument, match="meta.json"):
        MatcherState.from_parts({k: v for k, v in parts.items() if k != "meta.json"})
    with pytest.raises(InvalidArgument, match="unreadable"):
        MatcherState.from_parts({**parts, "cutoffs.npy": b"not an npy file"})
    with pytest.raises(InvalidArgument, match="unreadable"):
        MatcherState.from_parts({**parts, "cutoffs.npy": b""})
    broken = MatcherState.from_parts({k: v for k, v in parts.items() if k != "semantic.npy"})
    with pytest.raises(InvalidArgument, match="semantic"):
        load_matcher(broken, encoder=S.HashEncoder(), index_factory=S.index_factory())
    # arrays are never unpickled: an object array cannot even be written
    with pytest.raises(ValueError):
        MatcherState({"format": 1}, {"x": np.array([object()])}).to_parts()


def test_state_is_taken_before_assignments(linked, tables) -> None:
    left, _ = tables
    matcher = linked.matcher(index_factory=S.index_factory())
    assigned = [
        matcher.match({"id": rid, **left.record(i)}).assigned_entity_id
        for i, rid in enumerate(left.ids[:5])
    ]
    assert any(assigned)
    with pytest.raises(InvalidArgument, match="before it assigns"):
        matcher_state(matcher)


def test_every_fitted_part_is_stored() -> None:
    """A field added to a fitted class must be stored in the matcher state (and here).

    `LinkModel` fields beyond its fitted parts are stored as they are when they hold plain
    data (a mode name, column names); anything else needs its own code.
    """
    import dataclasses

    from veclink.linkage import LinkageSpec
    from veclink.linkage.classifier import PairClassifier
    from veclink.linkage.compare import Comparator
    from veclink.linkage.lexical import LexicalVectorizer
    from veclink.linkage.matcher_state import plain_model_fields
    from veclink.linkage.model import LinkModel, Views
    from veclink.linkage.scoring import AveragedClassifier

    plain_model_fields(LinkModel(spec=LinkageSpec(), fields=(), encoder=None))  # no raise
    stored = {
        Comparator: {"fields", "idf", "default_idf"},
        LexicalVectorizer: {"dim", "n", "idf"},
        PairClassifier: {"kind", "seed", "model", "constant", "center", "scale", "platt"},
        AveragedClassifier: {"members"},
        Views: {"texts", "full_texts", "semantic", "lexical"},
    }
    for cls, names in stored.items():
        assert {f.name for f in dataclasses.fields(cls)} == names, cls.__name__


def test_plain_model_fields_come_back_as_declared() -> None:
    from veclink.linkage.matcher_state import _as_declared

    declared = "tuple[tuple[str, ...], tuple[str, ...]]"
    assert _as_declared([["a", "b"], []], declared) == (("a", "b"), ())
    assert _as_declared("one_to_one", "str") == "one_to_one"
    assert _as_declared(["x"], "list[str]") == ["x"]
