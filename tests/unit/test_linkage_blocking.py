"""Blocking: kNN both ways with adaptive k, exact keys, completeness and reduction ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from veclink.linkage import blocking
from veclink.linkage.blocking import VectorSource, block, code_tokens, key_pairs, key_values
from veclink.linkage.lexical import LexicalVectorizer, combine_views, project
from veclink.linkage.spec import BlockingSpec

from tests.fixtures.linkage import support

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_knn_both_directions_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    left, right = _unit(rng.normal(size=(40, 8))), _unit(rng.normal(size=(30, 8)))
    spec = BlockingSpec(k=3, min_k=3, margin=0.0)
    pairs = block(left, right, spec, index_factory=support.exact_index_factory)
    s = left @ right.T
    expect = {(i, int(j)) for i in range(40) for j in np.argsort(-s[i])[:3]}
    expect |= {(int(i), j) for j in range(30) for i in np.argsort(-s[:, j])[:3]}
    assert set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True)) == expect
    assert np.allclose(pairs.score, s[pairs.left, pairs.right], atol=1e-5)
    assert pairs.reduction_ratio == 1 - len(expect) / 1200
    # cutoffs are each record's lowest kept score
    assert np.allclose(pairs.left_cutoff, np.sort(s, axis=1)[:, -3], atol=1e-5)


def test_adaptive_k_keeps_close_neighbours_only() -> None:
    left = _unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    right = _unit(np.array([[1.0, 0.01], [1.0, 0.02], [0.6, 1.0], [0.0, 1.0]]))
    spec = BlockingSpec(k=4, min_k=1, margin=0.01)
    pairs = block(left, right, spec, index_factory=support.exact_index_factory)
    from_left0 = {int(b) for a, b in zip(pairs.left, pairs.right, strict=True) if a == 0}
    assert {0, 1} <= from_left0 and 2 not in from_left0


def test_dedupe_blocking_excludes_self_and_orders_pairs() -> None:
    rng = np.random.default_rng(1)
    base = _unit(rng.normal(size=(10, 6)))
    vecs = np.vstack([base, _unit(base + 0.01 * rng.normal(size=base.shape))])
    pairs = block(
        vecs,
        None,
        BlockingSpec(k=2, min_k=1, margin=0.0),
        index_factory=support.exact_index_factory,
    )
    assert pairs.dedupe and (pairs.left < pairs.right).all()
    gold = {(i, i + 10) for i in range(10)}
    assert pairs.pair_completeness(gold) == 1.0
    assert pairs.total_pairs == 20 * 19 // 2


def test_code_tokens_normalise_model_numbers() -> None:
    assert code_tokens("Sony Turntable - PS-LX350H") == {"pslx350h"}
    assert code_tokens("Belkin F3H982-10 cable 10ft") == {"f3h98210", "10ft"}
    assert "pslx350h" in code_tokens("Sony PSLX350H Belt Drive")
    assert code_tokens("just words here") == set()
    assert code_tokens(None) == set()


def test_key_blocks_skip_stop_values() -> None:
    left = key_values([["a1", "b2", "zz9", None]], ["code"])
    right = key_values([["A-1", "zz9", "zz9", "q"]], ["code"])
    a, b = key_pairs(left, right, max_block=1)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == []  # a1 has < 4 chars; zz9 too big
    left = key_values([["ab12", "cd34"], ["x", "y"]], ["code", "category"])
    right = key_values([["AB-12"], ["X"]], ["code", "category"])
    a, b = key_pairs(left, right, max_block=5)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 0)]


def test_lexical_view_survives_punctuation_and_is_unit_norm() -> None:
    vec = LexicalVectorizer(dim=512).fit(
        ["Sony PS-LX350H turntable", "Sony PSLX350H", "Bose speaker"]
    )
    xs = vec.transform(["Sony PS-LX350H turntable", "Sony PSLX350H", "Bose speaker"])
    assert xs.dtype == np.float32 and xs.shape == (3, 512)
    x = xs.toarray()
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert x[0] @ x[1] > 0.5 > x[0] @ x[2]
    sem = _unit(np.random.default_rng(0).normal(size=(3, 16)))
    both = combine_views(sem, xs, 0.7, 512)  # no projection: blocking dim >= buckets
    assert np.allclose(both @ both.T, 0.3 * sem @ sem.T + 0.7 * x @ x.T, atol=1e-5)
    assert np.allclose(np.linalg.norm(both, axis=1), 1, atol=1e-5)


def test_lexical_projection_keeps_cosines_in_expectation() -> None:
    rng = np.random.default_rng(3)
    words = ["".join(rng.choice(list("abcdefghij"), size=6)) for _ in range(60)]
    texts = [" ".join(rng.choice(words, size=5)) for _ in range(200)]
    vec = LexicalVectorizer(dim=4096).fit(texts)
    xs = vec.transform(texts)
    exact = (xs @ xs.T).toarray()
    small = project(xs, 256)
    assert small.shape == (200, 256) and small.dtype == np.float32
    assert np.allclose(np.linalg.norm(small, axis=1), 1, atol=1e-5)
    err = small @ small.T - exact
    assert abs(float(err.mean())) < 0.02 and float(np.abs(err).mean()) < 0.08
    # chunks of rows project to the rows of the whole (the projection is per record)
    assert np.array_equal(project(xs[50:80], 256), small[50:80])


def test_blocking_in_query_chunks_equals_one_batch(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    left, right = _unit(rng.normal(size=(45, 8))), _unit(rng.normal(size=(38, 8)))
    spec = BlockingSpec(k=4, min_k=2, margin=0.3)
    factory = support.exact_index_factory
    whole = block(left, right, spec, index_factory=factory)
    dd_whole = block(left, None, spec, index_factory=factory)
    monkeypatch.setattr(blocking, "QUERY_CHUNK", 7)
    parts = block(left, right, spec, index_factory=factory)
    dd_parts = block(left, None, spec, index_factory=factory)
    for a, b in ((whole, parts), (dd_whole, dd_parts)):
        assert np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
        assert np.allclose(a.score, b.score) and np.allclose(a.left_cutoff, b.left_cutoff)
        assert np.allclose(a.right_cutoff, b.right_cutoff)


def test_vector_source_is_read_a_chunk_at_a_time(monkeypatch) -> None:
    rng = np.random.default_rng(5)
    left, right = _unit(rng.normal(size=(30, 6))), _unit(rng.normal(size=(25, 6)))
    monkeypatch.setattr(blocking, "QUERY_CHUNK", 8)
    sizes: list[int] = []

    def source(x: np.ndarray) -> VectorSource:
        def take(rows: np.ndarray) -> np.ndarray:
            sizes.append(len(rows))
            return x[rows]

        return VectorSource(len(x), x.shape[1], take)

    spec = BlockingSpec(k=3, min_k=1, margin=0.2)
    factory = support.exact_index_factory
    got = block(source(left), source(right), spec, index_factory=factory)
    want = block(left, right, spec, index_factory=factory)
    assert np.array_equal(got.left, want.left) and np.array_equal(got.right, want.right)
    assert max(sizes) <= 8
