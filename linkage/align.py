"""Schema alignment: which left column corresponds to which right column.

Two signals, each a similarity in [0, 1]:

- names, normalised (ontology / URL prefixes up to the last ``/`` or ``#`` dropped,
  snake / camel case and punctuation split, lower case), compared by tokens and by
  characters;
- content, from a deterministic sample of each column's values: the IDF-weighted cosine
  of their word vocabularies (or, with an encoder, the cosine of the mean embedding of a
  few short values when it says more), times the similarity of their shapes (share of
  numbers and dates, lengths, distinct ratio, ...).

They combine into one score per column pair; a one-to-one assignment (Hungarian) keeps
the pairs scoring at least a minimum. What is not aligned is reported (``left_only``,
``right_only``) and compared schema-agnostically by the job, never dropped; ``notes``
warn when such a column carries a large share of a side's text.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from veclink.linkage.profile import (
    MOSTLY,
    SAMPLE,
    ColumnProfile,
    infer_type,
    magnitude_similarity,
    profile_column,
    shape_similarity,
)
from veclink.linkage.tables import Table

#: pairs scoring below this are not aligned
MIN_SCORE = 0.35
#: an unaligned column holding more than this share of a side's characters is warned about
TEXT_SHARE_WARNING = 0.3
#: values per column that are embedded (short prefixes of the sampled values)
EMBED_VALUES = 16
EMBED_CHARS = 48

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^0-9a-z]+")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ColumnMatch:
    """One aligned pair of columns."""

    #: column of the left table
    left: str
    #: column of the right table
    right: str
    #: combined score in [0, 1]
    score: float
    #: similarity of the normalised names
    name_score: float
    #: similarity of the sampled values
    content_score: float
    #: comparison type inferred from both columns' values (``spec.FIELD_TYPES``)
    type: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Alignment:
    """The column alignment of a link job."""

    #: aligned pairs, in left-table column order
    matches: tuple[ColumnMatch, ...]
    #: columns of the left / right table that have no partner
    left_only: tuple[str, ...]
    right_only: tuple[str, ...]
    #: warnings for a reader (unaligned columns that hold much of the text, ...)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (scores rounded to 3 decimals)."""
        return {
            "matches": [
                {
                    "left": m.left,
                    "right": m.right,
                    "score": round(m.score, 3),
                    "name_score": round(m.name_score, 3),
                    "content_score": round(m.content_score, 3),
                    "type": m.type,
                }
                for m in self.matches
            ],
            "left_only": list(self.left_only),
            "right_only": list(self.right_only),
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------- names


def name_tokens(name: str) -> list[str]:
    """``http://x.org/onto#phoneNumber`` -> ``["phone", "number"]``."""
    tail = re.split(r"[/#]", name.strip().rstrip("/#"))[-1] or name
    return [t for t in _SPLIT.split(_CAMEL.sub(" ", tail).lower()) if t]


def name_similarity(a: str, b: str) -> float:
    """Similarity of two column names in [0, 1] after `name_tokens`.

    The larger of: a soft token Jaccard (tokens equal, or one a prefix of the other of at
    least 3 characters: ``addr`` ~ ``address``), and the character similarity of the joined
    names rescaled so that chance resemblance (<= 0.6) counts nothing.
    """
    from rapidfuzz import fuzz

    ta, tb = name_tokens(a), name_tokens(b)
    if ta == tb and (ta or a.strip() == b.strip()):
        return 1.0
    if not ta or not tb:
        return 0.0
    used: set[int] = set()
    shared = 0
    for x in ta:
        for j, y in enumerate(tb):
            if j not in used and _same_token(x, y):
                used.add(j)
                shared += 1
                break
    jaccard = shared / (len(ta) + len(tb) - shared)
    chars = fuzz.ratio(" ".join(ta), " ".join(tb)) / 100.0
    return max(jaccard, max(0.0, (chars - 0.6) / 0.4))


def _same_token(x: str, y: str) -> bool:
    if x == y:
        return True
    short, long = sorted((x, y), key=len)
    return len(short) >= 3 and long.startswith(short)


# ----------------------------------------------------------------------------- content


def vocabulary_similarity(
    profiles_l: Sequence[ColumnProfile], profiles_r: Sequence[ColumnProfile]
) -> np.ndarray:
    """Cosine of IDF-weighted word vectors, every left column against every right column.

    A word's IDF is over all columns of both sides: words that occur in many columns
    (``the``, ``1``) weigh little, words specific to a kind of column weigh most.
    """
    cols = [*profiles_l, *profiles_r]
    df: Counter[str] = Counter()
    for p in cols:
        df.update(p.words.keys())
    n = len(cols)
    vocab = {w: i for i, w in enumerate(df)}
    idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in vocab])
    mat = np.zeros((n, len(vocab)))
    for i, p in enumerate(cols):
        for w, c in p.words.items():
            mat[i, vocab[w]] = math.log1p(c)
    mat *= idf
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat /= np.where(norms == 0, 1, norms)
    return mat[: len(profiles_l)] @ mat[len(profiles_l) :].T


