"""The batch scan chooser (`veclink.index.scan_choice`): timings are injected, never measured,
so these tests do not depend on the machine's speed or load."""

from __future__ import annotations

import threading

import pytest
from veclink.index.postings import SMALL_BATCH
from veclink.index.scan_choice import (
    BLAS_MIN_WORK,
    RETRY_AFTER,
    RETRY_MAX,
    ScanChooser,
    bucket_of,
    seed_blas,
)

PARTS, DIM = 1000, 128
BATCH = 2000


def run(chooser: ScanChooser, cost: dict[str, float], n: int, nprobe: int = 64) -> list[str]:
    """``n`` batches whose paths take ``cost[path]`` seconds per (query, vector) pair."""
    pairs = BATCH * nprobe * 80
    paths = []
    for _ in range(n):
        choice = chooser.choose(BATCH, nprobe, PARTS, DIM)
        chooser.record(choice, pairs, cost[choice.path] * pairs)
        paths.append(choice.path)
    return paths


def test_cold_chooser_follows_the_fixed_rule() -> None:
    chooser = ScanChooser()
    for nq, nprobe in ((BATCH, 1), (BATCH, 8), (BATCH, 12), (BATCH, 64), (SMALL_BATCH, PARTS)):
        want = (
            "blas" if nq * nprobe * DIM >= BLAS_MIN_WORK * PARTS and nq > SMALL_BATCH else "faiss"
        )
        assert seed_blas(nq, nprobe, PARTS, DIM) == (want == "blas")
        assert ScanChooser().choose(nq, nprobe, PARTS, DIM).path == want
    assert chooser.choose(1, 64, PARTS, DIM).bucket is None  # small batches are not measured


@pytest.mark.parametrize("slow", ["faiss", "blas"])
def test_moves_to_the_cheaper_path_and_rarely_retries_the_other(slow: str) -> None:
    fast = "blas" if slow == "faiss" else "faiss"
    chooser = ScanChooser()
    paths = run(chooser, {slow: 8e-9, fast: 1e-9}, 2000)
    assert paths[-1] == fast
    tail = paths[RETRY_AFTER + 1 :]
    # the slow path is re-tried ever more rarely: a doubling interval up to RETRY_MAX
    assert 3 <= tail.count(slow) <= 10
    gaps = [i for i, p in enumerate(tail) if p == slow]
    assert all(b - a >= RETRY_AFTER for a, b in zip(gaps, gaps[1:], strict=False))
    assert max(b - a for a, b in zip(gaps, gaps[1:], strict=False)) <= RETRY_MAX + 1


def test_follows_a_change_of_load() -> None:
    # BLAS is cheaper on a quiet machine, then (other jobs start) 8x dearer: the chooser
    # moves to faiss within a bounded number of batches, and back when the load goes
    chooser = ScanChooser()
    assert run(chooser, {"blas": 1e-9, "faiss": 2e-9}, 200)[-1] == "blas"
    busy = run(chooser, {"blas": 8e-9, "faiss": 2.5e-9}, RETRY_MAX + 20)
    first = busy.index("faiss")
    assert busy[first:].count("blas") <= 3 and busy[-1] == "faiss"
    quiet = run(chooser, {"blas": 1e-9, "faiss": 2e-9}, 2 * RETRY_MAX + 20)
    assert quiet[-1] == "blas"


def test_a_new_bucket_tries_the_rule_then_learns_from_the_nearest() -> None:
    # both paths measured at 64 probes (BLAS dearer). At 96 probes, one octave on, the fixed
    # rule says BLAS: the bucket's first batch follows it, the next ones compare that
    # measurement with faiss's in the nearest bucket
    chooser = ScanChooser()
    run(chooser, {"blas": 5e-9, "faiss": 1e-9}, 3 * RETRY_AFTER)
    assert bucket_of(BATCH, 96, PARTS) != bucket_of(BATCH, 64, PARTS)
    assert seed_blas(BATCH, 96, PARTS, DIM)
    assert run(chooser, {"blas": 5e-9, "faiss": 1e-9}, 3, nprobe=96) == ["blas", "faiss", "faiss"]
    est = chooser.estimates()
    assert est["blas"][bucket_of(BATCH, 96, PARTS)] == pytest.approx(5.0)
    # where the rule says faiss and the nearest buckets say BLAS is cheaper: faiss first, then
    # BLAS (predicted from the nearest bucket)
    chooser = ScanChooser()
    run(chooser, {"blas": 1e-9, "faiss": 5e-9}, 3 * RETRY_AFTER)
    assert not seed_blas(BATCH, 8, PARTS, DIM)
    assert run(chooser, {"blas": 1e-9, "faiss": 5e-9}, 3, nprobe=8) == ["faiss", "blas", "blas"]


def test_force_pins_the_path_and_learns_nothing() -> None:
    chooser = ScanChooser()
    chooser.force = "blas"
    assert run(chooser, {"blas": 9e-9, "faiss": 1e-9}, 20) == ["blas"] * 20
    assert chooser.estimates() == {"faiss": {}, "blas": {}}


def test_concurrent_batches_keep_consistent_estimates() -> None:
    chooser = ScanChooser()
    cost = {"blas": 3e-9, "faiss": 1e-9}
    threads = [threading.Thread(target=run, args=(chooser, cost, 300)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    est = chooser.estimates()
    assert est["faiss"] and est["blas"]
    assert all(v == pytest.approx(cost[p] * 1e9) for p in est for v in est[p].values())
    assert run(chooser, cost, 1) == ["faiss"]
