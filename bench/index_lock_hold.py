"""How long the partitioned index's rebalancing worker holds the index lock alone.

Searches share the index lock; every rebalancing step takes it exclusively, so the longest
step is the longest a search can wait for rebalancing. This inserts WordNet MiniLM vectors
in batches (default options, background worker) and records every exclusive hold of the
lock by the worker thread: its CPU time (``time.thread_time`` of the worker; rebalancing
runs BLAS single-threaded, so that is the step's whole work), its wall time, the kind of
step, and, where the index counts them, the posting entries it read and wrote. It prints
p50 / p99 / max per kind of step, and optionally the latency of single-query searches
running alongside.

    nice python bench/index_lock_hold.py                     # 60k vectors, batches of 1,000
    nice python bench/index_lock_hold.py --searchers 1       # plus a searching thread

"Entries" counts the posting entries whose vectors the hold read or wrote
(`PostingStore.entries_touched`); code before that counter existed shows n/a.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from veclink.index import PartitionedIndex
from veclink.index.locks import SharedLock
from veclink.index.rebalance import Rebalancer

ROOT = Path(__file__).resolve().parents[1]
WORKER = "veclink-rebalance"
#: Rebalancer methods that name a step, most telling first (a split step also compacts)
KINDS = (
    "split",
    "carve",
    "reassign_step",
    "recentre_step",
    "reassign_neighbourhood",
    "merge",
    "refresh",
    "repack",
    "build_graph",
    "maintain",
)
_tags = threading.local()


def tagged(name: str, fn):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        if (
            threading.current_thread().name == WORKER
        ):  # what the worker does till its next hold ends
            if getattr(_tags, "seen", None) is None:
                _tags.seen = set()
            _tags.seen.add(name)
        return fn(*args, **kwargs)

    return wrapper


class TimedLock(SharedLock):
    """The index lock, recording each exclusive hold of the rebalancing worker."""

    def __init__(self, store_of) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.holds: list[tuple[str, float, float, int]] = []
        self._start: tuple[float, float, int] | None = None
        self._store_of = store_of

    def _entries(self) -> int:
        store = self._store_of()
        return int(getattr(store, "entries_read", -1)) + int(getattr(store, "entries_written", 0))

    def __enter__(self) -> TimedLock:
        outer = self._owner != threading.get_ident()
        super().__enter__()
        if outer and threading.current_thread().name == WORKER:
            self._start = (time.thread_time(), time.perf_counter(), self._entries())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._depth == 1 and self._start is not None and self._owner == threading.get_ident():
            cpu0, wall0, e0 = self._start
            seen = getattr(_tags, "seen", None) or set()
            kind = next((k for k in KINDS if k in seen), "other")
            e1 = self._entries()
            entries = e1 - e0 if e0 >= 0 else -1
            self.holds.append(
                (kind, time.thread_time() - cpu0, time.perf_counter() - wall0, entries)
            )
            self._start = None
            _tags.seen = set()
        super().__exit__(*exc)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/wordnet/minilm_fp16.npy"))
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--searchers", type=int, default=0, help="threads searching meanwhile")
    args = ap.parse_args()

    for name in KINDS:
        if hasattr(Rebalancer, name):
            setattr(Rebalancer, name, tagged(name, getattr(Rebalancer, name)))
    try:  # a split installed in steps (after issue 14 item 5)
        from veclink.index.reassign import Carve

        Carve.step = tagged("carve", Carve.step)
    except ImportError:
        pass
    x = np.load(args.data)[: args.n].astype(np.float32)
    index = PartitionedIndex(x.shape[1], metric="ip")
    lock = TimedLock(lambda: index.store)
    index.lock = lock

    stop = threading.Event()
    latencies: list[float] = []

    def search() -> None:
        rng = np.random.default_rng(threading.get_ident() % 2**32)
        while not stop.is_set():
            if len(index) == 0:
                time.sleep(0.001)
                continue
            q = x[int(rng.integers(len(index)))][None]
            t = time.perf_counter()
            index.search(q, 10)
            latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=search) for _ in range(args.searchers)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    for a in range(0, len(x), args.batch):
        b = min(a + args.batch, len(x))
        index.add(np.arange(a, b, dtype=np.int64), x[a:b])
    inserted = time.perf_counter() - start
    index.wait_idle()
    total = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    st = index.stats()
    index.close()

    by_kind: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for kind, cpu, wall, entries in lock.holds:
        by_kind[kind].append((cpu, wall, entries))
        by_kind["all"].append((cpu, wall, entries))
    print(
        f"{len(x)} x {x.shape[1]} in batches of {args.batch}: inserts {len(x) / inserted:,.0f}/s "
        f"(until idle {len(x) / total:,.0f}/s); {st['partitions']} partitions, "
        f"{st['splits']} splits, {st['merges']} merges, rebalance CPU {st['rebalance_cpu_s']} s"
    )
    print(
        "| step | holds | CPU ms p50 / p99 / max | wall ms p50 / p99 / max "
        "| entries p50 / p99 / max |"
    )
    print("|---|---:|---:|---:|---:|")
    for kind in [*KINDS, "other", "all"]:
        rows = by_kind.get(kind)
        if not rows:
            continue
        cpu = percentiles([r[0] * 1e3 for r in rows])
        wall = percentiles([r[1] * 1e3 for r in rows])
        ent = [r[2] for r in rows]
        entries = "n/a" if min(ent) < 0 else "{:.0f} / {:.0f} / {:.0f}".format(*percentiles(ent))
        print(
            f"| {kind} | {len(rows)} | {cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f} "
            f"| {wall[0]:.2f} / {wall[1]:.2f} / {wall[2]:.2f} | {entries} |"
        )
    if latencies:
        lat = percentiles([v * 1e3 for v in latencies])
        print(
            f"searches alongside: {len(latencies)}, latency ms p50 / p99 / max "
            f"{lat[0]:.2f} / {lat[1]:.2f} / {lat[2]:.2f}"
        )


if __name__ == "__main__":
    main()
