"""Which shard owns a vector id: a stable hash, the same in every process and version.

Python's ``hash()`` is salted per process for strings and is the identity for small ints,
so it can neither route nor spread ids. Here an id is mixed by SplitMix64 and placed by jump
consistent hashing (Lamping and Veach, 2014): growing from N to N+1 shards moves only about
1/(N+1) of the ids, to the new shard, should resharding ever be added.
"""

from __future__ import annotations

import numpy as np

from veclink.errors import InvalidArgument

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_LCG = np.uint64(2862933555777941757)


def splitmix64(ids: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser of ``ids`` (uint64 arithmetic, wrapping)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0..shards-1) of every int64 vector id, as an int64 array.

    Raises:
        InvalidArgument: ``shards`` is not a positive integer.
    """
    if not isinstance(shards, int) or shards < 1:
        raise InvalidArgument(f"shards must be a positive integer; got {shards!r}", field="shards")
    keys = splitmix64(np.asarray(ids, dtype=np.int64))
    out = np.zeros(keys.shape, dtype=np.int64)
    if shards == 1 or not keys.size:
        return out
    # jump consistent hash, vectorised: every key jumps until it passes the last bucket
    bucket = np.full(keys.shape, -1, dtype=np.int64)
    jump = np.zeros(keys.shape, dtype=np.int64)
    active = np.ones(keys.shape, dtype=bool)
    with np.errstate(over="ignore"):
        while active.any():
            bucket[active] = jump[active]
            keys[active] = keys[active] * _LCG + np.uint64(1)
            step = float(1 << 31) / ((keys[active] >> np.uint64(33)).astype(np.float64) + 1.0)
            jump[active] = ((bucket[active] + 1).astype(np.float64) * step).astype(np.int64)
            active &= jump < shards
    out[:] = bucket
    return out


def split_by_shard(ids: np.ndarray, shards: int) -> list[np.ndarray]:
    """For every shard, the positions in ``ids`` of the ids it owns (in input order)."""
    owner = shard_of(ids, shards)
    return [np.flatnonzero(owner == s) for s in range(shards)]
