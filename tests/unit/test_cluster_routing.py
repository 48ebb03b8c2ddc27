"""Routing vector ids to shards: stable across processes, spread, consistent on growth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from veclink.cluster.routing import shard_of, split_by_shard

from veclink.errors import InvalidArgument


def test_routing_is_the_same_in_another_process() -> None:
    ids = np.arange(1_000, dtype=np.int64)
    code = (
        "import numpy as np\n"
        "from veclink.cluster.routing import shard_of\n"
        "print(','.join(map(str, shard_of(np.arange(1000, dtype=np.int64), 7))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ",".join(map(str, shard_of(ids, 7)))


def test_routing_is_pinned() -> None:
    """A change of the hash would strand every stored vector on the wrong shard."""
    got = shard_of(np.array([0, 1, 2, 3, 4, 5, 2**62, 2**63 - 1], dtype=np.int64), 5).tolist()
    assert got == PINNED


PINNED = [3, 3, 0, 4, 3, 3, 2, 1]


def test_sequential_ids_spread_over_the_shards() -> None:
    counts = np.bincount(shard_of(np.arange(40_000, dtype=np.int64), 8), minlength=8)
    assert counts.min() > 0.9 * 5_000 and counts.max() < 1.1 * 5_000


def test_growing_by_one_shard_moves_ids_only_to_the_new_shard() -> None:
    ids = np.arange(20_000, dtype=np.int64)
    before, after = shard_of(ids, 4), shard_of(ids, 5)
    moved = before != after
    assert (after[moved] == 4).all()
    assert 0.15 < moved.mean() < 0.25  # about 1/5


def test_split_by_shard_partitions_the_positions() -> None:
    ids = np.array([7, 3, 99, 12, 5], dtype=np.int64)
    parts = split_by_shard(ids, 3)
    assert sorted(np.concatenate(parts).tolist()) == [0, 1, 2, 3, 4]
    owner = shard_of(ids, 3)
    for s, pos in enumerate(parts):
        assert (owner[pos] == s).all()


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_shard_count_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="shards"):
        shard_of(np.arange(3), bad)  # type: ignore[arg-type]


def _reference_shard(vector_id: int, shards: int) -> int:
    """SplitMix64 then jump consistent hash, in plain Python integers (the papers' code)."""
    mask = 2**64 - 1
    z = (vector_id + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    key = z ^ (z >> 31)
    bucket, jump = -1, 0
    while jump < shards:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & mask
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


@pytest.mark.parametrize("shards", [2, 3, 17])
def test_vectorised_routing_equals_the_reference(shards: int) -> None:
    ids = list(range(2_000)) + [2**40 + 7, 2**62, 2**63 - 1]
    expected = [_reference_shard(i, shards) for i in ids]
    assert shard_of(np.array(ids, dtype=np.int64), shards).tolist() == expected
