"""Memory: chunked stages equal unchunked ones; the up-front estimate and the budget check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from veclink.linkage import LinkageSpec, Table, link, read_table
from veclink.linkage import classifier as classifier_module
from veclink.linkage import compare as compare_module
from veclink.linkage.classifier import PairClassifier
from veclink.linkage.memory import (
    MemoryEstimate,
    check_memory,
    estimate_memory,
    memory_budget_mb,
)
from veclink.linkage.model import LinkModel
from veclink.linkage.serialize import resolve_fields

from tests.fixtures.linkage import support
from veclink.errors import InvalidArgument, ResourceExhausted

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


S = support


@pytest.fixture(scope="module")
def dblp():
    left = read_table(FIX / "dblp_sample.csv", encoding="latin-1")
    right = read_table(FIX / "acm_sample.csv", encoding="latin-1")
    return left, right


def _features(left: Table, right: Table):
    spec = LinkageSpec.from_dict({"fields": S.DBLP_FIELDS})
    model = LinkModel(spec=spec, fields=resolve_fields(spec, left, right), encoder=S.HashEncoder())
    lt, rt = model.texts(left, "left")[1], model.texts(right, "right")[1]
    model.fit(lt + rt)
    lv, rv = model.views(left, "left"), model.views(right, "right")
    rng = np.random.default_rng(0)
    a = rng.integers(len(left), size=300)
    b = rng.integers(len(right), size=300)
    return lambda: model.features(left, right, lv, rv, a, b)


def test_comparison_in_chunks_equals_one_chunk(dblp, monkeypatch) -> None:
    compute = _features(*dblp)
    whole = compute()
    monkeypatch.setattr(compare_module, "COMPARE_CHUNK", 7)
    parts = compute()
    assert whole.names == parts.names and whole.values.dtype == np.float32
    np.testing.assert_array_equal(whole.values, parts.values)
    # the lexical cosine of the sparse views is a cosine: 1 for a record with itself
    assert np.nanmax(whole.column("lexical")) <= 1 + 1e-5


def test_classifier_scores_in_chunks_equal_one_batch(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((200, 5)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0.5).astype(int)
    clf = PairClassifier(kind="logistic").fit(x, y)
    whole = clf.score(x)
    monkeypatch.setattr(classifier_module, "SCORE_CHUNK", 16)
    np.testing.assert_array_equal(clf.score(x), whole)


def _table(n: int, name: str) -> Table:
    records = [{"id": f"{name}{i}", "title": f"record number {i} of {name}"} for i in range(n)]
    return Table.from_records(records, id_column="id", name=name)


def test_estimate_grows_linearly_with_the_records() -> None:
    spec = LinkageSpec.from_dict({})
    small_l, small_r = _table(1000, "a"), _table(1000, "b")
    big_l, big_r = _table(4000, "a"), _table(4000, "b")
    small = estimate_memory(spec, small_l, small_r, 384)
    big = estimate_memory(spec, big_l, big_r, 384)
    assert small.records == 2000 and big.records == 8000
    assert big.max_pairs == 4 * small.max_pairs == 4 * spec.blocking.k * 2000
    grown = {k: big.parts[k] / small.parts[k] for k in small.parts if k != "chunks"}
    assert all(3.9 < g < 4.1 for g in grown.values()), grown
    # a bigger blocking k means more pairs; a smaller lexical blocking dim a smaller index
    k40 = LinkageSpec.from_dict({"blocking": {"k": 40, "lexical_blocking_dim": 128}})
    other = estimate_memory(k40, small_l, small_r, 384)
    assert other.parts["pairs"] > small.parts["pairs"]
    assert other.parts["index"] < small.parts["index"]


def test_check_names_the_estimate_and_the_budget() -> None:
    est = MemoryEstimate(records=10, max_pairs=200, parts={"records": 700.0, "pairs": 600.0})
    check_memory(est, 1300.0)
    check_memory(est, None)
    with pytest.raises(ResourceExhausted) as info:
        check_memory(est, 1000.0)
    assert info.value.field == "spec.memory_budget_mb"
    assert "1,300 MiB" in str(info.value) and "1,000 MiB" in str(info.value)


def test_default_budget_comes_from_the_memory_available() -> None:
    assert memory_budget_mb(LinkageSpec.from_dict({"memory_budget_mb": 512})) == 512
    default = memory_budget_mb(LinkageSpec.from_dict({}))
    assert default is None or default > 0
    with pytest.raises(InvalidArgument, match="memory_budget_mb"):
        LinkageSpec.from_dict({"memory_budget_mb": 0})


def test_a_job_over_budget_fails_before_it_starts(dblp) -> None:
    left, right = dblp
    encoder, stages = S.HashEncoder(), []
    with pytest.raises(ResourceExhausted, match="more than the memory budget of 1 MiB"):
        link(
            left,
            right,
            {"fields": S.DBLP_FIELDS, "memory_budget_mb": 1},
            encoder=encoder,
            index_factory=S.index_factory(),
            progress=lambda s, f: stages.append(s),
        )
    assert encoder.calls == 0 and stages == []
