"""Blocking: candidate pairs from kNN over a `VectorIndex` in both directions, plus exact keys.

For a link job every left record asks for its nearest right records and every right
record for its nearest left records; the union is the candidate set, so a match found
from either side is kept. k is adaptive: a record keeps its neighbours scoring within
``margin`` of its best one (at least ``min_k``, at most ``k``), so crowded neighbourhoods
(twenty near-identical fridges) get more candidates than clear-cut ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from veclink.linkage.spec import BlockingSpec, FieldSpec
from veclink.linkage.tables import Table

IndexFactory = Callable[[str, int, str], object]


def default_index_factory(kind: str, dim: int, metric: str) -> object:
    from veclink.index import create_index

    return create_index(kind, dim, metric)


@dataclasses.dataclass(frozen=True)
class CandidatePairs:
    """Candidate pairs as row numbers, unique, sorted by (left, right).

    For dedupe both rows index the same table and ``left < right``.
    """

    left: np.ndarray  # int64
    right: np.ndarray  # int64
    #: blocking similarity (the index score; key-only pairs get their computed similarity)
    score: np.ndarray  # float32
    n_left: int
    n_right: int
    dedupe: bool = False
    #: per left / right row: the lowest kNN score it kept (its adaptive radius); a record
    #: matched later is a candidate of row i when it scores at least this much
    left_cutoff: np.ndarray | None = None
    right_cutoff: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.left.size)

    @property
    def total_pairs(self) -> int:
        if self.dedupe:
            return self.n_left * (self.n_left - 1) // 2
        return self.n_left * self.n_right

    @property
    def reduction_ratio(self) -> float:
        """1 - kept / all pairs."""
        total = self.total_pairs
        return 1.0 - len(self) / total if total else 0.0

    def pair_completeness(self, gold: set[tuple[int, int]]) -> float:
        """Share of gold pairs (row numbers) that are candidates."""
        if not gold:
            return float("nan")
        have = set(zip(self.left.tolist(), self.right.tolist(), strict=True))
        if self.dedupe:
            gold = {(min(a, b), max(a, b)) for a, b in gold}
        return len(gold & have) / len(gold)


#: rows per kNN query batch: the score / id matrices of a batch are QUERY_CHUNK x k
QUERY_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class VectorSource:
    """Unit blocking vectors of ``n`` records, made on demand for any rows.

    Blocking reads them a chunk at a time (index build, query batches, key-pair scores),
    so a side's dense vectors never need to exist all at once.
    """

    n: int
    dim: int
    #: rows (int64 array) -> float32 ``(len(rows), dim)``
    take: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def of(cls, vectors: np.ndarray | VectorSource) -> VectorSource:
        if isinstance(vectors, VectorSource):
            return vectors
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
        return cls(len(arr), arr.shape[1], lambda rows: arr[rows])

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, vectors)`` per chunk of ``size`` (`QUERY_CHUNK`) consecutive rows."""
        size = size or QUERY_CHUNK
        for start in range(0, self.n, size):
            yield start, self.take(np.arange(start, min(start + size, self.n)))


def _adaptive(scores: np.ndarray, ids: np.ndarray, spec: BlockingSpec) -> np.ndarray:
    """Boolean mask of the neighbours kept per row (ids == -1 are never kept)."""
    valid = ids >= 0
    top = np.where(valid[:, :1], scores[:, :1], -np.inf)
    keep = scores >= top - spec.margin
    keep[:, : spec.min_k] = True
    return keep & valid


