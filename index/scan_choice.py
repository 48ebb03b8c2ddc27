"""Which scan answers a batch of queries: faiss's per-query kernel or the partition-major BLAS
scan, chosen by what each has been measured to cost on this index.

The two scans return the same hits (`veclink.index.scan`); only their speed differs, and not
by a rule that holds everywhere. The BLAS scan multiplies each probed posting against all the
queries that probe it: cheap per vector when many queries share a posting and vectors are
long, dear when few do (a Python step per posting). faiss scans query by query with OpenMP
helpers. Which wins moves with the machine's load (on a busy 2-core machine the BLAS scan's
QPS fell up to 8x while faiss's fell far less; BENCHMARKS.md, "Low-dimensional drift"), so a
fixed threshold is right on one machine at one moment only.

`ScanChooser` keeps, per path and per bucket of *queries per probed posting* (the quantity
both costs move with; octaves), an exponentially weighted mean of the wall time per scanned
(query, vector) pair, measured on the batches the index actually runs. A bucket's first batch
takes the path of the fixed rule it replaces (`seed_blas`), so a cold index behaves as
before. Later batches predict each path from its bucket's mean or, lacking one, the nearest
bucket's, and take the cheaper. The path not taken is re-tried once its own estimate in the
bucket is older than a number of that bucket's batches (`RETRY_AFTER`) that doubles each
time the re-try confirms it is still the dearer (bounded exploration: a path 8x slower costs
a few percent at most) and starts over when a re-try wins, so the choice follows load and
data as they change.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

from veclink.index.postings import SMALL_BATCH

#: the seed rule, the fixed threshold the chooser replaces: the BLAS scan when (queries per
#: probed posting) x (dimension) reaches this; measured on WordNet MiniLM (PCA), 100k
#: vectors, batches of 1,000, on a quiet machine: the crossover lies at ~7 probes per posting
#: at 384-d, 20-60 at 128-d and above 60 at 50-d (bench/index_search.py, BENCHMARKS.md)
BLAS_MIN_WORK = 3072
#: weight of a new measurement in a path's running mean
ALPHA = 0.3
#: a bucket's batches after which the path not taken is re-tried (first and after a win)
RETRY_AFTER = 8
#: ... at most this many, however often the re-tries lose
RETRY_MAX = 512
PATHS = ("faiss", "blas")


class Choice(NamedTuple):
    """A chosen path and what `ScanChooser.record` needs to learn from its timing."""

    path: str  # "faiss" or "blas"
    bucket: int | None  # None: not measured (small batch or forced)
    retry: bool  # the path not predicted cheaper, re-tried


def seed_blas(nq: int, nprobe: int, parts: int, dim: int) -> bool:
    """The fixed rule: BLAS once (queries per probed posting) x dim >= `BLAS_MIN_WORK`."""
    return nq > SMALL_BATCH and nq * min(nprobe, parts) * dim >= BLAS_MIN_WORK * parts


def bucket_of(nq: int, nprobe: int, parts: int) -> int:
    """The octave of queries per probed posting (nq x probes / postings)."""
    per_posting = nq * min(nprobe, parts) / max(parts, 1)
    return round(math.log2(max(per_posting, 1e-3)))


class ScanChooser:
    """Per-index choice of the batch scan by measured cost (thread-safe).

    ``force`` ("faiss" or "blas") pins the path, e.g. for tests that check both give the
    same results; ``last`` is the path of the latest batch (for benchmarks' tables).
    """

    def __init__(self) -> None:
        self.force: str | None = None
        self.last: str | None = None
        self._lock = threading.Lock()
        self._cost: dict[tuple[str, int], float] = {}  # (path, bucket) -> s per pair
        self._measured_at: dict[tuple[str, int], int] = {}  # (path, bucket) -> batch number
        self._batches: dict[int, int] = {}  # bucket -> batches chosen there
        self._retry_after: dict[int, int] = {}  # bucket -> current re-try interval

    def choose(self, nq: int, nprobe: int, parts: int, dim: int) -> Choice:
        """The path for a batch of ``nq`` queries probing ``nprobe`` of ``parts`` postings
        (batches of at most `SMALL_BATCH` queries: always faiss)."""
        if self.force is not None:
            return self._chose(Choice(self.force, None, retry=False))
        if nq <= SMALL_BATCH or parts == 0:
            return self._chose(Choice("faiss", None, retry=False))
        b = bucket_of(nq, nprobe, parts)
        with self._lock:
            n = self._batches[b] = self._batches.get(b, 0) + 1
            seed = "blas" if seed_blas(nq, nprobe, parts, dim) else "faiss"
            faiss_cost, blas_cost = (self._estimate(p, b) for p in PATHS)
            if faiss_cost is None or blas_cost is None:
                path = seed
            else:
                path = "blas" if blas_cost < faiss_cost else "faiss"
            other = PATHS[path == "faiss"]
            last = self._measured_at.get((other, b))
            if last is None:  # never run here: now if the rule says so, else after a while
                retry = other == seed or n >= RETRY_AFTER
            else:
                retry = n - last >= self._retry_after.get(b, RETRY_AFTER)
            if retry:  # claim the re-try now, so concurrent batches do not all take it
                self._measured_at[(other, b)] = n
                path = other
        return self._chose(Choice(path, b, retry))

    def _chose(self, choice: Choice) -> Choice:
        self.last = choice.path
        return choice

    def record(self, choice: Choice, pairs: int, seconds: float) -> None:
        """Learn from a batch: it compared ``pairs`` (query, vector) pairs in ``seconds``."""
        b = choice.bucket
        if b is None or pairs <= 0:
            return
        cost = seconds / pairs
        key = (choice.path, b)
        with self._lock:
            old = self._cost.get(key)
            self._cost[key] = cost if old is None else old + ALPHA * (cost - old)
            self._measured_at[key] = self._batches.get(b, 0)
            if choice.retry:
                other = self._estimate(PATHS[choice.path == "faiss"], b)
                wait = self._retry_after.get(b, RETRY_AFTER)
                lost = other is not None and cost >= other
                self._retry_after[b] = min(2 * wait, RETRY_MAX) if lost else RETRY_AFTER

    def _estimate(self, path: str, b: int) -> float | None:
        """The path's cost in bucket ``b``, else in the nearest bucket measured (the lower on
        a tie); None if the path was never measured."""
        own = self._cost.get((path, b))
        if own is not None:
            return own
        near = [(abs(bb - b), bb) for p, bb in self._cost if p == path]
        return self._cost[(path, min(near)[1])] if near else None

    def estimates(self) -> dict[str, dict[int, float]]:
        """Measured ns per (query, vector) pair, per path and bucket (for stats and tests)."""
        with self._lock:
            return {
                p: {b: c * 1e9 for (pp, b), c in sorted(self._cost.items()) if pp == p}
                for p in PATHS
            }
