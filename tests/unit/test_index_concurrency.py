"""Parallel readers: searches share the index lock, writes and rebalancing hold it alone."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from veclink.index import PartitionedIndex
from veclink.index.locks import SharedLock
from veclink.index.rebalance import Rebalancer

D = 16


def test_shared_lock_lets_readers_in_together_and_writers_alone() -> None:
    lock = SharedLock()
    inside = threading.Barrier(3, timeout=5)

    def reader() -> None:
        with lock.shared():
            inside.wait()  # all three readers are inside at once, or this times out

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    with lock.shared():
        inside.wait()
    for t in threads:
        t.join()

    order: list[str] = []
    with lock:  # exclusive and reentrant; a reader waits for the writer to leave
        with lock, lock.shared():
            order.append("writer")
        t = threading.Thread(target=lambda: lock.shared().__enter__() or order.append("reader"))
        t.start()
        time.sleep(0.1)
        assert order == ["writer"]
    t.join(5)
    assert order == ["writer", "reader"]


def test_a_waiting_writer_goes_before_new_readers() -> None:
    lock = SharedLock()
    order: list[str] = []
    with lock.shared():
        w = threading.Thread(target=lambda: lock.__enter__() and order.append("writer"))
        w.start()
        time.sleep(0.1)  # the writer now waits for this reader
        r = threading.Thread(target=lambda: lock.shared().__enter__() or order.append("reader"))
        r.start()
        time.sleep(0.1)
        assert order == []
    w.join(5)
    time.sleep(0.1)
    assert order == ["writer"]  # it holds the lock (never released here): the reader waits
    lock.__exit__(None, None, None)
    r.join(5)
    assert order == ["writer", "reader"]


def test_readers_waiting_when_a_writer_leaves_go_before_the_next_writer() -> None:
    # the rebalancing worker takes the lock again right after each step: the readers that
    # queued behind one step must get their turn before the next step
    lock = SharedLock()
    order: list[str] = []
    lock.__enter__()

    def reader() -> None:
        with lock.shared():
            order.append("reader")

    def writer() -> None:
        with lock:
            order.append("writer")

    r = threading.Thread(target=reader)
    r.start()
    time.sleep(0.1)  # the reader waits for the writer in progress
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.1)  # so does the next writer
    lock.__exit__(None, None, None)
    r.join(5)
    w.join(5)
    assert order == ["reader", "writer"]


@pytest.mark.parametrize("replicas", [1, 2])
def test_concurrent_searches_and_writes_stay_correct(replicas: int) -> None:
    # writers add new ids (never touched again once acknowledged) and churn another id range
    # (upserts and deletes) while the background worker splits and merges; readers search
    # for acknowledged vectors all along: each must come back as its own nearest neighbour
    rng = np.random.default_rng(0)
    index = PartitionedIndex(
        D, metric="l2", split_limit=32, merge_limit=4, replicas=replicas, background=True
    )
    base = rng.normal(size=(1500, D)).astype(np.float32)
    index.add(np.arange(1500), base)
    stable: dict[int, np.ndarray] = {i: base[i] for i in range(1000)}  # ids 1000+ churn
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def guard(fn):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                fn()
            except BaseException as err:  # noqa: BLE001 - reported by the test
                errors.append(err)
                stop.set()

        return run

    @guard
    def add_new() -> None:
        r = np.random.default_rng(1)
        next_id = 100_000
        while not stop.is_set():
            x = r.normal(size=(40, D)).astype(np.float32)
            ids = np.arange(next_id, next_id + 40)
            index.add(ids, x)  # acknowledged once it returns
            with lock:
                stable.update(zip(ids.tolist(), x, strict=True))
            next_id += 40

    @guard
    def churn() -> None:
        r = np.random.default_rng(2)
        while not stop.is_set():
            ids = r.choice(np.arange(1000, 1500), size=30, replace=False)
            if r.random() < 0.5:
                index.add(ids, r.normal(size=(30, D)).astype(np.float32))
            else:
                index.remove(ids)

    def reader(seed: int):  # type: ignore[no-untyped-def]
        @guard
        def run() -> None:
            r = np.random.default_rng(seed)
            while not stop.is_set():
                with lock:
                    keys = list(stable)
                picks = [keys[j] for j in r.integers(0, len(keys), 4)]
                q = np.stack([stable[i] for i in picks])
                scores, got = index.search(q, 5, nprobe=10_000)
                for row, s, want in zip(got, scores, picks, strict=True):
                    assert row[0] == want, (row, want)
                    assert s[0] == pytest.approx(0.0, abs=1e-4)
                    valid = row[row >= 0]
                    assert np.unique(valid).size == valid.size
                    assert (np.diff(s[np.isfinite(s)]) <= 1e-6).all()
                with lock:
                    searches[0] += 1

        return run

    threads = [threading.Thread(target=add_new), threading.Thread(target=churn)]
    threads += [threading.Thread(target=reader(10 + j)) for j in range(4)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    assert searches[0] > 20
    assert index.wait_idle(timeout=60)
    assert index.rebalancer.splits > 0
    live = set(index.ids().tolist())
    assert set(stable) <= live  # no acknowledged vector went missing
    some = np.array(sorted(stable)[::50])
    np.testing.assert_array_equal(index.get(some), np.stack([stable[i] for i in some]))
    index.close()


def test_searches_complete_between_rebalancing_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # every rebalancing step is made slow (it sleeps holding the index lock) and the worker
    # is given many of them back to back: searches must still get in between steps, not
    # wait until the worker runs out of work
    rng = np.random.default_rng(3)
    index = PartitionedIndex(D, metric="l2", split_limit=32, merge_limit=4, refresh=0.0)
    x = rng.normal(size=(3000, D)).astype(np.float32)
    index.add(np.arange(3000), x)
    assert index.wait_idle(timeout=60)
    original = Rebalancer.maintain

    def slow_step(self: Rebalancer, pid: int, plan: object = None) -> None:
        time.sleep(0.01)
        original(self, pid, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(Rebalancer, "maintain", slow_step)
    steps = len(index.parts)
    assert steps >= 60
    index.rebalancer.schedule(list(index.parts))  # >= 0.6 s of steps, one posting each
    during = 0
    deadline = time.monotonic() + 60
    while index.rebalancer.pending_count() > 0 and time.monotonic() < deadline:
        _, got = index.search(x[:1], 1, nprobe=4)
        assert got[0, 0] == 0
        if index.rebalancer.pending_count() > 0:  # this search finished mid-rebalance
            during += 1
    assert during >= 10
    assert index.wait_idle(timeout=60)
    index.close()
