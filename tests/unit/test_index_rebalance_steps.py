"""A split's reassignment runs a posting per exclusive hold of the index lock.

The worker is stopped and driven by hand, so each test decides what happens between steps:
the work of each exclusive hold (posting entries read and written, counted by the store) is
bounded by about one posting's, and inserts, deletes and searches interleaved with a
multi-step reassignment, even between its unlocked phases, agree with a brute-force model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from veclink.index import PartitionedIndex
from veclink.index.reassign import Carve, Reassignment
from veclink.index.rebalance import REASSIGN, Rebalancer
from veclink.index.refresh import STEP_ENTRIES

D = 16
LIMIT = 32


def blobs(n: int, k: int, seed: int, spread: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, D)) * 3
    return (centres[rng.integers(0, k, n)] + spread * rng.normal(size=(n, D))).astype(np.float32)


def drain(rb: Rebalancer, until: Callable[[], bool] | None = None) -> None:
    """Run the stopped worker's steps in this thread, until ``until()`` or it runs dry."""
    while rb.has_work() and not (until is not None and until()):
        rb._timed(rb._next())


def index_with_an_oversized_posting(**options: object) -> tuple[PartitionedIndex, np.ndarray]:
    """An index of 2,000 vectors in postings within the limit, then a pile of 800 vectors
    close to one centroid: one posting ~25x over the limit, its split not yet run."""
    index = PartitionedIndex(D, metric="l2", split_limit=LIMIT, merge_limit=4, **options)
    index.rebalancer.stop()  # the test thread runs the steps
    x = blobs(2000, 40, seed=1)
    index.add(np.arange(2000), x)
    drain(index.rebalancer)
    assert max(p.n for p in index.parts.values()) <= LIMIT
    pile = index.cents[0] + 0.05 * np.random.default_rng(2).normal(size=(800, D))
    index.add(np.arange(2000, 2800), pile.astype(np.float32))
    return index, np.vstack([x, pile.astype(np.float32)])


@pytest.mark.parametrize("refresh", [0.0, 4.0])
def test_each_exclusive_hold_works_on_about_one_posting(refresh: float) -> None:
    index, _ = index_with_an_oversized_posting(refresh=refresh)
    rb = index.rebalancer
    sizes = sorted((p.n for p in index.parts.values()), reverse=True)
    big = sizes[0]
    assert big > 10 * LIMIT and sizes[1] <= LIMIT  # one oversized posting
    rb.holds = []
    drain(rb, until=lambda: rb.job is not None)  # the split planned: its install is next
    carve = rb.job
    assert isinstance(carve, Carve) and carve.remaining() > 10
    cluster = int(np.bincount(carve.label).max())
    drain(rb, until=lambda: isinstance(rb.job, Reassignment))
    carving = [h for h in rb.holds if h.kind == "carve"]
    assert len(carving) > 5
    # each carve step moves about `split_limit` entries (whole clusters) out of the posting:
    # reading and writing them and the entries that fill their places, not the posting
    assert max(h.entries for h in carving) <= 4 * (LIMIT + cluster)
    assert max(h.entries for h in carving) < big / 2
    assert all(h.entries <= 2 * LIMIT for h in rb.holds if h.kind not in ("carve", "refresh"))
    job = rb.job
    assert isinstance(job, Reassignment) and job.pids.size > 8
    largest = max(p.n for p in index.parts.values())  # the split's postings
    neighbourhood = sum(index.parts[p].n for p in job.pids.tolist())
    assert neighbourhood > 8 * LIMIT  # what one hold used to cover
    rb.holds = []
    drain(rb)
    steps = [h for h in rb.holds if h.kind == "reassign"]
    assert len(steps) >= job.pids.size  # (and the reassignments of later splits)
    # a step reads one posting and rewrites it or moves its entries out: at most 2x the
    # limit (a posting over it is left to its own split)
    assert max(h.entries for h in steps) <= 2 * LIMIT
    assert max(h.entries for h in steps) < neighbourhood / 4
    # the splits of postings that grew during it, merges, compactions: one posting each
    others = [h for h in rb.holds if h.kind not in ("reassign", "refresh")]
    assert all(h.entries <= 6 * max(largest, LIMIT) for h in others)
    # a refresh step checks STEP_ENTRIES entries (read, rewritten, re-centred: no more postings
    # than those); the postings it moved entries into are re-centred by a step that reads
    # them under the shared lock and moves centroids alone
    refreshes = [h for h in rb.holds if h.kind == "refresh"]
    assert bool(refreshes) == (refresh > 0)
    assert all(h.entries <= 4 * (STEP_ENTRIES + LIMIT) for h in refreshes)
    assert all(h.entries == 0 for h in rb.holds if h.kind == "recentre")
    assert index.stats()["over_split_limit"] == 0 and len(index) == 2800


def brute_force(model: dict[int, np.ndarray], q: np.ndarray, k: int) -> np.ndarray:
    ids = np.array(sorted(model), dtype=np.int64)
    x = np.stack([model[i] for i in ids.tolist()])
    d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return -np.sort(d, axis=1)[:, :k]


