"""Congruence: under random upserts and deletes, with copies of a few vectors and zero
vectors mixed in, an exhaustive PartitionedIndex search equals FlatIndex and the worker
always goes idle with every posting within the split limit.

The configurations are ones that once broke: a split whose halves the merge rule folded
straight back (merge_limit close to half the split limit), piles of copies that no centroid
can divide (each split undone by reassignment, forever), and a reassignment that brought a
primary into the posting holding its replica (the batch scan kept too few candidates).
"""

from __future__ import annotations

import numpy as np
import pytest
from veclink.index import FlatIndex, PartitionedIndex

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


@pytest.mark.timeout(120)  # the bugs these configurations caught were endless loops
@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize(("metric", "d", "options"), CONFIGS)
def test_random_updates_match_flat_index(
    metric: str, d: int, options: dict, background: bool
) -> None:
    rng = np.random.default_rng(len(options) * 31 + d)
    index = PartitionedIndex(d, metric=metric, background=background, **options)
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
    for nq in (3, 9):  # single and batched queries
        q = rng.normal(size=(nq, d)).astype(np.float32)
        s1, i1 = index.search(q, 5, nprobe=1_000_000)
        s2, _ = flat.search(q, 5)
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
        for row in i1:
            assert np.unique(row[row >= 0]).size == (row >= 0).sum()
    index.close()
