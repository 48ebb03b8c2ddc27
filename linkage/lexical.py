"""A lexical view of records: hashed character 3-gram TF-IDF as dense unit vectors.

Sentence embeddings blur model numbers and typos ("PSLX350H" vs "PS-LX350H", "setreet");
character n-grams keep them. The vectors are dense so they can share a `VectorIndex`
with the embeddings: blocking indexes ``[sqrt(1-w) * emb, sqrt(w) * lex]`` whose inner
product is ``(1-w) * cos_emb + w * cos_lex``.

The IDF weights are fitted once on the texts of a job and kept, so a record matched
later (`Matcher`) gets the same vector it would have had in the batch job.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Sequence

import numpy as np

_NON_WORD = re.compile(r"[^0-9a-z\s]+")


def _grams(text: str, n: int) -> list[str]:
    # per word, padded with spaces (like sklearn's char_wb), lowercase; punctuation inside a
    # word is dropped so that "PS-LX350H" and "PSLX350H" share their grams
    out: list[str] = []
    for word in _NON_WORD.sub("", text.lower()).split():
        if not word:
            continue
        padded = f" {word} "
        if len(padded) <= n:
            out.append(padded)
        else:
            out.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return out


def _bucket(gram: str, dim: int) -> int:
    # crc32 is stable across processes (hash() is not)
    return zlib.crc32(gram.encode("utf-8")) % dim


@dataclasses.dataclass
class LexicalVectorizer:
    """Hashed char n-gram TF-IDF (sublinear tf, smoothed idf), L2-normalised, dense float32."""

    dim: int = 4096
    n: int = 3
    #: idf per bucket, fitted by ``fit``
    idf: np.ndarray | None = None

    def _counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols, vals = [], [], []
        for i, text in enumerate(texts):
            buckets: dict[int, int] = {}
            for g in _grams(text, self.n):
                b = _bucket(g, self.dim)
                buckets[b] = buckets.get(b, 0) + 1
            rows += [i] * len(buckets)
            cols += list(buckets)
            vals += list(buckets.values())
        return np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(vals, np.float32)

    def fit(self, texts: Sequence[str]) -> LexicalVectorizer:
        _, cols, _ = self._counts(texts)
        df = np.bincount(cols, minlength=self.dim).astype(np.float64)
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.idf is None:
            raise RuntimeError("LexicalVectorizer.transform called before fit")
        rows, cols, vals = self._counts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[rows, cols] = (1 + np.log(vals)) * self.idf[cols]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1
        out /= norms
        return out


def combine_views(
    semantic: np.ndarray, lexical: np.ndarray | None, lexical_weight: float
) -> np.ndarray:
    """``[sqrt(1-w) * semantic, sqrt(w) * lexical]``: inner product = weighted sum of cosines."""
    if lexical is None or lexical_weight == 0:
        return np.ascontiguousarray(semantic, dtype=np.float32)
    w = float(lexical_weight)
    return np.ascontiguousarray(
        np.hstack([np.sqrt(1 - w) * semantic, np.sqrt(w) * lexical]), dtype=np.float32
    )
