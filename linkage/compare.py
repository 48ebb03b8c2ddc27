"""Comparison: a feature vector per candidate pair.

Record-level features: embedding cosine, lexical (char 3-gram) cosine, IDF-weighted word
overlap (rare words such as brands weigh most) and model-number agreement. Per-field
features depend on the field type (rapidfuzz for string similarities, jellyfish for
phonetic codes, numeric and date closeness). Every feature is a similarity in [0, 1];
NaN means "not comparable" (a value is missing), which the classifiers handle.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
from veclink.linkage.blocking import code_tokens
from veclink.linkage.serialize import field_values
from veclink.linkage.spec import FieldSpec
from veclink.linkage.tables import Table

from veclink._optional import require

#: pairs compared at a time (bounds the temporaries of `Comparator.compare`)
COMPARE_CHUNK = 16384
_WORD_CLEAN = re.compile(r"[^0-9a-z\s]+")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


@dataclasses.dataclass(frozen=True)
class Features:
    """Feature matrix of candidate pairs: float32 ``(n_pairs, len(names))``, NaN = missing."""

    names: tuple[str, ...]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def take(self, rows: np.ndarray) -> Features:
        return Features(self.names, self.values[rows])


def words(text: str | None) -> set[str]:
    if not text:
        return set()
    return set(_WORD_CLEAN.sub("", text.lower()).split())


def parse_number(text: str | None) -> float | None:
    if not text:
        return None
    m = _NUMBER.search(text.replace(" ", ""))
    if not m:
        return None
    raw = m.group(0)
    # "1,299.00" -> 1299.00 ; "12,5" -> 12.5
    if "," in raw and "." in raw:
        raw = raw.replace(",", "")
    elif "," in raw:
        head, _, tail = raw.rpartition(",")
        raw = raw.replace(",", "") if len(tail) == 3 else f"{head.replace(',', '')}.{tail}"
    try:
        return float(raw)
    except ValueError:
        return None


_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y")


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


@dataclasses.dataclass
class Comparator:
    """Computes `Features` for pairs of records of two tables (or one, for dedupe).

    ``fit`` learns word IDF weights from the job's records; they are kept so that an
    incremental match computes the same features as the batch job.
    """

    fields: tuple[FieldSpec, ...]
    idf: dict[str, float] = dataclasses.field(default_factory=dict)
    default_idf: float = 1.0

    def fit(self, left_texts: Sequence[str], right_texts: Sequence[str] = ()) -> Comparator:
        docs = [words(t) for t in list(left_texts) + list(right_texts)]
        df: dict[str, int] = {}
        for d in docs:
            for w in d:
                df[w] = df.get(w, 0) + 1
        n = len(docs)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}
        self.default_idf = math.log(1 + n) + 1
        return self

    @property
    def names(self) -> tuple[str, ...]:
        out = ["cosine", "lexical", "word_overlap", "codes"]
        for f in self.fields:
            if f.compare:
                out += [f"{f.name}.{m}" for m in _METHODS[f.type]]
        return tuple(out)

    def compare(
        self,
        left: Table,
        right: Table,
        left_rows: np.ndarray,
        right_rows: np.ndarray,
        *,
        left_texts: Sequence[str],
        right_texts: Sequence[str],
        left_views: tuple[np.ndarray, np.ndarray | None],
        right_views: tuple[np.ndarray, np.ndarray | None],
        right_side: str = "right",
    ) -> Features:
        """Features of pairs ``(left_rows[i], right_rows[i])``.

        Args:
            left_texts, right_texts: serialised records (for word and code overlap).
            left_views, right_views: (embeddings, lexical vectors or None) per table.
            right_side: ``"left"`` when ``right`` is the left table again (dedupe).
        """
        sem_l, lex_l = left_views
        sem_r, lex_r = right_views
        lw = [words(t) for t in left_texts]
        rw = lw if right_texts is left_texts else [words(t) for t in right_texts]
        lc = [code_tokens(t) for t in left_texts]
        rc = lc if right_texts is left_texts else [code_tokens(t) for t in right_texts]
        fields = [
            (f, field_values(left, f, "left"), field_values(right, f, right_side))
            for f in self.fields
            if f.compare
        ]
        names = self.names
        values = np.empty((len(left_rows), len(names)), np.float32)
        # a chunk of pairs at a time: temporaries (gathered vectors, per-pair strings) stay
        # bounded by the chunk, the only per-pair allocation is the feature matrix
        for s in range(0, len(left_rows), COMPARE_CHUNK):
            a, b = left_rows[s : s + COMPARE_CHUNK], right_rows[s : s + COMPARE_CHUNK]
            out = values[s : s + COMPARE_CHUNK]
            out[:, 0] = np.einsum("ij,ij->i", sem_l[a], sem_r[b])
            if lex_l is not None and lex_r is not None:
                out[:, 1] = np.asarray(lex_l[a].multiply(lex_r[b]).sum(axis=1)).ravel()
            else:
                out[:, 1] = np.nan
            out[:, 2] = self._word_overlap(lw, rw, a, b)
            out[:, 3] = _code_similarity(lc, rc, a, b)
            col = 4
            for f, lv, rv in fields:
                al = [lv[i] for i in a.tolist()]
                bl = [rv[j] for j in b.tolist()]
                for v in _field_features(f, al, bl):
                    out[:, col] = v
                    col += 1
        return Features(names, values)

    def _word_overlap(
        self, lw: list[set[str]], rw: list[set[str]], lrows: np.ndarray, rrows: np.ndarray
    ) -> np.ndarray:
        idf, dflt = self.idf, self.default_idf
        out = np.empty(len(lrows), np.float32)
        for n, (i, j) in enumerate(zip(lrows.tolist(), rrows.tolist(), strict=True)):
            a, b = lw[i], rw[j]
            union = a | b
            if not union:
                out[n] = np.nan
                continue
            inter = sum(idf.get(w, dflt) for w in a & b)
            out[n] = inter / sum(idf.get(w, dflt) for w in union)
        return out


def _code_similarity(
    lc: list[set[str]], rc: list[set[str]], lrows: np.ndarray, rrows: np.ndarray
) -> np.ndarray:
    """1 when a model number is shared; the best normalised edit similarity otherwise."""
    distance = require("rapidfuzz.distance", "linkage")
    out = np.empty(len(lrows), np.float32)
    for n, (i, j) in enumerate(zip(lrows.tolist(), rrows.tolist(), strict=True)):
        a, b = lc[i], rc[j]
        if not a or not b:
            out[n] = np.nan
        elif a & b:
            out[n] = 1.0
        else:
            out[n] = max(distance.Indel.normalized_similarity(x, y) for x in a for y in b)
    return out


# per type: which similarities (names used in feature names)
_METHODS: dict[str, tuple[str, ...]] = {
    "text": ("token_set", "token_sort", "overlap"),
    "string": ("jaro_winkler", "levenshtein", "token_sort"),
    "name": ("jaro_winkler", "levenshtein", "phonetic"),
    "code": ("exact", "levenshtein"),
    "number": ("closeness",),
    "date": ("closeness", "exact", "levenshtein"),
    "category": ("exact", "jaro_winkler"),
}
#: the most comparison features one field gives, over the field types
MAX_FEATURES_PER_FIELD = max(len(m) for m in _METHODS.values())


def _field_features(f: FieldSpec, a: list[str | None], b: list[str | None]) -> list[np.ndarray]:
    require("rapidfuzz", "linkage")
    from rapidfuzz import fuzz, process
    from rapidfuzz.distance import JaroWinkler, Levenshtein

    missing = np.array([x is None or y is None for x, y in zip(a, b, strict=True)])
    la = [(x or "").lower() for x in a]
    lb = [(y or "").lower() for y in b]

    def pairwise(scorer: object, scale: float = 1.0) -> np.ndarray:
        if not la:
            return np.zeros(0, np.float32)
        v = process.cpdist(la, lb, scorer=scorer, workers=1).astype(np.float32) / scale
        v[missing] = np.nan
        return v

    def exact() -> np.ndarray:
        v = np.array([x == y for x, y in zip(la, lb, strict=True)], np.float32)
        v[missing] = np.nan
        return v

    out: list[np.ndarray] = []
    for method in _METHODS[f.type]:
        if method == "jaro_winkler":
            out.append(pairwise(JaroWinkler.normalized_similarity))
        elif method == "levenshtein":
            out.append(pairwise(Levenshtein.normalized_similarity))
        elif method == "token_set":
            out.append(pairwise(fuzz.token_set_ratio, 100.0))
        elif method == "token_sort":
            out.append(pairwise(fuzz.token_sort_ratio, 100.0))
        elif method == "overlap":
            v = np.array(
                [_overlap(words(x), words(y)) for x, y in zip(la, lb, strict=True)], np.float32
            )
            v[missing] = np.nan
            out.append(v)
        elif method == "exact":
            out.append(exact())
        elif method == "phonetic":
            v = _phonetic_equal(la, lb)
            v[missing] = np.nan
            out.append(v)
        elif method == "closeness" and f.type == "number":
            out.append(_number_closeness(a, b, f.scale))
        elif method == "closeness" and f.type == "date":
            out.append(_date_closeness(a, b, f.scale or 365.0))
    return out


def _phonetic_equal(a: list[str], b: list[str]) -> np.ndarray:
    """1 where both values have the same Metaphone code (neumann ~ newman)."""
    jf = require("jellyfish", "linkage")
    codes: dict[str, str] = {}
    for s in (*a, *b):
        if s not in codes:
            codes[s] = jf.metaphone(s) if s else ""
    return np.array([codes[x] == codes[y] for x, y in zip(a, b, strict=True)], np.float32)


def _overlap(x: set[str], y: set[str]) -> float:
    if not x or not y:
        return float("nan")
    return len(x & y) / min(len(x), len(y))


def _number_closeness(a: list[str | None], b: list[str | None], scale: float | None) -> np.ndarray:
    out = np.full(len(a), np.nan, np.float32)
    for n, (x, y) in enumerate(zip(a, b, strict=True)):
        u, v = parse_number(x), parse_number(y)
        if u is None or v is None:
            continue
        if scale is None:  # relative difference
            denom = max(abs(u), abs(v))
            d = abs(u - v) / denom if denom else 0.0
            out[n] = 1.0 / (1.0 + 10.0 * d)
        else:
            out[n] = 1.0 / (1.0 + abs(u - v) / scale)
    return out


def _date_closeness(a: list[str | None], b: list[str | None], scale: float) -> np.ndarray:
    out = np.full(len(a), np.nan, np.float32)
    for n, (x, y) in enumerate(zip(a, b, strict=True)):
        u, v = parse_date(x), parse_date(y)
        if u is None or v is None:
            continue
        out[n] = 1.0 / (1.0 + abs((u - v).days) / scale)
    return out
