"""Congruence: under random upserts and deletes, with copies of a few vectors and zero
vectors mixed in, an exhaustive PartitionedIndex search equals FlatIndex and the worker
always goes idle with every posting within the split limit.

The configurations are ones that once broke: a split whose halves the merge rule folded
straight back (merge_limit close to half the split limit), piles of copies that no centroid
can divide (each split undone by reassignment, forever), and a reassignment that brought a
primary into the posting holding its replica (the batch scan kept too few candidates).

Every ``postings`` storage option runs them: quantised postings (fp16, int8) re-rank every
candidate there, so their exhaustive search must equal FlatIndex too; at the default re-rank
depth their scores must still be the exact scores of the ids returned. The same holds across
snapshots, reopens (WAL replay) and abandoned processes (replay without a snapshot).
"""

from __future__ import annotations

import numpy as np
import pytest
from veclink.index import FlatIndex, PartitionedIndex, open_index
from veclink.index.codecs import CODECS

CONFIGS = [
    ("l2", 8, dict(split_limit=40, merge_limit=19, refresh=4.0, reassign_neighbors=8)),
    ("ip", 2, dict(split_limit=40, merge_limit=18, replicas=2, refresh=0.0)),
    ("cosine", 33, dict(split_limit=16, merge_limit=6, replicas=2, refresh=1.0)),
    ("l2", 2, dict(split_limit=8, merge_limit=3, refresh=4.0, reassign_neighbors=1)),
    # centroids searched through the graph from the first partition on
    ("l2", 8, dict(split_limit=16, merge_limit=6, refresh=4.0, graph_min_partitions=0)),
    ("cosine", 33, dict(split_limit=16, merge_limit=6, replicas=2, graph_min_partitions=0)),
]


def vectors(rng: np.random.Generator, n: int, d: int, pool: np.ndarray) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return rng.normal(size=(n, d)).astype(np.float32)
    if kind == 1:  # copies of one vector
        return np.repeat(pool[rng.integers(len(pool))][None], n, 0)
    if kind == 2:  # zero vectors
        return np.zeros((n, d), np.float32)
    # near-copies: a few vectors plus rounding-level noise
    noise = 1e-7 * rng.normal(size=(n, d)).astype(np.float32)
    return pool[rng.integers(0, len(pool), n)] + noise


def storage(postings: str) -> dict:
    """Options of a postings kind; quantised ones re-rank every candidate (exact search)."""
    return {} if postings == "float32" else {"postings": postings, "rerank": 400}


def assert_exact_scores(index: PartitionedIndex, flat: FlatIndex, q: np.ndarray, k: int) -> None:
    """Each score returned is its id's exact score, best first, ids live and distinct."""
    scores, ids = index.search(q, k)
    for qv, srow, irow in zip(q, scores, ids, strict=True):
        got = irow >= 0
        assert np.unique(irow[got]).size == got.sum()
        if not got.any():
            continue
        exact, _ = flat.search(qv[None], len(flat))
        _, order = flat.search(qv[None], len(flat))
        by_id = dict(zip(order[0].tolist(), exact[0].tolist(), strict=True))
        np.testing.assert_allclose(
            srow[got], [by_id[i] for i in irow[got].tolist()], rtol=1e-4, atol=1e-4
        )
        assert (np.diff(srow[got]) <= 1e-6).all()


