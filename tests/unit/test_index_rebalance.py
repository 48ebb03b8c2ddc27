"""Rebalancing pieces of the partitioned index: k-means splits, refresh, projected centroids."""

from __future__ import annotations

import numpy as np
import pytest
from veclink.index import PartitionedIndex
from veclink.index.centroids import CentroidTable
from veclink.index.postings import VersionMap
from veclink.index.rebalance import balanced_two_means, kmeans
from veclink.index.refresh import next_postings, refresh_postings


def blobs(n: int, k: int, dim: int, seed: int = 0, spread: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    return (centres[rng.integers(0, k, n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)


def test_kmeans_separates_blobs_into_non_empty_clusters() -> None:
    x = blobs(600, 6, 8)
    cents, label = kmeans(x, 6, np.random.default_rng(0))
    assert cents.shape == (6, 8) and np.bincount(label, minlength=6).min() > 0
    # every blob ends up (almost) entirely in one cluster
    _, own = kmeans(x, 6, np.random.default_rng(1))
    agree = np.mean([np.bincount(own[label == j]).max() / (label == j).sum() for j in range(6)])
    assert agree > 0.9


def test_kmeans_on_duplicates_returns_only_non_empty_finite_clusters() -> None:
    # 3 distinct points, each repeated: initial centroids coincide and reseeding empties
    # clusters; a NaN centroid would win every argmin and swallow all later inserts
    x = np.repeat(blobs(3, 3, 8, seed=7, spread=0.0), [50, 30, 20], axis=0)
    cents, label = kmeans(x, 6, np.random.default_rng(0))
    assert np.isfinite(cents).all() and 1 <= len(cents) <= 6
    counts = np.bincount(label, minlength=len(cents))
    assert counts.size == len(cents) and counts.min() > 0
    for j in range(len(cents)):
        np.testing.assert_allclose(cents[j], x[label == j].mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(60)  # the bug this guards against was an endless split loop
def test_oversized_posting_of_copies_still_splits() -> None:
    index = PartitionedIndex(8, metric="l2", split_limit=16, merge_limit=2, background=False)
    index.add(np.arange(5), blobs(5, 1, 8, seed=8))
    index.add(np.arange(5, 205), np.repeat(blobs(1, 1, 8, seed=9), 200, axis=0))
    st = index.stats()
    assert st["over_split_limit"] == 0 and np.isfinite(index.cents).all()
    _, got = index.search(blobs(1, 1, 8, seed=9), 5, nprobe=10_000)
    assert (got[0] >= 5).all()


def test_balanced_two_means_keeps_both_halves_large() -> None:
    x = np.vstack([blobs(95, 1, 8, seed=2), blobs(5, 1, 8, seed=3)])
    _, _, first = balanced_two_means(x, np.random.default_rng(0))
    assert 25 <= first.sum() <= 75


def test_oversized_posting_is_cut_in_one_multiway_split() -> None:
    index = PartitionedIndex(8, metric="l2", split_limit=32, merge_limit=4, background=False)
    index.add(np.arange(10), blobs(10, 1, 8))  # one posting
    x = blobs(400, 8, 8, seed=4)
    index.add(np.arange(10, 410), x)  # lands in that posting: ~13x the limit
    st = index.stats()
    assert st["over_split_limit"] == 0 and st["partitions"] >= 8
    assert st["splits"] < 12  # not ~log2 bisections per blob
    _, got = index.search(x[:50], 1, nprobe=10_000)
    np.testing.assert_array_equal(got[:, 0], np.arange(10, 60))


def test_refresh_moves_misplaced_vectors_to_their_nearest_centroid() -> None:
    index = PartitionedIndex(
        8, metric="l2", split_limit=64, merge_limit=2, refresh=0, background=False
    )
    x = blobs(300, 4, 8, seed=5, spread=0.05)
    index.add(np.arange(300), x)
    # misplace every vector of one posting by moving its centroid far away, then back
    pid = next(iter(index.parts))
    row = int(np.nonzero(index.cent_pid == pid)[0][0])
    original = index.cents[row].copy()
    index.move_centroids(np.array([row]), original[None] + 100.0)
    pids, cursor = next_postings(index, 0, 10_000)
    assert sorted(pids) == sorted(index.parts) and cursor == max(pids) + 1
    checked, moved, changed = refresh_postings(index, pids)
    assert checked == 300 and moved > 0 and changed
    vm = index.versions
    for p, part in index.parts.items():  # everything now sits at its nearest centroid
        ids, ver, vecs = part.view()
        cur = vm.current(ids, ver)
        _, near = index.nearest(vecs[cur], 1)
        assert (near[:, 0] == p).all()
    assert len(index) == 300


def test_projected_nearest_is_exact_on_small_tables_and_never_worse_on_large() -> None:
    rng = np.random.default_rng(6)
    small = CentroidTable(16)
    for pid, c in enumerate(rng.normal(size=(40, 16)).astype(np.float32)):
        small.append(pid, c)
    v = rng.normal(size=(100, 16)).astype(np.float32)
    dist, pids = small.nearest_projected(v)
    d_exact, p_exact = small.nearest(v, 1)
    np.testing.assert_array_equal(pids, p_exact[:, 0])
    np.testing.assert_allclose(dist, d_exact[:, 0], rtol=1e-4, atol=1e-4)

    # embeddings have a decaying spectrum: a 40-dimensional signal plus faint noise
    mix = rng.normal(size=(40, 160)).astype(np.float32)
    big = CentroidTable(160)
    for pid, c in enumerate(rng.normal(size=(600, 40)).astype(np.float32) @ mix):
        big.append(pid, c + 0.05 * rng.normal(size=160).astype(np.float32))
    v = (rng.normal(size=(500, 40)) @ mix + 0.05 * rng.normal(size=(500, 160))).astype(np.float32)
    dist, pids = big.nearest_projected(v)
    d_exact, p_exact = big.nearest(v, 1)
    assert (dist >= d_exact[:, 0] * (1 - 1e-4)).all()  # an exact distance, never below the min
    assert np.mean(pids == p_exact[:, 0]) > 0.8
    big.drop(5)  # compaction keeps the fitted projection usable
    dist2, pids2 = big.nearest_projected(v)
    assert not np.isin(pids2, [5]).any()


def test_version_map_slots_for_sparse_ids() -> None:
    vm = VersionMap()
    a = vm.assign(np.array([10**15, 3, 2**40], dtype=np.int64))
    b = vm.assign(np.array([3, 7], dtype=np.int64))
    assert a.tolist() == [0, 1, 2] and b.tolist() == [1, 3]
    assert vm.lookup(np.array([7, 8, 10**15])).tolist() == [3, -1, 0]
    vm.live[[0, 1]] = True
    assert vm.live_slots(np.array([3, 7, 99])).tolist() == [1, -1, -1]
    assert sorted(vm.live_ids().tolist()) == [3, 10**15]


@pytest.mark.parametrize("by_ip", [False, True])
def test_exact_nearest_in_blocks_matches_one_product(
    monkeypatch: pytest.MonkeyPatch, by_ip: bool
) -> None:
    """A batch too large for one (vectors x centroids) product is ranked in row blocks."""
    import veclink.index.centroids as centroids

    rng = np.random.default_rng(3)
    table = CentroidTable(24)
    for pid in range(300):
        table.append(pid, rng.normal(size=24).astype(np.float32))
    v = rng.normal(size=(1000, 24)).astype(np.float32)
    whole = table.nearest(v, 5, by_ip)
    monkeypatch.setattr(centroids, "NEAREST_BLOCK", 300 * 64 + 7)  # 64 rows a block, ragged
    blocked = table.nearest(v, 5, by_ip)
    assert (blocked[1] == whole[1]).all()
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-6)


def test_bootstrap_caps_its_kmeans_and_splits_cut_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import veclink.index.rebalance as rebalance

    monkeypatch.setattr(rebalance, "BOOTSTRAP_MAX_LISTS", 4)
    x = blobs(3000, 30, 16, seed=5)
    ix = PartitionedIndex(16, metric="l2", split_limit=64, merge_limit=8, background=False)
    ix.add(np.arange(3000), x)
    ix.wait_idle()
    st = ix.stats()
    assert st["splits"] > 0  # uncapped, 94 postings of ~32 would need none
    assert st["partitions"] > 3000 // 64 and st["size_max"] <= 64
    _, got = ix.search(x[:50], 1, nprobe=8)
    assert (got[:, 0] == np.arange(50)).mean() > 0.95


def test_next_postings_walks_partition_ids_like_a_sorted_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The block-wise cursor walk chooses what listing and sorting every partition did."""
    import veclink.index.refresh as refresh

    def listing(index: PartitionedIndex, cursor: int, budget: int) -> tuple[list[int], int]:
        pids = np.array(sorted(index.parts), dtype=np.int64)
        start = int(np.searchsorted(pids, cursor))
        order = np.concatenate([pids[start:], pids[:start]])
        sizes = np.array([index.parts[p].n for p in order.tolist()], dtype=np.int64)
        take = int(np.searchsorted(np.cumsum(sizes), budget)) + 1
        chosen = order[: min(take, order.size)].tolist()
        return chosen, (chosen[-1] + 1 if chosen else cursor)

    monkeypatch.setattr(refresh, "CURSOR_BLOCK", 7)  # many blocks, ragged
    rng = np.random.default_rng(2)
    x = blobs(4000, 20, 8, seed=2)
    index = PartitionedIndex(8, metric="l2", split_limit=32, merge_limit=4, background=False)
    index.add(np.arange(4000), x)
    index.remove(rng.choice(4000, 1500, replace=False))  # merges leave holes in the ids
    index.wait_idle()
    assert index.store.pid_list.size > len(index.parts) + 10
    top = int(index.store.pid_list.size)
    for _ in range(200):
        cursor, budget = int(rng.integers(0, top + 1)), int(rng.integers(1, 3000))
        assert next_postings(index, cursor, budget) == listing(index, cursor, budget)
    assert next_postings(index, 0, 10**9)[0] == sorted(index.parts)