def _mean_embeddings(encoder: Any, profiles: Sequence[ColumnProfile]) -> np.ndarray:
    """Unit mean embedding per column of a few short values.

    Zeros for an empty column and for columns of numbers or dates, whose shape says more
    than an embedding of digits.
    """
    texts: list[str] = []
    spans = []
    for p in profiles:
        vals: list[str] = []
        if not p.empty and max(p.numeric, p.date) < 0.5:
            step = max(1, len(p.values) // EMBED_VALUES)
            vals = [v[:EMBED_CHARS] for v in p.values[::step]][:EMBED_VALUES]
        spans.append((len(texts), len(texts) + len(vals)))
        texts += vals
    dim = int(encoder.dim)
    emb = np.asarray(encoder.encode(texts), np.float64) if texts else np.zeros((0, dim))
    out = np.zeros((len(profiles), dim))
    for i, (a, b) in enumerate(spans):
        if b > a:
            m = emb[a:b].mean(axis=0)
            out[i] = m / (np.linalg.norm(m) or 1.0)
    return out


def embedding_similarity(
    encoder: Any, profiles_l: Sequence[ColumnProfile], profiles_r: Sequence[ColumnProfile]
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of mean value embeddings, relative to the mean over all embedded column pairs.

    Mean embeddings of any two text columns are alike (embeddings are anisotropic), so a
    cosine counts only by how far it rises above the job's own average: 0 at or below the
    mean cosine of all pairs of embedded columns, 1 at cosine 1. Returns the similarities
    and a mask of the pairs where both columns were embedded.
    """
    el, er = _mean_embeddings(encoder, profiles_l), _mean_embeddings(encoder, profiles_r)
    cos = el @ er.T
    used = np.outer(el.any(axis=1), er.any(axis=1))
    if not used.any():
        return np.zeros_like(cos), used
    base = float(cos[used].mean())
    rel = np.clip((cos - base) / max(1.0 - base, 1e-6), 0.0, 1.0)
    return np.where(used, rel, 0.0), used


def content_similarity(
    profiles_l: Sequence[ColumnProfile],
    profiles_r: Sequence[ColumnProfile],
    encoder: Any = None,
) -> np.ndarray:
    """Content similarity of every left column to every right column, in [0, 1].

    The vocabulary cosine (for two columns of numbers, or their magnitude similarity when
    larger), or with an encoder the larger of it and the (relative) embedding
    similarity (embeddings find what shares no words: other languages, formats), multiplied
    by the shape similarity: columns of different kinds
    (numbers vs text) do not align however many words they share. An empty column scores 0.
    """
    sim = vocabulary_similarity(profiles_l, profiles_r)
    for i, a in enumerate(profiles_l):
        for j, b in enumerate(profiles_r):
            if min(a.numeric, b.numeric) >= MOSTLY:
                sim[i, j] = max(sim[i, j], magnitude_similarity(a, b))
    if encoder is not None:
        emb, embedded = embedding_similarity(encoder, profiles_l, profiles_r)
        sim = np.where(embedded, np.maximum(sim, emb), sim)
    shape = np.array([[shape_similarity(a, b) for b in profiles_r] for a in profiles_l])
    empty = np.array([[a.empty or b.empty for b in profiles_r] for a in profiles_l])
    out = sim * np.clip(shape, 0.0, 1.0)
    out[empty] = 0.0
    return out.reshape(len(profiles_l), len(profiles_r))


# --------------------------------------------------------------------------- alignment


def combine(name: np.ndarray, content: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """One score from the name and content similarities: a noisy-or of the two evidences.

    The name's evidence is scaled by ``(1 + shape) / 2``, so that equal names over values
    of different kinds count for less.
    """
    named = name * (1.0 + np.clip(shape, 0.0, 1.0)) / 2.0
    return 1.0 - (1.0 - named) * (1.0 - content)


def align_columns(
    left: Table,
    right: Table,
    *,
    encoder: Any = None,
    sample: int = SAMPLE,
    min_score: float = MIN_SCORE,
    seed: int = 0,
) -> Alignment:
    """Align the non-id columns of ``left`` and ``right`` one to one.

    Args:
        encoder: an `Encoder` for the embedding signal (None: names, words and shapes only).
        sample: values sampled per column (seeded: the same tables give the same alignment).
        min_score: pairs scoring below this stay unaligned.
        seed: sampling seed.
    """
    from scipy.optimize import linear_sum_assignment

    lc, rc = list(left.columns), list(right.columns)
    pl = [profile_column(left.column(c), sample=sample, seed=seed) for c in lc]
    pr = [profile_column(right.column(c), sample=sample, seed=seed) for c in rc]
    matches: list[ColumnMatch] = []
    if lc and rc:
        name = np.array([[name_similarity(a, b) for b in rc] for a in lc])
        shape = np.array([[shape_similarity(a, b) for b in pr] for a in pl])
        content = content_similarity(pl, pr, encoder)
        score = combine(name, content, shape)
        score[[p.empty for p in pl], :] = 0.0  # an empty column has nothing to compare
        score[:, [p.empty for p in pr]] = 0.0
        rows, cols = linear_sum_assignment(-score)
        for i, j in sorted(zip(rows.tolist(), cols.tolist(), strict=True)):
            if score[i, j] < min_score:
                continue
            merged = profile_column([*pl[i].values, *pr[j].values], sample=2 * sample, seed=seed)
            matches.append(
                ColumnMatch(
                    left=lc[i],
                    right=rc[j],
                    score=float(score[i, j]),
                    name_score=float(name[i, j]),
                    content_score=float(content[i, j]),
                    type=infer_type(merged),
                )
            )
    left_only = tuple(c for c in lc if c not in {m.left for m in matches})
    right_only = tuple(c for c in rc if c not in {m.right for m in matches})
    notes = _text_share_notes(left, left_only, "left") + _text_share_notes(
        right, right_only, "right"
    )
    for side, cols, profiles in (("left", lc, pl), ("right", rc, pr)):
        empty = [c for c, p in zip(cols, profiles, strict=True) if p.empty]
        if empty:
            notes.append(f"{side} column(s) without any value: {empty!r}")
    if not matches and lc and rc:
        notes.append(
            "no column could be aligned: records are compared on their whole text only "
            "(list fields to compare them field by field)"
        )
    return Alignment(
        matches=tuple(matches), left_only=left_only, right_only=right_only, notes=tuple(notes)
    )


def identity_alignment(table: Table, *, sample: int = SAMPLE, seed: int = 0) -> Alignment:
    """Every column with itself (dedupe), typed by `infer_type`."""
    matches = tuple(
        ColumnMatch(
            left=c,
            right=c,
            score=1.0,
            name_score=1.0,
            content_score=1.0,
            type=infer_type(profile_column(table.column(c), sample=sample, seed=seed)),
        )
        for c in table.columns
    )
    return Alignment(matches=matches, left_only=(), right_only=())


def _text_share_notes(table: Table, unaligned: Sequence[str], side: str) -> list[str]:
    """Warnings for unaligned columns holding more than `TEXT_SHARE_WARNING` of the text."""
    chars = {c: sum(len(v) for v in table.column(c) if v) for c in table.columns}
    total = sum(chars.values())
    notes = []
    for c in unaligned:
        share = chars[c] / total if total else 0.0
        if share > TEXT_SHARE_WARNING:
            notes.append(
                f"{side} column {c!r} holds {share:.0%} of the {side} table's text but has no "
                "partner: it is compared only as part of the whole record's text"
            )
    return notes
