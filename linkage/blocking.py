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
from collections.abc import Callable, Sequence

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


def _adaptive(scores: np.ndarray, ids: np.ndarray, spec: BlockingSpec) -> np.ndarray:
    """Boolean mask of the neighbours kept per row (ids == -1 are never kept)."""
    valid = ids >= 0
    top = np.where(valid[:, :1], scores[:, :1], -np.inf)
    keep = scores >= top - spec.margin
    keep[:, : spec.min_k] = True
    return keep & valid


def knn_pairs(
    left_vecs: np.ndarray,
    right_vecs: np.ndarray | None,
    spec: BlockingSpec,
    index_factory: IndexFactory = default_index_factory,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """kNN pairs ``(left rows, right rows, scores, cutoffs)`` both ways.

    ``right_vecs=None`` means dedupe. ``cutoffs`` holds, per querying side (left, then
    right; one array for dedupe), the lowest score each record kept.
    """
    out_l, out_r, out_s, cutoffs = [], [], [], []
    if right_vecs is None:
        index = _build(index_factory, spec.index_kind, left_vecs)
        k = min(spec.k + 1, len(left_vecs))
        scores, ids = index.search(left_vecs, k)  # type: ignore[attr-defined]
        rows = np.repeat(np.arange(len(left_vecs)), k).reshape(-1, k)
        not_self = ids != rows
        # drop self and shift so rank 0 is the nearest other record
        scores = np.where(not_self, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : spec.k]
        scores = np.take_along_axis(scores, order, 1)
        ids = np.where(np.isfinite(scores), np.take_along_axis(ids, order, 1), -1)
        keep = _adaptive(scores, ids, spec)
        cutoffs.append(_cutoff(scores, keep))
        a, b = rows[:, : ids.shape[1]][keep], ids[keep]
        out_l.append(np.minimum(a, b))
        out_r.append(np.maximum(a, b))
        out_s.append(scores[keep])
        _close(index)
    else:
        for queries, base, flip in ((left_vecs, right_vecs, False), (right_vecs, left_vecs, True)):
            index = _build(index_factory, spec.index_kind, base)
            k = min(spec.k, len(base))
            scores, ids = index.search(queries, k)  # type: ignore[attr-defined]
            keep = _adaptive(scores, ids, spec)
            cutoffs.append(_cutoff(scores, keep))
            q = np.repeat(np.arange(len(queries)), k).reshape(-1, k)[keep]
            n = ids[keep]
            out_l.append(n if flip else q)
            out_r.append(q if flip else n)
            out_s.append(scores[keep])
            _close(index)
    return (
        np.concatenate(out_l).astype(np.int64),
        np.concatenate(out_r).astype(np.int64),
        np.concatenate(out_s).astype(np.float32),
        cutoffs,
    )


def _cutoff(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, scores, np.inf).min(axis=1).astype(np.float32)


def _build(factory: IndexFactory, kind: str, vectors: np.ndarray) -> object:
    index = factory(kind, vectors.shape[1], "ip")
    index.add(np.arange(len(vectors), dtype=np.int64), vectors)  # type: ignore[attr-defined]
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
    pairs: set[tuple[int, int]] = set()
    if right_keys is None:
        for rows in lblocks.values():
            if 1 < len(rows) <= max_block:
                pairs.update((a, b) for x, a in enumerate(rows) for b in rows[x + 1 :])
    else:
        rblocks: dict[str, list[int]] = defaultdict(list)
        for j, keys in enumerate(right_keys):
            for k in keys:
                rblocks[k].append(j)
        for k, lrows in lblocks.items():
            rrows = rblocks.get(k)
            if rrows and len(lrows) <= max_block and len(rrows) <= max_block:
                pairs.update((a, b) for a in lrows for b in rrows)
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.array(sorted(pairs), dtype=np.int64)
    return arr[:, 0], arr[:, 1]


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
    left_vecs: np.ndarray,
    right_vecs: np.ndarray | None,
    spec: BlockingSpec,
    *,
    left_keys: Sequence[list[set[str]]] = (),
    right_keys: Sequence[list[set[str]]] = (),
    index_factory: IndexFactory = default_index_factory,
) -> CandidatePairs:
    """Candidate pairs: adaptive kNN both ways over ``index_factory`` indexes, plus key pairs.

    Args:
        left_vecs, right_vecs: unit blocking vectors; ``right_vecs=None`` for dedupe.
        left_keys, right_keys: per blocking key, the key values of every record.
    """
    dedupe = right_vecs is None
    ls, rs, ss, cutoffs = knn_pairs(left_vecs, right_vecs, spec, index_factory)
    other = left_vecs if dedupe else right_vecs
    for i, lk in enumerate(left_keys):
        kl, kr = key_pairs(lk, None if dedupe else right_keys[i], spec.max_key_block)
        if kl.size:
            ks = np.einsum("ij,ij->i", left_vecs[kl], other[kr]).astype(np.float32)  # type: ignore[index]
            ls, rs, ss = (
                np.concatenate([ls, kl]),
                np.concatenate([rs, kr]),
                np.concatenate([ss, ks]),
            )
    n_right = len(left_vecs) if dedupe else len(right_vecs)  # type: ignore[arg-type]
    if ls.size:
        code = ls * n_right + rs
        _, first = np.unique(code, return_index=True)
        ls, rs, ss = ls[first], rs[first], ss[first]
    return CandidatePairs(
        left=ls,
        right=rs,
        score=ss,
        n_left=len(left_vecs),
        n_right=n_right,
        dedupe=dedupe,
        left_cutoff=cutoffs[0],
        right_cutoff=cutoffs[0] if dedupe else cutoffs[1],
    )
