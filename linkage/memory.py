"""Memory of a link or dedupe job: an up-front estimate, and the budget it must fit.

A job holds, per record, its texts, word and code-token sets, embedding and sparse
character 3-gram vector; per candidate pair, the pair arrays, the feature matrix and the
scoring arrays; and, while blocking, one side's blocking vectors in the index. Everything
else is made a chunk at a time (`QUERY_CHUNK`, `COMPARE_CHUNK`, `SCORE_CHUNK`), so memory
grows linearly with the records. Candidate pairs are bounded before blocking runs: kNN
keeps at most ``k`` neighbours per record and direction, and each exact key is assumed to
add at most ``k`` per left record (blocks larger than ``max_key_block`` are skipped).

The per-item byte counts below are rough CPython / numpy sizes, checked against
``bench/linkage_scale.py`` (BENCHMARKS.md), where the estimate stayed above the measured
memory; the pair bound makes the total an upper bound for most tables (the adaptive k
usually keeps far fewer than k neighbours).
"""

from __future__ import annotations

import dataclasses
import os

from veclink.linkage.compare import MAX_FEATURES_PER_FIELD, Comparator
from veclink.linkage.spec import LinkageSpec
from veclink.linkage.tables import Table

from veclink.errors import ResourceExhausted

_MIB = 2**20
#: records whose values are measured to size the texts (spread over the table)
_SAMPLE = 2000
#: per record: text objects (embedded + full text), set objects, list slots
_RECORD_FIXED = 700
#: per character of a record: the two texts, its sparse 3-gram entries, word-set entries
_RECORD_PER_CHAR = 14
#: per base vector in the index besides its floats (id maps, presence set)
_INDEX_PER_VECTOR = 80
#: per candidate pair besides its features: pair arrays, de-duplication, scores,
#: self-labels, selection (several int64 / float64 arrays each)
_PAIR_FIXED = 160
#: per candidate pair and feature: the matrix, the training copy and its design matrix
_PAIR_PER_FEATURE = 24


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated memory a job adds to its process, by part (MiB)."""

    records: int
    #: upper bound on the candidate pairs (blocking k per record and direction, keys)
    max_pairs: int
    parts: dict[str, float]

    @property
    def total_mb(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in self.parts.items())
        return (
            f"{self.total_mb:,.0f} MiB for {self.records:,} records and up to "
            f"{self.max_pairs:,} candidate pairs ({parts} MiB)"
        )


def estimate_memory(
    spec: LinkageSpec, left: Table, right: Table | None, embedding_dim: int
) -> MemoryEstimate:
    """Memory a job on these tables will add, from their sizes, the blocking k and the dims.

    Needs no alignment: every column ends up in a record's text (aligned columns as fields,
    the others schema-agnostically), and without spec fields each aligned column pair is
    counted as a field with the most comparison features a field type has.

    Args:
        right: None for dedupe.
        embedding_dim: the encoder's output dimension.
    """
    b = spec.blocking
    n_left = len(left)
    n_right = 0 if right is None else len(right)
    records = n_left + n_right
    chars = _chars_per_record(left)
    if right is not None:
        chars = (chars * n_left + _chars_per_record(right) * n_right) / max(records, 1)
    lexical = b.lexical_weight > 0
    block_dim = embedding_dim + (min(b.lexical_blocking_dim, b.lexical_dim) if lexical else 0)
    queries = n_left + n_right  # both directions query k each; dedupe: each record once
    max_pairs = b.k * queries + len(b.keys) * b.k * n_left
    if spec.fields:
        n_features = len(Comparator(spec.fields).names)
    else:
        n_columns = (
            len(left.columns) if right is None else min(len(left.columns), len(right.columns))
        )
        n_features = len(Comparator(()).names) + n_columns * MAX_FEATURES_PER_FIELD
    base = max(n_left, n_right)
    chunk_mb = 64.0  # the chunked stages' working sets (query batch, compare and score chunks)
    parts = {
        "records": records * (_RECORD_FIXED + _RECORD_PER_CHAR * chars + 4 * embedding_dim) / _MIB,
        "index": base * (4 * block_dim + _INDEX_PER_VECTOR) / _MIB,
        "pairs": max_pairs * (_PAIR_FIXED + _PAIR_PER_FEATURE * n_features) / _MIB,
        "chunks": chunk_mb,
    }
    return MemoryEstimate(records, max_pairs, parts)


def _chars_per_record(table: Table) -> float:
    """Mean characters of a record over all its columns, from a sample spread over the table."""
    n = len(table)
    if n == 0:
        return 0.0
    step = max(1, n // _SAMPLE)
    total = 0
    for c in table.columns:
        total += sum(len(v) for v in table.column(c)[::step] if v)
    return total / len(range(0, n, step))


def available_memory_mb() -> float | None:
    """Memory the system can still hand out (MemAvailable), MiB; None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / _MIB
    except (ValueError, OSError):
        return None


def memory_budget_mb(spec: LinkageSpec) -> float | None:
    """The spec's budget, or 90% of the memory available now; None when neither is known."""
    if spec.memory_budget_mb is not None:
        return spec.memory_budget_mb
    available = available_memory_mb()
    return None if available is None else 0.9 * available


def check_memory(estimate: MemoryEstimate, budget_mb: float | None) -> None:
    """Refuse a job whose estimate exceeds the budget, before any of its work starts.

    Raises:
        ResourceExhausted: naming the estimate, its parts and the budget.
    """
    if budget_mb is None or estimate.total_mb <= budget_mb:
        return
    raise ResourceExhausted(
        f"the job needs an estimated {estimate.describe()}, more than the memory budget "
        f"of {budget_mb:,.0f} MiB; raise spec.memory_budget_mb (--memory-budget-mb), lower "
        "spec.blocking.k or spec.blocking.lexical_blocking_dim, or split the tables",
        field="spec.memory_budget_mb",
    )
