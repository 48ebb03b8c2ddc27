"""PartitionedIndex specifics: rebalancing keeps postings bounded, recall, durability."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from veclink.index import PartitionedIndex, open_index

from veclink.errors import InvalidArgument

D = 32


def drifting(n: int, clusters: int = 20, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres, ordered cluster by cluster (a drifting stream)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, D)) * 3
    labels = np.sort(rng.integers(0, clusters, n))
    x = (centres[labels] + noise * rng.normal(size=(n, D))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(index: PartitionedIndex, x: np.ndarray, queries: np.ndarray, **params) -> float:
    live = np.sort(index.ids())
    exact = faiss.IndexFlatIP(D)
    exact.add(x[live])
    _, gt = exact.search(queries, 10)
    _, got = index.search(queries, 10, **params)
    return float(np.mean([len(set(a) & set(live[b])) / 10 for a, b in zip(got, gt, strict=True)]))


def stream(index: PartitionedIndex, x: np.ndarray, base: int = 2000, batch: int = 500) -> None:
    index.add(np.arange(base), x[:base])
    for start in range(base, len(x), batch):
        index.add(np.arange(start, start + batch), x[start : start + batch])
        index.remove(np.arange(start - base, start - base + batch // 4))


@pytest.mark.parametrize("background", [True, False])
def test_rebalancing_keeps_postings_bounded(background: bool) -> None:
    x = drifting(12_000)
    index = PartitionedIndex(D, split_limit=128, merge_limit=16, background=background)
    stream(index, x)
    assert index.wait_idle(timeout=60)
    st = index.stats()
    # the number of split operations varies in the background (inserts outpacing the worker
    # make piles that one k-means split cuts many ways), the partitions they make do not:
    # 2,000 base vectors bootstrap into 32 partitions, ~9,500 live ones need well over 64
    assert st["splits"] > 0 and st["partitions"] > 64 and st["reassigned"] > 0
    assert st["over_split_limit"] == 0 and st["size_max"] <= 128
    assert st["size_cv"] <= 0.6
    assert st["pending"] == 0
    assert recall(index, x, x[::97], nprobe=16) >= 0.95
    index.close()


def test_mass_delete_merges_small_postings() -> None:
    x = drifting(6_000)
    index = PartitionedIndex(D, split_limit=128, merge_limit=16, background=False)
    index.add(np.arange(6_000), x)
    before = index.stats()["partitions"]
    index.remove(np.setdiff1d(np.arange(6_000), np.arange(0, 6_000, 10)))
    st = index.stats()
    assert st["merges"] > 0 and st["partitions"] < before
    assert len(index) == 600
    assert recall(index, x, x[::50], nprobe=32) >= 0.95


def test_boundary_replicas_never_return_an_id_twice() -> None:
    rng = np.random.default_rng(1)
    a, b = np.zeros(D, np.float32), np.zeros(D, np.float32)
    a[0], b[0] = 4.0, -4.0
    blobs = np.vstack([a + 0.3 * rng.normal(size=(1500, D)), b + 0.3 * rng.normal(size=(1500, D))])
    middle = 0.3 * rng.normal(size=(300, D))  # on the boundary between the two blobs
    x = np.vstack([blobs, middle]).astype(np.float32)
    index = PartitionedIndex(
        D,
        metric="l2",
        split_limit=128,
        merge_limit=16,
        replicas=2,
        replica_eps=0.5,
        background=False,
    )
    index.add(np.arange(3000), x[:3000])
    index.add(np.arange(3000, 3300), x[3000:])
    entries = sum(p.n for p in index.parts.values())
    assert entries > 3300  # boundary vectors were replicated
    _, got = index.search(x[2990:3100], 20, nprobe=8)
    for row in got:
        valid = row[row >= 0]
        assert valid.size == np.unique(valid).size
    index.remove(np.arange(3000, 3300, 2))
    _, got = index.search(x[3000:3100], 20, nprobe=8)
    assert not np.isin(got[got >= 0], np.arange(3000, 3300, 2)).any()
    assert len(index) == 3150


def test_reopen_with_rebalancing_in_flight(tmp_path: Path) -> None:
    x = drifting(8_000, seed=3)
    path = str(tmp_path / "idx")
    index = PartitionedIndex(D, path=path, split_limit=64, merge_limit=8)
    stream(index, x, base=1000, batch=1000)
    live = np.sort(index.ids())
    index.close()  # may stop the worker with work pending; the snapshot holds a valid state
    again = open_index(path)
    assert isinstance(again, PartitionedIndex)
    np.testing.assert_array_equal(np.sort(again.ids()), live)
    assert again.wait_idle(timeout=60)
    assert again.stats()["over_split_limit"] == 0
    assert recall(again, x, x[live[::40]], nprobe=16) >= 0.95
    again.close()


def test_invalid_options_reported_together() -> None:
    with pytest.raises(InvalidArgument) as info:
        PartitionedIndex(D, split_limit=4, nprobe=0, colour="red")
    assert "colour" in str(info.value)
    with pytest.raises(InvalidArgument) as info:
        PartitionedIndex(D, split_limit=4, nprobe=0, merge_limit=10)
    msg = str(info.value)
    assert "split_limit" in msg and "nprobe" in msg and "merge_limit" in msg
    with pytest.raises(InvalidArgument) as info:
        PartitionedIndex(D, postings="int4", rerank=0)
    msg = str(info.value)
    assert "postings: must be one of float32, fp16, int8, got 'int4'" in msg
    assert "rerank: must be an integer in [1, 1024], got 0" in msg
    with pytest.raises(InvalidArgument, match="rerank: must be an integer"):
        PartitionedIndex(D, postings="int8", rerank=2.5)
    index = PartitionedIndex(D)
    with pytest.raises(InvalidArgument, match="nprobe"):
        index.search(drifting(2), 3, nprobe=0)
    index.close()


@pytest.mark.parametrize("postings", ["float32", "int8"])
def test_repack_frees_spare_capacity_while_writes_go_on(
    monkeypatch: pytest.MonkeyPatch, postings: str
) -> None:
    """Lists repacked in one-list steps between writes lose no entry and end near exact."""
    from veclink.index import FlatIndex, repack
    from veclink.index import postings as postings_module

    monkeypatch.setattr(postings_module, "REPACK_MIN_BYTES", 0)
    monkeypatch.setattr(repack, "STEP_BYTES", 1)  # one list per step: writes land mid-repack
    x = drifting(12_000, seed=5)
    index = PartitionedIndex(D, split_limit=64, merge_limit=8, postings=postings, rerank=1024)
    flat = FlatIndex(D)
    for start in range(0, len(x), 500):
        ids = np.arange(start, start + 500)
        index.add(ids, x[start : start + 500])
        flat.add(ids, x[start : start + 500])
        gone = np.arange(start // 2, start // 2 + 100)
        index.remove(gone)
        flat.remove(gone)
    assert index.wait_idle(timeout=60)
    stats = index.stats()
    assert stats["repacks"] > 0
    store = index.store
    entries = sum(p.n for p in index.parts.values())
    assert store.used_entries == entries == int(store.sizes.sum())
    # modelled spare capacity stays under the repack threshold (plus what the last writes added)
    assert store.cap_entries <= 1.5 * entries
    q = x[::97]
    s1, i1 = index.search(q, 10, nprobe=100_000)
    s2, i2 = flat.search(q, 10)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    index.close()


def test_lists_changed_during_a_repack_are_copied_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from veclink.index import FlatIndex, repack

    monkeypatch.setattr(repack, "STEP_BYTES", 1)  # one list per step
    x = drifting(3_600, seed=6)
    index = PartitionedIndex(D, background=False, split_limit=64, merge_limit=8)
    flat = FlatIndex(D)
    index.add(np.arange(3000), x[:3000])
    flat.add(np.arange(3000), x[:3000])
    store = index.store
    nlist = store.nlist
    for _ in range(nlist // 2):  # half the lists copied, then writes touch copied ones
        assert not store.repack_step()
    copied = store.repack.cursor
    dirty = []
    monkeypatch.setattr(repack.Repack, "finish", _recording(repack.Repack.finish, dirty))
    index.add(np.arange(3000, 3600), x[3000:])  # appends, splits; the inline worker finishes
    index.remove(np.arange(0, 3000, 3))
    flat.add(np.arange(3000, 3600), x[3000:])
    flat.remove(np.arange(0, 3000, 3))
    assert store.nlist == nlist  # (growing the list table would abandon the repack)
    assert store.repack is None and store.repacks >= 1 and copied > 0
    assert dirty and max(dirty) > 0  # the finish re-copied lists written after their copy
    for part in index.parts.values():
        assert int(store.lists.list_size(part.list_no)) == part.n
    s1, _ = index.search(x[::50], 10, nprobe=100_000)
    s2, _ = flat.search(x[::50], 10)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    index.close()


def _recording(finish, sink: list):  # type: ignore[no-untyped-def]
    def wrapped(self, src, sizes):  # type: ignore[no-untyped-def]
        sink.append(len(self._dirty))
        return finish(self, src, sizes)

    return wrapped


def test_quantised_full_vectors_live_in_a_file_of_a_persisted_index(tmp_path: Path) -> None:
    x = drifting(3000, seed=8)
    path = tmp_path / "idx"
    index = PartitionedIndex(D, path=str(path), postings="int8", split_limit=64, merge_limit=8)
    index.add(np.arange(3000), x)
    stats = index.stats()
    assert stats["full_vectors_bytes"] == 0  # not on the heap
    assert stats["full_vectors_file_bytes"] >= 3000 * D * 4
    assert (path / "full_vectors.f32").stat().st_size == stats["full_vectors_file_bytes"]
    assert stats["postings_bytes"] <= 0.4 * 3000 * D * 4 * 1.5  # int8 codes + ids + versions
    index.close()
    again = open_index(str(path))
    np.testing.assert_array_equal(again.get(np.arange(0, 3000, 7)), x[::7])
    assert recall(again, x, x[::50], nprobe=16) >= 0.95
    again.close()