def assert_agrees(index: PartitionedIndex, model: dict[int, np.ndarray], rng) -> None:  # type: ignore[no-untyped-def]
    """Same live ids as the model; each has a current copy with the model's vector in the
    posting ``loc`` names, and at most ``replicas`` current copies in all (a primary moved
    into the posting of its replica is two there); exhaustive search gives the brute-force
    scores."""
    assert len(index) == len(model)
    assert sorted(index.ids().tolist()) == sorted(model)
    vm = index.versions
    copies: Counter[int] = Counter()
    at_loc: set[int] = set()
    for pid, part in index.parts.items():
        ids, ver, vecs = part.view()
        current = vm.current(ids, ver)
        copies.update(vm.ext[ids[current]].tolist())
        at_loc.update(vm.ext[ids[current & (vm.loc[ids] == pid)]].tolist())
        if current.any():
            want = np.stack([model[i] for i in vm.ext[ids[current]].tolist()])
            np.testing.assert_array_equal(vecs[current], want)
    assert set(copies) == set(model) == at_loc
    assert max(copies.values()) <= index.options["replicas"]
    q = rng.normal(size=(3, D)).astype(np.float32) * 3
    scores, got = index.search(q, 10, nprobe=1_000_000)
    np.testing.assert_allclose(scores, brute_force(model, q, 10), rtol=1e-4, atol=1e-3)
    for row in got:
        assert np.unique(row).size == row.size


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_writes_and_searches_between_reassignment_steps_match_a_model(
    monkeypatch: pytest.MonkeyPatch, seed: int, replicas: int
) -> None:
    rng = np.random.default_rng(seed)
    index, x = index_with_an_oversized_posting(replicas=replicas, refresh=1.0)
    rb = index.rebalancer
    model = {i: x[i] for i in range(len(x))}
    pile_centre = x[2000:].mean(0)

    def write() -> None:
        """A random insert, update or delete, often near the posting being split."""
        kind = rng.integers(3)
        n = int(rng.integers(1, 40))
        if kind == 0 or not model:  # new ids or updates of existing ones
            ids = rng.choice(3000, size=n, replace=False).astype(np.int64)
            near = rng.random() < 0.6
            v = (pile_centre if near else 0) + rng.normal(size=(n, D)) * (0.3 if near else 3)
            v = v.astype(np.float32)
            index.add(ids, v)
            model.update(zip(ids.tolist(), v, strict=True))
        else:
            ids = rng.choice(np.array(sorted(model)), size=min(n, len(model)), replace=False)
            assert index.remove(ids) == ids.size
            for i in ids.tolist():
                del model[i]

    def maybe_write() -> None:
        if rng.random() < 0.5:
            write()

    # writes land between a step's shared copy and its distances, and between those and the
    # exclusive apply (a write just before the apply, in its hold, is the same interleaving)
    decide, apply = Reassignment.decide, Reassignment.apply
    monkeypatch.setattr(Reassignment, "decide", lambda s, e: (maybe_write(), decide(s, e))[1])
    monkeypatch.setattr(Reassignment, "apply", lambda s, ix, m: (maybe_write(), apply(s, ix, m))[1])

    drain(rb, until=lambda: rb.job is not None)
    assert isinstance(rb.job, Carve) and rb.job.remaining() > 10  # installed in steps too
    for _ in range(300):
        if rb.job is None:  # the next split's install, after other steps
            if not rb.has_work():
                break
            drain(rb, until=lambda: rb.job is not None)
            continue
        r = rng.random()
        if r < 0.4:
            write()
        elif r < 0.5:
            assert_agrees(index, model, rng)
        else:
            rb._timed(REASSIGN)
        assert_agrees(index, model, rng)
    monkeypatch.undo()
    drain(rb)
    assert rb.job is None
    assert_agrees(index, model, rng)
    assert index.stats()["over_split_limit"] == 0
    index.close()


def test_the_list_table_grows_ahead_in_repack_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """New postings never find the lists full: a repack into twice as many lists (copied
    under the shared lock) runs first, not a copy of every list inside one exclusive hold."""
    from veclink.index.postings import PostingStore

    grown: list[int] = []
    grow = PostingStore._grow
    monkeypatch.setattr(PostingStore, "_grow", lambda self, n: (grown.append(n), grow(self, n))[1])
    index = PartitionedIndex(D, metric="l2", split_limit=LIMIT, merge_limit=4, refresh=0.0)
    rb = index.rebalancer
    rb.stop()
    x = blobs(12_000, 200, seed=4)
    for start in range(0, len(x), 300):
        index.add(np.arange(start, start + 300), x[start : start + 300])
        drain(rb)
    store = index.store
    assert store.nlist >= 512 and len(index.parts) > 256 and not grown
    assert store.repacks >= 3
    scores, _ = index.search(x[::300], 5, nprobe=1_000_000)
    np.testing.assert_allclose(scores, brute_force(dict(enumerate(x)), x[::300], 5), atol=1e-3)
    index.close()