def knn_pairs(
    left_vecs: np.ndarray | VectorSource,
    right_vecs: np.ndarray | VectorSource | None,
    spec: BlockingSpec,
    index_factory: IndexFactory = default_index_factory,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """kNN pairs ``(left rows, right rows, scores, cutoffs)`` both ways.

    ``right_vecs=None`` means dedupe. ``cutoffs`` holds, per querying side (left, then
    right; one array for dedupe), the lowest score each record kept. Queries run in
    batches of `QUERY_CHUNK`, so memory beyond the index is that of the pairs kept.
    """
    left = VectorSource.of(left_vecs)
    directions = (
        [(left, left, False)]
        if right_vecs is None
        else [(left, VectorSource.of(right_vecs), False), (VectorSource.of(right_vecs), left, True)]
    )
    out_l, out_r, out_s, cutoffs = [], [], [], []
    for queries, base, flip in directions:
        index = _build(index_factory, spec.index_kind, base)
        parts = [
            _query_chunk(index, start, q, spec, right_vecs is None, base.n)
            for start, q in queries.chunks()
        ]
        _close(index)
        cutoffs.append(
            np.concatenate([c for _, _, _, c in parts]) if parts else np.zeros(0, np.float32)
        )
        q_rows = [a for a, _, _, _ in parts]
        n_rows = [b for _, b, _, _ in parts]
        out_l += n_rows if flip else q_rows
        out_r += q_rows if flip else n_rows
        out_s += [sc for _, _, sc, _ in parts]
    if not out_l:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.float32), cutoffs
    return (
        np.concatenate(out_l).astype(np.int64),
        np.concatenate(out_r).astype(np.int64),
        np.concatenate(out_s).astype(np.float32),
        cutoffs,
    )


