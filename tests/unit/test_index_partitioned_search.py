"""PartitionedIndex search paths: faiss scan and torch agree; eps pruning; stale copies."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from veclink.index import PartitionedIndex
from veclink.index.scan import drop_duplicate_ids

D = 24


def mixture(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, D)) * 3
    return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, D))).astype(np.float32)


def build(metric: str, replicas: int, device: str, postings: str = "float32") -> PartitionedIndex:
    x = mixture(3000)
    index = PartitionedIndex(
        D,
        metric=metric,
        split_limit=64,
        merge_limit=8,
        replicas=replicas,
        replica_eps=0.3,
        background=False,
        device=device,
        postings=postings,
    )
    index.add(np.arange(3000), x)
    index.remove(np.arange(0, 3000, 7))
    index.add(np.arange(0, 300, 3), -x[:100])  # upserts leave stale copies behind
    return index


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("postings", ["float32", "int8"])
def test_torch_path_matches_numpy_path(metric: str, replicas: int, postings: str) -> None:
    """The torch path scans full vectors (quantised postings: the full-vector store), so it
    equals the float32 numpy path; rebalancing moves full vectors whatever the postings."""
    pytest.importorskip("torch")
    q = mixture(40, seed=5)
    ref = build(metric, replicas, "numpy")
    alt = build(metric, replicas, "cpu", postings)
    for nprobe in (1, 6, 10_000):
        s0, i0 = ref.search(q, 10, nprobe=nprobe)
        s1, i1 = alt.search(q, 10, nprobe=nprobe)
        np.testing.assert_allclose(s0, s1, rtol=1e-4, atol=1e-3)
        agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i0, i1, strict=True)])
        assert agree >= 0.98
        for row in i1:
            valid = row[row >= 0]
            assert valid.size == np.unique(valid).size
    assert ref.stats()["scanned_per_query"] == alt.stats()["scanned_per_query"]


@pytest.mark.gpu
@pytest.mark.parametrize("postings", ["float32", "fp16", "int8"])
def test_cuda_path_matches_numpy_path(postings: str) -> None:
    q = mixture(40, seed=5)
    s0, i0 = build("ip", 1, "numpy").search(q, 10, nprobe=8)
    s1, i1 = build("ip", 1, "cuda", postings).search(q, 10, nprobe=8)
    np.testing.assert_allclose(s0, s1, rtol=1e-3, atol=1e-3)


def test_eps_prunes_far_partitions_and_counts_scanned() -> None:
    index = build("ip", 1, "numpy")
    q = mixture(50, seed=9)
    index.search(q, 10, nprobe=32)
    wide = index.stats()["scanned_per_query"]
    index.scanned_total = index.queries_total = 0
    index.search(q, 10, nprobe=32, eps=0.05)
    assert 0 < index.stats()["scanned_per_query"] < wide


def test_drop_duplicate_ids_keeps_best_copy() -> None:
    s = np.array([[0.9, 0.5, 0.8, -np.inf], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    i = np.array([[3, 4, 3, -1], [1, 1, 1, 2]], dtype=np.int64)
    drop_duplicate_ids(s, i)
    assert i[0].tolist() == [3, 4, -1, -1] and s[0, 0] == np.float32(0.9)
    assert sorted(i[1].tolist()) == [-1, -1, 1, 2] and i[1, 2] == 1


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("replicas", [1, 2])
def test_single_queries_match_their_batch_rows(metric: str, replicas: int) -> None:
    index = build(metric, replicas, "numpy")
    q = mixture(12, seed=11)
    batch_s, batch_i = index.search(q, 10, nprobe=6)
    for a in range(0, 12, 3):
        s, i = index.search(q[a : a + 3], 10, nprobe=6)
        np.testing.assert_allclose(s, batch_s[a : a + 3], rtol=1e-4, atol=1e-3)
        for row, ref in zip(i, batch_i[a : a + 3], strict=True):
            assert set(row[row >= 0].tolist()) == set(ref[ref >= 0].tolist())
            assert np.unique(row[row >= 0]).size == (row >= 0).sum()


def exact_top(index: PartitionedIndex, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.sort(index.ids())
    x = index.get(ids)
    s = q @ x.T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, top, 1), ids[top]


@pytest.mark.parametrize("replicas", [1, 2])
def test_stale_copies_crowding_the_top_are_searched_past(
    replicas: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stale copies that score best of all fill faiss's candidate list: the scan must search
    # those queries again, deeper, and still return the exact current top k
    index = build("ip", replicas, "numpy")
    q = mixture(6, seed=13)
    for part in list(index.parts.values())[:40]:
        slots, ver, _ = (a.copy() for a in part.view())
        n = min(slots.size, 12)
        stale_vecs = np.repeat(q[:1] * 10, n, axis=0)  # outscores every live vector
        part.append(slots[:n], ver[:n] - 1, stale_vecs)
    calls = []
    scan = index.store.scan
    monkeypatch.setattr(index.store, "scan", lambda *a: calls.append(1) or scan(*a))
    s, got = index.search(q, 10, nprobe=len(index.parts))
    assert len(calls) >= 2  # the deeper second search ran
    ref_s, ref_i = exact_top(index, q, 10)
    np.testing.assert_allclose(s, ref_s, rtol=1e-4, atol=1e-4)
    for row, ref in zip(got, ref_i, strict=True):
        assert set(row.tolist()) == set(ref.tolist())


def test_version_bits_wrapping_never_revive_a_stale_copy() -> None:
    # faiss ids keep only the low `ver_bits` bits of a version: when an id's version crosses
    # a multiple of 2**ver_bits, postings drop their stale copies, so an old copy never
    # matches the current version's bits
    index = PartitionedIndex(D, metric="ip", split_limit=512, background=False, device="numpy")
    index.store.ver_bits = 2
    x = mixture(400)
    index.add(np.arange(400), x)
    far = -x[0] * 5  # id 0 moves far away, again and again
    for step in range(9):
        index.add(np.array([0]), (far + step * 1e-3)[None])
        _, got = index.search(x[:1], 5, nprobe=len(index.parts))
        assert 0 not in got[0].tolist(), step
    s, got = index.search(far[None], 1, nprobe=len(index.parts))
    assert got[0, 0] == 0
    np.testing.assert_allclose(s[0, 0], far @ (far + 8e-3), rtol=1e-5)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_primary_beside_its_replica_still_gives_k_distinct_ids(device: str) -> None:
    # a reassignment can move a primary into the posting that holds its replica; a posting's
    # own top-k then holds ids twice, and the batch scan must still end with k distinct ids
    index = PartitionedIndex(
        2, metric="ip", split_limit=64, replicas=2, background=False, device=device
    )
    x = np.stack([np.linspace(1.0, 0.1, 10), np.zeros(10)], 1).astype(np.float32)
    index.add(np.arange(10), x)
    assert len(index.parts) == 1
    part = next(iter(index.parts.values()))
    slots, ver, vecs = (a.copy() for a in part.view())
    top = np.argsort(-vecs[:, 0])[:5]
    part.append(slots[top], ver[top], vecs[top])  # second copies of ids 0..4
    q = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (8, 1))
    _, got = index.search(q, 5, nprobe=4)
    for row in got:
        assert sorted(row.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_faiss_router_mirrors_the_centroid_table(metric: str) -> None:
    # search routes through a faiss copy of the centroids; splits, merges, re-centring and
    # refresh all go through the table, and the copy must follow each of them
    index = build(metric, 1, "numpy")
    more = mixture(2000, seed=7) + 2.0  # a drift: more splits, and refresh earned
    for a in range(0, 2000, 250):
        index.add(np.arange(5000 + a, 5250 + a), more[a : a + 250])
    assert index.rebalancer.splits and index.rebalancer.merges and index.rebalancer.refreshed
    q = mixture(30, seed=3)
    store = index.store
    assert store.router.ntotal == len(index.parts) == len(index.cents)

    def mirrored() -> None:
        n = len(index.cents)
        np.testing.assert_array_equal(store.router.index.reconstruct_n(0, n), index.cents)
        labels = faiss.vector_to_array(store.router.id_map)
        np.testing.assert_array_equal(labels, store.pid_list[index.cent_pid])

    mirrored()
    index.move_centroids(np.array([1, 3]), index.cents[[1, 3]] + 0.5)
    mirrored()
    got = store.route_and_scan(q, 5, 1)[2]
    dist, pids = index.nearest(q, 5, by_ip=metric != "l2")
    want = store.pid_list[pids]
    assert np.mean(got == want) > 0.97  # ties between equidistant centroids may swap
    assert all(set(g) == set(w) for g, w in zip(got[:, :3], want[:, :3], strict=True))


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("eps", [None, 0.5])
def test_blas_and_faiss_batch_scans_agree(metric: str, replicas: int, eps: float | None) -> None:
    # a batch goes through faiss's kernel or partition-major through BLAS, whichever the index
    # measured cheaper (`veclink.index.scan_choice`): both must give the same results, stale
    # copies and replicas included
    index = build(metric, replicas, "numpy")
    q = mixture(40, seed=21)
    results = {}
    for path in ("faiss", "blas"):
        index.scan_choice.force = path
        index.scanned_total = index.queries_total = 0
        results[path] = (
            *index.search(q, 10, nprobe=6, eps=eps),
            index.stats()["scanned_per_query"],
        )
        assert index.scan_choice.last == path
    (s0, i0, n0), (s1, i1, n1) = results["faiss"], results["blas"]
    np.testing.assert_allclose(s0, s1, rtol=1e-4, atol=1e-3)
    assert n0 == n1
    for a, b in zip(i0, i1, strict=True):
        assert set(a.tolist()) == set(b.tolist())


def test_batch_searches_teach_the_chooser_their_cost() -> None:
    # unforced batches are timed and recorded under the path that ran; a cold index follows
    # the fixed rule (here: faiss at 1 probe, BLAS at all of them)
    index = build("ip", 1, "numpy")
    q = mixture(400, seed=22)
    parts = len(index.parts)
    for nprobe in (1, parts):
        index.search(q, 10, nprobe=nprobe)
    costs = index.scan_choice.estimates()
    assert len(costs["faiss"]) == 1 and len(costs["blas"]) == 1
    assert all(v > 0 for path in costs.values() for v in path.values())
    index.search(q[:1], 10, nprobe=parts)  # a single query is not a batch: not recorded
    assert index.scan_choice.estimates() == costs