@pytest.mark.timeout(120)  # the bugs these configurations caught were endless loops
@pytest.mark.parametrize("postings", CODECS)
@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize(("metric", "d", "options"), CONFIGS)
def test_random_updates_match_flat_index(
    metric: str, d: int, options: dict, background: bool, postings: str
) -> None:
    rng = np.random.default_rng(len(options) * 31 + d)
    index = PartitionedIndex(
        d, metric=metric, background=background, **options, **storage(postings)
    )
    flat = FlatIndex(d, metric=metric)
    pool = rng.normal(size=(5, d)).astype(np.float32)
    for _ in range(50):
        ids = rng.choice(1500, size=int(rng.integers(1, 250)), replace=False).astype(np.int64)
        if rng.random() < 0.55:
            v = vectors(rng, ids.size, d, pool)
            index.add(ids, v)
            flat.add(ids, v)
        else:
            assert index.remove(ids) == flat.remove(ids)
        assert len(index) == len(flat)
    assert index.wait_idle(timeout=60)
    stats = index.stats()
    assert stats["over_split_limit"] == 0
    assert np.isfinite(index.cents).all()
    assert sorted(index.ids().tolist()) == sorted(flat.ids().tolist())
    for nq in (1, 3, 9):  # a single query (its own fast path) and batches
        q = rng.normal(size=(nq, d)).astype(np.float32)
        s1, i1 = index.search(q, 5, nprobe=1_000_000)
        s2, _ = flat.search(q, 5)
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
        for row in i1:
            assert np.unique(row[row >= 0]).size == (row >= 0).sum()
    q = rng.normal(size=(40, d)).astype(np.float32)
    for path in ("faiss", "blas"):  # both batch scans, whichever the index would choose
        index.scan_choice.force = path
        s1, i1 = index.search(q, 5, nprobe=1_000_000)
        np.testing.assert_allclose(s1, flat.search(q, 5)[0], rtol=1e-4, atol=1e-4)
        for row in i1:
            assert np.unique(row[row >= 0]).size == (row >= 0).sum()
    index.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("postings", CODECS)
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_snapshots_and_replay_match_flat_index(tmp_path, metric: str, postings: str) -> None:
    """Random adds, removes, searches, snapshots, reopens and abandoned processes; the data
    drifts away from where it started (int8 ranges must widen, codes be re-encoded)."""
    rng = np.random.default_rng(7)
    d, path = 8, str(tmp_path / "idx")
    opts = dict(split_limit=24, merge_limit=6, background=False, **storage(postings))
    index = PartitionedIndex(d, metric=metric, path=path, **opts)
    flat = FlatIndex(d, metric=metric)
    pool = rng.normal(size=(5, d)).astype(np.float32)
    for step in range(60):
        r = rng.random()
        ids = rng.choice(800, size=int(rng.integers(1, 120)), replace=False).astype(np.int64)
        if r < 0.5:
            v = vectors(rng, ids.size, d, pool) + np.float32(0.3 * step)  # drifting
            index.add(ids, v)
            flat.add(ids, v)
        elif r < 0.75:
            assert index.remove(ids) == flat.remove(ids)
        elif r < 0.85:
            index.flush()
        elif r < 0.95:
            index.close()
            index = open_index(path)
        else:  # a process that dies: no snapshot, the WAL alone brings it back
            index.abandon()
            index = open_index(path)
        assert len(index) == len(flat)
        if step % 6 == 5 and len(flat):
            q = rng.normal(size=(4, d)).astype(np.float32) + np.float32(0.3 * step)
            s1, i1 = index.search(q, 5, nprobe=1_000_000)
            s2, _ = flat.search(q, 5)
            np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
    assert sorted(index.ids().tolist()) == sorted(flat.ids().tolist())
    live = flat.ids()
    np.testing.assert_allclose(index.get(live), flat.get(live), rtol=1e-6)
    index.close()


@pytest.mark.parametrize("postings", ["fp16", "int8"])
def test_quantised_scores_are_exact_at_the_default_rerank(postings: str) -> None:
    """At the default re-rank depth only the candidates may differ: scores are exact."""
    rng = np.random.default_rng(3)
    d = 16
    index = PartitionedIndex(d, metric="l2", background=False, split_limit=40, postings=postings)
    flat = FlatIndex(d, metric="l2")
    for step in range(6):
        ids = rng.choice(3000, size=500, replace=False).astype(np.int64)
        v = (rng.normal(size=(500, d)) + 2 * step).astype(np.float32)  # moves every batch
        index.add(ids, v)
        flat.add(ids, v)
        index.remove(ids[:50])
        flat.remove(ids[:50])
    q = (rng.normal(size=(20, d)) + 5).astype(np.float32)
    assert_exact_scores(index, flat, q, 10)
    _, got = index.search(q, 10, nprobe=1_000_000)
    _, want = flat.search(q, 10)
    recall = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.95
    if postings == "int8":
        assert index.stats()["reencodes"] >= 2  # the ranges followed the data
    index.close()
