"""The partitioned index's float32 memory layout: versions kept only in the faiss ids, the
int32 partition map, list buffers regrown to their entries, and old snapshots loading."""

from __future__ import annotations

import io
from pathlib import Path

import faiss
import numpy as np
import pytest
from veclink.index import FlatIndex, PartitionedIndex, open_index
from veclink.index.postings import SLOT_MASK

D = 16


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, D)).astype(np.float32) * 3
    return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, D))).astype(np.float32)


def churn(index: PartitionedIndex, flat: FlatIndex, x: np.ndarray, rounds: int) -> None:
    """Inserts, re-inserts of earlier ids (moved vectors) and deletes."""
    rng = np.random.default_rng(7)
    n = len(x) // rounds
    for r in range(rounds):
        ids = np.arange(r * n, (r + 1) * n)
        for target in (index, flat):
            target.add(ids, x[ids])
        if r:
            again = rng.choice(r * n, n // 4, replace=False)
            moved = x[again] + rng.normal(size=(again.size, D)).astype(np.float32)
            gone = rng.choice(r * n, n // 8, replace=False)
            for target in (index, flat):
                target.add(again, moved)
                target.remove(gone)


def entries_versions(index: PartitionedIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slots, versions from the faiss ids' bits, full versions from `view`) of all entries."""
    keys, full = [], []
    for part in index.parts.values():
        keys.append(faiss.rev_swig_ptr(index.store.lists.get_ids(part.list_no), part.n).copy())
        full.append(part.view()[1])
    k, v = np.concatenate(keys), np.concatenate(full)
    return k & SLOT_MASK, k >> 40, v


def test_view_recovers_full_versions_across_wraps_of_the_id_bits() -> None:
    # 3 version bits: a few ids updated 20 times cross multiples of 8, in one big posting that
    # is never compacted (few stale entries), so stale copies up to 8 versions old pile up;
    # every entry's full version comes back from the bits and the version map, and the copy
    # exactly 8 behind (same bits as the current version) is dropped when the version wraps
    index = PartitionedIndex(D, split_limit=4096, merge_limit=4, background=False, device="numpy")
    index.store.ver_bits = 3
    flat = FlatIndex(D)
    x = data(600)
    index.add(np.arange(600), x)
    flat.add(np.arange(600), x)
    hot = np.array([3, 70, 400])
    rng = np.random.default_rng(1)
    oldest = 0
    for step in range(20):
        v = x[hot] + rng.normal(size=(hot.size, D)).astype(np.float32) * (step + 1)
        index.add(hot, v)
        flat.add(hot, v)
        slots, low, full = entries_versions(index)
        cur = index.versions.ver[slots]
        assert (full <= cur).all() and (cur - full < 8).all()  # no copy a full cycle behind
        oldest = max(oldest, int((cur - full).max()))
        np.testing.assert_array_equal(full & 7, low)
        current = index.versions.current(slots, full)
        assert np.unique(slots[current]).size == current.sum() == len(index)
        q = x[hot]
        s1, i1 = index.search(q, 5, nprobe=10_000)
        s2, i2 = flat.search(q, 5)
        np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    assert oldest == 7  # stale copies did reach the edge of the window
    index.close()


@pytest.mark.parametrize("postings", ["float32", "int8"])
def test_old_snapshot_with_int64_locations_and_stale_copies_loads(
    tmp_path: Path, postings: str
) -> None:
    """A snapshot as older code wrote it (int64 ``vm_loc``, and a stale copy whose version is
    a full id-bits cycle behind) loads: the map is int32, the old copy is dropped, search
    and get are exact."""
    path = tmp_path / "idx"
    x = data(3000, seed=2)
    index = PartitionedIndex(
        D, path=str(path), split_limit=64, merge_limit=8, background=False, postings=postings
    )
    flat = FlatIndex(D)
    churn(index, flat, x, rounds=6)
    index.close()

    snap = path / "partitioned.npz"
    with np.load(io.BytesIO(snap.read_bytes())) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays["vm_loc"].dtype == np.int32
    arrays["vm_loc"] = arrays["vm_loc"].astype(np.int64)
    # a copy of a live id, 2**23 versions behind its current one, appended to the first
    # posting: its faiss id would carry the current version's bits
    live = np.nonzero(arrays["vm_live"])[0]
    slot = int(live[0])
    first = int(arrays["sizes"][0])
    arrays["ids"] = np.insert(arrays["ids"], first, slot)
    old = (arrays["vm_ver"][slot : slot + 1] - np.uint32(1 << 23))[0]  # (wraps: uint32)
    arrays["ver"] = np.insert(arrays["ver"], first, old)
    block = "vecs" if postings == "float32" else "codes"
    arrays[block] = np.insert(arrays[block], first, arrays[block][0] * 0 + 1, axis=0)
    arrays["sizes"] = arrays["sizes"].copy()
    arrays["sizes"][0] += 1
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    snap.write_bytes(buf.getvalue())

    again = open_index(str(path))
    assert isinstance(again, PartitionedIndex)
    assert again.versions.loc.dtype == np.int32
    # the old copy is gone: had it stayed, its key's bits would make it a second current copy
    # (loading may also compact other stale entries, so the total is at most one less)
    assert sum(p.n for p in again.parts.values()) <= int(arrays["sizes"].sum()) - 1
    current = again.versions.ver[slot]
    copies = [
        int((ver[slots == slot] == current).sum())
        for slots, ver in (p.slots() for p in again.parts.values())
    ]
    assert sum(copies) == 1
    live_ids = np.sort(flat.ids())
    np.testing.assert_array_equal(np.sort(again.ids()), live_ids)
    np.testing.assert_array_equal(again.get(live_ids[::9]), flat.get(live_ids[::9]))
    q = x[::29]
    s1, i1 = again.search(q, 10, nprobe=10_000)
    s2, i2 = flat.search(q, 10)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    again.add(np.array([10_000]), x[:1])  # the int32 map takes new writes
    assert again.versions.loc.dtype == np.int32
    again.close()


def test_lists_regrow_to_their_entries_not_double() -> None:
    """A list that outgrows its buffer is regrown to its entries plus an eighth (faiss's
    vector alone would double it), and the tracked capacity is the real one."""
    index = PartitionedIndex(D, split_limit=10_000, merge_limit=4, background=False)
    x = data(4000, seed=4)
    index.add(np.arange(100), x[:100])
    for start in range(100, 4000, 37):
        index.add(np.arange(start, min(start + 37, 4000)), x[start : start + 37])
        store = index.store
        for part in index.parts.values():
            cap = int(store.caps[part.list_no])
            assert part.n <= cap <= part.n + part.n // 8 + 37
    # the tracked capacity is what faiss holds: after a repack with no headroom, appending
    # one entry to a full list must go through the regrowth (faiss would reallocate anyway)
    store = index.store
    assert store.used_entries == sum(p.n for p in index.parts.values())
    flat = FlatIndex(D)
    flat.add(np.arange(4000), x)
    s1, _ = index.search(x[::50], 10, nprobe=10_000)
    s2, _ = flat.search(x[::50], 10)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    index.close()


def test_stats_count_the_layout() -> None:
    """``postings_bytes`` is the lists' codes and ids at their capacities; the version map
    has no per-entry versions beside them and 4-byte partitions and version bits."""
    index = PartitionedIndex(D, split_limit=64, merge_limit=8, background=False)
    x = data(2000, seed=5)
    index.add(np.arange(2000), x)
    st = index.stats()
    store = index.store
    assert st["postings_bytes"] == store.cap_entries * (D * 4 + 8)
    vm = index.versions
    assert vm.loc.dtype == np.int32 and vm.cur_ver.dtype == np.uint32
    assert st["memory_bytes"] == st["postings_bytes"] + vm.nbytes() + index.centroids.nbytes()
    index.close()