def _query_chunk(
    index: object, start: int, queries: np.ndarray, spec: BlockingSpec, dedupe: bool, n_base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kept ``(query rows, neighbour rows, scores)`` and the cutoffs of one query batch."""
    rows = np.arange(start, start + len(queries))[:, None]
    if dedupe:
        k = min(spec.k + 1, n_base)
        scores, ids = index.search(queries, k)  # type: ignore[attr-defined]
        # drop self and shift so rank 0 is the nearest other record
        scores = np.where(ids != rows, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : spec.k]
        scores = np.take_along_axis(scores, order, 1)
        ids = np.where(np.isfinite(scores), np.take_along_axis(ids, order, 1), -1)
    else:
        scores, ids = index.search(queries, min(spec.k, n_base))  # type: ignore[attr-defined]
    keep = _adaptive(scores, ids, spec)
    q = np.broadcast_to(rows, ids.shape)[keep]
    n = ids[keep]
    if dedupe:
        q, n = np.minimum(q, n), np.maximum(q, n)
    return q, n, scores[keep].astype(np.float32), _cutoff(scores, keep)


def _cutoff(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, scores, np.inf).min(axis=1).astype(np.float32)


def _build(factory: IndexFactory, kind: str, vectors: VectorSource) -> object:
    index = factory(kind, vectors.dim, "ip")
    for start, chunk in vectors.chunks():
        ids = np.arange(start, start + len(chunk), dtype=np.int64)
        index.add(ids, chunk)  # type: ignore[attr-defined]
    return index


def _close(index: object) -> None:
    close = getattr(index, "close", None)
    if close is not None:
        close()


# ------------------------------------------------------------------------- exact keys

_CODE_SPLIT = re.compile(r"[\s,;/()\[\]{}|\"'+*&:]+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def code_tokens(text: str | None) -> set[str]:
    """Model-number-like tokens: letters mixed with digits, or 5+ digits; separators dropped.

    ``"Sony Turntable - PS-LX350H"`` gives ``{"pslx350h"}``.
    """
    if not text:
        return set()
    out = set()
    for tok in _CODE_SPLIT.split(text):
        norm = _NON_ALNUM.sub("", tok.lower())
        if len(norm) < 4:
            continue
        digits = sum(c.isdigit() for c in norm)
        if digits and (digits < len(norm) or len(norm) >= 5):
            out.add(norm)
    return out


def key_values(values: Sequence[Sequence[str | None]], types: Sequence[str]) -> list[set[str]]:
    """Per record, the set of key values of one blocking key over several fields.

    A ``code`` field contributes each of its code tokens; other fields their normalised
    value. A record missing any field of the key gets no key value.
    """
    n = len(values[0]) if values else 0
    out: list[set[str]] = []
    for i in range(n):
        parts: list[set[str]] = []
        for vals, tp in zip(values, types, strict=True):
            v = vals[i]
            if tp == "code":
                parts.append(code_tokens(v))
            else:
                norm = _NON_ALNUM.sub("", (v or "").lower())
                parts.append({norm} if norm else set())
        keys = {""}
        for part in parts:
            keys = {f"{k}\x1f{p}" for k in keys for p in part}
        out.append(keys)
    return out


def key_pairs(
    left_keys: list[set[str]], right_keys: list[set[str]] | None, max_block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sharing a key value; values held by more than ``max_block`` records are skipped."""
    lblocks: dict[str, list[int]] = defaultdict(list)
    for i, keys in enumerate(left_keys):
        for k in keys:
            lblocks[k].append(i)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if right_keys is None:
        for rows in lblocks.values():
            if 1 < len(rows) <= max_block:
                r = np.asarray(rows, np.int64)  # ascending: records were visited in order
                i, j = np.triu_indices(len(r), 1)
                parts.append((r[i], r[j]))
    else:
        rblocks: dict[str, list[int]] = defaultdict(list)
        for j, keys in enumerate(right_keys):
            for k in keys:
                rblocks[k].append(j)
        for k, lrows in lblocks.items():
            rrows = rblocks.get(k)
            if rrows and len(lrows) <= max_block and len(rrows) <= max_block:
                a, b = np.asarray(lrows, np.int64), np.asarray(rrows, np.int64)
                parts.append((np.repeat(a, len(b)), np.tile(b, len(a))))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    # unique pairs sorted by (left, right)
    width = int(b.max()) + 1
    code = np.unique(a * width + b)
    return code // width, code % width


def table_keys(
    table: Table, fields: Sequence[FieldSpec], key: Sequence[str], side: str
) -> list[set[str]]:
    by_name = {f.name: f for f in fields}
    cols = [
        by_name[name].left_column if side == "left" else by_name[name].right_column for name in key
    ]
    return key_values([table.column(c) for c in cols], [by_name[name].type for name in key])


# ------------------------------------------------------------------------------ blocker


def block(
    left_vecs: np.ndarray | VectorSource,
    right_vecs: np.ndarray | VectorSource | None,
    spec: BlockingSpec,
    *,
    left_keys: Sequence[list[set[str]]] = (),
    right_keys: Sequence[list[set[str]]] = (),
    index_factory: IndexFactory = default_index_factory,
) -> CandidatePairs:
    """Candidate pairs: adaptive kNN both ways over ``index_factory`` indexes, plus key pairs.

    Args:
        left_vecs, right_vecs: unit blocking vectors (arrays, or a `VectorSource` that makes
            them a chunk at a time); ``right_vecs=None`` for dedupe.
        left_keys, right_keys: per blocking key, the key values of every record.
    """
    dedupe = right_vecs is None
    left = VectorSource.of(left_vecs)
    other = left if right_vecs is None else VectorSource.of(right_vecs)
    ls, rs, ss, cutoffs = knn_pairs(left, None if dedupe else other, spec, index_factory)
    for i, lk in enumerate(left_keys):
        kl, kr = key_pairs(lk, None if dedupe else right_keys[i], spec.max_key_block)
        if kl.size:
            ls, rs, ss = (
                np.concatenate([ls, kl]),
                np.concatenate([rs, kr]),
                np.concatenate([ss, _pair_scores(left, other, kl, kr)]),
            )
    if ls.size:
        code = ls * other.n + rs
        _, first = np.unique(code, return_index=True)
        ls, rs, ss = ls[first], rs[first], ss[first]
    return CandidatePairs(
        left=ls,
        right=rs,
        score=ss,
        n_left=left.n,
        n_right=other.n,
        dedupe=dedupe,
        left_cutoff=cutoffs[0],
        right_cutoff=cutoffs[0] if dedupe else cutoffs[1],
    )


def _pair_scores(
    left: VectorSource, right: VectorSource, lrows: np.ndarray, rrows: np.ndarray
) -> np.ndarray:
    """Inner products of the pairs ``(lrows[i], rrows[i])``, a chunk of pairs at a time."""
    out = np.empty(len(lrows), np.float32)
    for s in range(0, len(lrows), QUERY_CHUNK):
        a, b = left.take(lrows[s : s + QUERY_CHUNK]), right.take(rrows[s : s + QUERY_CHUNK])
        out[s : s + QUERY_CHUNK] = np.einsum("ij,ij->i", a, b)
    return out
