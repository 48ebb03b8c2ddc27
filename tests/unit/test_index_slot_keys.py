"""The version map's id -> slot runs (`SlotKeys`) against a dict model."""

from __future__ import annotations

import numpy as np
import pytest
from veclink.index.postings import VersionMap
from veclink.index.slot_keys import RATIO, SlotKeys, merge_sorted


def test_merge_sorted_interleaves() -> None:
    a = np.array([1, 5, 9, 20], dtype=np.int64)
    b = np.array([0, 6, 7, 30], dtype=np.int64)
    keys, vals = merge_sorted(a, a * 10, b, b * 10)
    assert keys.tolist() == [0, 1, 5, 6, 7, 9, 20, 30]
    assert (vals == keys * 10).all()
    keys, vals = merge_sorted(a[:0], a[:0], b, b)
    assert keys.tolist() == b.tolist()


def test_runs_stay_geometric() -> None:
    rng = np.random.default_rng(0)
    sk = SlotKeys()
    ids = rng.permutation(200_000).astype(np.int64) * 7 + 3
    for s in range(0, ids.size, 1000):
        sk.insert(ids[s : s + 1000], np.arange(s, s + 1000))
        sizes = [k.size for k, _ in sk.runs]
        assert all(a >= RATIO * b for a, b in zip(sizes, sizes[1:], strict=False))
        assert all((np.diff(k) > 0).all() for k, _ in sk.runs)
    assert len(sk) == ids.size and len(sk.runs) <= 1 + np.log(ids.size / 1000) / np.log(RATIO)
    assert (sk.lookup(ids) == np.arange(ids.size)).all()
    assert (sk.lookup(ids + 1) == -1).all()


@pytest.mark.parametrize("seed", range(4))
def test_version_map_matches_a_dict(seed: int) -> None:
    """Random interleavings of assign / lookup / live_slots and snapshots, against a dict."""
    rng = np.random.default_rng(seed)
    vm = VersionMap()
    slot_of: dict[int, int] = {}
    live: set[int] = set()
    universe = np.unique(
        np.concatenate([rng.integers(0, 5000, 3000), rng.integers(0, 2**62, 500), [0]])
    )
    for _ in range(300):
        op = rng.random()
        if op < 0.45:  # add a batch of distinct ids, some known, some new
            ids = rng.choice(universe, size=int(rng.integers(1, 200)), replace=False)
            slots = vm.assign(ids)
            for i, s in zip(ids.tolist(), slots.tolist(), strict=True):
                slot_of.setdefault(i, len(slot_of))
                assert slot_of[i] == s
            vm.live[slots] = True
            live |= set(ids.tolist())
        elif op < 0.65:  # delete some
            ids = rng.choice(universe, size=int(rng.integers(1, 100)), replace=False)
            slots = vm.live_slots(ids)
            want = [slot_of[i] if i in live else -1 for i in ids.tolist()]
            assert slots.tolist() == want
            vm.live[slots[slots >= 0]] = False
            live -= set(ids.tolist())
        elif op < 0.95:
            ids = rng.choice(universe, size=int(rng.integers(0, 300)))
            assert vm.lookup(ids).tolist() == [slot_of.get(i, -1) for i in ids.tolist()]
        else:  # snapshot round trip, then keep going on the loaded map
            vm = VersionMap.from_arrays(vm.to_arrays(), count=len(live))
            assert len(vm.keys.runs) <= 1
        assert vm.size == len(slot_of)
        assert sorted(vm.live_ids().tolist()) == sorted(live)
    arrays = vm.to_arrays()
    assert (np.diff(arrays["vm_keys"]) > 0).all()
    assert (
        dict(zip(arrays["vm_keys"].tolist(), arrays["vm_key_slot"].tolist(), strict=True))
        == slot_of
    )


def test_version_map_loads_the_format_from_before_slots() -> None:
    """Snapshots without ``vm_ext``: the slot was the id, and ids with a version existed."""
    ver = np.array([1, 0, 3, 2, 0], dtype=np.uint32)
    old = {
        "vm_ver": ver,
        "vm_live": np.array([1, 0, 0, 1, 0], dtype=bool),
        "vm_loc": np.array([4, -1, -1, 2, -1], dtype=np.int64),
    }
    vm = VersionMap.from_arrays(old, count=2)
    assert vm.lookup(np.array([0, 1, 2, 3, 4, 9])).tolist() == [0, -1, 2, 3, -1, -1]
    assert vm.live_slots(np.array([0, 2, 3])).tolist() == [0, -1, 3]
    assert vm.assign(np.array([1, 2, 7])).tolist() == [5, 2, 6]
    assert vm.lookup(np.array([7, 1])).tolist() == [6, 5]
